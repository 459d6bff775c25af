// Fuzz cases for the Snapshots service: valid requests built from what the daemon holds, the
// same requests with hostile fields, their encodings with damaged bytes, crafted protobuf that
// no encoder writes, and plain garbage. A seed gives the same sequence every time (as long as
// the daemon answers the same, which it does when the cases are sent one at a time).
import { status } from '@grpc/grpc-js';
import { encodeRequest, METHODS, type Method } from './raw-client.js';
import { lenField, mapEntry, tag, varint, varintField, WIRE } from './protowire.js';
import {
  hostileDigest, hostileFieldPath, hostileFilter, hostileKey, hostileLabels, hostileParent, randomHex,
  LAYER_DIGEST_LABEL, TARGET_REF_LABEL,
} from './hostile.js';
import type { Rng } from '../rng.js';

/** Digests the store fixture was built with. */
export interface StoreDigests {
  /** Layers that are in the store: these, and only these, may become remote snapshots. */
  present: string[];
  /** Well-formed digests of layers that are not there. */
  absent: string[];
  /** Well-formed digests whose store entry is a symlink out of the store or not a directory. */
  trap: string[];
}

export type How = 'valid' | 'mutated' | 'wire' | 'crafted' | 'garbage' | 'unknown-method' | 'oversize';

export interface FuzzCase {
  n: number;
  method: string;
  how: How;
  payload: Buffer;
  /** The request object, for cases built from one (valid, mutated). */
  request?: Record<string, unknown>;
  /** What was changed, for the report. */
  note: string;
  /** When set, the answer's code must be one of these. */
  expect?: readonly status[];
  because?: string;
  /** The answer may come without a message (grpc-js's own answers that cannot quote the input). */
  messageOptional?: boolean;
}

export type Kind = 'ACTIVE' | 'VIEW' | 'COMMITTED';

/** What the fuzzer believes the daemon holds, so that valid requests name real snapshots. */
export class SnapshotModel {
  private readonly kinds = new Map<string, Kind>();

  set(name: string, kind: Kind): void { this.kinds.set(name, kind); }
  delete(name: string): void { this.kinds.delete(name); }
  kindOf(name: string): Kind | undefined { return this.kinds.get(name); }
  get size(): number { return this.kinds.size; }
  names(kind?: Kind): string[] {
    return [...this.kinds].filter(([, k]) => kind === undefined || k === kind).map(([n]) => n);
  }
  replace(infos: readonly { name: string; kind: string }[]): void {
    this.kinds.clear();
    for (const i of infos) if (i.kind === 'ACTIVE' || i.kind === 'VIEW' || i.kind === 'COMMITTED') this.kinds.set(i.name, i.kind);
  }
}

const MAX_KEY_BYTES = 4096;
const MAX_LABEL_BYTES = 4096;
/** The daemon's grpc.max_receive_message_length. */
export const MAX_MESSAGE_BYTES = 16 << 20;

const badKey = (k: unknown): boolean => typeof k !== 'string' || k === '' || k.includes('\0') || Buffer.byteLength(k) > MAX_KEY_BYTES;
function badLabels(l: unknown): boolean {
  if (l === null || typeof l !== 'object') return false;
  return Object.entries(l as Record<string, string>).some(([k, v]) => k === '' || Buffer.byteLength(k) + Buffer.byteLength(v) > MAX_LABEL_BYTES);
}

/** The code a request must get when it is plainly invalid, whatever the daemon holds. */
export function oracle(method: string, r: Record<string, unknown>): { expect: status[]; because: string } | undefined {
  const invalid = (because: string) => ({ expect: [status.INVALID_ARGUMENT], because });
  switch (method) {
    case 'Prepare': case 'View':
      if (badKey(r.key)) return invalid('the key is empty, has a NUL or is longer than 4 KiB');
      if (r.parent !== '' && badKey(r.parent)) return invalid('the parent is not a valid key');
      if (badLabels(r.labels)) return invalid('a label is over 4 KiB or has an empty key');
      return undefined;
    case 'Commit':
      if (badKey(r.name)) return invalid('the name is empty, has a NUL or is longer than 4 KiB');
      if (badLabels(r.labels)) return invalid('a label is over 4 KiB or has an empty key');
      return undefined;
    case 'Update': {
      const info = r.info as Record<string, unknown> | null | undefined;
      if (info === null || info === undefined) return invalid('there is no info');
      const paths = (r.update_mask as { paths?: string[] } | null | undefined)?.paths ?? [];
      if (paths.some((p) => p !== 'labels' && !p.startsWith('labels.'))) return invalid('a field path other than labels');
      return undefined;
    }
    default:
      return undefined;
  }
}

const LABEL_POOL = ['containerd.io/gc.root', 'fz/color', 'fz/size', 'containerd.io/gc.ref.snapshot.overlayfs', 'fz/é'];

export interface GeneratorOptions {
  /**
   * Aim most calls at the few newest snapshots, so that calls in flight together hit the same
   * snapshot (a Usage walking a directory that a Remove deletes, two Commits of one key).
   */
  hot?: boolean;
}

export class CaseGenerator {
  private n = 0;
  constructor(
    private readonly rng: Rng,
    private readonly model: SnapshotModel,
    private readonly store: StoreDigests,
    private readonly opts: GeneratorOptions = {},
  ) {}

  next(): FuzzCase {
    const n = this.n++;
    const rng = this.rng;
    // A long name of a's with a tail: what makes a backtracking regex in a List filter explode.
    if (n === 0) return this.structured(n, 'Prepare', { key: 'fz/0/' + 'a'.repeat(40) + '!', parent: '', labels: {} }, 'valid', 'a name for regex filters');
    if (n % 50 === 1) return this.structured(n, 'List', { filters: [] }, 'valid', 'refresh the model');
    const how = rng.weighted<How>([[44, 'valid'], [36, 'mutated'], [11, 'wire'], [6, 'crafted'], [2, 'garbage'], [0.7, 'unknown-method'], [0.05, 'oversize']]);
    const method = this.pickMethod();
    const req = this.validRequest(method);
    switch (how) {
      case 'valid': return this.structured(n, method, req, 'valid', '');
      case 'mutated': {
        const notes: string[] = [];
        const times = rng.weighted([[6, 1], [3, 2], [1, 3]]);
        for (let i = 0; i < times; i++) notes.push(this.mutate(method, req));
        return this.structured(n, method, req, 'mutated', notes.join('; '));
      }
      case 'wire': {
        const { bytes, note } = this.damage(encodeRequest(method, req));
        return { n, method, how, payload: bytes, note };
      }
      case 'crafted': return { n, method, how, payload: this.crafted(method), note: 'crafted fields' };
      case 'garbage': {
        const len = rng.weighted([[5, rng.range(1, 16)], [4, rng.range(17, 1024)], [1, rng.range(1025, 200_000)]]);
        return { n, method, how, payload: rng.bytes(len), note: `${len} random bytes` };
      }
      case 'unknown-method': {
        // (A space or tab in the path is not valid HTTP/2: the transport resets such a stream
        // before gRPC sees it, so those are left out.)
        const m = rng.pick(['Foo', 'prepare', 'PREPARE', 'Prepare2', 'Prepare/Again', 'Delete', '..', 'List/', 'é', 'Stat%00', '']);
        // grpc-js answers an unknown method itself, quoting the path in its message; a path that is
        // not ASCII cannot go into the trailer, so that answer comes without a message.
        const messageOptional = !/^[\x20-\x7e]*$/.test(m);
        return { n, method: m, how, payload: encodeRequest('Stat', { key: 'fz/x' }), note: `method ${JSON.stringify(m)}`, expect: [status.UNIMPLEMENTED], because: 'no such method', messageOptional };
      }
      case 'oversize': {
        const payload = Buffer.concat([encodeRequest(method, req), lenField(15, Buffer.alloc(MAX_MESSAGE_BYTES + 1024, 0x61))]);
        return { n, method, how, payload, note: `${payload.length} bytes`, expect: [status.RESOURCE_EXHAUSTED], because: 'larger than the receive limit' };
      }
    }
  }

  private structured(n: number, method: Method, req: Record<string, unknown>, how: How, note: string): FuzzCase {
    const o = oracle(method, req);
    return { n, method, how, payload: encodeRequest(method, req), request: req, note, ...(o ?? {}) };
  }

  private pickMethod(): Method {
    const crowded = this.model.size > 150;
    return this.rng.weighted<Method>([
      [18, 'Prepare'], [6, 'View'], [8, 'Mounts'], [10, 'Commit'], [crowded ? 30 : 8, 'Remove'], [8, 'Stat'],
      [7, 'Update'], [6, 'List'], [6, 'Usage'], [2, 'Cleanup'],
    ]);
  }

  private anyKey(): string {
    const names = this.model.names();
    if (this.opts.hot && names.length > 0 && this.rng.chance(0.6)) return this.rng.pick(names.slice(-3));
    return names.length > 0 && this.rng.chance(0.85) ? this.rng.pick(names) : this.newKey();
  }

  private newKey(): string {
    const rng = this.rng;
    return rng.weighted<() => string>([
      [6, () => `fz/${this.n}/${rng.string(rng.range(1, 12), 'abcdefghijklmnopqrstuvwxyz0123456789-_.')}`],
      [2, () => `k8s.io/${rng.int(100)}/extract-${rng.int(1e9)}-${rng.string(4, 'abcdefgh')} sha256:${randomHex(rng, 64)}`],
      [1, () => `fz/${this.n}/` + 'a'.repeat(rng.range(10, 40)) + '!'],
    ])();
  }

  private parent(): string {
    const committed = this.model.names('COMMITTED');
    return committed.length > 0 && this.rng.chance(0.6) ? this.rng.pick(committed) : '';
  }

  private labels(): Record<string, string> {
    const out: Record<string, string> = {};
    for (let i = this.rng.int(4); i > 0; i--) out[this.rng.pick(LABEL_POOL)] = this.rng.string(this.rng.range(1, 20), 'abcxyz0123 /:.');
    return out;
  }

  private validRequest(method: Method): Record<string, unknown> {
    const rng = this.rng;
    const snapshotter = 'cvmfs-snapshotter';
    switch (method) {
      case 'Prepare': {
        const labels = this.labels();
        if (rng.chance(0.2)) {
          // containerd's remote snapshot offer: a target name and the layer's digest.
          labels[TARGET_REF_LABEL] = rng.chance(0.8) ? `fz/layer/${rng.int(1e9)}` : this.anyKey();
          labels[LAYER_DIGEST_LABEL] = rng.pick([...this.store.present, ...this.store.present, ...this.store.absent, ...this.store.trap]);
        }
        return { snapshotter, key: this.newKey(), parent: this.parent(), labels };
      }
      case 'View': return { snapshotter, key: this.newKey(), parent: this.parent(), labels: this.labels() };
      case 'Mounts': case 'Remove': case 'Stat': case 'Usage': {
        let live = [...this.model.names('ACTIVE'), ...this.model.names('VIEW')];
        if (this.opts.hot) live = live.slice(-3);
        const key = method === 'Mounts' && live.length > 0 && rng.chance(0.7) ? rng.pick(live) : this.anyKey();
        return { snapshotter, key };
      }
      case 'Commit': {
        const active = this.opts.hot ? this.model.names('ACTIVE').slice(-3) : this.model.names('ACTIVE');
        return { snapshotter, name: this.newKey(), key: active.length > 0 && rng.chance(0.85) ? rng.pick(active) : this.anyKey(), labels: this.labels() };
      }
      case 'Update': {
        const paths = rng.pick([[], ['labels'], [`labels.${rng.pick(LABEL_POOL)}`], ['labels.fz/color', 'labels.fz/size']]);
        return { snapshotter, info: { name: this.anyKey(), labels: this.labels() }, update_mask: { paths } };
      }
      case 'List': return { snapshotter, filters: rng.chance(0.4) ? [] : [this.validFilter()] };
      case 'Cleanup': return { snapshotter };
    }
  }

  private validFilter(): string {
    const rng = this.rng;
    const sel = (): string => rng.weighted<() => string>([
      [3, () => `kind==${rng.pick(['active', 'view', 'committed'])}`],
      [2, () => `name==${JSON.stringify(this.anyKey())}`],
      [2, () => `parent==${JSON.stringify(this.anyKey())}`],
      [2, () => `labels."${rng.pick(LABEL_POOL)}"`],
      [2, () => `labels."${TARGET_REF_LABEL}"==fz/layer/${rng.int(1e9)},parent==""`],
      [2, () => `name~=${rng.pick(['^fz/', 'a+!$', '[0-9]+', '^k8s\\.io/', '.*'])}`],
      [1, () => 'parent!=""'],
    ])();
    return Array.from({ length: rng.range(1, 3) }, sel).join(',');
  }

  /** Replaces one field of a structured request with a hostile value; returns what it did. */
  private mutate(method: Method, req: Record<string, unknown>): string {
    const rng = this.rng;
    const known = this.model.names();
    const set = (field: string, value: unknown): string => {
      req[field] = value;
      return `${field}=${show(value)}`;
    };
    const fields: Record<Method, string[]> = {
      Prepare: ['key', 'parent', 'labels', 'labels', 'labels', 'snapshotter'],
      View: ['key', 'parent', 'labels'],
      Mounts: ['key'], Remove: ['key'], Stat: ['key'], Usage: ['key'],
      Commit: ['name', 'key', 'labels'],
      Update: ['info', 'name', 'paths', 'paths', 'labels', 'kind'],
      List: ['filters', 'filters'],
      Cleanup: ['snapshotter'],
    };
    const field = rng.pick(fields[method]);
    if (method === 'Update' && (req.info === null || req.info === undefined)) req.info = { name: this.anyKey() };
    switch (field) {
      case 'key': case 'name':
        if (method === 'Update') {
          (req.info as Record<string, unknown>).name = hostileKey(rng, known);
          return `info.name=${show((req.info as Record<string, unknown>).name)}`;
        }
        return set(field, hostileKey(rng, known));
      case 'parent': return set('parent', hostileParent(rng, this.model.names('ACTIVE'), this.model.names('VIEW'), known));
      case 'snapshotter': return set('snapshotter', hostileKey(rng, known));
      case 'labels': {
        const hostile = hostileLabels(rng, this.store.present, this.store.trap, known);
        if (method === 'Update') {
          const info = req.info as Record<string, unknown>;
          info.labels = { ...(info.labels as object), ...hostile };
          return `info.labels+=${show(hostile)}`;
        }
        return set('labels', { ...(req.labels as object), ...hostile });
      }
      case 'filters': {
        const filters = rng.chance(0.5) ? [hostileFilter(rng)] : [...(req.filters as string[]), hostileFilter(rng)];
        return set('filters', filters);
      }
      case 'info': return set('info', null);
      case 'paths': {
        const p = hostileFieldPath(rng);
        const paths = rng.chance(0.05) ? Array.from({ length: 2000 }, (_, i) => `labels.p${i}`) : [...((req.update_mask as { paths: string[] }).paths), p];
        req.update_mask = { paths };
        return `paths=${show(paths)}`;
      }
      case 'kind': {
        const info = req.info as Record<string, unknown>;
        info.kind = rng.pick(['UNKNOWN', 'VIEW', 'ACTIVE', 'COMMITTED']);
        info.parent = hostileKey(rng, known);
        info.created_at = { seconds: rng.pick([-1e12, 0, 253402300800, 2 ** 53]), nanos: rng.pick([0, -1, 999_999_999, 2_000_000_000]) };
        return `info.kind/parent/created_at=${show(info)}`;
      }
      default: throw new Error(`no mutation for ${field}`);
    }
  }

  /** Damages an encoded request the way a broken or hostile peer would. */
  private damage(b: Buffer): { bytes: Buffer; note: string } {
    const rng = this.rng;
    const at = (): number => rng.int(b.length + 1);
    const op = rng.weighted<string>([[4, 'flip'], [3, 'truncate'], [3, 'insert'], [2, 'duplicate'], [2, 'length'], [2, 'append-field'], [1, 'repeat']]);
    if (b.length === 0 && op !== 'insert' && op !== 'append-field') return { bytes: rng.bytes(rng.range(1, 8)), note: 'empty request replaced by random bytes' };
    switch (op) {
      case 'flip': {
        const out = Buffer.from(b);
        const flips = rng.range(1, 8);
        for (let i = 0; i < flips; i++) { const p = rng.int(out.length); out[p] = (out[p] as number) ^ (1 << rng.int(8)); }
        return { bytes: out, note: `${flips} bits flipped` };
      }
      case 'truncate': { const p = rng.int(b.length); return { bytes: b.subarray(0, p), note: `cut at ${p} of ${b.length}` }; }
      case 'insert': { const p = at(); const ins = rng.bytes(rng.range(1, 16)); return { bytes: Buffer.concat([b.subarray(0, p), ins, b.subarray(p)]), note: `${ins.length} bytes inserted at ${p}` }; }
      case 'duplicate': {
        const s = rng.int(b.length); const e = rng.range(s, b.length);
        return { bytes: Buffer.concat([b.subarray(0, e), b.subarray(s, e), b.subarray(e)]), note: `bytes ${s}..${e} doubled` };
      }
      case 'length': {
        // The byte after the first tag is usually a length; make it claim far more than there is.
        const out = Buffer.concat([b.subarray(0, 1), varint(rng.pick([0x7f, 0xffff, 0x7fffffff, 2 ** 40])), b.subarray(2)]);
        return { bytes: out, note: 'first length inflated' };
      }
      case 'append-field': {
        const f = this.randomField(rng.range(1, 20));
        return { bytes: Buffer.concat([b, f]), note: `${f.length} byte field appended` };
      }
      default: return { bytes: Buffer.concat([b, b]), note: 'message repeated (merge)' };
    }
  }

  private randomField(field: number): Buffer {
    const rng = this.rng;
    switch (rng.int(7)) {
      case 0: return varintField(field, rng.pick([0, 1, -1, 2 ** 31, 2n ** 63n, 2n ** 64n - 1n]));
      case 1: return Buffer.concat([tag(field, WIRE.I64), rng.bytes(8)]);
      case 2: return Buffer.concat([tag(field, WIRE.I32), rng.bytes(4)]);
      case 3: return lenField(field, rng.bytes(rng.int(64)));
      case 4: return Buffer.concat([tag(field, WIRE.SGROUP), tag(field, WIRE.EGROUP)]);
      case 5: return Buffer.concat([tag(field, rng.pick([6, 7])), rng.bytes(4)]);
      default: return Buffer.concat([tag(field, WIRE.SGROUP), ...Array.from({ length: rng.pick([10, 1000, 20_000]) }, () => tag(field + 1, WIRE.SGROUP))]);
    }
  }

  /** A message assembled field by field: right numbers with wrong types, broken map entries, deep groups. */
  private crafted(method: Method): Buffer {
    const rng = this.rng;
    const parts: Buffer[] = [];
    for (let i = rng.range(1, 6); i > 0; i--) {
      parts.push(rng.weighted<() => Buffer>([
        [3, () => this.randomField(rng.range(1, 6))],
        [2, () => lenField(rng.range(1, 4), Buffer.from(rng.pick(['fz/1/x', '', '\0', hostileDigest(rng)])))],
        [2, () => mapEntry(4, rng.pick([LAYER_DIGEST_LABEL, TARGET_REF_LABEL, '', 'k']), rng.pick([hostileDigest(rng), 'fz/t', '']))],
        // A map entry whose key or value has the wrong wire type, or that is itself garbage.
        [2, () => lenField(rng.pick([4, 6]), Buffer.concat([varintField(1, 5), lenField(2, 'v')]))],
        [1, () => lenField(4, Buffer.concat([lenField(1, 'k'), varintField(2, 7)]))],
        [1, () => lenField(4, rng.bytes(rng.range(1, 12)))],
        // Update: info (2) with nested garbage; field mask (3) with a non-string path.
        [1, () => lenField(2, Buffer.concat([lenField(1, 'fz/x'), varintField(3, rng.pick([1, 99, -5])), lenField(6, rng.bytes(6))]))],
        [1, () => lenField(3, Buffer.concat([varintField(1, 1), lenField(1, rng.bytes(4))]))],
        // Invalid UTF-8 in a string field.
        [1, () => lenField(2, Buffer.from([0x66, 0x7a, 0xff, 0xfe, 0xc0, 0x80, 0xed, 0xa0, 0x80]))],
      ])());
    }
    if (method === 'Cleanup' && rng.chance(0.5)) parts.push(lenField(1, rng.bytes(8)));
    return Buffer.concat(parts);
  }
}

/** A value shortened for a one-line report. */
export function show(v: unknown): string {
  const s = JSON.stringify(v, (_k, x: unknown) => (typeof x === 'string' && x.length > 48 ? `${x.slice(0, 40)}…(${x.length} chars)` : x)) ?? String(v);
  if (s.length <= 160) return s;
  return `${s.slice(0, 150)}…(${s.length} chars)`;
}

export { METHODS };

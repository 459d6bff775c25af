// Sends fuzz cases to a running daemon and judges every answer. A problem is anything but a
// proper gRPC status: an unknown code, a transport failure, a hang (the deadline), an error
// without a message, an answer that does not decode, a mount outside the daemon's root, or a
// code that contradicts what the request plainly deserved.
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { CaseGenerator, SnapshotModel, show, type FuzzCase, type How, type StoreDigests } from './generator.js';
import { REMOTE_LABEL, TARGET_REF_LABEL } from './hostile.js';
import { decodeResponse, METHODS, RawSnapshotsClient, type Answer, type Method } from './raw-client.js';
import { Rng } from '../rng.js';
import { CENSUS_FILE_NAME } from '../../../src/fuse/server/census-file.js';

export interface FuzzRunOptions {
  socket: string;
  /** The daemon's --root: every mount it hands out must be below it. */
  root: string;
  seed: number;
  count: number;
  /** Cases in flight at once; 1 makes a run exactly repeatable. Above 1, calls aim at the newest snapshots. */
  concurrency?: number;
  store: StoreDigests;
  /** Per call. A call that runs into it is reported as a hang. */
  deadlineMs?: number;
  progress?: (line: string) => void;
}

export interface FuzzReport {
  seed: number;
  sent: number;
  elapsedMs: number;
  byHow: Record<string, number>;
  byMethod: Record<string, number>;
  byCode: Record<string, number>;
  /** The first problems found (at most 50), one line each. */
  problems: string[];
  problemCount: number;
}

/** Codes a well-behaved snapshotter gives to requests, good or bad. */
const ORDINARY = new Set<status>([status.OK, status.INVALID_ARGUMENT, status.NOT_FOUND, status.ALREADY_EXISTS, status.FAILED_PRECONDITION]);

interface WireMount { type: string; source: string; options: string[] }
interface WireInfo { name: string; parent: string; kind: string; labels: Record<string, string> }

const isMethod = (m: string): m is Method => (METHODS as readonly string[]).includes(m);

/** The directories a mount spec refers to. */
function mountPaths(m: WireMount): string[] {
  if (m.type === 'bind') return [m.source];
  const out: string[] = [];
  for (const o of m.options) {
    const eq = o.indexOf('=');
    const k = o.slice(0, eq);
    if (k === 'lowerdir') out.push(...o.slice(eq + 1).split(':'));
    else if (k === 'upperdir' || k === 'workdir') out.push(o.slice(eq + 1));
  }
  return out;
}

export function judge(c: FuzzCase, a: Answer, root: string): string | undefined {
  const name = status[a.code] as string | undefined;
  if (!Number.isInteger(a.code) || name === undefined) return `unknown status code ${String(a.code)}`;
  if (c.expect !== undefined) {
    if (!c.expect.includes(a.code)) return `${name} where ${c.expect.map((x) => status[x]).join('/')} was due (${c.because ?? ''}): ${a.details}`;
  } else if (!ORDINARY.has(a.code)) {
    return `${name}: ${a.details}`;
  }
  if (a.code !== status.OK) {
    if ((typeof a.details !== 'string' || a.details.trim() === '') && c.messageOptional !== true) return `${name} without a message`;
    return undefined;
  }
  if (!isMethod(c.method)) return 'OK for a method the service does not have';
  for (const m of a.messages) {
    let decoded: unknown;
    try { decoded = decodeResponse(c.method, m); } catch (err) { return `OK, but the response does not decode: ${(err as Error).message}`; }
    if (c.method === 'Prepare' || c.method === 'View' || c.method === 'Mounts') {
      for (const mount of (decoded as { mounts: WireMount[] }).mounts) {
        for (const p of mountPaths(mount)) {
          if (!p.startsWith(join(root, 'snapshots') + '/')) return `mount ${show(mount)} refers to ${p}, outside ${root}/snapshots`;
        }
      }
    }
  }
  return undefined;
}

function observe(model: SnapshotModel, c: FuzzCase, a: Answer): void {
  const r = c.request;
  if (r === undefined) return;
  const key = r.key as string;
  if (a.code === status.OK) {
    switch (c.method) {
      case 'Prepare': model.set(key, 'ACTIVE'); break;
      case 'View': model.set(key, 'VIEW'); break;
      case 'Commit': model.delete(key); model.set(r.name as string, 'COMMITTED'); break;
      case 'Remove': model.delete(key); break;
      case 'List':
        if ((r.filters as string[]).length === 0) {
          model.replace(a.messages.flatMap((m) => (decodeResponse('List', m) as { info: WireInfo[] }).info));
        }
        break;
      default: break;
    }
  } else if (a.code === status.ALREADY_EXISTS && c.method === 'Prepare') {
    const target = (r.labels as Record<string, string>)[TARGET_REF_LABEL];
    if (target !== undefined && a.details.includes('target')) model.set(target, 'COMMITTED');
  }
}

function count(tally: Record<string, number>, k: string): void {
  tally[k] = (tally[k] ?? 0) + 1;
}

export async function runFuzz(o: FuzzRunOptions): Promise<FuzzReport> {
  const rng = new Rng(o.seed);
  const model = new SnapshotModel();
  const gen = new CaseGenerator(rng, model, o.store, { hot: (o.concurrency ?? 1) > 1 });
  const client = new RawSnapshotsClient(o.socket);
  const report: FuzzReport = { seed: o.seed, sent: 0, elapsedMs: 0, byHow: {}, byMethod: {}, byCode: {}, problems: [], problemCount: 0 };
  const started = Date.now();
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < o.count) {
      next++;
      const c = gen.next();
      const a = await client.call(c.method, c.payload, o.deadlineMs ?? 20_000);
      report.sent++;
      count(report.byHow, c.how satisfies How);
      count(report.byMethod, c.method);
      count(report.byCode, status[a.code] ?? String(a.code));
      const problem = judge(c, a, o.root);
      if (problem !== undefined) {
        report.problemCount++;
        if (report.problems.length < 50) {
          report.problems.push(`#${c.n} ${c.method} (${c.how}${c.note ? `: ${c.note}` : ''}) -> ${problem.length > 400 ? `${problem.slice(0, 400)}…` : problem}`);
        }
      }
      observe(model, c, a);
      // A hang or a lost daemon makes every later call wait for its deadline: stop here.
      if (a.code === status.DEADLINE_EXCEEDED || a.code === status.UNAVAILABLE) {
        report.problems.push(`stopped after #${c.n}: the daemon hangs or is gone`);
        next = o.count;
      }
      if (report.sent % 1000 === 0) o.progress?.(`fuzz seed ${o.seed}: ${report.sent}/${o.count} sent, ${report.problemCount} problems`);
    }
  };
  try {
    await Promise.all(Array.from({ length: o.concurrency ?? 1 }, worker));
  } finally {
    client.close();
  }
  report.elapsedMs = Date.now() - started;
  return report;
}

/** Every snapshot the daemon holds, listed over a fresh connection. */
export async function listAll(socket: string): Promise<WireInfo[]> {
  const client = new RawSnapshotsClient(socket);
  try {
    const a = await client.call('List', Buffer.alloc(0), 60_000);
    if (a.code !== status.OK) throw new Error(`List: ${status[a.code]}: ${a.details}`);
    return a.messages.flatMap((m) => (decodeResponse('List', m) as { info: WireInfo[] }).info);
  } finally {
    client.close();
  }
}

/**
 * What must hold of the daemon's snapshots after any input: names and labels within
 * containerd's rules, and a remote snapshot only for a layer that really is in the store.
 */
export function auditSnapshots(infos: readonly WireInfo[], store: StoreDigests): string[] {
  const problems: string[] = [];
  for (const i of infos) {
    if (i.name === '' || i.name.includes('\0') || Buffer.byteLength(i.name) > 4096) problems.push(`snapshot with an invalid name ${show(i.name)}`);
    for (const [k, v] of Object.entries(i.labels)) {
      if (k === '' || Buffer.byteLength(k) + Buffer.byteLength(v) > 4096) problems.push(`snapshot ${show(i.name)} holds label ${show(k)} of ${Buffer.byteLength(k) + Buffer.byteLength(v)} bytes`);
    }
    const remote = i.labels[REMOTE_LABEL];
    if (remote !== undefined && !store.present.includes(remote)) problems.push(`snapshot ${show(i.name)} is marked remote for ${show(remote)}, which is not a layer of the store`);
  }
  return problems;
}

/**
 * The daemon's root holds its database, one numbered directory per snapshot and the FUSE
 * server's census of the layers' xattrs, nothing else (call Cleanup first: directories of
 * failed calls are removed there).
 */
export function auditRoot(root: string, snapshots: number): string[] {
  const problems: string[] = [];
  for (const n of readdirSync(root)) {
    if (!['metadata.db', 'metadata.db-wal', 'metadata.db-shm', 'snapshots', CENSUS_FILE_NAME].includes(n)) problems.push(`unexpected ${join(root, n)}`);
  }
  const dirs = readdirSync(join(root, 'snapshots'));
  for (const d of dirs) if (!/^[1-9][0-9]*$/.test(d)) problems.push(`unexpected ${join(root, 'snapshots', d)}`);
  if (dirs.length !== snapshots) problems.push(`${dirs.length} snapshot directories for ${snapshots} snapshots`);
  return problems;
}

// A directory of the layer store swapped for a symlink never exposes anything outside the layer:
// not `layerfs`, not one of its ancestors below the store root, not a directory inside the
// layer; not before a mount, not under a live one, not before the remount a restarted daemon
// makes. The symlinks point at impostor trees outside the layer that hold the layer's own names
// with a random canary token as content, plus names of their own: a server that followed a
// link would serve the token under a name the reader asks for.
//
// The store is someone else's filesystem (DUCC writes it, CernVM-FS serves it); the trusted part
// is its root as configured. Below it no link is followed: openat2(RESOLVE_NO_SYMLINKS) from
// the store root at mount, and every call below the layer's root descriptor afterwards.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { status, type ServiceError } from '@grpc/grpc-js';
import { FuseLayerMounter } from '../../src/fuse/index.js';
import { SnapshotterError } from '../../src/errors.js';
import { LayerStore } from '../../src/layers/store.js';
import { SnapshotsClient } from '../../src/server/client.js';
import { LAYER_DIGEST_LABEL, TARGET_REF_LABEL } from '../../src/snapshotter/labels.js';
import { isAlive } from '../../src/sys/pid.js';
import { defaultDaemonConfig, startDaemon } from '../helpers/daemon.js';
import { startFuseServer, type FuseServerProcess } from '../helpers/fuse-server-process.js';
import { LogCapture } from '../helpers/log-capture.js';
import { listMounts, mountsUnder } from '../helpers/mounts.js';
import { Scope } from '../helpers/scope.js';
import { mountDirs } from '../helpers/snapshot-cycles.js';
import { waitUntil } from '../helpers/wait.js';
import { outcome, probe, probeOne, type ProbeResult } from './fs-probe.js';

const CANARY = `CANARY-${crypto.randomBytes(16).toString('hex')}`;
/** What the layers hold; an impostor holds the same names with the canary as content. */
const LAYER: Readonly<Record<string, string>> = {
  'file': 'layer file\n',
  'untouched': 'never looked up before the swap\n',
  'later': 'only looked up after the swap is undone\n',
  'd/inner': 'inner\n',
  'd/sub/deep': 'deep\n',
  'e/x': 'x\n',
};
/** Names only an impostor has. */
const IMPOSTOR_ONLY = ['canary', 'd/canary', 'e/canary'];

let scope: Scope;
let store = '';
let outside = '';
let aside = '';
let seq = 0;
const log = new LogCapture();

function writeTree(dir: string, files: Readonly<Record<string, string>>): void {
  for (const [rel, content] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
    fs.writeFileSync(path.join(dir, rel), content);
  }
}

/** An impostor layer at dir: the layer's names and more, every file holding the canary. */
function writeImpostor(dir: string): void {
  const files: Record<string, string> = {};
  for (const rel of [...Object.keys(LAYER), ...IMPOSTOR_ONLY]) files[rel] = CANARY;
  writeTree(dir, files);
}

/** A fresh layer of the store (its own digest, so that no case shares a directory with another). */
function newLayer(): { hex: string; xx: string; layerDir: string } {
  const xx = (++seq).toString(16).padStart(2, '0');
  const hex = xx + crypto.randomBytes(31).toString('hex');
  const layerDir = path.join(store, '.layers', xx, hex, 'layerfs');
  writeTree(layerDir, LAYER);
  return { hex, xx, layerDir };
}

function noCanary(results: readonly (ProbeResult | string)[], why: string): void {
  for (const r of results) {
    const text = typeof r === 'string' ? r : JSON.stringify({ ...r, data: r.data?.toString('latin1'), names: r.names?.map((n) => n.toString('latin1')) });
    assert.ok(!text.includes(CANARY) && !text.includes('canary'), `${why}: ${text.slice(0, 300)}`);
  }
}

let server: FuseServerProcess;
let withStore: FuseLayerMounter;
let noStore: FuseLayerMounter;

before(async () => {
  scope = await Scope.create('store-swaps');
  store = await scope.mkdir('store');
  outside = await scope.mkdir('outside');
  aside = await scope.mkdir('aside');
  // Store calls are not answered from listings made ahead of time, so that every name asked for
  // under a live mount reaches the store after a swap. The other mounter is as configured by
  // default, and opens layers from / (no store configured).
  withStore = new FuseLayerMounter({ log: log.logger, store, tuning: { prefetchEntries: 0, listDirBytes: 0 } });
  noStore = new FuseLayerMounter({ log: log.logger });
  scope.defer('close the in-process mounters', async () => {
    for (const m of [withStore, noStore]) assert.deepEqual((await m.close()).failed, []);
  });
  server = await startFuseServer(scope, { root: await scope.mkdir('srv-root'), store });
});

after(() => scope.teardown());

// ---- before the mount ------------------------------------------------------------------------

interface Arrangement {
  title: string;
  /** Swaps something for a symlink to an impostor; returns the layer directory and the undo. */
  make(): { layerDir: string; digest: string; undo: () => void };
}

const ARRANGEMENTS: Arrangement[] = [
  {
    title: 'layerfs is a symlink to a directory outside the store',
    make: () => {
      const l = newLayer();
      const impostor = path.join(outside, `layerfs-${l.hex}`);
      writeImpostor(impostor);
      fs.renameSync(l.layerDir, path.join(aside, l.hex));
      fs.symlinkSync(impostor, l.layerDir);
      return { layerDir: l.layerDir, digest: `sha256:${l.hex}`, undo: () => { fs.unlinkSync(l.layerDir); fs.renameSync(path.join(aside, l.hex), l.layerDir); } };
    },
  },
  {
    title: 'layerfs is a relative symlink to another layer of the store',
    make: () => {
      const l = newLayer();
      const other = newLayer();
      writeImpostor(other.layerDir);
      fs.renameSync(l.layerDir, path.join(aside, l.hex));
      fs.symlinkSync(path.relative(path.dirname(l.layerDir), other.layerDir), l.layerDir);
      return { layerDir: l.layerDir, digest: `sha256:${l.hex}`, undo: () => { fs.unlinkSync(l.layerDir); fs.renameSync(path.join(aside, l.hex), l.layerDir); } };
    },
  },
  {
    title: 'the layer\'s <64 hex> directory is a symlink',
    make: () => {
      const l = newLayer();
      const hexDir = path.dirname(l.layerDir);
      const impostor = path.join(outside, `hex-${l.hex}`);
      writeImpostor(path.join(impostor, 'layerfs'));
      fs.renameSync(hexDir, path.join(aside, l.hex));
      fs.symlinkSync(impostor, hexDir);
      return { layerDir: l.layerDir, digest: `sha256:${l.hex}`, undo: () => { fs.unlinkSync(hexDir); fs.renameSync(path.join(aside, l.hex), hexDir); } };
    },
  },
  {
    title: 'the .layers/<xx> directory is a symlink',
    make: () => {
      const l = newLayer();
      const xxDir = path.join(store, '.layers', l.xx);
      const impostor = path.join(outside, `xx-${l.hex}`);
      writeImpostor(path.join(impostor, l.hex, 'layerfs'));
      fs.renameSync(xxDir, path.join(aside, l.hex));
      fs.symlinkSync(impostor, xxDir);
      return { layerDir: l.layerDir, digest: `sha256:${l.hex}`, undo: () => { fs.unlinkSync(xxDir); fs.renameSync(path.join(aside, l.hex), xxDir); } };
    },
  },
  {
    title: 'the store\'s .layers directory is a symlink',
    make: () => {
      const l = newLayer();
      const layersDir = path.join(store, '.layers');
      const impostor = path.join(outside, `layers-${l.hex}`);
      writeImpostor(path.join(impostor, l.xx, l.hex, 'layerfs'));
      fs.renameSync(layersDir, path.join(aside, l.hex));
      fs.symlinkSync(impostor, layersDir);
      return { layerDir: l.layerDir, digest: `sha256:${l.hex}`, undo: () => { fs.unlinkSync(layersDir); fs.renameSync(path.join(aside, l.hex), layersDir); } };
    },
  },
];

/** Nothing at mp but an empty directory (or nothing at all), and no canary through it. */
async function assertNothingServedAt(mp: string, why: string): Promise<void> {
  assert.deepEqual(listMounts().filter((m) => m.mountPoint === mp).map((m) => m.fsType), [], `${why}: nothing mounted at ${mp}`);
  const rs = await probe([
    { op: 'read', path: path.join(mp, 'canary') },
    { op: 'read', path: path.join(mp, 'file') },
    { op: 'listdir', path: mp },
  ]);
  assert.deepEqual(rs.slice(0, 2).map(outcome), ['ENOENT', 'ENOENT'], `${why}: no file at ${mp}`);
  const listing = rs[2] as ProbeResult;
  assert.ok(!listing.ok ? listing.errno === 'ENOENT' : listing.names?.length === 0, `${why}: ${mp} is empty: ${outcome(listing)} ${listing.names?.map(String).join(' ') ?? ''}`);
  noCanary(rs, why);
}

function assertSymlinkRefusal(kind: string | undefined, message: string | undefined, why: string): void {
  assert.ok(kind === 'NotFound' || kind === 'FailedPrecondition', `${why}: refused as NotFound or FailedPrecondition, not ${kind}: ${message}`);
  assert.match(message ?? '', /symlink/, `${why}: the message says a symlink is in the way`);
}

test('a store whose layers are real directories mounts, in process and through a FUSE server (the control for what follows)', async () => {
  const l = newLayer();
  const mps = [scope.path('m', 'control-1'), scope.path('m', 'control-2'), path.join(server.root, 'control')];
  await withStore.mount(l.layerDir, mps[0] as string);
  await noStore.mount(l.layerDir, mps[1] as string);
  const a = await server.call('mount', { layerDir: l.layerDir, mountpoint: mps[2], digest: `sha256:${l.hex}` });
  assert.equal(a.error, undefined, JSON.stringify(a.error));
  assert.deepEqual((await probe(mps.map((m) => ({ op: 'read' as const, path: path.join(m, 'file') })))).map(outcome), mps.map(() => `data:${LAYER.file}`));
  await withStore.unmount(mps[0] as string);
  await noStore.unmount(mps[1] as string);
  assert.equal((await server.call('unmount', { mountpoint: mps[2] })).result, 'unmounted');
  assert.deepEqual(mountsUnder(scope.dir), []);
});

for (const arr of ARRANGEMENTS) {
  test(`before the mount, ${arr.title}: every mount is refused, nothing is mounted, no canary is readable`, async () => {
    const { layerDir, digest, undo } = arr.make();
    try {
      // Control: followed on the host, the way to the layer leads to the impostor.
      assert.deepEqual((await probe([{ op: 'read', path: path.join(layerDir, 'file') }])).map(outcome), [`data:${CANARY}`]);
      const n = ++seq;
      for (const [i, name, m] of [[1, 'the mounter with the store configured', withStore], [2, 'the mounter with no store configured', noStore]] as const) {
        const mp = scope.path('m', `before-${n}-${i}`);
        const err = await m.mount(layerDir, mp).then(() => undefined, (e: unknown) => e);
        assert.ok(err instanceof SnapshotterError, `${name}: the mount was refused (${String(err)})`);
        assertSymlinkRefusal(err.kind, err.message, name);
        assert.deepEqual(m.mountpoints(), [], `${name}: serves nothing`);
        await assertNothingServedAt(mp, name);
      }
      const mp = path.join(server.root, 'snapshots', String(n), 'fs');
      const a = await server.call('mount', { layerDir, mountpoint: mp, digest });
      assertSymlinkRefusal(a.error?.kind, a.error?.message, 'the FUSE server');
      assert.equal(a.state?.mountCount, 0, 'the FUSE server reports no mount');
      assert.equal(await server.fuseDescriptors(), 0, 'the FUSE server holds no /dev/fuse descriptor');
      await assertNothingServedAt(mp, 'the FUSE server');
      assert.deepEqual(mountsUnder(scope.dir), [], 'nothing is mounted anywhere in the test\'s directory');
    } finally {
      undo();
    }
  });
}

// ---- under a live mount ------------------------------------------------------------------------
//
// Probed as a host reader, twice (the second time after the first listed every directory again),
// and from a chroot onto the mount, as a container sees it. A host reader follows any symlink
// the mount shows on the host, so a directory the kernel knows must never turn into the
// store's swapped-in link, whichever request brings the store's new view of it.

interface LiveSwap {
  title: string;
  /** Read before the swap: the kernel has looked these up. */
  warm: string[];
  /** Swaps part of the store for a symlink to an impostor; returns the undo. */
  swap(l: { hex: string; xx: string; layerDir: string }): () => void;
}

/** Moves every entry of dir into a new directory and returns it (the entries keep their inodes). */
function emptyInto(dir: string, name: string): string {
  const kept = path.join(aside, name);
  fs.mkdirSync(kept);
  for (const e of fs.readdirSync(dir)) fs.renameSync(path.join(dir, e), path.join(kept, e));
  return kept;
}

function refill(dir: string, kept: string): void {
  fs.mkdirSync(dir, { recursive: true });
  for (const e of fs.readdirSync(kept)) fs.renameSync(path.join(kept, e), path.join(dir, e));
  fs.rmdirSync(kept);
}

const LIVE_SWAPS: LiveSwap[] = [
  {
    title: 'a directory inside the layer, after the kernel looked it up',
    warm: ['d/inner'],
    swap: (l) => {
      const d = path.join(l.layerDir, 'd');
      const impostor = path.join(outside, `live-d-${l.hex}`);
      writeImpostor(impostor);
      fs.renameSync(d, path.join(aside, `d-${l.hex}`));
      fs.symlinkSync(path.join(impostor, 'd'), d);
      return () => { fs.unlinkSync(d); fs.renameSync(path.join(aside, `d-${l.hex}`), d); };
    },
  },
  {
    title: 'layerfs renamed away and a symlink put in its place',
    warm: ['file', 'd/inner'],
    swap: (l) => {
      const impostor = path.join(outside, `live-layerfs-${l.hex}`);
      writeImpostor(impostor);
      fs.renameSync(l.layerDir, path.join(aside, `layerfs-${l.hex}`));
      fs.symlinkSync(impostor, l.layerDir);
      return () => { fs.unlinkSync(l.layerDir); fs.renameSync(path.join(aside, `layerfs-${l.hex}`), l.layerDir); };
    },
  },
  {
    title: 'the layer\'s <64 hex> directory renamed away and a symlink put in its place',
    warm: ['file', 'd/inner'],
    swap: (l) => {
      const hexDir = path.dirname(l.layerDir);
      const impostor = path.join(outside, `live-hex-${l.hex}`);
      writeImpostor(path.join(impostor, 'layerfs'));
      fs.renameSync(hexDir, path.join(aside, `hex-${l.hex}`));
      fs.symlinkSync(impostor, hexDir);
      return () => { fs.unlinkSync(hexDir); fs.renameSync(path.join(aside, `hex-${l.hex}`), hexDir); };
    },
  },
  {
    // The root descriptor now names a deleted directory: the server opens the layer again,
    // the same safe way as at mount, and must find the symlink in the way.
    title: 'layerfs deleted and a symlink put in its place',
    warm: ['file', 'd/inner'],
    swap: (l) => {
      const impostor = path.join(outside, `live-deleted-${l.hex}`);
      writeImpostor(impostor);
      const kept = emptyInto(l.layerDir, `deleted-${l.hex}`);
      fs.rmdirSync(l.layerDir);
      fs.symlinkSync(impostor, l.layerDir);
      return () => { fs.unlinkSync(l.layerDir); refill(l.layerDir, kept); };
    },
  },
  {
    title: 'the layer\'s <64 hex> directory deleted and a symlink put in its place',
    warm: ['file', 'd/inner'],
    swap: (l) => {
      const hexDir = path.dirname(l.layerDir);
      const impostor = path.join(outside, `live-hex-deleted-${l.hex}`);
      writeImpostor(path.join(impostor, 'layerfs'));
      const kept = emptyInto(l.layerDir, `hex-deleted-${l.hex}`);
      fs.rmdirSync(l.layerDir);
      fs.rmdirSync(hexDir);
      fs.symlinkSync(impostor, hexDir);
      return () => { fs.unlinkSync(hexDir); refill(l.layerDir, kept); };
    },
  },
];

const ANSWERED = new Set(['EIO', 'ENOENT']);
const PROBED = [...Object.keys(LAYER).filter((n) => n !== 'later'), ...IMPOSTOR_ONLY];

/** The names the layer has in dir ('' for its root). */
function layerNamesIn(dir: string): Set<string> {
  const prefix = dir === '' ? '' : `${dir}/`;
  return new Set(Object.keys(LAYER).filter((k) => k.startsWith(prefix)).map((k) => k.slice(prefix.length).split('/')[0] as string));
}

/**
 * Reads every name, lstats the impostor's own names, and lists the directories given (relative,
 * '' for the root): each read is the original or EIO/ENOENT, each lstat EIO/ENOENT, each listing
 * shows only the layer's names or fails with EIO/ENOENT, and nothing holds the canary. Returns
 * the outcomes.
 */
async function assertOriginalOrNothing(base: string, lists: readonly string[], why: string, chroot?: string): Promise<string[]> {
  const at = (rel: string): string => path.join(base, rel);
  const rs = await probe([
    ...PROBED.map((n) => ({ op: 'read' as const, path: at(n) })),
    ...IMPOSTOR_ONLY.map((n) => ({ op: 'lstat' as const, path: at(n) })),
    ...lists.map((d) => ({ op: 'listdir' as const, path: at(d) })),
  ], chroot === undefined ? {} : { chroot });
  noCanary(rs, why);
  PROBED.forEach((n, i) => {
    const got = outcome(rs[i] as ProbeResult);
    assert.ok(got === (LAYER[n] === undefined ? undefined : `data:${LAYER[n]}`) || ANSWERED.has(got), `${why}: read ${n}: ${got}`);
  });
  IMPOSTOR_ONLY.forEach((n, i) => {
    const got = outcome(rs[PROBED.length + i] as ProbeResult);
    assert.ok(ANSWERED.has(got), `${why}: lstat ${n}: ${got}`);
  });
  lists.forEach((d, i) => {
    const r = rs[PROBED.length + IMPOSTOR_ONLY.length + i] as ProbeResult;
    if (!r.ok) return assert.ok(ANSWERED.has(outcome(r)), `${why}: listing /${d}: ${outcome(r)}`);
    const names = layerNamesIn(d);
    for (const n of r.names ?? []) assert.ok(names.has(n.toString('latin1')), `${why}: listing /${d} shows ${n.toString('latin1')}`);
  });
  return rs.map(outcome);
}

for (const swap of LIVE_SWAPS) {
  for (const which of ['store configured', 'no store configured'] as const) {
    test(`under a live mount (${which}), ${swap.title}: the original layer or EIO/ENOENT, never a canary byte`, async () => {
      const m = which === 'store configured' ? withStore : noStore;
      const l = newLayer();
      const mp = scope.path('m', `live-${++seq}`);
      await m.mount(l.layerDir, mp);
      try {
        assert.deepEqual((await probe(swap.warm.map((w) => ({ op: 'read' as const, path: path.join(mp, w) })))).map(outcome), swap.warm.map((w) => `data:${LAYER[w]}`));
        const mark = log.mark();
        const undo = swap.swap(l);
        try {
          // Control: on the host, the swapped path now leads to the impostor.
          assert.deepEqual((await probe([{ op: 'read', path: path.join(l.layerDir, 'd', 'canary') }])).map(outcome), [`data:${CANARY}`]);
          const seen = await assertOriginalOrNothing(mp, ['d', 'e', ''], 'a host reader');
          seen.push(...await assertOriginalOrNothing(mp, ['d', 'e', ''], 'a host reader, after the listings'));
          seen.push(...await assertOriginalOrNothing('/', ['', 'd', 'e'], 'in the mount\'s root', mp));
          for (const [base, chroot] of [[mp, undefined], ['/', mp]] as const) {
            const walk = await probeOne({ op: 'walk', path: base }, chroot === undefined ? {} : { chroot });
            for (const e of walk.entries ?? []) {
              const rel = e.path.toString('latin1');
              assert.ok(!rel.includes('canary'), `the walk found ${rel}`);
              assert.ok(e.stat?.type !== 'symlink', `the walk found ${rel} to be a symlink`);
              if (e.data) assert.equal(e.data.toString('latin1'), LAYER[rel], `${rel}: the original or nothing`);
            }
          }
          if (seen.includes('EIO')) assert.ok(log.since(mark, /answered EIO/).length > 0, 'the server logged the store changing under the mount');
        } finally {
          undo();
        }
        // The layer is back: served again, names never asked for included.
        assert.deepEqual((await probe(['later', 'file', 'e/x'].map((n) => ({ op: 'read' as const, path: path.join(mp, n) })))).map(outcome),
          ['later', 'file', 'e/x'].map((n) => `data:${LAYER[n]}`));
      } finally {
        await m.unmount(mp);
      }
      assert.deepEqual(mountsUnder(scope.dir), []);
    });
  }
}

test('under a live mount, a deleted layerfs swapped for a symlink is opened again safely: refused and logged', async () => {
  const l = newLayer();
  const mp = scope.path('m', `reopen-${++seq}`);
  await withStore.mount(l.layerDir, mp);
  try {
    assert.deepEqual((await probe([{ op: 'read', path: path.join(mp, 'file') }])).map(outcome), [`data:${LAYER.file}`]);
    const mark = log.mark();
    const undo = (LIVE_SWAPS[3] as LiveSwap).swap(l);
    try {
      assert.deepEqual((await probe([{ op: 'read', path: path.join(mp, 'untouched') }])).map(outcome), ['EIO']);
      const refused = log.since(mark, /cannot be opened again/);
      assert.ok(refused.length >= 1, 'the reopen was refused, and logged');
      assert.match(JSON.stringify(refused[0]), /symlink/);
    } finally {
      undo();
    }
  } finally {
    await withStore.unmount(mp);
  }
});

// ---- before a restart's remount ----------------------------------------------------------------

function grpcError(err: unknown): ServiceError {
  assert.ok(typeof err === 'object' && err !== null && 'code' in err, `a gRPC error: ${String(err)}`);
  return err as ServiceError;
}

test('a layerfs swapped for a symlink while the daemon and its FUSE server are down is not remounted at restart', async () => {
  const dstore = await scope.mkdir('daemon-store');
  const digest = `sha256:${crypto.randomBytes(32).toString('hex')}`;
  const layerDir = new LayerStore(dstore).layerPath(digest);
  writeTree(layerDir, LAYER);
  const daemon = await startDaemon(scope, { configToml: defaultDaemonConfig(dstore), name: 'daemon' });
  const c = new SnapshotsClient(daemon.socket);
  scope.defer('close the gRPC client', async () => c.close());
  const target = 'ns/1/sha256:chain-of-the-layer';
  await assert.rejects(c.prepare('ns/1/extract-1 sha256:chain', '', { [LAYER_DIGEST_LABEL]: digest, [TARGET_REF_LABEL]: target }),
    (e: unknown) => grpcError(e).code === status.ALREADY_EXISTS);
  const [fsDir] = mountDirs((await c.view('ns/1/view', target)).mounts).lower;
  assert.ok(fsDir, 'the view stands on the layer\'s mount');
  assert.deepEqual((await probe([{ op: 'read', path: path.join(fsDir, 'file') }])).map(outcome), [`data:${LAYER.file}`]);

  // The daemon goes; its FUSE server dies (SIGKILL): the mount stays, dead.
  const oldServer = await daemon.fuseServerPid();
  assert.ok(oldServer !== undefined && isAlive(oldServer));
  await daemon.stop();
  process.kill(oldServer, 'SIGKILL');
  await waitUntil(() => !isAlive(oldServer), { what: 'the killed FUSE server to exit', timeoutMs: 10_000 });
  assert.equal(outcome(await probeOne({ op: 'statfs', path: fsDir })), 'ENOTCONN', 'the mount is dead');

  const impostor = path.join(outside, 'restart-impostor');
  writeImpostor(impostor);
  fs.renameSync(layerDir, path.join(aside, 'restart-layerfs'));
  fs.symlinkSync(impostor, layerDir);
  const logged = daemon.logRecords().length;
  try {
    // It starts a new FUSE server and reconciles before it listens: the dead mount is cleared,
    // and the remount the view needs is refused.
    await daemon.restart();
    const newServer = await daemon.fuseServerPid();
    assert.ok(newServer !== undefined && newServer !== oldServer && isAlive(newServer), 'a new FUSE server runs');
    const refusal = daemon.logRecords().slice(logged).filter((r) => r.msg === 'could not mount a layer that an active snapshot needs');
    assert.equal(refusal.length, 1, 'the refused remount is logged');
    assert.match(JSON.stringify(refusal[0]), /symlink/, 'the log says a symlink is in the way');
    assert.deepEqual(listMounts().filter((m) => m.mountPoint.startsWith(`${daemon.root}/`)).map((m) => m.mountPoint), [], 'no mount below the daemon\'s root');
    await assertNothingServedAt(fsDir, 'after the restart');

    // Asked again, the daemon refuses again, and still mounts nothing.
    const err = grpcError(await c.mounts('ns/1/view').then(() => undefined, (e: unknown) => e));
    assert.ok(err.code === status.FAILED_PRECONDITION || err.code === status.NOT_FOUND, `Mounts: ${status[err.code]} ${err.details}`);
    assert.match(err.details, /symlink/);
    await assertNothingServedAt(fsDir, 'after Mounts');
  } finally {
    fs.unlinkSync(layerDir);
    fs.renameSync(path.join(aside, 'restart-layerfs'), layerDir);
  }
  // With the layer back, the same view mounts and reads it, and its removal unmounts it.
  assert.deepEqual(mountDirs((await c.mounts('ns/1/view')).mounts).lower, [fsDir]);
  assert.deepEqual((await probe([{ op: 'read', path: path.join(fsDir, 'file') }])).map(outcome), [`data:${LAYER.file}`]);
  await c.remove('ns/1/view');
  await c.remove(target);
  await waitUntil(() => !listMounts().some((m) => m.mountPoint === fsDir), { what: 'the layer to be unmounted', timeoutMs: 10_000 });
});

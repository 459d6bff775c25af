// The snapshotter core on a real directory tree, without gRPC and without a kernel mount.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Snapshotter } from '../../src/snapshotter/snapshotter.js';
import type { RemoteDecision, RemoteLayers } from '../../src/snapshotter/remote.js';
import { LAYER_DIGEST_LABEL, REMOTE_LABEL, TARGET_REF_LABEL } from '../../src/snapshotter/labels.js';
import type { Labels } from '../../src/snapshotter/types.js';
import { silentLogger } from '../../src/log.js';

async function withRoot(fn: (root: string) => Promise<void>): Promise<void> {
  const root = await mkdtemp(join(tmpdir(), 'sn-core-'));
  try { await fn(root); } finally { await rm(root, { recursive: true, force: true }); }
}
const open = (root: string, remote?: RemoteLayers) => Snapshotter.open({ root, log: silentLogger(), remote });
const dirs = async (root: string) => (await readdir(join(root, 'snapshots'))).sort();

test('snapshots and their labels survive closing and reopening the store', async () => {
  await withRoot(async (root) => {
    let sn = await open(root);
    await sn.prepare('a', '', { keep: 'me' });
    await writeFile(join(root, 'snapshots', '1', 'fs', 'file'), 'hello');
    await sn.commit('base', 'a', { 'containerd.io/gc.root': 'x' });
    await sn.prepare('top', 'base', {});
    await sn.view('v', 'base', {});
    await sn.close();
    sn = await open(root);
    assert.deepEqual(sn.list([]).map((i) => [i.name, i.kind, i.parent]),
      [['base', 'committed', ''], ['top', 'active', 'base'], ['v', 'view', 'base']]);
    assert.deepEqual(sn.stat('base').labels, { 'containerd.io/gc.root': 'x' }, 'commit replaces labels');
    const u = await sn.usage('base');
    assert.ok(u.size > 0 && u.inodes === 2, `usage ${JSON.stringify(u)}`);
    await sn.close();
  });
});

test('directories that no record owns are removed at start and by Cleanup; owned ones are kept', async () => {
  await withRoot(async (root) => {
    let sn = await open(root);
    await sn.prepare('a', '', {});
    await sn.close();
    // What a crash can leave: a half-made directory, and a renamed one whose transaction never committed.
    await mkdir(join(root, 'snapshots', 'new-abc123', 'fs'), { recursive: true });
    await mkdir(join(root, 'snapshots', '77', 'fs'), { recursive: true });
    sn = await open(root);
    assert.deepEqual(await dirs(root), ['1']);
    await mkdir(join(root, 'snapshots', '99'));
    await sn.cleanup();
    assert.deepEqual(await dirs(root), ['1']);
    await sn.prepare('b', '', {});
    assert.deepEqual(await dirs(root), ['1', '2']);
    await sn.close();
  });
});

test('Remove deletes the directory; a failed Prepare leaves no directory behind', async () => {
  await withRoot(async (root) => {
    const sn = await open(root);
    await sn.prepare('a', '', {});
    await assert.rejects(sn.prepare('a', '', {}), /already exists/);
    await assert.rejects(sn.prepare('b', 'missing', {}), /does not exist/);
    assert.deepEqual(await dirs(root), ['1']);
    await sn.remove('a');
    assert.deepEqual(await dirs(root), []);
    await sn.close();
  });
});

test('Update: an empty mask replaces all labels; labels.<key> sets or deletes one; updated time moves', async () => {
  await withRoot(async (root) => {
    const sn = await open(root);
    await sn.prepare('a', '', { x: '1', y: '2' });
    const before = sn.stat('a');
    let i = sn.update('a', { y: '3', z: '4' }, ['labels.y', 'labels.x']);
    assert.deepEqual(i.labels, { y: '3' });
    assert.ok(i.updatedUs > before.updatedUs);
    assert.equal(i.createdUs, before.createdUs);
    i = sn.update('a', { only: 'this' }, []);
    assert.deepEqual(sn.stat('a').labels, { only: 'this' });
    await sn.close();
  });
});

test('a new snapshot on a parent gets the owner of the parent root', async () => {
  await withRoot(async (root) => {
    const sn = await open(root);
    await sn.prepare('a', '', {});
    const { chown } = await import('node:fs/promises');
    await chown(join(root, 'snapshots', '1', 'fs'), 1234, 5678);
    await sn.commit('base', 'a', {});
    await sn.prepare('b', 'base', {});
    const st = await stat(join(root, 'snapshots', '2', 'fs'));
    assert.deepEqual([st.uid, st.gid, st.mode & 0o7777], [1234, 5678, 0o755]);
    await sn.close();
  });
});

test('Usage and Commit racing a Remove of the same snapshot answer NotFound, never a raw error', async () => {
  await withRoot(async (root) => {
    const sn = await open(root);
    const other: string[] = [];
    for (let i = 0; i < 40; i++) {
      await sn.prepare(`k${i}`, '', {});
      // Enough to walk that the Remove lands during the walk.
      const fs = join(root, 'snapshots', String(i + 1), 'fs');
      for (let j = 0; j < 30; j++) await mkdir(join(fs, `d${j}`));
      const results = await Promise.allSettled([sn.usage(`k${i}`), sn.remove(`k${i}`), sn.commit(`c${i}`, `k${i}`, {})]);
      for (const r of results) if (r.status === 'rejected' && (r.reason as Error).name !== 'NotFound') other.push(String(r.reason));
    }
    assert.deepEqual(other, []);
    await sn.close();
  });
});

test('Cleanup running alongside Prepare and View removes no snapshot\'s directory and fails none of them', async () => {
  await withRoot(async (root) => {
    const sn = await open(root);
    const failed: string[] = [];
    for (let i = 0; i < 60; i++) {
      const calls = [sn.prepare(`a${i}`, '', {}), sn.cleanup(), sn.view(`v${i}`, '', {}), sn.cleanup(), sn.prepare(`b${i}`, '', {}), sn.cleanup()];
      for (const r of await Promise.allSettled(calls)) if (r.status === 'rejected') failed.push(String(r.reason));
    }
    assert.deepEqual(failed, []);
    const infos = sn.list([]);
    assert.equal(infos.length, 180);
    assert.deepEqual(await dirs(root), infos.map((_, i) => String(i + 1)).sort(), 'one directory per snapshot, none lost');
    for (const i of infos) await sn.usage(i.name);
    await sn.close();
  });
});

/** A stand-in for the FUSE side that records what the snapshotter asks of it. */
class RecordingLayers implements RemoteLayers {
  readonly present = new Set<string>();
  readonly mountedDirs = new Map<string, string>();
  readonly calls: string[] = [];
  async decide(labels: Labels): Promise<RemoteDecision> {
    const digest = labels[LAYER_DIGEST_LABEL];
    const target = labels[TARGET_REF_LABEL];
    if (!digest) return { remote: false, code: 'no_digest_label', detail: 'no labels' };
    if (!target) return { remote: false, code: 'no_target', detail: 'no target', digest };
    return this.present.has(digest) ? { remote: true, code: 'in_store', digest, target } : { remote: false, code: 'not_in_store', detail: 'not in store', digest };
  }
  async usage() { return { size: 4096, inodes: 1 }; }
  async mount(digest: string, dir: string) { this.calls.push(`mount ${digest} ${dir}`); this.mountedDirs.set(dir, digest); }
  async unmount(dir: string, stillUnused: () => boolean) {
    if (this.mountedDirs.has(dir) && stillUnused()) { this.calls.push(`unmount ${dir}`); this.mountedDirs.delete(dir); }
  }
  mounted() { return [...this.mountedDirs.keys()]; }
  readonly reconciled: Array<ReadonlyMap<string, string>> = [];
  readonly remounted: Array<ReadonlyMap<string, string>> = [];
  async remount(_prefix: string, wanted: ReadonlyMap<string, string>) {
    this.remounted.push(wanted);
  }
  async reconcile(_prefix: string, wanted: ReadonlyMap<string, string>) {
    this.reconciled.push(wanted);
    for (const [dir, digest] of wanted) this.mountedDirs.set(dir, digest);
  }
  async close() { this.mountedDirs.clear(); }
}

const D1 = `sha256:${'a'.repeat(64)}`;
const D2 = `sha256:${'b'.repeat(64)}`;
const layerLabels = (digest: string, chain: string): Labels => ({ [TARGET_REF_LABEL]: chain, [LAYER_DIGEST_LABEL]: digest });

test('a layer in the store becomes a committed remote snapshot and Prepare answers AlreadyExists', async () => {
  await withRoot(async (root) => {
    const layers = new RecordingLayers();
    layers.present.add(D1);
    const sn = await open(root, layers);
    await assert.rejects(sn.prepare('k8s.io/1/extract-1 sha256:c1', '', layerLabels(D1, 'sha256:c1')), (e: Error) => e.name === 'AlreadyExists');
    const info = sn.stat('sha256:c1');
    assert.equal(info.kind, 'committed');
    assert.equal(info.labels[REMOTE_LABEL], D1);
    assert.deepEqual(sn.list([`labels."${TARGET_REF_LABEL}"==sha256:c1,parent==""`]).map((i) => i.name), ['sha256:c1']);
    assert.equal(existsSync(join(root, 'snapshots', '1', 'fs')), true, 'a mountpoint exists');
    assert.deepEqual(layers.calls, [], 'nothing is mounted before a snapshot needs it');
    // Another namespace pulling the same image: the same answer, no second record.
    await assert.rejects(sn.prepare('other/1/extract-2 sha256:c1', '', layerLabels(D1, 'sha256:c1')), /already exists/);
    assert.equal(sn.list([]).length, 1);
    assert.deepEqual((await sn.usage('sha256:c1')), { size: 4096, inodes: 1 });
    await sn.close();
  });
});

test('a layer missing from the store takes the ordinary path; layers are mounted while a container needs them', async () => {
  await withRoot(async (root) => {
    const layers = new RecordingLayers();
    layers.present.add(D1);
    const sn = await open(root, layers);
    await assert.rejects(sn.prepare('x/1', '', layerLabels(D1, 'sha256:c1')), /already exists/);
    // D2 is not in the store: an ordinary active snapshot on top of the remote one, to extract into.
    const m = await sn.prepare('x/2', 'sha256:c1', layerLabels(D2, 'sha256:c2'));
    assert.equal(m[0]?.type, 'overlay');
    assert.deepEqual(layers.calls, [`mount ${D1} ${join(root, 'snapshots', '1', 'fs')}`]);
    await sn.commit('sha256:c2', 'x/2', {});
    // The extraction snapshot is committed: nothing active stands on the layer, so it is unmounted.
    assert.deepEqual(layers.mounted(), []);
    await sn.prepare('container', 'sha256:c2', {});
    assert.equal(layers.mounted().length, 1);
    await sn.remove('container');
    assert.deepEqual(layers.mounted(), []);
    assert.ok(layers.calls.at(-1)?.startsWith('unmount'));
    // Removing the remote snapshot and pulling again stays lazy.
    await sn.remove('sha256:c2');
    await sn.remove('sha256:c1');
    await assert.rejects(sn.prepare('x/3', '', layerLabels(D1, 'sha256:c1')), /already exists/);
    assert.equal(sn.stat('sha256:c1').labels[REMOTE_LABEL], D1);
    await sn.close();
  });
});

test('a Prepare that offers a layer of the store is validated first: a bad key, parent or label is InvalidArgument and nothing is made', async () => {
  await withRoot(async (root) => {
    const layers = new RecordingLayers();
    layers.present.add(D1);
    const sn = await open(root, layers);
    const bad: [string, string, Labels][] = [
      ['x/\0', '', layerLabels(D1, 'sha256:c1')],
      ['', '', layerLabels(D1, 'sha256:c1')],
      ['x/1', 'no\0parent', layerLabels(D1, 'sha256:c1')],
      ['x/1', 'p'.repeat(5000), layerLabels(D1, 'sha256:c1')],
      ['x/1', '', { ...layerLabels(D1, 'sha256:c1'), big: 'v'.repeat(5000) }],
      ['x/1', '', { ...layerLabels(D1, 'sha256:c1'), '': 'empty key' }],
    ];
    for (const [key, parent, labels] of bad) {
      await assert.rejects(sn.prepare(key, parent, labels), (e: Error) => e.name === 'InvalidArgument', JSON.stringify([key.slice(0, 20), parent.slice(0, 20)]));
    }
    assert.deepEqual(sn.list([]), []);
    assert.deepEqual(await dirs(root), []);
    await sn.close();
  });
});

test('the remote label is the daemon\'s: clients cannot put it on a snapshot, change it or remove it', async () => {
  await withRoot(async (root) => {
    const layers = new RecordingLayers();
    layers.present.add(D1);
    const sn = await open(root, layers);
    const forged = { [REMOTE_LABEL]: 'sha256:../../etc', keep: 'me' };
    await sn.prepare('a', '', forged);
    assert.deepEqual(sn.stat('a').labels, { keep: 'me' });
    await sn.view('v', '', forged);
    assert.deepEqual(sn.stat('v').labels, { keep: 'me' });
    await sn.commit('c', 'a', forged);
    assert.deepEqual(sn.stat('c').labels, { keep: 'me' });
    assert.deepEqual(sn.update('c', forged, []).labels, { keep: 'me' });
    assert.deepEqual(sn.update('c', forged, [`labels.${REMOTE_LABEL}`]).labels, { keep: 'me' });
    await assert.rejects(sn.prepare('x/1', '', { ...layerLabels(D1, 'sha256:c1'), [REMOTE_LABEL]: D2 }), /already exists/);
    assert.equal(sn.stat('sha256:c1').labels[REMOTE_LABEL], D1);
    assert.equal(sn.update('sha256:c1', {}, ['labels']).labels[REMOTE_LABEL], D1, 'not removed');
    assert.equal(sn.update('sha256:c1', { [REMOTE_LABEL]: D2 }, [`labels.${REMOTE_LABEL}`]).labels[REMOTE_LABEL], D1, 'not changed');
    assert.equal(sn.stat('sha256:c1').labels[REMOTE_LABEL], D1);
    await sn.close();
  });
});

test('at start, the layers that active snapshots stand on are handed to reconcile, and nothing else', async () => {
  await withRoot(async (root) => {
    let layers = new RecordingLayers();
    layers.present.add(D1).add(D2);
    let sn = await open(root, layers);
    await assert.rejects(sn.prepare('x/1', '', layerLabels(D1, 'sha256:c1')), /already exists/);
    await assert.rejects(sn.prepare('x/2', 'sha256:c1', layerLabels(D2, 'sha256:c2')), /already exists/);
    await sn.prepare('container', 'sha256:c2', {});
    await sn.close();
    layers = new RecordingLayers();
    sn = await open(root, layers);
    assert.deepEqual([...(layers.reconciled[0] ?? new Map()).entries()].sort(), [
      [join(root, 'snapshots', '1', 'fs'), D1],
      [join(root, 'snapshots', '2', 'fs'), D2],
    ]);
    assert.deepEqual((await readdir(join(root, 'snapshots'))).sort(), ['1', '2', '3'], 'nothing committed is lost');
    await sn.close();
  });
});

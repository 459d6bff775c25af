// Snapshot life cycles straight over the daemon's gRPC socket, for load tests: a private daemon
// with a small layer store, and cycles that prepare, mount, commit and remove snapshots, plain
// ones and remote ones from the store, while the daemon's mounts, directories, descriptors and
// memory are watched from outside.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { status, type ServiceError } from '@grpc/grpc-js';
import { SnapshotsClient } from '../../src/server/client.js';
import type { WireMount } from '../../src/server/wire.js';
import { LAYER_DIGEST_LABEL, TARGET_REF_LABEL } from '../../src/snapshotter/labels.js';

/** A layer in the test store: its digest, and a file in it with known content. */
export interface StoreLayer {
  digest: string;
  file: string;
  content: string;
}

/** Writes `count` layers in DUCC's layout (<store>/.layers/<xx>/<hex>/layerfs) with a few files each. */
export async function makeStoreLayers(store: string, count: number): Promise<StoreLayer[]> {
  const out: StoreLayer[] = [];
  for (let i = 0; i < count; i++) {
    const hex = createHash('sha256').update(`load layer ${i}`).digest('hex');
    const layerfs = join(store, '.layers', hex.slice(0, 2), hex, 'layerfs');
    await mkdir(join(layerfs, 'etc', 'many'), { recursive: true });
    for (let f = 0; f < 20; f++) await writeFile(join(layerfs, 'etc', 'many', `f${f}`), `${i}/${f}\n`);
    const content = `layer ${i}\n`;
    await writeFile(join(layerfs, 'etc', `layer-${i}`), content);
    out.push({ digest: `sha256:${hex}`, file: `etc/layer-${i}`, content });
  }
  return out;
}

function grpcCode(err: unknown): number | undefined {
  return typeof err === 'object' && err !== null && 'code' in err ? (err as ServiceError).code : undefined;
}

/** Prepare with the labels of containerd's remote snapshot protocol; the answer must be AlreadyExists. */
export async function prepareRemote(c: SnapshotsClient, key: string, parent: string, target: string, layer: StoreLayer): Promise<void> {
  await assert.rejects(c.prepare(key, parent, { [TARGET_REF_LABEL]: target, [LAYER_DIGEST_LABEL]: layer.digest }),
    (err: unknown) => grpcCode(err) === status.ALREADY_EXISTS, `Prepare ${key} of a layer in the store answers AlreadyExists`);
}

/** The lower directories of an overlay mount, top first; the source of a bind mount. */
export function mountDirs(ms: readonly WireMount[]): { upper: string | undefined; lower: string[] } {
  const m = ms[0];
  assert.ok(m, 'one mount');
  if (m.type === 'bind') return { upper: m.options.includes('rw') ? m.source : undefined, lower: m.options.includes('ro') ? [m.source] : [] };
  assert.equal(m.type, 'overlay');
  const opt = (k: string): string | undefined => m.options.find((o) => o.startsWith(`${k}=`))?.slice(k.length + 1);
  return { upper: opt('upperdir'), lower: (opt('lowerdir') ?? '').split(':').filter((d) => d !== '') };
}

export type CycleKind = 'plain' | 'remote' | 'remote-mounted';

export interface CycleCounts {
  plain: number;
  remote: number;
  'remote-mounted': number;
  /** FUSE mounts the cycles caused (each is unmounted again within its cycle). */
  fuseMounts: number;
}

export function emptyCounts(): CycleCounts {
  return { plain: 0, remote: 0, 'remote-mounted': 0, fuseMounts: 0 };
}

/**
 * One cycle; every snapshot it makes is removed before it returns.
 * - plain: Prepare, write into the upper dir, Commit, Prepare on top (overlay), Remove both.
 * - remote: two layers of the store as remote snapshots (Prepare answers AlreadyExists), Stat, Remove.
 * - remote-mounted: the same two layers, an active snapshot on them (both layers mounted through
 *   FUSE, a file of each read through its mount), Mounts, Commit (the layers are unmounted), a View
 *   of the commit (mounted again, read again), Remove all.
 */
export async function runCycle(c: SnapshotsClient, kind: CycleKind, i: number, layers: readonly [StoreLayer, StoreLayer], counts: CycleCounts): Promise<void> {
  const k = (s: string): string => `load/${i}/${s}`;
  counts[kind]++;
  if (kind === 'plain') {
    const up = mountDirs((await c.prepare(k('a'))).mounts).upper;
    assert.ok(up, 'an active snapshot has a writable directory');
    await writeFile(join(up, 'file'), `cycle ${i}\n`);
    await c.commit(k('c'), k('a'));
    const top = mountDirs((await c.prepare(k('b'), k('c'))).mounts);
    assert.equal(top.lower.length, 1, 'one lower layer');
    assert.equal(await readFile(join(top.lower[0] as string, 'file'), 'utf8'), `cycle ${i}\n`);
    await c.remove(k('b'));
    await c.remove(k('c'));
    return;
  }
  const [l1, l2] = layers;
  const chain1 = `sha256:${createHash('sha256').update(`chain1 ${i}`).digest('hex')}`;
  const chain2 = `sha256:${createHash('sha256').update(`chain2 ${i}`).digest('hex')}`;
  await prepareRemote(c, k('extract-1'), '', chain1, l1);
  await prepareRemote(c, k('extract-2'), chain1, chain2, l2);
  if (kind === 'remote') {
    assert.equal((await c.stat(chain2)).info.parent, chain1);
  } else {
    const dirs = mountDirs((await c.prepare(k('a'), chain2)).mounts);
    assert.equal(dirs.lower.length, 2, 'both layers are lower directories');
    counts.fuseMounts += 2;
    assert.equal(await readFile(join(dirs.lower[0] as string, l2.file), 'utf8'), l2.content, 'the top layer reads through FUSE');
    assert.equal(await readFile(join(dirs.lower[1] as string, l1.file), 'utf8'), l1.content, 'the bottom layer reads through FUSE');
    assert.deepEqual(mountDirs((await c.mounts(k('a'))).mounts), dirs);
    await writeFile(join(dirs.upper as string, 'file'), `cycle ${i}\n`);
    await c.commit(k('c'), k('a'));
    const view = mountDirs((await c.view(k('v'), k('c'))).mounts);
    assert.equal(view.lower.length, 3);
    counts.fuseMounts += 2;
    assert.equal(await readFile(join(view.lower[2] as string, l1.file), 'utf8'), l1.content, 'the view reads the bottom layer through FUSE');
    await c.remove(k('v'));
    await c.remove(k('c'));
  }
  await c.remove(chain2);
  await c.remove(chain1);
}

// Images whose shape, not content, is unusual, pulled lazily and run:
//  - more layers than one overlay mount option can name (an option is at most a page, 4,096
//    bytes; 125 lower directories under the daemon's root take more): containerd shortens the
//    lowerdir option itself when the spec is longer (relative paths from their common parent),
//    so the snapshotter's mounts must have a common parent, as containerd's own overlayfs ones do;
//  - the same layer (one digest) at two places of one image, with another layer between them
//    that changes what the first one holds: each place is a snapshot of its own, and the upper
//    one wins in the container.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Containerd } from '../helpers/containerd.js';
import { defaultDaemonConfig, type Daemon } from '../helpers/daemon.js';
import { Harness } from '../helpers/harness.js';
import type { BuiltImage, LayerSpec } from '../helpers/image.js';
import { CRI_NAMESPACE, contentDigests, fuseMountsUnder, ingest, lazyRunArgs, pullLazy } from '../helpers/lazy.js';
import type { Registry } from '../helpers/registry.js';
import { addFile, busyboxRootfs } from '../helpers/rootfs.js';
import { waitUntil } from '../helpers/wait.js';

const NS = { namespace: CRI_NAMESPACE, timeoutMs: 120_000 };
const MANY = 125;
const PAGE = 4096;

describe('lazy images of unusual shape', () => {
  let h: Harness;
  let registry: Registry;
  let daemon: Daemon;
  let ctd: Containerd;
  let many: BuiltImage;
  let twice: BuiltImage;

  before(async () => {
    h = await Harness.create('e2e-layer-shapes');
    registry = await h.startRegistry();
    const layers: LayerSpec[] = [{ comment: 'base', edit: (r) => busyboxRootfs(r) }];
    for (let i = 1; i < MANY; i++) layers.push({ comment: `layer ${i}`, edit: (r) => addFile(r, `opt/l${i}.txt`, `layer ${i}\n`) });
    many = await h.buildImage({ registry, name: 'e2e/many-layers', tag: 'v1', layers });

    // The same tar twice: same entries, same mtimes, and no atime or ctime in the pax headers
    // (GNU tar writes them by default, and they would differ between the two).
    const same = async (d: string): Promise<void> => {
      await mkdir(join(d, 'same'));
      await writeFile(join(d, 'same', 'file'), 'the repeated layer\n');
      for (const p of [join(d, 'same', 'file'), join(d, 'same')]) await utimes(p, 1e9, 1e9);
    };
    const saved = process.env.TAR_OPTIONS;
    process.env.TAR_OPTIONS = '--pax-option=delete=atime,delete=ctime';
    try {
      twice = await h.buildImage({
        registry, name: 'e2e/layer-twice', tag: 'v1', layers: [
          { comment: 'base', edit: (r) => busyboxRootfs(r) },
          { comment: 'the repeated layer', raw: same },
          { comment: 'a change between', edit: (r) => addFile(r, 'same/file', 'changed in between\n') },
          { comment: 'the repeated layer again', raw: same },
        ],
      });
    } finally {
      if (saved === undefined) delete process.env.TAR_OPTIONS;
      else process.env.TAR_OPTIONS = saved;
    }

    const store = await h.scope.mkdir('store');
    await ingest(store, many.ref, twice.ref);
    daemon = await h.startDaemon({ configToml: defaultDaemonConfig(store) });
    ctd = await h.startContainerd({ snapshotterSocket: daemon.socket, registries: [registry], criEnabled: true });
  });
  after(() => h?.teardown());

  test(`${MANY} layers, more than one overlay mount option can name, run lazily with every layer's files`, async () => {
    const pulled = await pullLazy(ctd, many.ref);
    assert.equal(pulled.code, 0, pulled.stderr);
    const layerDigests = new Set(many.layers.map((l) => l.digest));
    assert.deepEqual([...await contentDigests(ctd)].filter((d) => layerDigests.has(d)), [], 'no layer blob was downloaded');
    // The layers are mounted while a container stands on them: counted during its run.
    const run = ctd.ctr([...lazyRunArgs(ctd), '--rm', many.ref, 'many-1', 'sh', '-c', `cat /opt/l1.txt /opt/l${MANY - 1}.txt; ls /opt | wc -l; sleep 3`], NS);
    run.catch(() => undefined);
    await waitUntil(() => fuseMountsUnder(daemon.root).length === MANY, { what: `${MANY} FUSE mounts, one per layer`, timeoutMs: 60_000 });
    const lowerdir = fuseMountsUnder(daemon.root).map((m) => m.mountPoint).join(':');
    assert.ok(lowerdir.length > PAGE, `the lower directories take ${lowerdir.length} bytes, more than a page (else this shows nothing)`);
    assert.deepEqual((await run).trim().split('\n'), ['layer 1', `layer ${MANY - 1}`, String(MANY - 1)]);
    await ctd.ctr(['images', 'rm', '--sync', many.ref], NS);
    await waitUntil(() => fuseMountsUnder(daemon.root).length === 0, { what: 'no FUSE mount once the image is gone', timeoutMs: 30_000 });
  });

  test('one layer at two places of an image: each place is served, and the upper one wins over the change between', async () => {
    const digests = twice.layers.map((l) => l.digest);
    assert.equal(digests[1], digests[3], 'the image holds one layer twice (else this shows nothing)');
    assert.notEqual(twice.chainIds[1], twice.chainIds[3]);
    const pulled = await pullLazy(ctd, twice.ref);
    assert.equal(pulled.code, 0, pulled.stderr);
    const run = ctd.ctr([...lazyRunArgs(ctd), '--rm', twice.ref, 'twice-1', 'sh', '-c', 'cat /same/file; sleep 3'], NS);
    run.catch(() => undefined);
    await waitUntil(() => fuseMountsUnder(daemon.root).length === 4, { what: 'a FUSE mount for each of the four places', timeoutMs: 60_000 });
    assert.equal(await run, 'the repeated layer\n');
    await ctd.ctr(['images', 'rm', '--sync', twice.ref], NS);
    await waitUntil(() => fuseMountsUnder(daemon.root).length === 0, { what: 'no FUSE mount once the image is gone', timeoutMs: 30_000 });
  });
});

// Per-layer fallback: a store that lacks one of an image's layers. The daemon answers
// AlreadyExists for the layers it has and takes the ordinary path for the missing one, which
// containerd then downloads and unpacks; the container runs with every layer's files.
//
// What containerd 1.6's unpacker does around a missing layer (unpacker.go): it walks the layers
// bottom up; the first time Prepare does not answer AlreadyExists it starts ONE fetch of that
// layer and of every layer above it, then keeps preparing the layers above one by one. So when
// a middle layer is missing, the layers above it are still remote snapshots (never unpacked,
// served by FUSE) but their blobs are downloaded into the content store anyway. Only a missing
// top layer costs exactly one layer. The tests below assert exactly that.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Containerd } from '../helpers/containerd.js';
import { defaultDaemonConfig, type Daemon } from '../helpers/daemon.js';
import { Harness } from '../helpers/harness.js';
import type { BuiltImage } from '../helpers/image.js';
import { CRI_NAMESPACE, contentDigests, fuseMountsUnder, ingest, lazyRunArgs, pullLazy, remoteLabel } from '../helpers/lazy.js';
import type { Registry } from '../helpers/registry.js';
import { addFile, busyboxRootfs, nextSecond } from '../helpers/rootfs.js';
import { waitUntil } from '../helpers/wait.js';

const NS = { namespace: CRI_NAMESPACE };

describe('lazy pull from a store that lacks one layer', () => {
  let h: Harness;
  let registry: Registry;
  let daemon: Daemon;
  let ctd: Containerd;
  let store: string;

  /** A 4-layer image; `tag` keeps the layers of different images apart (no shared chain IDs). */
  const buildFourLayers = (tag: string): Promise<BuiltImage> => h.buildImage({
    registry,
    name: 'e2e/missing',
    tag,
    layers: [
      async (r) => { await busyboxRootfs(r); await addFile(r, `etc/${tag}-0`, `${tag} layer 0\n`); },
      async (r) => { await nextSecond(); await addFile(r, `opt/${tag}/1`, `${tag} layer 1\n`); },
      async (r) => { await nextSecond(); await addFile(r, `opt/${tag}/2`, `${tag} layer 2\n`); },
      async (r) => { await nextSecond(); await addFile(r, `opt/${tag}/3`, `${tag} layer 3\n`); },
    ],
  });
  const layerDir = (digest: string): string => {
    const hex = digest.replace(/^sha256:/, '');
    return join(store, '.layers', hex.slice(0, 2), hex);
  };

  /** Per layer: is its blob in containerd's content store, and is its snapshot remote? */
  const layerStates = async (img: BuiltImage): Promise<string[]> => {
    const content = await contentDigests(ctd);
    const out: string[] = [];
    for (const [i, l] of img.layers.entries()) {
      const remote = await remoteLabel(ctd, img.chainIds[i] ?? '');
      assert.ok(remote === undefined || remote === l.digest, `layer ${i}'s remote label names its own digest, not ${remote ?? ''}`);
      out.push(`${content.has(l.digest) ? 'downloaded' : 'not-downloaded'} ${remote !== undefined ? 'remote' : 'unpacked'}`);
    }
    return out;
  };
  const runAll = async (img: BuiltImage, name: string): Promise<string> =>
    (await ctd.ctr([...lazyRunArgs(ctd), '--rm', img.ref, name, 'sh', '-c', `cat /etc/${img.tag}-0 /opt/${img.tag}/1 /opt/${img.tag}/2 /opt/${img.tag}/3`], NS)).trim();
  const decisionLogged = (digest: string): boolean =>
    daemon.logRecords().some((r) => JSON.stringify(r).includes(digest) && typeof r.reason === 'string');

  before(async () => {
    h = await Harness.create('e2e-lazy-miss');
    registry = await h.startRegistry();
    store = await h.scope.mkdir('store');
    daemon = await h.startDaemon({ logLevel: 'debug', configToml: defaultDaemonConfig(store) });
    ctd = await h.startContainerd({ snapshotterSocket: daemon.socket, registries: [registry], criEnabled: true });
  });
  after(() => h.teardown());

  test('a missing middle layer is downloaded and unpacked; the layers above stay remote but their blobs are fetched too', async (t) => {
    const img = await buildFourLayers('middle');
    await ingest(store, img.ref);
    const missing = img.layers[1]?.digest ?? '';
    await rm(layerDir(missing), { recursive: true });

    const t0 = Date.now();
    await pullLazy(ctd, img.ref);
    t.diagnostic(`pull: ${Date.now() - t0} ms`);
    assert.deepEqual(await layerStates(img), [
      'not-downloaded remote', // below the gap: lazy
      'downloaded unpacked', //   the missing layer: fetched and applied by containerd
      'downloaded remote', //     above the gap: served from the store, yet fetched by the unpacker
      'downloaded remote',
    ]);
    assert.ok(decisionLogged(missing), 'the daemon logs why the missing layer is downloaded');
    assert.equal(await runAll(img, 'missing-middle'), 'middle layer 0\nmiddle layer 1\nmiddle layer 2\nmiddle layer 3');
    await waitUntil(() => fuseMountsUnder(daemon.root).length === 0, { what: 'no FUSE mount once the container is gone', timeoutMs: 10_000 });
  });

  test('a missing top layer is the only one downloaded', async (t) => {
    const img = await buildFourLayers('top');
    await ingest(store, img.ref);
    const missing = img.layers[3]?.digest ?? '';
    await rm(layerDir(missing), { recursive: true });

    const t0 = Date.now();
    await pullLazy(ctd, img.ref);
    t.diagnostic(`pull: ${Date.now() - t0} ms`);
    assert.deepEqual(await layerStates(img), ['not-downloaded remote', 'not-downloaded remote', 'not-downloaded remote', 'downloaded unpacked']);
    assert.ok(decisionLogged(missing), 'the daemon logs why the missing layer is downloaded');
    assert.equal(await runAll(img, 'missing-top'), 'top layer 0\ntop layer 1\ntop layer 2\ntop layer 3');
    await waitUntil(() => fuseMountsUnder(daemon.root).length === 0, { what: 'no FUSE mount once the container is gone', timeoutMs: 10_000 });
    assert.deepEqual(h.mounts(), []);
  });
});

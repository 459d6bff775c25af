// The whole tool chain on one small image: `ingest` fills a store, the daemon serves it, and
// `pull` through containerd's CRI leaves every layer blob out of containerd's content store.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execOk } from '../../src/sys/exec.js';
import { Scope } from '../helpers/scope.js';
import { runCli } from '../helpers/cli.js';
import { startRegistry, type Registry } from '../helpers/registry.js';
import { buildImage, type BuiltImage } from '../helpers/image.js';
import { startContainerd } from '../helpers/containerd.js';
import { defaultDaemonConfig, startDaemon } from '../helpers/daemon.js';


let scope: Scope;
let registry: Registry;
let image: BuiltImage;


before(async () => {
  scope = await Scope.create('pull-lazy');
  registry = await startRegistry(scope);
  image = await buildImage(scope, {
    registry,
    name: 'test/lazy',
    tag: 'v1',
    layers: [
      async (root) => { await execOk('mkdir', ['-p', `${root}/bin`]); await execOk('cp', ['/bin/busybox', `${root}/bin/busybox`]); },
      async (root) => { await execOk('sh', ['-c', `echo second > ${root}/second`]); },
    ],
    config: { cmd: ['/bin/busybox', 'cat', '/second'] },
  });
});

after(async () => { await scope.teardown(); });

test('ingest, then pull: no layer blob reaches containerd, and --verbose says so', async () => {
  const store = await scope.mkdir('store');
  const ing = await runCli(['ingest', '--store', store, '--plain-http', image.ref]);
  assert.equal(ing.code, 0, ing.stderr);

  const daemon = await startDaemon(scope, { configToml: defaultDaemonConfig(store) });
  const ctd = await startContainerd(scope, { criEnabled: true, snapshotterSocket: daemon.socket, registries: [registry] });
  const r = await runCli(['pull', '--containerd', ctd.socket, '--verbose', image.ref]);
  assert.equal(r.code, 0, `${r.stderr}\n${r.stdout}`);
  const why = `\n${r.stdout}\ndaemon log:\n${daemon.process.logTail(15)}`;
  assert.match(r.stdout, / pulled in /);
  for (const l of image.layers) assert.match(r.stdout, new RegExp(`${l.digest} lazy`), why);
  assert.match(r.stdout, /2 of 2 layers lazy/);
  const content = await ctd.ctr(['content', 'ls', '-q'], { namespace: 'k8s.io' });
  for (const l of image.layers) assert.equal(content.includes(l.digest), false, `${l.digest} was downloaded`);
  await ctd.stop();
  await daemon.stop();
});

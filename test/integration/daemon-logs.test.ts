// What an operator reads: the real daemon's log lines. Every decision about a layer (lazy or
// downloaded, and why) and every FUSE mount and unmount carries the layer digest; JSON is the
// default, pretty on a terminal, and --log-format overrides either.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { SnapshotsClient } from '../../src/server/client.js';
import { LAYER_DIGEST_LABEL, TARGET_REF_LABEL } from '../../src/snapshotter/labels.js';
import { exec } from '../../src/sys/exec.js';
import { defaultDaemonConfig, parseJsonLines, startDaemon, type Daemon, type LogRecord } from '../helpers/daemon.js';
import { fuseMountsUnder } from '../helpers/lazy.js';
import { daemonBin } from '../helpers/paths.js';
import { Scope } from '../helpers/scope.js';

const digestOf = (s: string): string => `sha256:${createHash('sha256').update(s).digest('hex')}`;
const DECISIONS = new Set(['layer served from the store', 'layer will be downloaded']);

/** A layer in DUCC's layout: <store>/.layers/<xx>/<hex>/layerfs. */
async function addStoreLayer(store: string, digest: string, files: Record<string, string>): Promise<void> {
  const hex = digest.slice('sha256:'.length);
  const layerfs = join(store, '.layers', hex.slice(0, 2), hex, 'layerfs');
  for (const [name, content] of Object.entries(files)) {
    await mkdir(join(layerfs, name, '..'), { recursive: true });
    await writeFile(join(layerfs, name), content);
  }
}

async function alreadyExists(p: Promise<unknown>): Promise<void> {
  await assert.rejects(p, (e: { code: number; details: string }) => {
    assert.equal(status[e.code], 'ALREADY_EXISTS', e.details);
    return true;
  });
}

describe('the daemon logs each layer decision, mount and unmount with the layer digest', () => {
  let scope: Scope;
  let daemon: Daemon;
  let client: SnapshotsClient;
  const inStore = digestOf('a layer in the store');
  const notInStore = digestOf('a layer that is not');

  before(async () => {
    scope = await Scope.create('logs');
    const store = await scope.mkdir('store');
    await addStoreLayer(store, inStore, { 'etc/hello': 'hello\n' });
    daemon = await startDaemon(scope, { logLevel: 'info', configToml: defaultDaemonConfig(store) });
    client = new SnapshotsClient(daemon.socket);
  });
  after(async () => {
    client?.close();
    await scope?.teardown();
  });

  const records = (): LogRecord[] => daemon.logRecords();
  const decisionsFor = (key: string): LogRecord[] => records().filter((r) => DECISIONS.has(String(r.msg)) && r.key === key);
  const mountLines = (msg: string): LogRecord[] => records().filter((r) => r.msg === msg);

  test('one decision line per layer Prepare, with the digest, the decision and the reason', async () => {
    // What containerd's CRI unpacker sends: the target name and the layer digest.
    const lazyKey = 'k8s.io/1/extract-1 sha256:aaaa';
    await alreadyExists(client.prepare(lazyKey, '', { [TARGET_REF_LABEL]: 'k8s.io/1/sha256:aaaa', [LAYER_DIGEST_LABEL]: inStore }));
    const downloadKey = 'k8s.io/2/extract-2 sha256:bbbb';
    await client.prepare(downloadKey, 'k8s.io/1/sha256:aaaa', { [TARGET_REF_LABEL]: 'k8s.io/2/sha256:bbbb', [LAYER_DIGEST_LABEL]: notInStore });
    // ctr-style: a digest but no target name, so no remote snapshot was offered.
    const noTargetKey = 'default/3/extract-3';
    await client.prepare(noTargetKey, '', { [LAYER_DIGEST_LABEL]: inStore });

    const expected: [string, string, string, RegExp][] = [
      [lazyKey, inStore, 'remote', /in the layer store/],
      [downloadKey, notInStore, 'downloaded', /not in the layer store/],
      [noTargetKey, inStore, 'downloaded', /no containerd\.io\/snapshot\.ref label/],
    ];
    for (const [key, digest, decision, reason] of expected) {
      const lines = decisionsFor(key);
      assert.equal(lines.length, 1, `one decision line for ${key}: ${JSON.stringify(lines)}`);
      const l = lines[0] as LogRecord;
      assert.equal(l.digest, digest, `the decision for ${key} names the digest`);
      assert.equal(l.decision, decision);
      assert.match(String(l.reason), reason);
      assert.equal(l.level, 30, 'decisions are logged at info');
    }
    assert.deepEqual(records().filter((r) => DECISIONS.has(String(r.msg))).length, expected.length, 'no other decision lines');
  });

  test('the FUSE mount and unmount of a layer are logged with its digest and mountpoint', async () => {
    const mountedBefore = mountLines('mounted layer').length;
    const unmountedBefore = mountLines('unmounted layer').length;
    // The extract snapshot above stands on the lazy layer: committing it releases the layer.
    await client.commit('k8s.io/2/sha256:bbbb', 'k8s.io/2/extract-2 sha256:bbbb');
    assert.deepEqual(fuseMountsUnder(daemon.root), [], 'nothing stands on the lazy layer after the commit');

    await client.prepare('k8s.io/4/container', 'k8s.io/2/sha256:bbbb');
    const mounted = fuseMountsUnder(daemon.root);
    assert.equal(mounted.length, 1, 'a container on the image mounts its lazy layer');
    await client.remove('k8s.io/4/container');
    assert.deepEqual(fuseMountsUnder(daemon.root), [], 'removing the container unmounts the layer');

    const mounts = mountLines('mounted layer');
    const unmounts = mountLines('unmounted layer');
    assert.ok(mounts.length - mountedBefore >= 1 && unmounts.length - unmountedBefore >= 1, 'this test mounted and unmounted a layer');
    assert.equal(mounts.length, unmounts.length, 'as many unmount lines as mount lines');
    for (const l of [...mounts, ...unmounts]) {
      assert.equal(l.digest, inStore, `${String(l.msg)} names the digest: ${JSON.stringify(l)}`);
      assert.equal(typeof l.mountpoint, 'string', `${String(l.msg)} names the mountpoint`);
    }
    assert.ok(mounts.some((l) => l.mountpoint === mounted[0]?.mountPoint), 'the logged mountpoint is the real one');
  });

  test('a layer still mounted when the daemon stops stays served; the FUSE server\'s own stop unmounts it, and that line names its digest too', async () => {
    await client.prepare('k8s.io/5/container', 'k8s.io/2/sha256:bbbb');
    assert.equal(fuseMountsUnder(daemon.root).length, 1);
    const before = mountLines('unmounted layer').length;
    await daemon.stop();
    assert.equal(fuseMountsUnder(daemon.root).length, 1, 'the FUSE server outlives the daemon and keeps serving the layer');
    await daemon.stopFuseServer();
    assert.deepEqual(fuseMountsUnder(daemon.root), [], 'the FUSE server unmounted its layer on SIGTERM');
    const late = mountLines('unmounted layer').slice(before);
    assert.equal(late.length, 1, `one unmount line at shutdown: ${JSON.stringify(late)}`);
    assert.equal(late[0]?.digest, inStore);
  });
});

/**
 * Runs the daemon until it has logged "starting" and then fails on purpose (its --root is a
 * file), so no server is left running; with a terminal when tty is set (util-linux `script`).
 */
async function firstLogLines(scope: Scope, tty: boolean, extra: readonly string[]): Promise<string> {
  const dir = await scope.mkdir(`fmt-${tty ? 'tty' : 'pipe'}-${extra.join('-') || 'default'}`);
  const config = join(dir, 'config.toml');
  await writeFile(config, defaultDaemonConfig(dir));
  const notADir = join(dir, 'root-is-a-file');
  await writeFile(notADir, '');
  const argv = [process.execPath, daemonBin, '--address', join(dir, 's.sock'), '--root', notADir, '--config', config, ...extra];
  const r = tty
    ? await exec('script', ['--quiet', '--return', '--command', argv.map((a) => `'${a.replaceAll("'", "'\\''")}'`).join(' '), '/dev/null'], { timeoutMs: 60_000 })
    : await exec(argv[0] as string, argv.slice(1), { timeoutMs: 60_000 });
  assert.notEqual(r.code, 0, 'the daemon stops: its root is a file');
  assert.match(r.stdout + r.stderr, /EEXIST/, 'and says why');
  // Without the colour codes: what is left is what a person reads.
  return r.stdout.replace(/\x1b\[[0-9;]*m/g, '').replaceAll('\r', '');
}

describe('log format', () => {
  let scope: Scope;
  before(async () => { scope = await Scope.create('logfmt'); });
  after(async () => { await scope?.teardown(); });

  const isJson = (out: string): boolean => parseJsonLines(out).some((r) => r.msg === 'starting');
  const isPretty = (out: string): boolean => /INFO \(cvmfs-snapshotter\/\d+\): starting\n\s+version: "/.test(out);

  test('JSON lines when stdout is not a terminal', async () => {
    const out = await firstLogLines(scope, false, []);
    assert.ok(isJson(out) && !isPretty(out), out);
  });

  test('pretty on a terminal', async () => {
    const out = await firstLogLines(scope, true, []);
    assert.ok(isPretty(out) && !isJson(out), out);
  });

  test('--log-format overrides the default either way', async () => {
    const json = await firstLogLines(scope, true, ['--log-format', 'json']);
    assert.ok(isJson(json) && !isPretty(json), json);
    const pretty = await firstLogLines(scope, false, ['--log-format', 'pretty']);
    assert.ok(isPretty(pretty) && !isJson(pretty), pretty);
  });
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, writeFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { configFromToml, loadConfig } from '../../src/cli/config.js';
import { parseDaemonArgs } from '../../src/cli/daemon-args.js';

test('defaults are those of the Go CernVM-FS snapshotter', async () => {
  assert.deepEqual(configFromToml({}, 'f'), { repository: 'unpacked.cern.ch', absoluteMountpoint: '/cvmfs/unpacked.cern.ch', metadataCacheEntries: 200_000, metadataCacheBytes: 64 * 1024 * 1024, fusePassthrough: true, storeTimeoutSec: 180, storeCheckTimeoutSec: 5, layerWalkEntries: 200_000, fuseBusyPollUs: 20 });
  assert.deepEqual(configFromToml({ repository: 'x.cern.ch' }, 'f').absoluteMountpoint, '/cvmfs/x.cern.ch');
  const d = parseDaemonArgs([]);
  assert.ok(typeof d === 'object');
  assert.equal(d.address, '/run/containerd-cvmfs-grpc/containerd-cvmfs-grpc.sock');
  assert.equal(d.root, '/var/lib/containerd-cvmfs-grpc');
  assert.equal(d.configPath, '/etc/containerd-cvmfs-grpc/config.toml');
  assert.equal(d.logLevel, 'info');
});

test('unknown keys and wrong types name the key', () => {
  assert.throws(() => configFromToml({ repo: 'x' }, 'c.toml'), /c\.toml: unknown key "repo"/);
  assert.throws(() => configFromToml({ repository: 3 }, 'c.toml'), /"repository" must be a string/);
  assert.throws(() => configFromToml({ 'absolute-mountpoint': 'rel/path' }, 'c.toml'), /"absolute-mountpoint" must be an absolute path/);
  assert.throws(() => configFromToml({ repository: '../etc' }, 'c.toml'), /"repository" must be a repository name/);
  assert.throws(() => configFromToml({ 'metadata-cache-entries': 0 }, 'c.toml'), /"metadata-cache-entries" must be a positive integer/);
});

test('layer-walk-entries takes 0 (no walk) to 100,000,000; anything else is refused with the key named', () => {
  assert.equal(configFromToml({ 'layer-walk-entries': 0 }, 'c.toml').layerWalkEntries, 0);
  assert.equal(configFromToml({ 'layer-walk-entries': 100_000_000 }, 'c.toml').layerWalkEntries, 100_000_000);
  for (const bad of [-1, 1.5, 100_000_001, '10', true]) {
    assert.throws(() => configFromToml({ 'layer-walk-entries': bad }, 'c.toml'), /c\.toml: "layer-walk-entries" must be a whole number from 0 \(no walk\)/, String(bad));
  }
});

test('fuse-busy-poll-us takes 0 (off) to 1000 microseconds; anything else is refused with the key named', () => {
  assert.equal(configFromToml({ 'fuse-busy-poll-us': 0 }, 'c.toml').fuseBusyPollUs, 0);
  assert.equal(configFromToml({ 'fuse-busy-poll-us': 1000 }, 'c.toml').fuseBusyPollUs, 1000);
  for (const bad of [-1, 2.5, 1001, '20', false]) {
    assert.throws(() => configFromToml({ 'fuse-busy-poll-us': bad }, 'c.toml'), /c\.toml: "fuse-busy-poll-us" must be a whole number of microseconds from 0 \(off\) to 1000/, String(bad));
  }
});

test('a config file is read when present, and a missing one is fine unless it was asked for', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'cfg-'));
  try {
    const f = join(dir, 'config.toml');
    await writeFile(f, 'repository = "unpacked.cern.ch"\nabsolute-mountpoint = "/srv/store"\n');
    assert.equal((await loadConfig(f, true)).absoluteMountpoint, '/srv/store');
    assert.equal((await loadConfig(join(dir, 'none.toml'), false)).repository, 'unpacked.cern.ch');
    await assert.rejects(loadConfig(join(dir, 'none.toml'), true), /cannot read config/);
    await writeFile(f, 'repository = \n');
    await assert.rejects(loadConfig(f, true), /not valid TOML/);
  } finally {
    await rm(dir, { recursive: true });
  }
});

test('a bad log level is refused', () => {
  assert.throws(() => parseDaemonArgs(['--log-level', 'loud']), /--log-level loud/);
});

test('[metrics] address is optional; host:port, [ipv6]:port and :port are accepted', () => {
  assert.equal(configFromToml({}, 'f').metrics, undefined);
  assert.deepEqual(configFromToml({ metrics: { address: '127.0.0.1:9110' } }, 'f').metrics, { address: '127.0.0.1:9110', host: '127.0.0.1', port: 9110 });
  assert.deepEqual(configFromToml({ metrics: { address: '[::1]:1' } }, 'f').metrics, { address: '[::1]:1', host: '::1', port: 1 });
  assert.deepEqual(configFromToml({ metrics: { address: 'metrics.example.org:65535' } }, 'f').metrics?.host, 'metrics.example.org');
  assert.deepEqual(configFromToml({ metrics: { address: ':9110' } }, 'f').metrics, { address: ':9110', host: '', port: 9110 });
});

test('a bad [metrics] table or address names the key and says what is expected', () => {
  const bad = (metrics: unknown, re: RegExp) => assert.throws(() => configFromToml({ metrics }, 'c.toml'), re);
  bad({ address: '127.0.0.1' }, /c\.toml: "metrics\.address" must be host:port .*"127\.0\.0\.1": there is no ":port"/);
  bad({ address: '127.0.0.1:0' }, /"metrics\.address" .*port "0" is not a number from 1 to 65535/);
  bad({ address: '127.0.0.1:65536' }, /port "65536" is not a number from 1 to 65535/);
  bad({ address: 'localhost:http' }, /port "http" is not a number/);
  bad({ address: '::1:9110' }, /IPv6 address must be in brackets/);
  bad({ address: '[nope]:9110' }, /"nope" in brackets is not an IPv6 address/);
  bad({ address: 'under_score:9110' }, /"under_score" is not an IP address or host name/);
  bad({ address: 9110 }, /"metrics\.address" must be a string, got number/);
  bad({ address: '' }, /"metrics\.address" must not be empty/);
  bad({}, /\[metrics\] needs "address"/);
  bad({ address: '127.0.0.1:9110', port: 1 }, /unknown key "metrics\.port"; known keys in \[metrics\] are "address"/);
  bad('127.0.0.1:9110', /"metrics" must be a table/);
  assert.throws(() => configFromToml({ prometheus: { address: '127.0.0.1:9110' } }, 'c.toml'), /c\.toml: unknown table \[prometheus\]; known keys are .*\[metrics\]/);
});

test('a [metrics] table in a real TOML file', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'cfg-'));
  try {
    const f = join(dir, 'config.toml');
    await writeFile(f, 'absolute-mountpoint = "/srv/store"\n\n[metrics]\naddress = "127.0.0.1:9110"\n');
    assert.deepEqual((await loadConfig(f, true)).metrics, { address: '127.0.0.1:9110', host: '127.0.0.1', port: 9110 });
    await writeFile(f, '[metrics]\naddress = "127.0.0.1:9110"\n[metrics.tls]\ncert = "x"\n');
    await assert.rejects(loadConfig(f, true), /unknown key "metrics\.tls"/);
  } finally {
    await rm(dir, { recursive: true });
  }
});

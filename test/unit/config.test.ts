import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, writeFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { configFromToml, loadConfig } from '../../src/cli/config.js';
import { parseDaemonArgs } from '../../src/cli/daemon.js';

test('defaults are those of the Go CernVM-FS snapshotter', async () => {
  assert.deepEqual(configFromToml({}, 'f'), { repository: 'unpacked.cern.ch', absoluteMountpoint: '/cvmfs/unpacked.cern.ch', metadataCacheEntries: 200_000 });
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

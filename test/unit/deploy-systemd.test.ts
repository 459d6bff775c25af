// The files in deploy/ for a machine with systemd, read as text: the unit says what the design
// needs (before containerd, restart on failure, a restart that leaves the FUSE side alone, no
// sandboxing that hides mounts), and the daemon accepts the example config. What needs systemd's
// checker or containerd is in test/integration/deploy.test.ts.
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { loadConfig } from '../../src/cli/config.js';
import { repoRoot } from '../helpers/paths.js';

const UNIT = join(repoRoot, 'deploy', 'systemd', 'cvmfs-snapshotter.service');
const DAEMON_CONFIG = join(repoRoot, 'deploy', 'config.toml');
const INSTALLED_BIN = '/usr/local/bin/cvmfs-snapshotter';

type UnitFile = Map<string, Map<string, string[]>>;

/** Sections → keys → values (a key may repeat); comments and blank lines dropped. */
function parseUnit(text: string): UnitFile {
  const out: UnitFile = new Map();
  let section: Map<string, string[]> | undefined;
  for (const [i, raw] of text.split('\n').entries()) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    assert.ok(!line.endsWith('\\'), `line ${i + 1}: continuation lines are not expected`);
    const header = /^\[(.+)\]$/.exec(line);
    if (header) {
      section = new Map();
      out.set(header[1] as string, section);
      continue;
    }
    const eq = line.indexOf('=');
    assert.ok(section !== undefined && eq > 0, `line ${i + 1} is neither a section nor key=value: ${line}`);
    const key = line.slice(0, eq).trim();
    section.set(key, [...(section.get(key) ?? []), line.slice(eq + 1).trim()]);
  }
  return out;
}

const values = (u: UnitFile, section: string, key: string): string[] =>
  (u.get(section)?.get(key) ?? []).flatMap((v) => v.split(/\s+/)).filter((v) => v !== '');

describe('deploy/systemd/cvmfs-snapshotter.service', () => {
  let unit: UnitFile;
  before(async () => {
    unit = parseUnit(await readFile(UNIT, 'utf8'));
  });

  test('it runs the installed command', () => {
    assert.deepEqual(values(unit, 'Service', 'ExecStart').slice(0, 1), [INSTALLED_BIN]);
  });

  test('it starts before containerd, which wants it, after the filesystems and the layer store', () => {
    assert.deepEqual(values(unit, 'Unit', 'Before'), ['containerd.service']);
    assert.deepEqual(values(unit, 'Install', 'WantedBy'), ['containerd.service']);
    const afterUnits = values(unit, 'Unit', 'After');
    for (const u of ['local-fs.target', 'network.target']) assert.ok(afterUnits.includes(u), `After= has ${u}`);
    assert.deepEqual(values(unit, 'Unit', 'RequiresMountsFor'), ['/cvmfs/unpacked.cern.ch'], 'the default layer store');
  });

  test('it restarts on failure, and stop or restart signals only the main process', () => {
    assert.deepEqual(values(unit, 'Service', 'Restart'), ['on-failure']);
    assert.deepEqual(values(unit, 'Service', 'KillMode'), ['process'],
      'the FUSE server process in the same cgroup must outlive a daemon restart');
    assert.deepEqual(values(unit, 'Service', 'Type'), ['exec']);
  });

  test('no setting gives it a mount namespace of its own or takes away what FUSE mounts need', () => {
    const forbidden = ['PrivateMounts', 'PrivateTmp', 'PrivateDevices', 'ProtectSystem', 'ProtectHome', 'ProtectKernelTunables',
      'ProtectControlGroups', 'ReadOnlyPaths', 'ReadWritePaths', 'InaccessiblePaths', 'TemporaryFileSystem', 'BindPaths',
      'BindReadOnlyPaths', 'MountFlags', 'RootDirectory', 'RootImage', 'DevicePolicy', 'DeviceAllow', 'CapabilityBoundingSet',
      'AmbientCapabilities', 'User', 'DynamicUser', 'SystemCallFilter'];
    const service = unit.get('Service') ?? new Map<string, string[]>();
    assert.deepEqual(forbidden.filter((k) => service.has(k)), []);
  });
});

describe('deploy/config.toml', () => {
  test('the daemon accepts it, and it names the default store', async () => {
    const c = await loadConfig(DAEMON_CONFIG, true);
    assert.deepEqual(c, { repository: 'unpacked.cern.ch', absoluteMountpoint: '/cvmfs/unpacked.cern.ch', metadataCacheEntries: 200_000, metadataCacheBytes: 64 * 1024 * 1024, fusePassthrough: true, storeTimeoutSec: 180, storeCheckTimeoutSec: 5, layerWalkEntries: 200_000, fuseBusyPollUs: 20 });
  });
});

// The files in deploy/ for a machine with systemd: the unit passes systemd's own checker and
// says what the design needs (before containerd, restart on failure, a restart that leaves the
// FUSE side alone, no sandboxing that hides mounts); containerd reads the snippet with the CRI
// settings where they take effect; the daemon accepts the example config.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'smol-toml';
import { DEFAULT_ADDRESS, loadConfig } from '../../src/cli/config.js';
import { exec } from '../../src/sys/exec.js';
import { daemonBin, repoRoot } from '../helpers/paths.js';

const UNIT = join(repoRoot, 'deploy', 'systemd', 'cvmfs-snapshotter.service');
const CONTAINERD_SNIPPET = join(repoRoot, 'deploy', 'containerd', 'config.toml');
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

/** `systemd-analyze verify` on a copy of the unit text; its complaints about our unit. */
async function verify(dir: string, text: string): Promise<{ code: number | null; complaints: string[]; output: string }> {
  const file = join(dir, 'cvmfs-snapshotter.service');
  await writeFile(file, text);
  const r = await exec('systemd-analyze', ['verify', '--man=no', file], { timeoutMs: 60_000 });
  const output = `${r.stdout}${r.stderr}`;
  // Unknown keys and bad values are only warnings ("ignoring"), with exit code 0: read them.
  return { code: r.code, complaints: output.split('\n').filter((l) => l.includes('cvmfs-snapshotter.service')), output };
}

describe('deploy/systemd/cvmfs-snapshotter.service', () => {
  let dir: string;
  let text: string;
  let unit: UnitFile;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cvmfs-unit-'));
    text = await readFile(UNIT, 'utf8');
    unit = parseUnit(text);
  });
  after(async () => { if (dir) await rm(dir, { recursive: true, force: true }); });

  /** The unit as installed, but starting this repository's bin (systemd checks that it exists). */
  const withRepoBin = (t: string): string => {
    assert.equal(values(unit, 'Service', 'ExecStart')[0], INSTALLED_BIN, `ExecStart runs ${INSTALLED_BIN}`);
    return t.replace(`ExecStart=${INSTALLED_BIN}`, `ExecStart=${daemonBin}`);
  };

  test('systemd-analyze verify accepts it without a warning', async () => {
    const r = await verify(dir, withRepoBin(text));
    assert.equal(r.code, 0, r.output);
    assert.deepEqual(r.complaints, [], r.output);
  });

  test('systemd-analyze verify catches a broken copy (the check above can fail)', async () => {
    const typo = await verify(dir, withRepoBin(text).replace('KillMode=process', 'KillMode=proces'));
    assert.ok(typo.complaints.some((l) => /kill mode/i.test(l)), `a bad KillMode is reported: ${typo.output}`);
    const missing = await verify(dir, text.replace(`ExecStart=${INSTALLED_BIN}`, `ExecStart=${join(dir, 'no-such-binary')}`));
    assert.notEqual(missing.code, 0, `a missing binary fails verify: ${missing.output}`);
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

describe('deploy/containerd/config.toml', () => {
  test('containerd reads it with the proxy plugin and the CRI settings in force (config dump)', async () => {
    const r = await exec('containerd', ['--config', CONTAINERD_SNIPPET, 'config', 'dump'], { timeoutMs: 60_000 });
    assert.equal(r.code, 0, r.stderr);
    // The dump is the merged config with every default: a key in the wrong table shows its default here.
    const dump = parse(r.stdout) as {
      proxy_plugins?: Record<string, { type?: string; address?: string }>;
      plugins?: Record<string, { containerd?: { snapshotter?: string; disable_snapshot_annotations?: boolean } }>;
    };
    assert.deepEqual({ ...dump.proxy_plugins?.['cvmfs-snapshotter'] }, { type: 'snapshot', address: DEFAULT_ADDRESS });
    const cri = dump.plugins?.['io.containerd.grpc.v1.cri']?.containerd;
    assert.equal(cri?.snapshotter, 'cvmfs-snapshotter');
    assert.equal(cri?.disable_snapshot_annotations, false);
  });
});

describe('deploy/config.toml', () => {
  test('the daemon accepts it, and it names the default store', async () => {
    const c = await loadConfig(DAEMON_CONFIG, true);
    assert.deepEqual(c, { repository: 'unpacked.cern.ch', absoluteMountpoint: '/cvmfs/unpacked.cern.ch', metadataCacheEntries: 200_000, metadataCacheBytes: 64 * 1024 * 1024, fusePassthrough: true, storeTimeoutSec: 180, storeCheckTimeoutSec: 5, layerWalkEntries: 200_000 });
  });
});

// The files in deploy/ against the programs that read them: the systemd unit passes systemd's own
// checker, and containerd reads the snippet with the CRI settings where they take effect. What
// the files say, read as text, is checked in test/unit/deploy-systemd.test.ts.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'smol-toml';
import { DEFAULT_ADDRESS } from '../../src/cli/config.js';
import { exec } from '../../src/sys/exec.js';
import { daemonBin, repoRoot } from '../helpers/paths.js';

const UNIT = join(repoRoot, 'deploy', 'systemd', 'cvmfs-snapshotter.service');
const CONTAINERD_SNIPPET = join(repoRoot, 'deploy', 'containerd', 'config.toml');
const INSTALLED_BIN = '/usr/local/bin/cvmfs-snapshotter';

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
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cvmfs-unit-'));
    text = await readFile(UNIT, 'utf8');
  });
  after(async () => { if (dir) await rm(dir, { recursive: true, force: true }); });

  /** The unit as installed, but starting this repository's bin (systemd checks that it exists). */
  const withRepoBin = (t: string): string => {
    assert.ok(t.includes(`ExecStart=${INSTALLED_BIN}`), `ExecStart runs ${INSTALLED_BIN}`);
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

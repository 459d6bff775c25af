// doctor's reading of containerd's config.toml: where each CRI setting must sit for each config
// version, what a misplaced key looks like, and the proxy plugin that must point at our socket.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parse } from 'smol-toml';
import {
  analyzeContainerdConfig, checkContainerdBinary, mergeContainerdConfigs, tableName, tablesHolding,
  type ContainerdBinary, type ContainerdConfigFile,
} from '../../src/cli/doctor/containerd-config.js';
import type { Finding } from '../../src/cli/doctor/findings.js';

const SOCK = '/run/containerd-cvmfs-grpc/containerd-cvmfs-grpc.sock';
const CTD_16: ContainerdBinary = { version: '1.6.20~ds1', major: 1, minor: 6 };
const CTD_20: ContainerdBinary = { version: '2.0.4', major: 2, minor: 0 };
const CRI = '[plugins."io.containerd.grpc.v1.cri".containerd]';

const PROXY = `
[proxy_plugins]
  [proxy_plugins.cvmfs-snapshotter]
    type = "snapshot"
    address = "${SOCK}"
`;

const GOOD_V2 = `version = 2
[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "registry.k8s.io/pause:3.6"
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "cvmfs-snapshotter"
      disable_snapshot_annotations = false
${PROXY}`;

function files(...texts: string[]): ContainerdConfigFile[] {
  return texts.map((t, i) => ({ path: i === 0 ? '/etc/containerd/config.toml' : `/etc/containerd/conf.d/${i}.toml`, doc: parse(t) as Record<string, unknown> }));
}

function analyze(texts: string | string[], o: { address?: string; binary?: ContainerdBinary | undefined; canonical?: (p: string) => string } = {}): Finding[] {
  return analyzeContainerdConfig({
    facts: { state: 'ok', files: files(...(typeof texts === 'string' ? [texts] : texts)) },
    address: o.address ?? SOCK,
    canonical: o.canonical ?? ((p) => p),
    binary: 'binary' in o ? o.binary : CTD_16,
  });
}

const fails = (fs: Finding[]): string[] => fs.filter((f) => f.level === 'fail').map((f) => f.message);
const warns = (fs: Finding[]): string[] => fs.filter((f) => f.level === 'warn').map((f) => f.message);
const byCheck = (fs: Finding[], check: string): Finding[] => fs.filter((f) => f.check === check);

test('the README configuration passes every check', () => {
  const fs = analyze(GOOD_V2);
  assert.deepEqual(fails(fs), []);
  assert.deepEqual(warns(fs), []);
  assert.deepEqual(fs.map((f) => f.check), ['containerd.version', 'containerd.proxy', 'containerd.snapshotter', 'containerd.annotations']);
  assert.equal(byCheck(fs, 'containerd.annotations')[0]?.message, `disable_snapshot_annotations = false (${CRI}), so CRI passes each layer's digest`);
  assert.equal(byCheck(fs, 'containerd.proxy')[0]?.message, `[proxy_plugins.cvmfs-snapshotter] has type "snapshot" and address ${SOCK}`);
  assert.ok(fs.every((f) => f.subject === 'containerd'));
});

test('the same settings written as dotted keys or inline tables are found', () => {
  const dotted = `version = 2
[plugins."io.containerd.grpc.v1.cri"]
  containerd.snapshotter = "cvmfs-snapshotter"
  containerd.disable_snapshot_annotations = false
[proxy_plugins]
  cvmfs-snapshotter = { type = "snapshot", address = "${SOCK}" }
`;
  assert.deepEqual(fails(analyze(dotted)), []);
});

test('disable_snapshot_annotations under any other table is misplaced, and doctor says where it must go', () => {
  const cases: Array<{ where: string; toml: string }> = [
    {
      where: '[plugins."io.containerd.grpc.v1.cri"]',
      toml: `version = 2\n[plugins."io.containerd.grpc.v1.cri"]\n  disable_snapshot_annotations = false\n  [plugins."io.containerd.grpc.v1.cri".containerd]\n    snapshotter = "cvmfs-snapshotter"\n${PROXY}`,
    },
    {
      where: 'the top level',
      toml: `version = 2\ndisable_snapshot_annotations = false\n[plugins."io.containerd.grpc.v1.cri".containerd]\n  snapshotter = "cvmfs-snapshotter"\n${PROXY}`,
    },
    {
      where: '[plugins]',
      toml: `version = 2\n[plugins]\n  disable_snapshot_annotations = false\n[plugins."io.containerd.grpc.v1.cri".containerd]\n  snapshotter = "cvmfs-snapshotter"\n${PROXY}`,
    },
    {
      where: '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]',
      toml: `version = 2\n[plugins."io.containerd.grpc.v1.cri".containerd]\n  snapshotter = "cvmfs-snapshotter"\n[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]\n  disable_snapshot_annotations = false\n${PROXY}`,
    },
    {
      where: '[proxy_plugins.cvmfs-snapshotter]',
      toml: `version = 2\n[plugins."io.containerd.grpc.v1.cri".containerd]\n  snapshotter = "cvmfs-snapshotter"\n${PROXY}    disable_snapshot_annotations = false\n`,
    },
    {
      // containerd 2's table, in a version 2 file read by containerd 1.6.
      where: '[plugins."io.containerd.cri.v1.images"]',
      toml: `version = 2\n[plugins."io.containerd.cri.v1.images"]\n  disable_snapshot_annotations = false\n[plugins."io.containerd.grpc.v1.cri".containerd]\n  snapshotter = "cvmfs-snapshotter"\n${PROXY}`,
    },
  ];
  for (const c of cases) {
    const fs = analyze(c.toml);
    assert.deepEqual(fails(fs), [
      `disable_snapshot_annotations sits under ${c.where}; move it to ${CRI} or CRI ignores it and pulls every layer`,
    ], c.where);
    assert.equal(byCheck(fs, 'containerd.annotations')[0]?.level, 'fail');
  }
});

test('a misplaced copy next to a correct one is only a warning', () => {
  const toml = GOOD_V2.replace('sandbox_image', 'disable_snapshot_annotations = true\n    sandbox_image');
  const fs = analyze(toml);
  assert.deepEqual(fails(fs), []);
  assert.deepEqual(warns(fs), ['another disable_snapshot_annotations under [plugins."io.containerd.grpc.v1.cri"] is ignored by containerd: remove it']);
});

test('a misplaced key while the right table says true: move it there in place of the true', () => {
  const toml = `version = 2\n[plugins."io.containerd.grpc.v1.cri"]\n  disable_snapshot_annotations = false\n  [plugins."io.containerd.grpc.v1.cri".containerd]\n    snapshotter = "cvmfs-snapshotter"\n    disable_snapshot_annotations = true\n${PROXY}`;
  assert.deepEqual(fails(analyze(toml)), [
    `disable_snapshot_annotations sits under [plugins."io.containerd.grpc.v1.cri"]; move it to ${CRI} (in place of the true there) or CRI ignores it and pulls every layer`,
  ]);
});

test('disable_snapshot_annotations missing, true, or a string', () => {
  const without = GOOD_V2.replace('      disable_snapshot_annotations = false\n', '');
  assert.deepEqual(fails(analyze(without)), [
    `disable_snapshot_annotations is not set, and containerd's default is true, so CRI passes no layer digests and pulls every layer: add disable_snapshot_annotations = false under ${CRI}`,
  ]);
  assert.deepEqual(fails(analyze(GOOD_V2.replace('disable_snapshot_annotations = false', 'disable_snapshot_annotations = true'))), [
    `disable_snapshot_annotations = true under ${CRI}, so CRI passes no layer digests and pulls every layer: set it to false`,
  ]);
  assert.match(fails(analyze(GOOD_V2.replace('disable_snapshot_annotations = false', 'disable_snapshot_annotations = "false"'))).join(), /is "false", not a boolean.*\(no quotes\)/);
});

test('the proxy plugin: missing, renamed, wrong type, wrong or equivalent address', () => {
  const noProxy = GOOD_V2.slice(0, GOOD_V2.indexOf('[proxy_plugins]'));
  assert.deepEqual(fails(analyze(noProxy)), [
    `no [proxy_plugins.cvmfs-snapshotter]: add it with type = "snapshot" and address = "${SOCK}", then restart containerd`,
  ]);

  const renamed = GOOD_V2.replace('[proxy_plugins.cvmfs-snapshotter]', '[proxy_plugins.cvmfs]');
  assert.match(fails(analyze(renamed)).join(), /the proxy plugin for .* is named "cvmfs": rename its table to \[proxy_plugins\.cvmfs-snapshotter\]/);

  assert.match(fails(analyze(GOOD_V2.replace('type = "snapshot"', 'type = "content"'))).join(), /has type = "content", so containerd does not load it as a snapshotter: set type = "snapshot"/);

  const other = GOOD_V2.replace(`address = "${SOCK}"`, 'address = "/run/other/other.sock"');
  assert.deepEqual(fails(analyze(other)), [
    `[proxy_plugins.cvmfs-snapshotter] has address = "/run/other/other.sock", but the daemon serves on ${SOCK}: set address = "${SOCK}" (or run the daemon with --address /run/other/other.sock)`,
  ]);
  // The daemon's own --address decides: the same file is right for a daemon on the other socket.
  assert.deepEqual(fails(analyze(other, { address: '/run/other/other.sock' })), []);

  // /var/run is a link to /run: the same socket under two names is fine.
  const viaVarRun = GOOD_V2.replace(`address = "${SOCK}"`, `address = "/var${SOCK}"`);
  assert.deepEqual(fails(analyze(viaVarRun, { canonical: (p) => p.replace(/^\/var\/run\//, '/run/') })), []);
  assert.equal(fails(analyze(viaVarRun)).length, 1);
});

test('the CRI snapshotter: wrong, unset, or misplaced', () => {
  assert.deepEqual(fails(analyze(GOOD_V2.replace('snapshotter = "cvmfs-snapshotter"', 'snapshotter = "overlayfs"'))), [
    `CRI's snapshotter is "overlayfs": set snapshotter = "cvmfs-snapshotter" under ${CRI}, or CRI pulls never use cvmfs-snapshotter`,
  ]);
  assert.match(fails(analyze(GOOD_V2.replace('      snapshotter = "cvmfs-snapshotter"\n', ''))).join(), /CRI's snapshotter is not set \(so it is "overlayfs"\)/);
  const misplaced = GOOD_V2.replace('      snapshotter = "cvmfs-snapshotter"\n', '').replace('sandbox_image', 'snapshotter = "cvmfs-snapshotter"\n    sandbox_image');
  assert.deepEqual(fails(analyze(misplaced)), [
    `snapshotter = "cvmfs-snapshotter" sits under [plugins."io.containerd.grpc.v1.cri"], where CRI does not read it as its snapshotter: move it to ${CRI}`,
  ]);
});

test('disabled_plugins that switch CRI or the proxy plugin off', () => {
  const fs = analyze(GOOD_V2.replace('version = 2', 'version = 2\ndisabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.cvmfs-snapshotter", "io.containerd.snapshotter.v1.btrfs"]'));
  assert.deepEqual(fails(fs), [
    'disabled_plugins lists "io.containerd.grpc.v1.cri", which switches off CRI, which lazy pulls (Kubernetes, "cvmfs-snapshotter pull") need: remove it',
    'disabled_plugins lists "io.containerd.snapshotter.v1.cvmfs-snapshotter", which switches off the cvmfs-snapshotter proxy plugin: remove it',
  ]);
});

test('config version 1 uses [plugins.cri.containerd]; version 2 refuses that short name', () => {
  const v1 = `[plugins.cri.containerd]\n  snapshotter = "cvmfs-snapshotter"\n  disable_snapshot_annotations = false\n${PROXY}`;
  const fs = analyze(v1);
  assert.deepEqual(fails(fs), []);
  assert.match(warns(fs).join(), /config version 1 \(no version line\), deprecated/);

  // The version 2 name in a version 1 file is ignored by containerd 1.6.
  const v1WithV2Names = `[plugins."io.containerd.grpc.v1.cri".containerd]\n  snapshotter = "cvmfs-snapshotter"\n  disable_snapshot_annotations = false\n${PROXY}`;
  assert.match(fails(analyze(v1WithV2Names)).join('\n'), /disable_snapshot_annotations sits under \[plugins\."io\.containerd\.grpc\.v1\.cri"\.containerd\]; move it to \[plugins\.cri\.containerd\]/);

  const v2WithV1Names = `version = 2\n${v1}`;
  const f2 = fails(analyze(v2WithV1Names));
  assert.match(f2[0] ?? '', /^\[plugins\.cri\] is not a full plugin name, so containerd refuses to start \("invalid plugin key URI"\); version 2 calls it "io\.containerd\.grpc\.v1\.cri"/);
  assert.ok(f2.some((m) => m.startsWith(`disable_snapshot_annotations sits under [plugins.cri.containerd]; move it to ${CRI}`)), f2.join('\n'));
});

test('config version 3 (containerd 2) keeps the settings in the images plugin', () => {
  const v3 = `version = 3\n[plugins."io.containerd.cri.v1.images"]\n  snapshotter = "cvmfs-snapshotter"\n  disable_snapshot_annotations = false\n${PROXY}`;
  assert.deepEqual(fails(analyze(v3, { binary: CTD_20 })), []);
  assert.deepEqual(fails(analyze(v3, { binary: undefined })), []);
  assert.match(fails(analyze(v3, { binary: CTD_16 })).join(), /version = 3 is containerd 2's format, but containerd here is 1\.6\.20~ds1/);
  // A version 2 layout under version = 3 is misplaced.
  assert.match(fails(analyze(GOOD_V2.replace('version = 2', 'version = 3'), { binary: CTD_20 })).join('\n'),
    /disable_snapshot_annotations sits under \[plugins\."io\.containerd\.grpc\.v1\.cri"\.containerd\]; move it to \[plugins\."io\.containerd\.cri\.v1\.images"\]/);
  assert.match(fails(analyze(`[plugins.cri.containerd]\n  snapshotter = "x"\n`, { binary: CTD_20 })).join(), /is version 1, which containerd 2\.0\.4 does not read/);
  assert.match(fails(analyze('version = 7\n')).join(), /version = 7 is not a containerd config version/);
});

test('imports: later files replace whole plugin sections, and a misplaced key is found in any file', () => {
  const main = `version = 2\nimports = ["/etc/containerd/conf.d/*.toml"]\n${PROXY}`;
  const cri = `[plugins."io.containerd.grpc.v1.cri".containerd]\n  snapshotter = "cvmfs-snapshotter"\n  disable_snapshot_annotations = false\n`;
  assert.deepEqual(fails(analyze([main, cri])), []);
  assert.match(analyze([main, cri])[0]?.message ?? '', /\(with imports \/etc\/containerd\/conf\.d\/1\.toml\)/);
  // A later file's [plugins."io.containerd.grpc.v1.cri"] replaces the whole section, settings included.
  const later = `[plugins."io.containerd.grpc.v1.cri"]\n  sandbox_image = "x"\n  disable_snapshot_annotations = false\n`;
  const fs = fails(analyze([main, cri, later]));
  assert.ok(fs.some((m) => m.startsWith('CRI\'s snapshotter is not set')), fs.join('\n'));
  assert.ok(fs.some((m) => m === `disable_snapshot_annotations sits under [plugins."io.containerd.grpc.v1.cri"] in /etc/containerd/conf.d/2.toml; move it to ${CRI} or CRI ignores it and pulls every layer`), fs.join('\n'));

  const m = mergeContainerdConfigs(files('version = 2\ndisabled_plugins = ["a.b.c.d"]\n', 'disabled_plugins = ["e.f.g.h"]\n'));
  assert.deepEqual(m.disabledPlugins, ['a.b.c.d', 'e.f.g.h']);
  assert.equal(m.version, 2);
});

test('a missing or unreadable config', () => {
  const missing = analyzeContainerdConfig({ facts: { state: 'missing', path: '/etc/containerd/config.toml' }, address: SOCK, canonical: (p) => p, binary: CTD_16 });
  assert.deepEqual(missing.map((f) => f.level), ['fail']);
  assert.match(missing[0]?.message ?? '', /^no config at \/etc\/containerd\/config\.toml, so containerd runs with defaults/);
  const bad = analyzeContainerdConfig({ facts: { state: 'error', path: '/c.toml', error: '/c.toml: not valid TOML: x' }, address: SOCK, canonical: (p) => p, binary: CTD_16 });
  assert.equal(bad[0]?.message, '/c.toml: not valid TOML: x; containerd will not start with it');
});

test('table names print as TOML headers; the search walks every table', () => {
  assert.equal(tableName([]), 'the top level');
  assert.equal(tableName(['plugins', 'io.containerd.grpc.v1.cri', 'containerd']), CRI);
  assert.equal(tableName(['proxy_plugins', 'cvmfs-snapshotter']), '[proxy_plugins.cvmfs-snapshotter]');
  const doc = parse('k = 1\n[a]\nk = 2\n[a.b]\nk = 3\n[[arr]]\nk = 4\n') as Record<string, unknown>;
  assert.deepEqual(tablesHolding(doc, 'k').map((h) => h.path), [[], ['a'], ['a', 'b']]);
});

test('the containerd binary', () => {
  assert.equal(checkContainerdBinary(CTD_16).level, 'ok');
  assert.equal(checkContainerdBinary(CTD_20).level, 'ok');
  assert.equal(checkContainerdBinary({ version: '1.5.18', major: 1, minor: 5 }).level, 'warn');
  assert.equal(checkContainerdBinary(undefined).level, 'warn');
});

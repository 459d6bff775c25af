// doctor's judgements of the node, the store, the socket and the root, over facts written by hand.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { exitCode, finding, formatFinding, octal } from '../../src/cli/doctor/findings.js';
import {
  checkDevFuse, checkFilesystem, checkKernel, checkLibfuse, checkUser, kernelVersion, ldconfigPaths, moduleListed, procFilesystems,
} from '../../src/cli/doctor/host.js';
import { checkReadMode } from '../../src/cli/doctor/read-mode.js';
import { checkConfig, checkStore, type ConfigFacts } from '../../src/cli/doctor/store.js';
import { checkDaemon, checkRoot, type DaemonFacts } from '../../src/cli/doctor/daemon.js';

test('a finding is one line: level padded to six, subject, message; only FAIL fails', () => {
  const ok = finding('fuse.device', '/dev/fuse', 'ok', 'character device 10:229, openable');
  assert.equal(formatFinding(ok), 'ok    /dev/fuse: character device 10:229, openable');
  assert.equal(formatFinding(finding('c', 'containerd', 'fail', 'x')), 'FAIL  containerd: x');
  assert.equal(formatFinding(finding('r', 'root', 'warn', 'y')), 'warn  root: y');
  assert.equal(exitCode([ok, finding('r', 'root', 'warn', 'y')]), 0);
  assert.equal(exitCode([ok, finding('c', 'c', 'fail', 'x')]), 1);
  assert.equal(octal(0o40700), '0700');
  assert.equal(octal(0o4755), '04755');
});

test('/dev/fuse: present, missing, wrong device, not openable', () => {
  const dev = { state: 'present' as const, kind: 'char' as const, major: 10, minor: 229 };
  assert.deepEqual(checkDevFuse({ path: '/dev/fuse', stat: dev, open: 'ok' }), finding('fuse.device', '/dev/fuse', 'ok', 'character device 10:229, openable'));
  assert.match(checkDevFuse({ path: '/dev/fuse', stat: { state: 'missing' }, open: undefined }).message, /^missing: load the fuse module \(modprobe fuse\)/);
  const wrong = checkDevFuse({ path: '/dev/fuse', stat: { ...dev, minor: 3, major: 1 }, open: 'ok' });
  assert.equal(wrong.level, 'fail');
  assert.match(wrong.message, /character device 1:3, not 10:229.*mknod \/dev\/fuse c 10 229/);
  assert.match(checkDevFuse({ path: '/dev/fuse', stat: { ...dev, kind: 'file' }, open: undefined }).message, /is a file, not a character device/);
  const denied = checkDevFuse({ path: '/dev/fuse', stat: dev, open: 'EPERM' });
  assert.equal(denied.level, 'fail');
  assert.match(denied.message, /opening it read\/write failed \(EPERM\).*c 10:229 rwm/);
});

test('libfuse2 is found from ldconfig -p or the library directories, and is reported as not needed', () => {
  const out = `1234 libs found in cache \`/etc/ld.so.cache'
\tlibfuse.so.2 (libc6,x86-64) => /lib/x86_64-linux-gnu/libfuse.so.2
\tlibfuse.so (libc6,x86-64) => /lib/x86_64-linux-gnu/libfuse.so
\tlibfuse3.so.3 (libc6,x86-64) => /lib/x86_64-linux-gnu/libfuse3.so.3
`;
  assert.deepEqual(ldconfigPaths(out, 'libfuse.so.2'), ['/lib/x86_64-linux-gnu/libfuse.so.2']);
  assert.deepEqual(ldconfigPaths(out, 'libfuse.so.3'), []);
  const cached = checkLibfuse({ name: 'libfuse.so.2', fromLdconfig: ['/lib/x86_64-linux-gnu/libfuse.so.2'], fromDirs: [] });
  assert.equal(cached.level, 'ok');
  assert.equal(checkLibfuse({ name: 'libfuse.so.2', fromLdconfig: [], fromDirs: [] }).level, 'ok', 'libfuse is not needed any more');
  assert.match(checkLibfuse({ name: 'libfuse.so.2', fromLdconfig: [], fromDirs: [] }).message, /not installed; not needed/);
  assert.equal(checkLibfuse({ name: 'libfuse.so.2', fromLdconfig: undefined, fromDirs: ['/usr/lib/libfuse.so.2'] }).level, 'ok');
});

test('overlay and fuse: registered, loadable as a module, or absent', () => {
  const fsList = procFilesystems('nodev\tsysfs\n\text4\nnodev\toverlay\nfuseblk\nnodev\tfuse\n');
  assert.ok(fsList.has('overlay') && fsList.has('fuse') && fsList.has('ext4') && !fsList.has('nodev'));
  const dep = 'kernel/fs/overlayfs/overlay.ko.xz: kernel/fs/other.ko\nkernel/fs/fuse/cuse.ko:\n';
  assert.equal(moduleListed(dep, 'overlay'), true);
  assert.equal(moduleListed(dep, 'fuse'), false);
  assert.equal(moduleListed('kernel/fs/fuse/fuse.ko\n', 'fuse'), true);
  const base = { name: 'overlay', kernelRelease: '6.1.0-18-amd64' };
  assert.equal(checkFilesystem({ ...base, registered: true, module: undefined }).level, 'ok');
  const loadable = checkFilesystem({ ...base, registered: false, module: true });
  assert.equal(loadable.level, 'ok');
  assert.match(loadable.message, /the first mount loads it/);
  const absent = checkFilesystem({ ...base, registered: false, module: false });
  assert.equal(absent.level, 'fail');
  assert.equal(absent.subject, 'overlayfs');
  assert.match(absent.message, /CONFIG_OVERLAY_FS/);
  assert.match(checkFilesystem({ ...base, registered: false, module: undefined }).message, /there is no \/lib\/modules\/6\.1\.0-18-amd64/);
});

test('the kernel must be 4.13 or newer', () => {
  assert.deepEqual(kernelVersion('6.18.44-fc-v595'), [6, 18]);
  assert.equal(kernelVersion('weird'), undefined);
  assert.equal(checkKernel('6.18.44-fc-v595').level, 'ok');
  assert.equal(checkKernel('4.13.0').level, 'ok');
  assert.equal(checkKernel('5.0.0').level, 'ok');
  const old = checkKernel('4.9.0-13-amd64');
  assert.equal(old.level, 'fail');
  assert.match(old.message, /older than 4\.13.*index=off/);
  assert.equal(checkKernel('3.10.0-1160.el7.x86_64').level, 'fail');
  assert.equal(checkKernel('weird').level, 'warn');
  assert.equal(checkUser(0).level, 'ok');
  assert.equal(checkUser(1000).level, 'warn');
});

const config: ConfigFacts = { state: 'ok', file: '/etc/c.toml', fromFile: true, repository: 'unpacked.cern.ch', storeRoot: '/cvmfs/unpacked.cern.ch', fusePassthrough: true };

test('the config: read, defaulted, or broken', () => {
  assert.equal(checkConfig(config).message, '/etc/c.toml: repository unpacked.cern.ch, store /cvmfs/unpacked.cern.ch');
  assert.match(checkConfig({ ...config, fromFile: false }).message, /absent, so the defaults apply/);
  const bad = checkConfig({ state: 'error', file: '/etc/c.toml', error: '/etc/c.toml: unknown key "repo"' });
  assert.equal(bad.level, 'fail');
  assert.match(bad.message, /unknown key "repo"; the daemon will not start with it/);
  assert.deepEqual(checkStore({ state: 'error', file: 'x', error: 'y' }, { state: 'empty' }), []);
});

test('the store: a sample layer, or what is wrong with it', () => {
  const levels = (p: Parameters<typeof checkStore>[1]): string[] => checkStore(config, p).map((f) => `${f.subject}:${f.level}`);
  const digest = `sha256:${'ab'.repeat(32)}`;
  const good = checkStore(config, { state: 'layer', digest, path: '/x', entries: 3 });
  assert.deepEqual(good.map((f) => f.level), ['ok', 'ok']);
  assert.equal(good[1]?.message, `${digest}: layerfs lists 3 entries`);
  assert.deepEqual(levels({ state: 'empty' }), ['store:ok', 'store layer:warn']);
  assert.deepEqual(levels({ state: 'root-missing' }), ['store:fail']);
  assert.match(checkStore(config, { state: 'root-missing' })[0]?.message ?? '', /\/cvmfs\/unpacked\.cern\.ch does not exist: mount the CernVM-FS repository unpacked\.cern\.ch/);
  assert.deepEqual(levels({ state: 'layers-missing' }), ['store:fail']);
  assert.match(checkStore(config, { state: 'not-dir', path: '/cvmfs/unpacked.cern.ch/.layers', is: 'symlink' })[0]?.message ?? '', /is a symlink, not a directory: the daemon follows no links/);
  assert.deepEqual(levels({ state: 'error', path: '/cvmfs/unpacked.cern.ch/.layers', error: 'EIO' }), ['store:fail']);
  assert.deepEqual(levels({ state: 'no-layerfs', examined: ['/a'] }), ['store:ok', 'store layer:fail']);
  const unlistable = checkStore(config, { state: 'unlistable', digest, path: '/x/layerfs', error: 'EACCES' });
  assert.equal(unlistable[1]?.level, 'fail');
  assert.match(unlistable[1]?.message ?? '', /cannot list \/x\/layerfs \(EACCES\)/);
});

const SOCK = '/run/s/s.sock';
const healthy: DaemonFacts = {
  address: SOCK,
  socketDir: '/run/s',
  socket: { state: 'present', kind: 'socket', mode: 0o140600, uid: 0 },
  dir: { state: 'present', kind: 'dir', mode: 0o40700, uid: 0 },
  probe: { state: 'answered', code: status.NOT_FOUND, details: 'snapshot does not exist' },
};

test('socket and its directory: 0600 and 0700, owned by root; a daemon that answers', () => {
  const fs = checkDaemon(healthy);
  assert.deepEqual(fs.map((f) => `${f.subject}:${f.level}`), ['socket dir:ok', 'socket:ok', 'daemon:ok']);
  assert.equal(fs[2]?.message, `answers on ${SOCK} (Stat of an unknown key: NOT_FOUND)`);

  const openDir = checkDaemon({ ...healthy, dir: { state: 'present', kind: 'dir', mode: 0o40755, uid: 0 } });
  assert.equal(openDir[0]?.level, 'fail');
  assert.match(openDir[0]?.message ?? '', /^\/run\/s is 0755; only root may reach the socket.*: chmod 0700 \/run\/s$/);
  const stricter = checkDaemon({ ...healthy, dir: { state: 'present', kind: 'dir', mode: 0o40500, uid: 0 } });
  assert.equal(stricter[0]?.level, 'warn');
  const notRoot = checkDaemon({ ...healthy, socket: { state: 'present', kind: 'socket', mode: 0o140600, uid: 1000 } });
  assert.match(notRoot[1]?.message ?? '', /owned by uid 1000, not root: chown root:root \/run\/s\/s\.sock/);
  const openSock = checkDaemon({ ...healthy, socket: { state: 'present', kind: 'socket', mode: 0o140666, uid: 0 } });
  assert.equal(openSock[1]?.level, 'fail');
  assert.match(openSock[1]?.message ?? '', /is 0666.*chmod 0600 .*\(a restarted daemon makes it 0600\)/);
  const file = checkDaemon({ ...healthy, socket: { state: 'present', kind: 'file', mode: 0o100644, uid: 0 }, probe: { state: 'skipped' } });
  assert.deepEqual(file.map((f) => f.level), ['ok', 'fail', 'fail']);
});

test('the daemon: missing socket, stale socket, something else, hung', () => {
  const gone = checkDaemon({ ...healthy, socket: { state: 'missing' }, dir: { state: 'missing' }, probe: { state: 'skipped' } });
  assert.deepEqual(gone.map((f) => `${f.subject}:${f.level}`), ['daemon:fail']);
  assert.match(gone[0]?.message ?? '', /^not running: there is no socket at \/run\/s\/s\.sock; start it/);
  const stale = checkDaemon({ ...healthy, probe: { state: 'answered', code: status.UNAVAILABLE, details: `No connection established. Last error: Error: connect ECONNREFUSED ${SOCK}. Resolution note: ` } });
  assert.equal(stale[2]?.message, `nothing answers on ${SOCK} (connection refused): the socket is stale, its daemon is gone; start the daemon (cvmfs-snapshotter --address ${SOCK}), which replaces a stale socket`);
  const other = checkDaemon({ ...healthy, probe: { state: 'answered', code: status.UNIMPLEMENTED, details: 'unknown service' } });
  assert.match(other[2]?.message ?? '', /does not speak containerd's snapshots API/);
  const hung = checkDaemon({ ...healthy, probe: { state: 'timeout', ms: 5000 } });
  assert.match(hung[2]?.message ?? '', /nothing answered on .* within 5 s/);
  const odd = checkDaemon({ ...healthy, probe: { state: 'answered', code: status.INTERNAL, details: 'boom' } });
  assert.equal(odd[2]?.level, 'fail');
});

test('the root directory', () => {
  const root = (mode: number, uid = 0, metadataDb = true) => checkRoot({ root: '/var/lib/c', dir: { state: 'present', kind: 'dir', mode, uid }, metadataDb });
  assert.equal(root(0o40700).message, '/var/lib/c is 0700, owned by root; metadata.db present');
  assert.match(root(0o40700, 0, false).message, /no metadata\.db yet/);
  assert.equal(root(0o40755).level, 'warn');
  assert.equal(root(0o40777).level, 'fail');
  assert.equal(root(0o40770).level, 'fail');
  assert.equal(root(0o40700, 1000).level, 'fail');
  assert.equal(checkRoot({ root: '/var/lib/c', dir: { state: 'missing' }, metadataDb: false }).level, 'warn');
  assert.equal(checkRoot({ root: '/var/lib/c', dir: { state: 'present', kind: 'file', mode: 0o100600, uid: 0 }, metadataDb: false }).level, 'fail');
});

test('read mode: passthrough on the store, refused by the store\'s filesystem, not offered, turned off, not probed', () => {
  const ok = checkReadMode({ state: 'probed', kernel: true, storeFile: { path: '/s/f', passthrough: true } }, '6.18.0');
  assert.equal(ok.level, 'ok');
  assert.match(ok.message, /straight from the store.*\/s\/f/);
  const stacked = checkReadMode({ state: 'probed', kernel: true, storeFile: { path: '/s/f', passthrough: false, refusedWith: 'ELOOP' } }, '6.18.0');
  assert.equal(stacked.level, 'warn');
  assert.match(stacked.message, /stacked.*served by the FUSE server/);
  const old = checkReadMode({ state: 'probed', kernel: false }, '6.1.0');
  assert.equal(old.level, 'warn');
  assert.match(old.message, /6\.1\.0 does not offer FUSE passthrough \(Linux 6\.9 or later does\)/);
  assert.equal(checkReadMode({ state: 'disabled' }, '6.18.0').level, 'ok');
  assert.match(checkReadMode({ state: 'skipped', why: 'mounting needs root' }, '6.18.0').message, /run doctor as root/);
  assert.equal(checkReadMode({ state: 'probe-failed', error: 'x' }, '6.18.0').level, 'warn');
});

// Every write-type system call on a layer mount fails, as root and as another user, and the
// layer on disk stays as it was. The answer is EROFS wherever the call reaches the filesystem;
// where the kernel refuses first for another reason (an existing name, a descriptor opened
// read-only, a rename to another mount) the test pins that answer too, so a change shows.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { FuseLayerMounter } from '../../src/fuse/index.js';
import { silentLogger } from '../../src/log.js';
import { exec } from '../../src/sys/exec.js';
import { TreeWitness } from '../helpers/fuzz/witness.js';
import { assertNothingMountedUnder, q, shOk, tempRoot } from './fuse-kit.js';

const NOBODY = 65534;
let root = '';
let layer = '';
let mnt = '';
let mounter: FuseLayerMounter;
let witness: TreeWitness;

before(async () => {
  root = tempRoot('fuse-erofs');
  fs.chmodSync(root, 0o755);
  layer = path.join(root, 'store', 'layerfs');
  mnt = path.join(root, 'mnt');
  fs.mkdirSync(mnt, { recursive: true, mode: 0o755 });
  await shOk(`set -e; mkdir -p ${q(layer)}; cd ${q(layer)}
    printf 'hello\\n' > file; setfattr -n user.color -v blue file
    printf 'x' > noperm; chmod 0000 noperm
    printf 'mine' > owned; chown ${NOBODY}:${NOBODY} owned
    mkdir dir emptydir; printf 'in' > dir/inner
    mkdir sticky; chmod 1777 sticky; printf 'r' > sticky/rootfile
    ln -s file link`);
  witness = new TreeWitness(layer, { atime: false });
  witness.record();
  mounter = new FuseLayerMounter({ log: silentLogger() });
  await mounter.mount(layer, mnt);
});

after(async () => {
  await mounter?.close();
  await assertNothingMountedUnder(root);
  fs.rmSync(root, { recursive: true, force: true });
});

// Each call is made by a child process (this process serves the mount). Python's os module
// reaches every call directly: mknod, setxattr, posix_fallocate, O_TMPFILE.
const PROBE = String.raw`
import errno, json, mmap, os, stat, sys
M = sys.argv[1]
p = lambda *a: os.path.join(M, *a)
res = {}
def t(name, fn):
    try:
        fn()
        res[name] = 'ok'
    except OSError as e:
        res[name] = errno.errorcode.get(e.errno, str(e.errno))
def opn(path, flags):
    def f():
        os.close(os.open(path, flags, 0o644))
    return f
def rofd(fn):
    def f():
        fd = os.open(p('file'), os.O_RDONLY)
        try:
            fn(fd)
        finally:
            os.close(fd)
    return f
t('open O_WRONLY', opn(p('file'), os.O_WRONLY))
t('open O_RDWR', opn(p('file'), os.O_RDWR))
t('open O_WRONLY|O_APPEND', opn(p('file'), os.O_WRONLY | os.O_APPEND))
t('open O_RDONLY|O_TRUNC', opn(p('file'), os.O_RDONLY | os.O_TRUNC))
t('open O_WRONLY|O_TRUNC', opn(p('file'), os.O_WRONLY | os.O_TRUNC))
t('open O_WRONLY, file of mode 0000', opn(p('noperm'), os.O_WRONLY))
t('open O_WRONLY, own file', opn(p('owned'), os.O_WRONLY))
t('open O_RDWR, directory', opn(p('dir'), os.O_RDWR))
t('open O_CREAT, new name', opn(p('new'), os.O_WRONLY | os.O_CREAT))
t('open O_RDONLY|O_CREAT, new name', opn(p('new'), os.O_RDONLY | os.O_CREAT))
t('open O_CREAT|O_EXCL, new name', opn(p('new'), os.O_WRONLY | os.O_CREAT | os.O_EXCL))
t('open O_CREAT|O_EXCL, existing name', opn(p('file'), os.O_WRONLY | os.O_CREAT | os.O_EXCL))
t('open O_TMPFILE', opn(M, os.O_TMPFILE | os.O_WRONLY))
t('write, fd opened read-only', rofd(lambda fd: os.write(fd, b'x')))
t('pwrite, fd opened read-only', rofd(lambda fd: os.pwrite(fd, b'x', 0)))
t('ftruncate, fd opened read-only', rofd(lambda fd: os.ftruncate(fd, 0)))
t('fallocate, fd opened read-only', rofd(lambda fd: os.posix_fallocate(fd, 0, 4096)))
t('mmap MAP_SHARED PROT_WRITE, fd opened read-only', rofd(lambda fd: mmap.mmap(fd, 1, mmap.MAP_SHARED, mmap.PROT_WRITE)))
t('truncate', lambda: os.truncate(p('file'), 0))
t('truncate, own file', lambda: os.truncate(p('owned'), 0))
t('unlink', lambda: os.unlink(p('file')))
t('unlink, in a sticky directory', lambda: os.unlink(p('sticky', 'rootfile')))
t('unlink, symlink', lambda: os.unlink(p('link')))
t('rmdir, empty', lambda: os.rmdir(p('emptydir')))
t('rmdir, not empty', lambda: os.rmdir(p('dir')))
t('mkdir, new name', lambda: os.mkdir(p('newdir')))
t('mkdir, existing name', lambda: os.mkdir(p('dir')))
t('mknod regular file', lambda: os.mknod(p('nod'), 0o644 | stat.S_IFREG))
t('mknod character device', lambda: os.mknod(p('chr'), 0o644 | stat.S_IFCHR, os.makedev(1, 3)))
t('mknod whiteout (0/0 character device)', lambda: os.mknod(p('wh'), stat.S_IFCHR, 0))
t('mknod socket', lambda: os.mknod(p('sock'), 0o644 | stat.S_IFSOCK))
t('mkfifo', lambda: os.mkfifo(p('fifo')))
t('symlink', lambda: os.symlink('file', p('sl')))
t('link', lambda: os.link(p('file'), p('hl')))
t('rename file', lambda: os.rename(p('file'), p('moved')))
t('rename onto an existing file', lambda: os.rename(p('owned'), p('file')))
t('rename directory', lambda: os.rename(p('dir'), p('dir2')))
t('rename to itself', lambda: os.rename(p('file'), p('file')))
t('rename out of the mount', lambda: os.rename(p('file'), os.path.join(os.path.dirname(M), 'escaped')))
t('chmod', lambda: os.chmod(p('file'), 0o600))
t('chmod, own file', lambda: os.chmod(p('owned'), 0o600))
t('chown', lambda: os.chown(p('file'), 1, 1))
t('chown, no change', lambda: os.chown(p('owned'), -1, -1))
t('lchown, symlink', lambda: os.lchown(p('link'), 1, 1))
t('utimes, given times', lambda: os.utime(p('file'), (1, 1)))
t('utimes, now', lambda: os.utime(p('file')))
t('utimes, now, own file', lambda: os.utime(p('owned')))
t('utimes, symlink itself', lambda: os.utime(p('link'), (1, 1), follow_symlinks=False))
t('setxattr user.*', lambda: os.setxattr(p('file'), 'user.x', b'1'))
t('setxattr user.*, own file', lambda: os.setxattr(p('owned'), 'user.x', b'1'))
t('setxattr trusted.*', lambda: os.setxattr(p('file'), 'trusted.x', b'1'))
t('setxattr security.*', lambda: os.setxattr(p('file'), 'security.x', b'1'))
t('setxattr trusted.overlay.opaque, directory', lambda: os.setxattr(p('dir'), 'trusted.overlay.opaque', b'y'))
t('lsetxattr, symlink', lambda: os.setxattr(p('link'), 'trusted.x', b'1', follow_symlinks=False))
t('removexattr', lambda: os.removexattr(p('file'), 'user.color'))
t('removexattr, absent', lambda: os.removexattr(p('file'), 'user.none'))
res['statvfs ST_RDONLY'] = 'set' if os.statvfs(M).f_flag & os.ST_RDONLY else 'not set'
print(json.dumps(res))
`;

async function probe(uid: number): Promise<Record<string, string>> {
  const cmd = uid === 0 ? ['/usr/bin/python3'] : ['setpriv', `--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', '/usr/bin/python3'];
  const r = await exec(cmd[0] as string, [...cmd.slice(1), '-c', PROBE, mnt], { timeoutMs: 60_000 });
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as Record<string, string>;
}

// What the kernel answers before the filesystem is asked (the same for root and nobody):
const KERNEL_FIRST: Record<string, string> = {
  // A name that exists is reported before the mount is found read-only (filename_create()).
  'mkdir, existing name': 'EEXIST',
  'open O_CREAT|O_EXCL, existing name': 'EEXIST',
  // Writes through a descriptor need one opened for writing, and none can be.
  'write, fd opened read-only': 'EBADF',
  'pwrite, fd opened read-only': 'EBADF',
  'ftruncate, fd opened read-only': 'EINVAL',
  'fallocate, fd opened read-only': 'EBADF',
  'mmap MAP_SHARED PROT_WRITE, fd opened read-only': 'EACCES',
  // A rename never crosses mounts.
  'rename out of the mount': 'EXDEV',
  // Opening a directory for writing is refused for being a directory.
  'open O_RDWR, directory': 'EISDIR',
  'statvfs ST_RDONLY': 'set',
};

for (const [who, uid] of [['root', 0], ['another user (nobody)', NOBODY]] as const) {
  test(`as ${who}: every write-type call fails, with EROFS wherever it reaches the filesystem`, async (t) => {
    const got = await probe(uid);
    t.diagnostic(Object.entries(got).map(([k, v]) => `${k}: ${v}`).join('\n'));
    const notErofs = Object.entries(got).filter(([k, v]) => v !== 'EROFS' && KERNEL_FIRST[k] === undefined);
    assert.deepEqual(notErofs, [], 'calls that did not answer EROFS');
    for (const [k, v] of Object.entries(KERNEL_FIRST)) assert.equal(got[k], v, k);
    assert.ok(!Object.values(got).includes('ok'), 'a write succeeded');
  });
}

// Remounted read-write (root can do that), the filesystem itself is asked. The read-only flag is
// the kernel's first answer; these check the server's own, all that is left if the flag is lost.
let rw: Record<string, string> | undefined;
async function probeReadWrite(): Promise<Record<string, string>> {
  if (rw) return rw;
  await shOk(`mount -i -o remount,rw ${q(mnt)}`);
  try {
    rw = await probe(0);
  } finally {
    await shOk(`mount -i -o remount,ro ${q(mnt)}`);
  }
  return rw;
}
// The kernel answers these itself on a writable mount: renaming a file onto itself is a no-op.
const KERNEL_NOOP = new Set(['rename to itself']);
const OPENS_FOR_WRITING = ['open O_WRONLY', 'open O_RDWR', 'open O_WRONLY|O_APPEND', 'open O_WRONLY, file of mode 0000', 'open O_WRONLY, own file'];

test('remounted read-write: nothing is written, and no call but an open succeeds', async (t) => {
  const got = await probeReadWrite();
  t.diagnostic(Object.entries(got).filter(([k, v]) => v !== 'EROFS' && KERNEL_FIRST[k] === undefined).map(([k, v]) => `${k}: ${v}`).join('\n'));
  const succeeded = Object.entries(got).filter(([k, v]) => v === 'ok' && !KERNEL_NOOP.has(k) && !OPENS_FOR_WRITING.includes(k)).map(([k]) => k);
  assert.deepEqual(succeeded, [], 'writes that succeeded');
  assert.deepEqual(witness.changes(), []);
});

test('remounted read-write: the server answers EROFS to every call it is asked, opens for writing included', async () => {
    const got = await probeReadWrite();
    const notErofs = Object.entries(got).filter(([k, v]) => v !== 'EROFS' && KERNEL_FIRST[k] === undefined && !KERNEL_NOOP.has(k));
    assert.deepEqual(notErofs, []);
  });

test('the layer on disk is as it was, and the mount still reads', async () => {
  assert.deepEqual(witness.changes(), []);
  assert.equal(await shOk(`cat ${q(mnt)}/file`), 'hello\n');
  assert.equal(fs.existsSync(path.join(root, 'escaped')), false);
});

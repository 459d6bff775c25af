// One real FUSE mount of a sample layer, looked at from outside through child processes; run
// twice: with file reads passed through to the store by the kernel (FUSE passthrough), and with
// reads served by the server (a kernel without passthrough, or a store the kernel refuses to
// stack on).
import { test, before, after, describe } from 'node:test';
import { poolStats } from '../../src/sys/native.js';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { DEFAULT_TUNING } from '../../src/fuse/index.js';
import path from 'node:path';
import { FuseLayerMounter } from '../../src/fuse/index.js';
import { silentLogger } from '../../src/log.js';
import { NO_OBSERVER, type FuseObserver } from '../../src/fuse/index.js';
import { assertNothingMountedUnder, buildSampleLayer, q, sh, shOk, tempRoot } from './fuse-kit.js';

/** The tests, for a mount whose reads pass through to the store or are served by the server. */
function layerfsSuite(passthrough: boolean): void {
  let root = '';
  const ops = new Map<string, number>();
  const observer: FuseObserver = { ...NO_OBSERVER, op: (name) => { ops.set(name, (ops.get(name) ?? 0) + 1); } };
  let layer = '';
  let mnt = '';
  let mounter: FuseLayerMounter;

  before(async () => {
    root = tempRoot('fuse-layerfs');
    layer = path.join(root, 'store/ab/layerfs');
    mnt = path.join(root, 'mnt/layer one'); // a space, to exercise mountinfo's \040
    await buildSampleLayer(layer);
    // mkdtemp makes 0700; another user must be able to reach the mountpoint.
    fs.chmodSync(root, 0o755);
    fs.mkdirSync(path.dirname(mnt), { recursive: true, mode: 0o755 });
    mounter = new FuseLayerMounter({ log: silentLogger(), cacheEntries: 10_000, observer, tuning: { passthrough } });
    await mounter.mount(layer, mnt);
    if (passthrough) assert.equal(mounter.counters().passthrough, 1, 'this kernel offers FUSE passthrough (Linux 6.9+)');
  });

  after(async () => {
    const r = await mounter.close();
    assert.deepEqual(r.failed, []);
    assert.deepEqual(r.lazilyUnmounted, []);
    await assertNothingMountedUnder(root);
    fs.rmSync(root, { recursive: true, force: true });
  });

  const STAT_FMT = '%n|%F|%a|%u|%g|%s|%h|%t|%T|%i|%Y';

  /** stat lines for the given relative paths under base, with base stripped from the names. */
  async function statLines(base: string, rel: readonly string[]): Promise<string[]> {
    const out = await shOk(`cd ${q(base)} && stat -c ${q(STAT_FMT)} -- ${rel.map(q).join(' ')}`);
    return out.trim().split('\n');
  }

  function realEntries(): string[] {
    const out: string[] = [];
    const walk = (rel: string): void => {
      for (const n of fs.readdirSync(path.join(layer, rel))) {
        if (n.startsWith('.wh.')) continue;
        const r = rel === '' ? n : `${rel}/${n}`;
        out.push(r);
        const st = fs.lstatSync(path.join(layer, r));
        if (st.isDirectory()) walk(r);
      }
    };
    walk('');
    return out.sort();
  }

  test('the mount is read-only FUSE with the layer options, listed in mountinfo under its escaped name', async () => {
    const line = (await fs.promises.readFile('/proc/self/mountinfo', 'utf8')).split('\n').find((l) => l.includes('layer\\040one'));
    assert.ok(line, 'mountinfo escapes the space');
    assert.match(line, / - fuse\.cvmfs-layer cvmfs-snapshotter ro,/);
    assert.match(line, /default_permissions/);
    assert.match(line, /allow_other/);
    assert.ok(mounter.isMounted(mnt));
  });

  test('every real entry has the same type, mode, owner, size, link count, device numbers, inode and mtime', async () => {
    const rel = realEntries();
    assert.ok(rel.length > 25);
    assert.deepEqual(await statLines(mnt, rel), await statLines(layer, rel));
  });

  test('the listing holds the whiteouts under their own names and no .wh. name anywhere', async () => {
    const found = (await shOk(`cd ${q(mnt)} && find . -mindepth 1 | sort`)).trim().split('\n').map((l) => l.slice(2));
    const expected = [...realEntries(), 'deleted', 'sub/gone'].sort();
    assert.deepEqual(found, expected);
    assert.equal((await sh(`ls -a ${q(mnt)} ${q(mnt)}/sub ${q(mnt)}/opq | grep -F .wh.`)).stdout, '');
    const dots = (await shOk(`ls -a ${q(mnt)}/sub`)).trim().split('\n');
    assert.deepEqual(dots, ['.', '..', 'gone', 'kept']);
  });

  test('contents are identical, the large file included', async () => {
    const files = ['file.txt', 'big.bin', 'bin/busybox', 'hard1', 'hard2', 'with space/a file', 'deep/a/b/c/file', 'odd-owner', 'noperm', 'setuid'];
    const sums = (base: string): Promise<string> => shOk(`cd ${q(base)} && sha256sum -- ${files.map(q).join(' ')}`);
    assert.equal(await sums(mnt), await sums(layer));
    // Reads at odd offsets and sizes go through the same handle logic.
    const part = (base: string): Promise<string> => shOk(`dd if=${q(base)}/big.bin bs=4097 skip=123 count=77 status=none | sha256sum`);
    assert.equal(await part(mnt), await part(layer));
  });

  test('hardlinks share one inode number and report two links', async () => {
    const [a, b] = (await shOk(`stat -c '%i %h' ${q(mnt)}/hard1 ${q(mnt)}/hard2`)).trim().split('\n');
    assert.equal(a, b);
    assert.match(a ?? '', / 2$/);
  });

  test('symlink targets are returned verbatim, including ones that point out of the layer', async () => {
    const r = await shOk(`cd ${q(mnt)} && for l in link-rel etc up dangling; do readlink "$l"; done`);
    assert.deepEqual(r.trim().split('\n'), ['file.txt', '/etc', '../../../../..', 'nowhere']);
  });

  test('inside the layer, etc -> /etc and ../.. chains never reach the host (chroot onto the mount)', async () => {
    assert.ok(fs.existsSync('/etc/hostname') || fs.existsSync('/etc/os-release'));
    const hostFile = fs.existsSync('/etc/hostname') ? 'hostname' : 'os-release';
    const bb = `chroot ${q(mnt)} /bin/busybox`;
    const cat = await sh(`${bb} cat /etc/${hostFile}`);
    assert.notEqual(cat.code, 0, `host /etc/${hostFile} must not be readable: ${cat.stdout}`);
    assert.match(cat.stderr, /symbolic links|loop|No such file/i);
    const viaUp = await sh(`${bb} cat /up/etc/${hostFile}`);
    assert.notEqual(viaUp.code, 0);
    // ../../.. from the layer's root stays at the layer's root.
    const ls = (await shOk(`${bb} ls /up/`)).trim().split(/\s+/);
    assert.ok(ls.includes('file.txt') && ls.includes('bin') && !ls.includes('proc'), ls.join(' '));
  });

  test('xattrs: user ones on files and directories, binary values, trusted ones on a symlink itself', async () => {
    const dump = (base: string, p: string, h = ''): Promise<string> =>
      shOk(`cd ${q(base)} && getfattr ${h} -d -e hex -m - -- ${q(p)}`);
    assert.equal(await dump(mnt, 'file.txt'), await dump(layer, 'file.txt'));
    assert.match(await dump(mnt, 'file.txt'), /user\.bin=0x00ff01/);
    assert.equal(await dump(mnt, 'xattrdir'), await dump(layer, 'xattrdir'));
    assert.match(await dump(mnt, 'link-rel', '-h'), /trusted\.sym=0x73/);
    // Not followed to the target: file.txt's user xattrs are not on the link.
    assert.doesNotMatch(await dump(mnt, 'link-rel', '-h'), /user\.color/);
    const none = await sh(`getfattr -n user.nothing ${q(mnt)}/file.txt`);
    assert.match(none.stderr, /No such attribute/);
  });

  test('an xattr whose name is not UTF-8 is listed and read with its bytes unchanged', async () => {
    const py = `
import os, sys
name = b'user.\\xff\\xfe-x'
path = os.fsencode(sys.argv[1])
print(name in os.listxattr(path) or name in [os.fsencode(n) for n in os.listxattr(path)], os.getxattr(path, name).decode())
`;
    assert.equal((await shOk(`python3 -c ${q(py)} ${q(layer + '/odd-xattr')}`)).trim(), 'True latin', 'the layer has it');
    assert.equal((await shOk(`python3 -c ${q(py)} ${q(mnt + '/odd-xattr')}`)).trim(), 'True latin');
  });

  test('an xattr buffer that is too small gets ERANGE, so the caller can retry with a bigger one', async () => {
    const py = `
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
p = sys.argv[1].encode()
buf = ctypes.create_string_buffer(64)
def call(f, *a):
    r = f(*a)
    return r if r >= 0 else -ctypes.get_errno()
print(call(libc.getxattr, p, b'user.color', buf, 2), call(libc.getxattr, p, b'user.color', buf, 64), buf.raw[:4])
print(call(libc.listxattr, p, buf, 3), call(libc.listxattr, p, None, 0), call(libc.listxattr, p, buf, 64))
`;
    const out = await shOk(`python3 -c ${q(py)} ${q(mnt + '/file.txt')}`);
    const host = await shOk(`python3 -c ${q(py)} ${q(layer + '/file.txt')}`);
    assert.equal(out, host);
    assert.match(out, /^-34 4 b'blue'/);
  });

  test(passthrough ? 'file data goes from the store to the reader without a READ to the server' : 'reads are served, and the kernel read-ahead of the mount is raised', async () => {
    const before = ops.get('read') ?? 0;
    const opensBefore = ops.get('open') ?? 0;
    // The file was read before: its pages are dropped first, so that the data must come again.
    await shOk(`python3 -c 'import os,sys; fd=os.open(sys.argv[1], os.O_RDONLY); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)' ${q(mnt + '/big.bin')}`);
    assert.equal(await shOk(`sha256sum < ${q(mnt + '/big.bin')}`), await shOk(`sha256sum < ${q(layer + '/big.bin')}`));
    if (passthrough) {
      assert.equal(ops.get('read') ?? 0, before, 'no READ request');
      assert.ok((ops.get('open') ?? 0) > opensBefore, 'the open went to the server, which handed the kernel the store file');
      return;
    }
    assert.ok((ops.get('read') ?? 0) > before, 'READ requests served the data');
    const mi = (await fs.promises.readFile('/proc/self/mountinfo', 'utf8')).split('\n').find((l) => l.includes('layer\\040one'));
    const dev = mi?.split(' ')[2];
    assert.equal((await fs.promises.readFile(`/sys/class/bdi/${dev}/read_ahead_kb`, 'utf8')).trim(), String(DEFAULT_TUNING.readAheadKb));
    assert.ok(DEFAULT_TUNING.readAheadKb > 128, 'above the kernel default of 128 KiB');
  });

  test('fifos, devices, setuid/setgid/sticky modes and odd owners come through', async () => {
    const out = await shOk(`cd ${q(mnt)} && stat -c '%n %F %a %u:%g %t:%T' fifo chardev blockdev setuid setgid-dir sticky odd-owner noperm`);
    assert.deepEqual(out.trim().split('\n'), [
      'fifo fifo 644 0:0 0:0',
      'chardev character special file 644 0:0 1:3',
      'blockdev block special file 644 0:0 7:c8',
      'setuid regular file 4755 0:0 0:0',
      'setgid-dir directory 2775 0:0 0:0',
      'sticky directory 1777 0:0 0:0',
      'odd-owner regular file 640 12345:54321 0:0',
      'noperm regular file 0 0:0 0:0',
    ]);
  });

  test('AUFS whiteouts: a 0/0 char device, also when looked up directly; the marker itself is not there', async () => {
    const st = await shOk(`cd ${q(mnt)} && stat -c '%F %t:%T %a' deleted sub/gone`);
    assert.deepEqual(st.trim().split('\n'), ['character special file 0:0 0', 'character special file 0:0 0']);
    const marker = await sh(`stat ${q(mnt)}/.wh.deleted`);
    assert.match(marker.stderr, /No such file/);
    const plnk = await sh(`stat ${q(mnt)}/.wh..wh.plnk`);
    assert.notEqual(plnk.code, 0);
  });

  test('AUFS opaque dir: trusted.overlay.opaque=y, marker not listed; overlayfs-style ones pass through', async () => {
    assert.match(await shOk(`getfattr --absolute-names -n trusted.overlay.opaque ${q(mnt)}/opq`), /trusted\.overlay\.opaque="y"/);
    assert.equal((await shOk(`ls -A ${q(mnt)}/opq`)).trim(), 'kept');
    assert.match(await shOk(`getfattr --absolute-names -n trusted.overlay.opaque ${q(mnt)}/ovl-opq`), /="y"/);
    assert.equal((await shOk(`stat -c '%F %t:%T' ${q(mnt)}/ovl-wh`)).trim(), 'character special file 0:0');
    const plain = await sh(`getfattr --absolute-names -n trusted.overlay.opaque ${q(mnt)}/sub`);
    assert.match(plain.stderr, /No such attribute/);
  });

  test('another user can use the mount, and the kernel enforces the layer\'s modes for them', async () => {
    const as = (cmd: string): Promise<{ code: number | null; stderr: string; stdout: string }> =>
      sh(`setpriv --reuid=65534 --regid=65534 --clear-groups sh -c ${q(cmd)}`);
    assert.equal((await as(`cat ${q(mnt)}/file.txt`)).stdout, 'hello\n');
    assert.equal((await as(`ls ${q(mnt)}/sub`)).stdout, 'gone\nkept\n');
    for (const f of ['odd-owner', 'noperm']) {
      const r = await as(`cat ${q(mnt)}/${f}`);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /Permission denied/);
    }
  });

  test('every kind of write answers EROFS', async () => {
    const m = q(mnt);
    const cmds = [
      `touch ${m}/new`, `mkdir ${m}/newdir`, `rm ${m}/file.txt`, `rmdir ${m}/sticky`, `mv ${m}/file.txt ${m}/moved`,
      `chmod 600 ${m}/file.txt`, `chown 1:1 ${m}/file.txt`, `setfattr -n user.x -v 1 ${m}/file.txt`,
      `setfattr -x user.color ${m}/file.txt`, `ln ${m}/file.txt ${m}/hl`, `ln -s x ${m}/sl`, `truncate -s 0 ${m}/file.txt`,
      `mknod ${m}/nod c 1 3`, `mkfifo ${m}/ff`, `echo x >> ${m}/file.txt`, `touch -d 2001-01-01 ${m}/file.txt`,
    ];
    for (const c of cmds) {
      const r = await sh(c);
      assert.notEqual(r.code, 0, c);
      assert.match(r.stderr, /Read-only file system/, `${c}: ${r.stderr}`);
    }
    assert.equal((await shOk(`cat ${m}/file.txt`)), 'hello\n');
  });

  test('warm access is answered from memory: no store call, and the metadata cache is not asked again', async () => {
    const walk = `find ${q(mnt)} -ls > /dev/null; ls -laR ${q(mnt)} > /dev/null; getfattr -h -R -d -m - ${q(mnt)} > /dev/null 2>&1`;
    await shOk(walk);
    const first = mounter.cacheStats();
    const calls = poolStats().done;
    await shOk(walk);
    const second = mounter.cacheStats();
    assert.equal(poolStats().done, calls, 'nothing was asked of the store');
    assert.equal(second.misses, first.misses, 'nothing new was looked for in the cache');
  });

  test('statfs answers for the mount', async () => {
    const out = await shOk(`stat -f -c '%l %b' ${q(mnt)}`);
    const [namemax, blocks] = out.trim().split(' ');
    assert.equal(namemax, '255');
    assert.ok(Number(blocks) > 0);
  });
}

describe('the layer filesystem with FUSE passthrough: the kernel reads the store\'s files itself', () => layerfsSuite(true));
describe('the layer filesystem with reads served by the server', () => layerfsSuite(false));

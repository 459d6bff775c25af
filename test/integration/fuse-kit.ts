// Shared pieces of the FUSE integration tests. Everything that touches a mount served by this
// test process goes through a child process: a sync fs call from here would deadlock (the
// answer needs this event loop), and async ones can starve the libuv pool the server needs.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { exec, type ExecResult } from '../../src/sys/exec.js';
import { fuseMountsUnder, readMountInfo } from '../../src/fuse/mountinfo.js';

/** Single-quotes a string for sh. */
export function q(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

export function sh(cmd: string): Promise<ExecResult> {
  return exec('sh', ['-c', cmd], { env: { ...process.env, LC_ALL: 'C' }, timeoutMs: 60_000 });
}

export async function shOk(cmd: string): Promise<string> {
  const r = await sh(cmd);
  assert.equal(r.code, 0, `${cmd}\nexit ${String(r.code)} ${r.signal ?? ''}\n${r.stderr}`);
  return r.stdout;
}

export function tempRoot(name: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `${name}-`));
}

/** Every mount (FUSE or not) at or below dir. */
export async function mountsUnder(dir: string): Promise<string[]> {
  const all = await readMountInfo();
  return all.filter((m) => m.mountPoint === dir || m.mountPoint.startsWith(dir + '/')).map((m) => m.mountPoint);
}

export async function fuseUnder(dir: string): Promise<string[]> {
  return fuseMountsUnder(await readMountInfo(), dir).map((m) => m.mountPoint);
}

/** Fails the test if anything is still mounted under dir, after removing it so later tests run clean. */
export async function assertNothingMountedUnder(dir: string): Promise<void> {
  const left = await mountsUnder(dir);
  for (const mp of left.sort((a, b) => b.length - a.length)) await sh(`umount -l ${q(mp)}`);
  assert.deepEqual(left, [], `mounts left behind under ${dir}`);
}

/**
 * A layer with one of everything an image may hold: the kinds of files, modes, owners,
 * hardlinks, xattrs, host-escaping symlinks, and both whiteout styles. Needs root.
 */
export async function buildSampleLayer(dir: string): Promise<void> {
  fs.mkdirSync(dir, { recursive: true });
  await shOk(`set -e; cd ${q(dir)}
    printf 'hello\\n' > file.txt
    head -c 3000000 /dev/urandom > big.bin
    mkdir -p bin sub opq deep/a/b/c xattrdir 'with space' ovl-opq
    cp /usr/bin/busybox bin/busybox
    printf 'suid' > setuid; chmod 4755 setuid
    mkdir setgid-dir; chmod 2775 setgid-dir
    mkdir sticky; chmod 1777 sticky
    printf 'odd' > odd-owner; chown 12345:54321 odd-owner; chmod 0640 odd-owner
    printf 'none' > noperm; chmod 0000 noperm
    printf 'linked' > hard1; ln hard1 hard2
    ln -s file.txt link-rel
    ln -s /etc etc
    ln -s ../../../../.. up
    ln -s nowhere dangling
    mkfifo fifo
    mknod chardev c 1 3
    mknod blockdev b 7 200
    setfattr -n user.color -v blue file.txt
    setfattr -n user.bin -v 0x00ff01 file.txt
    setfattr -n user.d -v 1 xattrdir
    setfattr -h -n trusted.sym -v s link-rel
    : > odd-xattr
    python3 -c 'import os; os.setxattr("odd-xattr", b"user.\\xff\\xfe-x", b"latin")'
    printf 'in space' > 'with space/a file'
    printf 'deep' > deep/a/b/c/file
    : > .wh.deleted
    printf 'x' > sub/kept; : > sub/.wh.gone
    printf 'k' > opq/kept; : > opq/.wh..wh..opq
    : > .wh..wh.plnk
    mknod ovl-wh c 0 0
    setfattr -n trusted.overlay.opaque -v y ovl-opq
    printf 'o' > ovl-opq/inner
  `);
}

/** A mount served by another process, which the test can then kill to leave a dead mount. */
export interface ChildMount {
  readonly child: ChildProcess;
  kill(): Promise<void>;
}

export async function mountInChild(layerDir: string, mountpoint: string): Promise<ChildMount> {
  const mounter = new URL('../../src/fuse/mounts/lifecycle.js', import.meta.url).href;
  const logmod = new URL('../../src/log.js', import.meta.url).href;
  const code = `
    import { FuseLayerMounter } from ${JSON.stringify(mounter)};
    import { silentLogger } from ${JSON.stringify(logmod)};
    const m = new FuseLayerMounter({ log: silentLogger() });
    await m.mount(process.argv[1], process.argv[2]);
    process.stdout.write('ready\\n');
    setInterval(() => {}, 1 << 30);
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', code, layerDir, mountpoint], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr?.on('data', (b: Buffer) => { err += b.toString(); });
  await new Promise<void>((resolve, reject) => {
    child.stdout?.on('data', (b: Buffer) => { if (b.toString().includes('ready')) resolve(); });
    child.on('exit', (c) => reject(new Error(`child mount exited ${String(c)}: ${err}`)));
  });
  return {
    child,
    kill: () => new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once('exit', () => resolve());
      child.kill('SIGKILL');
    }),
  };
}

// A layer store that can fail on command: a FUSE passthrough of a backing directory served by its
// own process, the way a CernVM-FS repository is a FUSE mount served by cvmfs2. Killing the
// server leaves a dead mount (ENOTCONN for everyone), as a crashed cvmfs2 does; a command makes
// one path fail with a chosen errno at lookup, open or read, answer late, or not answer at all
// until healed (a stalled cvmfs2 waiting for its proxy); and the store can be unmounted and
// started again at the same place. It counts the listings, stats and xattr requests it serves,
// each one a request to cvmfs2 in production.
// The server is Debian's python3-fusepy (libfuse 2), not the project's FUSE code: it stands in
// for the world around the layer server. Nothing of it is cached by the kernel (timeouts 0,
// direct_io), so a fault shows at the next request.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import readline from 'node:readline';
import { exec } from '../../src/sys/exec.js';
import { listMounts } from '../helpers/mounts.js';

export type StoreOp = 'lookup' | 'open' | 'read';

/** System python: python3-fusepy is installed for it, not for a pyenv one. */
const PYTHON = '/usr/bin/python3';
export const FAULTY_STORE_FS_TYPE = 'fuse.faulty-store';

const SERVER_PY = String.raw`
import errno, json, os, sys, threading, time
from fusepy import FUSE, FuseOSError, Operations

backing, mountpoint = sys.argv[1], sys.argv[2]
faults = {}  # store path -> {op: errno}
# (store path, op) -> Event. A key path ending in '/' holds everything inside that directory but
# not the directory itself, so what leads to it still answers. fusepy serves each request on a
# thread of its own, so a held request blocks only its thread.
stalls = {}
delays = {}  # (store path, op) -> seconds
calls = {}  # request kind -> how many were served
typed = [True]  # whether listings give each name's type (cvmfs2's do; some filesystems' do not)

def stall_of(path, op):
    ev = stalls.get((path, op))
    if ev: return ev
    for (p, o), e in list(stalls.items()):
        if o == op and p.endswith('/') and path.startswith(p): return e
    return None

def check(path, op):
    d = delays.get((path, op))
    if d: time.sleep(d)
    ev = stall_of(path, op)
    if ev: ev.wait()
    e = faults.get(path, {}).get(op)
    if e: raise FuseOSError(e)

def release(keep):
    # Events are set, not just dropped: requests already waiting on them must go on.
    for k in [k for k in stalls if not keep(k[0])]:
        stalls.pop(k).set()
    for k in [k for k in delays if not keep(k[0])]:
        delays.pop(k)

def full(path):
    return backing + path if path != '/' else backing

def oserr(f):
    def wrapped(*a):
        try:
            return f(*a)
        except OSError as e:
            raise FuseOSError(e.errno or errno.EIO)
    return wrapped

class Store(Operations):
    def init(self, path):
        sys.stdout.write('ready\n'); sys.stdout.flush()

    @oserr
    def getattr(self, path, fh=None):
        calls['getattr'] = calls.get('getattr', 0) + 1
        check(path, 'lookup')
        st = os.lstat(full(path))
        return {k: getattr(st, k) for k in ('st_mode', 'st_ino', 'st_nlink', 'st_uid', 'st_gid', 'st_size', 'st_rdev',
                                            'st_blocks', 'st_atime', 'st_mtime', 'st_ctime')}

    @oserr
    def readdir(self, path, fh):
        calls['readdir'] = calls.get('readdir', 0) + 1
        # Each name with its type and inode number, as cvmfs2 lists them (getdents' d_type).
        if not typed[0]:
            return ['.', '..'] + os.listdir(full(path))
        out = ['.', '..']
        with os.scandir(full(path)) as entries:
            for e in entries:
                out.append((e.name, {'st_mode': e.stat(follow_symlinks=False).st_mode & 0o170000, 'st_ino': e.inode()}, 0))
        return out

    @oserr
    def listxattr(self, path):
        calls['listxattr'] = calls.get('listxattr', 0) + 1
        return os.listxattr(full(path), follow_symlinks=False)

    @oserr
    def getxattr(self, path, name, position=0):
        calls['getxattr'] = calls.get('getxattr', 0) + 1
        return os.getxattr(full(path), name, follow_symlinks=False)

    @oserr
    def readlink(self, path):
        return os.readlink(full(path))

    @oserr
    def open(self, path, flags):
        check(path, 'open')
        return os.open(full(path), os.O_RDONLY)

    @oserr
    def read(self, path, size, offset, fh):
        check(path, 'read')
        return os.pread(fh, size, offset)

    def release(self, path, fh):
        os.close(fh)
        return 0

    @oserr
    def statfs(self, path):
        s = os.statvfs(backing)
        return {k: getattr(s, k) for k in ('f_bsize', 'f_frsize', 'f_blocks', 'f_bfree', 'f_bavail', 'f_files', 'f_ffree',
                                           'f_favail', 'f_flag', 'f_namemax')}

def commands():
    for line in sys.stdin:
        c = json.loads(line)
        if 'fail' in c:
            faults.setdefault(c['fail'], {})[c['op']] = getattr(errno, c.get('code', 'EIO'))
        elif 'stall' in c:
            stalls.setdefault((c['stall'], c['op']), threading.Event())
        elif 'delay' in c:
            delays[(c['delay'], c['op'])] = c['ms'] / 1000
        elif c.get('heal') == '*':
            faults.clear()
            release(lambda p: False)
        elif 'heal' in c:
            faults.pop(c['heal'], None)
            release(lambda p: p != c['heal'])
        elif 'untyped' in c:
            typed[0] = False
        elif 'calls' in c:
            sys.stdout.write('ok %d\n' % calls.get(c['calls'], 0)); sys.stdout.flush()
            continue
        sys.stdout.write('ok\n'); sys.stdout.flush()

threading.Thread(target=commands, daemon=True).start()
FUSE(Store(), mountpoint, foreground=True, nothreads=False, allow_other=True, use_ino=True, fsname='faulty-store',
     subtype='faulty-store', entry_timeout=0, attr_timeout=0, negative_timeout=0, direct_io=True)
`;

export class FaultyStore {
  private readonly child: ChildProcess;
  private readonly replies: ((line: string) => void)[] = [];
  private stderr = '';
  private exited = false;

  private constructor(child: ChildProcess, readonly backing: string, readonly mountpoint: string) {
    this.child = child;
    child.stderr?.on('data', (b: Buffer) => { this.stderr += b.toString(); });
    child.on('exit', () => { this.exited = true; });
    readline.createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => this.replies.shift()?.(line));
  }

  /** Serves backing at mountpoint (an existing directory) until crash(), detach() or stop(). */
  static async start(backing: string, mountpoint: string): Promise<FaultyStore> {
    const child = spawn(PYTHON, ['-c', SERVER_PY, backing, mountpoint], { stdio: ['pipe', 'pipe', 'pipe'] });
    const store = new FaultyStore(child, backing, mountpoint);
    const line = await Promise.race([
      store.nextLine(),
      new Promise<string>((resolve) => child.once('exit', (c, s) => resolve(`exit ${String(c ?? s)}`))),
    ]);
    if (line !== 'ready') {
      await store.stop();
      throw new Error(`the faulty store did not mount ${mountpoint}: ${line}: ${store.stderr}`);
    }
    return store;
  }

  /** From now on, op on the store path p ("/.layers/ab/<hex>/layerfs/file") fails with code. */
  fail(p: string, op: StoreOp, code = 'EIO'): Promise<void> {
    return this.command({ fail: p, op, code });
  }

  /**
   * From now on, op on the store path p blocks until heal(); with a p that ends in '/', op on
   * everything inside that directory (not on the directory itself) does.
   */
  stall(p: string, op: StoreOp): Promise<void> {
    return this.command({ stall: p, op });
  }

  /** From now on, op on the store path p answers only after ms milliseconds. */
  delay(p: string, op: StoreOp, ms: number): Promise<void> {
    return this.command({ delay: p, op, ms });
  }

  /** Ends the faults, stalls and delays of p (the exact string given to them), or all of them; stalled requests go on. */
  heal(p = '*'): Promise<void> {
    return this.command({ heal: p });
  }

  /** From now on, listings give names without their types (DT_UNKNOWN), as some filesystems do. */
  listWithoutTypes(): Promise<void> {
    return this.command({ untyped: true });
  }

  /** How many requests of a kind the store has served so far. */
  async calls(kind: 'listxattr' | 'getxattr' | 'readdir' | 'getattr'): Promise<number> {
    const line = await this.ask({ calls: kind });
    const n = /^ok (\d+)$/.exec(line);
    if (!n) throw new Error(`the faulty store answered ${line}`);
    return Number(n[1]);
  }

  /** How many descriptors the store's server holds for the file at store path p (its opens not yet released). */
  openCount(p: string): number {
    const want = this.backing + p;
    const dir = `/proc/${this.child.pid}/fd`;
    let n = 0;
    for (const fd of fs.readdirSync(dir)) {
      try {
        if (fs.readlinkSync(`${dir}/${fd}`) === want) n++;
      } catch {
        // closed while we looked
      }
    }
    return n;
  }

  /** Whether its server still runs (a crashed or stopped store takes no command). */
  get running(): boolean {
    return !this.exited;
  }

  /** The server dies; its mount stays, dead: every access to it gets ENOTCONN. */
  crash(): Promise<void> {
    return this.kill();
  }

  /** Detaches the mount lazily, as `umount -l` of a store in use does, and the server goes. */
  async detach(): Promise<void> {
    await mustRun('umount', ['--lazy', this.mountpoint]);
    await this.kill();
  }

  /** Removes whatever is left of this store: its mount (dead or alive) and its process. */
  async stop(): Promise<void> {
    while (listMounts().some((m) => m.mountPoint === this.mountpoint && m.fsType === FAULTY_STORE_FS_TYPE)) {
      const r = await exec('umount', [this.mountpoint], { env: { ...process.env, LC_ALL: 'C' } });
      if (r.code !== 0) await mustRun('umount', ['--lazy', this.mountpoint]);
    }
    await this.kill();
  }

  private nextLine(): Promise<string> {
    return new Promise((resolve) => this.replies.push(resolve));
  }

  private async command(c: object): Promise<void> {
    const line = await this.ask(c);
    if (line !== 'ok') throw new Error(`the faulty store answered ${line}`);
  }

  private ask(c: object): Promise<string> {
    if (this.exited) throw new Error('the faulty store is not running');
    const reply = this.nextLine();
    this.child.stdin?.write(`${JSON.stringify(c)}\n`);
    return reply;
  }

  private kill(): Promise<void> {
    return new Promise((resolve) => {
      if (this.exited) return resolve();
      this.child.once('exit', () => resolve());
      this.child.kill('SIGKILL');
    });
  }
}

async function mustRun(cmd: string, args: string[]): Promise<void> {
  const r = await exec(cmd, args, { env: { ...process.env, LC_ALL: 'C' } });
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr.trim()}`);
}

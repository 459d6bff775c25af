// A reader in a child process, the way a container sees a mount: plain syscalls, raw bytes for
// names, link targets and contents (a name need not be UTF-8), and the errno of every failure.
// A child, because the FUSE server of the current mounter runs on this test's event loop: a
// synchronous fs call from here would deadlock, and async ones would share its thread pool.
// Optionally chrooted onto a mount first (a container's view: "/" is the layer) or run as
// another user. A reader that does not finish in time counts as a hang and fails the test.
import { createHash } from 'node:crypto';
import { exec } from '../../src/sys/exec.js';

const PROBE_PY = String.raw`
import ctypes, errno, hashlib, json, os, socket, stat, struct, sys
req = json.load(sys.stdin)
B = bytes.fromhex
libc = ctypes.CDLL(None, use_errno=True)
SYS_GETDENTS64 = {'x86_64': 217, 'aarch64': 61}[os.uname().machine]

def fail(e):
    return {'ok': False, 'errno': errno.errorcode.get(e.errno, str(e.errno))}

def kind(m):
    for test, name in ((stat.S_ISREG, 'file'), (stat.S_ISDIR, 'dir'), (stat.S_ISLNK, 'symlink'), (stat.S_ISCHR, 'char'),
                       (stat.S_ISBLK, 'block'), (stat.S_ISFIFO, 'fifo'), (stat.S_ISSOCK, 'socket')):
        if test(m): return name
    return 'unknown'

def info(st):
    return {'type': kind(st.st_mode), 'mode': stat.S_IMODE(st.st_mode), 'uid': st.st_uid, 'gid': st.st_gid,
            'size': st.st_size, 'nlink': st.st_nlink, 'ino': st.st_ino,
            'rdevMajor': os.major(st.st_rdev), 'rdevMinor': os.minor(st.st_rdev)}

def read_all(p, flags=0):
    fd = os.open(p, os.O_RDONLY | flags)
    try:
        chunks = []
        while True:
            b = os.read(fd, 1 << 20)
            if not b: break
            chunks.append(b)
        return b''.join(chunks)
    finally:
        os.close(fd)

def getdents(p):
    fd = os.open(p, os.O_RDONLY | os.O_DIRECTORY)
    try:
        out = []
        buf = ctypes.create_string_buffer(1 << 16)
        while True:
            n = libc.syscall(SYS_GETDENTS64, fd, buf, len(buf))
            if n < 0:
                e = ctypes.get_errno()
                raise OSError(e, os.strerror(e))
            if n == 0: break
            raw, off = buf.raw[:n], 0
            while off < n:
                _ino, _off, reclen, typ = struct.unpack_from('<QqHB', raw, off)
                out.append({'name': raw[off + 19:off + reclen].split(b'\0', 1)[0].hex(), 'dtype': typ})
                off += reclen
        return out
    finally:
        os.close(fd)

def walk(root):
    # Never follows a symlink, never opens anything but regular files (with O_NOFOLLOW).
    out = []
    def visit(rel):
        p = root + (b'/' + rel if rel else b'')
        try:
            st = os.lstat(p)
        except OSError as e:
            out.append({'path': rel.hex(), 'error': 'lstat ' + fail(e)['errno']}); return
        e = {'path': rel.hex(), 'stat': info(st)}
        try:
            if stat.S_ISLNK(st.st_mode): e['target'] = os.readlink(p).hex()
            elif stat.S_ISREG(st.st_mode): e['data'] = read_all(p, os.O_NOFOLLOW | os.O_NONBLOCK).hex()
        except OSError as err:
            e['error'] = 'read ' + fail(err)['errno']
        out.append(e)
        if stat.S_ISDIR(st.st_mode):
            try:
                names = sorted(os.listdir(p))
            except OSError as err:
                out.append({'path': rel.hex(), 'error': 'listdir ' + fail(err)['errno']}); return
            for n in names: visit(rel + b'/' + n if rel else n)
    visit(b'')
    return out

def run(o):
    p = B(o['path'])
    op = o['op']
    if op == 'read': return {'ok': True, 'data': read_all(p, os.O_NOFOLLOW if o.get('nofollow') else 0).hex()}
    if op == 'lstat': return {'ok': True, 'stat': info(os.lstat(p))}
    if op == 'stat': return {'ok': True, 'stat': info(os.stat(p))}
    if op == 'readlink': return {'ok': True, 'target': os.readlink(p).hex()}
    if op == 'listdir': return {'ok': True, 'names': [n.hex() for n in os.listdir(p)]}
    if op == 'getdents': return {'ok': True, 'dents': getdents(p)}
    if op == 'walk': return {'ok': True, 'entries': walk(p)}
    if op == 'statfs':
        os.statvfs(p)
        return {'ok': True}
    if op == 'open':
        flags = 0
        for f in o.get('flags', ['O_RDONLY']): flags |= getattr(os, f)
        fd = os.open(p, flags)
        if o.get('keep'): kept.append(fd)
        else: os.close(fd)
        return {'ok': True}
    if op == 'connect':
        here = os.getcwd()
        d, base = os.path.split(p)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            if d: os.chdir(d)
            s.connect(base)
            return {'ok': True, 'data': s.recv(4096).hex()}
        finally:
            s.close()
            os.chdir(here)
    raise ValueError('unknown op ' + op)

kept = []
if req.get('chroot'):
    os.chroot(B(req['chroot']))
    os.chdir('/')
if req.get('uid') is not None:
    os.setgroups([])
    os.setgid(req['uid'])
    os.setuid(req['uid'])
results = []
for o in req['ops']:
    try:
        results.append(run(o))
    except OSError as e:
        results.append(fail(e))
json.dump({'results': results}, sys.stdout)
`;

export type ProbePath = string | Buffer;

export type ProbeOp =
  | { op: 'read'; path: ProbePath; nofollow?: boolean }
  | { op: 'lstat' | 'stat' | 'readlink' | 'listdir' | 'getdents' | 'walk' | 'statfs' | 'connect'; path: ProbePath }
  | { op: 'open'; path: ProbePath; flags?: string[]; keep?: boolean };

export interface StatInfo {
  type: 'file' | 'dir' | 'symlink' | 'char' | 'block' | 'fifo' | 'socket' | 'unknown';
  mode: number;
  uid: number;
  gid: number;
  size: number;
  nlink: number;
  ino: number;
  rdevMajor: number;
  rdevMinor: number;
}

export interface WalkEntry {
  /** Relative to the walked root, '' for the root itself. */
  path: Buffer;
  stat?: StatInfo;
  target?: Buffer;
  data?: Buffer;
  error?: string;
}

export interface Dirent {
  name: Buffer;
  dtype: number;
}

export interface ProbeResult {
  ok: boolean;
  /** The errno name (EIO, ENOENT, ...) when ok is false. */
  errno?: string;
  data?: Buffer;
  target?: Buffer;
  names?: Buffer[];
  dents?: Dirent[];
  stat?: StatInfo;
  entries?: WalkEntry[];
}

export interface ProbeOptions {
  /** chroot here before the first op: "/" is then the mount, as in a container. */
  chroot?: string;
  /** Run as this uid (and gid), with no supplementary groups. */
  uid?: number;
  /** A reader still blocked after this long is a hang. */
  timeoutMs?: number;
}

/** The reader did not finish in time: it is blocked in the kernel, waiting for an answer. */
export class ReaderHung extends Error {
  override readonly name = 'ReaderHung';
}

function hex(p: ProbePath): string {
  return (typeof p === 'string' ? Buffer.from(p) : p).toString('hex');
}

interface RawEntry { path: string; stat?: StatInfo; target?: string; data?: string; error?: string }
interface RawResult {
  ok: boolean; errno?: string; data?: string; target?: string; names?: string[];
  dents?: { name: string; dtype: number }[]; stat?: StatInfo; entries?: RawEntry[];
}

function decode(r: RawResult): ProbeResult {
  const out: ProbeResult = { ok: r.ok };
  if (r.errno !== undefined) out.errno = r.errno;
  if (r.data !== undefined) out.data = Buffer.from(r.data, 'hex');
  if (r.target !== undefined) out.target = Buffer.from(r.target, 'hex');
  if (r.names) out.names = r.names.map((n) => Buffer.from(n, 'hex'));
  if (r.dents) out.dents = r.dents.map((d) => ({ name: Buffer.from(d.name, 'hex'), dtype: d.dtype }));
  if (r.stat) out.stat = r.stat;
  if (r.entries) {
    out.entries = r.entries.map((e) => {
      const w: WalkEntry = { path: Buffer.from(e.path, 'hex') };
      if (e.stat) w.stat = e.stat;
      if (e.target !== undefined) w.target = Buffer.from(e.target, 'hex');
      if (e.data !== undefined) w.data = Buffer.from(e.data, 'hex');
      if (e.error !== undefined) w.error = e.error;
      return w;
    });
  }
  return out;
}

/** Runs the ops in order in one child process and returns one result per op. */
export async function probe(ops: readonly ProbeOp[], opts: ProbeOptions = {}): Promise<ProbeResult[]> {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const req = {
    chroot: opts.chroot === undefined ? null : hex(opts.chroot),
    uid: opts.uid ?? null,
    ops: ops.map((o) => ({ ...o, path: hex(o.path) })),
  };
  const r = await exec('/usr/bin/python3', ['-c', PROBE_PY], { input: JSON.stringify(req), timeoutMs, env: { ...process.env, LC_ALL: 'C' } });
  if (r.signal !== null) throw new ReaderHung(`the reader hung: killed by ${r.signal} after ${timeoutMs} ms doing ${JSON.stringify(ops.map((o) => `${o.op} ${String(o.path)}`))}`);
  if (r.code !== 0) throw new Error(`the reader failed (exit ${String(r.code)}): ${r.stderr}`);
  const parsed = JSON.parse(r.stdout) as { results: RawResult[] };
  return parsed.results.map(decode);
}

export async function probeOne(op: ProbeOp, opts: ProbeOptions = {}): Promise<ProbeResult> {
  const [r] = await probe([op], opts);
  if (!r) throw new Error('the reader returned no result');
  return r;
}

/** Content as a short comparable string: itself when short, else its size and hash. */
export function dataText(data: Buffer | string): string {
  const b = typeof data === 'string' ? Buffer.from(data) : data;
  if (b.length <= 200) return `data:${b.toString('latin1')}`;
  return `data:${b.length} bytes, sha256 ${createHash('sha256').update(b).digest('hex').slice(0, 16)}`;
}

/** What an op gave, as one comparable string: 'data:<content>' (see dataText), 'ok', or the errno name. */
export function outcome(r: ProbeResult): string {
  if (!r.ok) return r.errno ?? 'error';
  if (r.data !== undefined) return dataText(r.data);
  return 'ok';
}

/** Reads each path in one reader; one outcome per path: 'data:<content>' or the errno name. */
export async function readAll(paths: readonly ProbePath[], opts: ProbeOptions = {}): Promise<string[]> {
  const rs = await probe(paths.map((p) => ({ op: 'read', path: p })), opts);
  return rs.map(outcome);
}

/** Like readAll for one path, but a reader that hangs gives the outcome 'HANG' instead of throwing. */
export async function readOrHang(p: ProbePath, opts: ProbeOptions = {}): Promise<string> {
  try {
    const [r] = await readAll([p], opts);
    return r ?? 'no result';
  } catch (err) {
    if (err instanceof ReaderHung) return 'HANG';
    throw err;
  }
}

// Pieces shared by the memory tests (cache-bytes, big-directory) and bench/memory.ts: layers
// whose metadata outgrows any cache (a deep directory, a 100,000-entry one), a FUSE server in
// its own process, its RSS, and readers in child processes. python3 makes and reads the trees:
// 100,000 files from node's fs would take several times longer, and a reader must be another
// process anyway (test/integration/fuse-kit.ts says why).
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import readline from 'node:readline';
import { RemoteLayerMounter } from '../../src/fuse/server/client.js';
import { silentLogger } from '../../src/log.js';
import { exec } from '../../src/sys/exec.js';
import { startFuseServer } from './fuse-server-process.js';
import type { ManagedProcess } from './process.js';
import type { Scope } from './scope.js';
export { rssKb } from './root-check.js';

async function python(script: string, args: readonly string[], timeoutMs = 120_000): Promise<string> {
  const r = await exec('/usr/bin/python3', ['-c', script, ...args], { timeoutMs, env: { ...process.env, LC_ALL: 'C' } });
  if (r.code !== 0) throw new Error(`python3 failed (${r.signal ?? `exit ${String(r.code)}`}): ${r.stderr.trim()}`);
  return r.stdout;
}

/** A layer directory in the store's DUCC form, the only kind a FUSE server takes. */
export function storeLayerDir(store: string, hexByte: string): string {
  return join(store, '.layers', hexByte, hexByte.repeat(32), 'layerfs');
}

export interface DeepLayer {
  /** The deep directory, relative to the layer's root. */
  readonly deep: string;
  /** Names of the files in it. */
  readonly files: readonly string[];
}

// Each component is 250 bytes (under NAME_MAX), so 12 make a path of ~3,000 bytes: every cache
// key of a name in there costs at least that.
const DEEP_PY = String.raw`
import os, sys
root, depth, files = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rel = '/'.join(('L%02d-' % i).ljust(250, 'd') for i in range(depth))
deep = os.path.join(root, rel)
os.makedirs(deep)
for i in range(files):
    name = 'file-%06d' % i
    with open(os.path.join(deep, name), 'w') as f: f.write(name + '\n')
print(rel)
`;

/**
 * A layer with a directory 12 levels deep (path ~3,000 bytes) holding `files` files named
 * file-000000..., each holding its own name and a newline.
 */
export async function buildDeepLayer(dir: string, files: number): Promise<DeepLayer> {
  const deep = (await python(DEEP_PY, [dir, '12', String(files)])).trim();
  const names = Array.from({ length: files }, (_, i) => `file-${String(i).padStart(6, '0')}`);
  return { deep, files: names };
}

const BIG_PY = String.raw`
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
os.makedirs(d, exist_ok=True)
for i in range(n):
    fd = os.open(os.path.join(d, 'e%06d' % i), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.close(fd)
`;

/** The names buildBigDir gives its entries. */
export function bigDirName(i: number): string {
  return `e${String(i).padStart(6, '0')}`;
}

/** A directory of n empty files named bigDirName(0..n-1). */
export async function buildBigDir(dir: string, n: number): Promise<void> {
  await python(BIG_PY, [dir, String(n)]);
}

/** A missing name of `bytes` bytes, distinct for each i. */
export function missingName(i: number, bytes: number): string {
  return `miss-${String(i).padStart(8, '0')}-`.padEnd(bytes, 'm');
}

/** The most RSS the process ever had (VmHWM), in KiB: the peaks between samples too. */
export async function peakRssKb(pid: number): Promise<number> {
  const m = /^VmHWM:\s+(\d+) kB$/m.exec(await readFile(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmHWM in /proc/${pid}/status`);
  return Number(m[1]);
}

export const MiB = 1024 * 1024;

export function mib(bytesOrKb: number, unit: 'bytes' | 'kB'): string {
  return (unit === 'kB' ? bytesOrKb / 1024 : bytesOrKb / MiB).toFixed(1);
}

/** Empties the kernel's dentry and inode caches: what the kernel knew of a FUSE mount is asked again. */
export async function dropDentries(): Promise<void> {
  const r = await exec('sh', ['-c', 'echo 2 > /proc/sys/vm/drop_caches']);
  if (r.code !== 0) throw new Error(`dropping the kernel's dentry cache: ${r.stderr.trim()}`);
}

// lstat of `count` distinct missing names in `dir`; every `every` lookups it says where it is
// and waits for a line on stdin, so the parent can measure the server at that exact point.
const MISSING_PY = String.raw`
import errno, json, os, sys
d, count, every, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
os.chdir(d)
found, odd = 0, {}
for i in range(count):
    name = ('miss-%08d-' % i).ljust(size, 'm')
    try:
        os.lstat(name)
        found += 1
    except OSError as e:
        if e.errno != errno.ENOENT: odd[errno.errorcode.get(e.errno, str(e.errno))] = odd.get(errno.errorcode.get(e.errno, str(e.errno)), 0) + 1
    if (i + 1) % every == 0 and i + 1 < count:
        print('at %d' % (i + 1), flush=True)
        sys.stdin.readline()
print(json.dumps({'done': count, 'found': found, 'odd': odd}), flush=True)
`;

export interface MissingLookups {
  done: number;
  /** Names that lstat found: none should be. */
  found: number;
  /** Errors other than ENOENT, by errno name. */
  odd: Record<string, number>;
}

/**
 * Runs `count` lookups of distinct missing names of `size` bytes in dir in one child; at every
 * `every` lookups the child waits for atCheckpoint to finish.
 */
export async function missingLookups(dir: string, count: number, every: number, size: number, atCheckpoint: (done: number) => Promise<void>): Promise<MissingLookups> {
  const child = spawn('/usr/bin/python3', ['-c', MISSING_PY, dir, String(count), String(every), String(size)], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
  let stderr = '';
  child.stderr.on('data', (b: Buffer) => { stderr += b.toString(); });
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  let result: MissingLookups | undefined;
  try {
    for await (const line of readline.createInterface({ input: child.stdout, crlfDelay: Infinity })) {
      const at = /^at (\d+)$/.exec(line);
      if (at) {
        await atCheckpoint(Number(at[1]));
        child.stdin.write('go\n');
      } else {
        result = JSON.parse(line) as MissingLookups;
      }
    }
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
  const code = await exited;
  if (code !== 0 || !result) throw new Error(`the lookup child failed (exit ${String(code)}): ${stderr.trim()}`);
  return result;
}

/** A FUSE server in its own process, as the daemon runs it, with a client scoped to root and store. */
export interface ServerUnderTest {
  readonly process: ManagedProcess;
  readonly client: RemoteLayerMounter;
  readonly logFile: string;
  /** Disconnects, and stops the server by its pid (SIGTERM: it unmounts its layers). */
  stop(): Promise<void>;
}

/** startFuseServer (fuse-server-process.ts) with a cache budget, and a client as the daemon's. */
/** walkEntries: the server's --walk-entries (0: layers are not walked, so nothing is listed that a test did not ask for). */
export async function startMemoryServer(scope: Scope, o: { name: string; root: string; store: string; cacheBytes: number; walkEntries?: number; logLevel?: string; extraArgs?: readonly string[] }): Promise<ServerUnderTest> {
  const server = await startFuseServer(scope, {
    name: o.name, root: o.root, store: o.store, logLevel: o.logLevel ?? 'warn',
    extraArgs: ['--cache-bytes', String(o.cacheBytes), ...(o.walkEntries !== undefined ? ['--walk-entries', String(o.walkEntries)] : []), ...(o.extraArgs ?? [])],
  });
  const client = new RemoteLayerMounter({
    socket: server.socket,
    log: silentLogger(),
    scope: { root: o.root, store: o.store },
    // This one was started above; a client that started another would hide a crash.
    startServer: () => undefined,
    startTimeoutMs: 20_000,
  });
  const stop = async (): Promise<void> => {
    await client.disconnect();
    await server.stop();
  };
  try {
    await client.connect();
  } catch (err) {
    await stop();
    throw err;
  }
  return { process: server.process, client, stop, logFile: server.logFile };
}

// The I/O half of doctor: looks at the node and returns plain facts for the checks to judge.
// Nothing here decides whether a fact is good or bad.
import { constants, realpathSync, type Stats, type BigIntStats } from 'node:fs';
import { lstat, open, opendir, readdir, readFile, stat } from 'node:fs/promises';
import { release } from 'node:os';
import path from 'node:path';
import { status } from '@grpc/grpc-js';
import { parse, TomlError } from 'smol-toml';
import { errnoCode } from '../../errors.js';
import { LAYERFS_DIR, LAYERS_DIR } from '../../layers/store.js';
import { SnapshotsClient } from '../../server/client.js';
import { exec } from '../../sys/exec.js';
import { loadConfig } from '../config.js';
import { isServiceError } from '../pull-cri.js';
import type { ContainerdBinary, ContainerdConfigFacts, ContainerdConfigFile, TomlDoc } from './containerd-config.js';
import type { DaemonFacts, PathFacts, ProbeFacts, RootFacts } from './daemon.js';
import { ldconfigPaths, moduleListed, procFilesystems, type DevFuseFacts, type FilesystemFacts, type LibFacts, type StatFacts } from './host.js';
import type { ConfigFacts, StoreProbe } from './store.js';

function errText(err: unknown): string {
  return errnoCode(err) ?? (err instanceof Error ? err.message : String(err));
}

function kindOf(st: Stats | BigIntStats): 'char' | 'block' | 'dir' | 'file' | 'socket' | 'symlink' | 'other' {
  if (st.isCharacterDevice()) return 'char';
  if (st.isBlockDevice()) return 'block';
  if (st.isDirectory()) return 'dir';
  if (st.isFile()) return 'file';
  if (st.isSocket()) return 'socket';
  if (st.isSymbolicLink()) return 'symlink';
  return 'other';
}

export async function gatherDevFuse(devPath = '/dev/fuse'): Promise<DevFuseFacts> {
  let st: StatFacts;
  try {
    const s = await stat(devPath, { bigint: true });
    // glibc's gnu_dev_major/gnu_dev_minor.
    const major = Number(((s.rdev >> 8n) & 0xfffn) | ((s.rdev >> 32n) & ~0xfffn));
    const minor = Number((s.rdev & 0xffn) | ((s.rdev >> 12n) & ~0xffn));
    st = { state: 'present', kind: kindOf(s), major, minor };
  } catch (err) {
    st = errnoCode(err) === 'ENOENT' ? { state: 'missing' } : { state: 'error', error: errText(err) };
  }
  let opened: string | undefined;
  if (st.state === 'present' && st.kind === 'char') {
    try {
      const fh = await open(devPath, constants.O_RDWR);
      await fh.close();
      opened = 'ok';
    } catch (err) {
      opened = errText(err);
    }
  }
  return { path: devPath, stat: st, open: opened };
}

const MULTIARCH: Record<string, string> = {
  x64: 'x86_64-linux-gnu', arm64: 'aarch64-linux-gnu', arm: 'arm-linux-gnueabihf', ppc64: 'powerpc64le-linux-gnu', s390x: 's390x-linux-gnu', riscv64: 'riscv64-linux-gnu',
};

async function ldconfigCache(): Promise<string | undefined> {
  for (const bin of ['ldconfig', '/sbin/ldconfig', '/usr/sbin/ldconfig']) {
    try {
      const r = await exec(bin, ['-p'], { timeoutMs: 10_000 });
      if (r.code === 0) return r.stdout;
    } catch { /* not there: try the next */ }
  }
  return undefined;
}

export async function gatherLib(name: string): Promise<LibFacts> {
  const cache = await ldconfigCache();
  const triplet = MULTIARCH[process.arch];
  const dirs = [
    ...(triplet ? [`/lib/${triplet}`, `/usr/lib/${triplet}`] : []),
    '/lib64', '/usr/lib64', '/lib', '/usr/lib', '/usr/local/lib',
  ];
  const fromDirs: string[] = [];
  for (const d of dirs) {
    const p = path.join(d, name);
    try {
      await stat(p);
      fromDirs.push(p);
    } catch { /* not in this one */ }
  }
  return { name, fromLdconfig: cache === undefined ? undefined : ldconfigPaths(cache, name), fromDirs };
}

export async function gatherFilesystems(names: readonly string[]): Promise<FilesystemFacts[]> {
  const rel = release();
  const known = procFilesystems(await readFile('/proc/filesystems', 'utf8').catch(() => ''));
  let listing: string | undefined;
  for (const f of ['modules.dep', 'modules.builtin']) {
    try {
      listing = (listing ?? '') + await readFile(`/lib/modules/${rel}/${f}`, 'utf8');
    } catch { /* no module tree for this kernel */ }
  }
  return names.map((name) => ({ name, registered: known.has(name), module: listing === undefined ? undefined : moduleListed(listing, name), kernelRelease: rel }));
}

export async function gatherConfig(file: string, required: boolean): Promise<ConfigFacts> {
  let present = true;
  try {
    await stat(file);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') present = false;
  }
  try {
    const c = await loadConfig(file, required);
    return { state: 'ok', file, fromFile: present, repository: c.repository, storeRoot: c.absoluteMountpoint, fusePassthrough: c.fusePassthrough };
  } catch (err) {
    return { state: 'error', file, error: err instanceof Error ? err.message : String(err) };
  }
}

async function realDir(p: string): Promise<boolean> {
  try {
    return (await lstat(p)).isDirectory();
  } catch {
    return false;
  }
}

/**
 * Walks the store the way the daemon looks layers up (real directories only, no links below the
 * root) until it finds a layer whose layerfs it can list. Stops early: a CernVM-FS store holds
 * hundreds of thousands of layers, and each directory read may fetch a catalog.
 */
export async function probeStore(root: string, maxExamined = 16): Promise<StoreProbe> {
  try {
    const st = await stat(root);
    if (!st.isDirectory()) return { state: 'not-dir', path: root, is: kindOf(st) };
  } catch (err) {
    return errnoCode(err) === 'ENOENT' ? { state: 'root-missing' } : { state: 'error', path: root, error: errText(err) };
  }
  const layers = path.join(root, LAYERS_DIR);
  try {
    const st = await lstat(layers);
    if (!st.isDirectory()) return { state: 'not-dir', path: layers, is: kindOf(st) };
  } catch (err) {
    return errnoCode(err) === 'ENOENT' ? { state: 'layers-missing' } : { state: 'error', path: layers, error: errText(err) };
  }
  const examined: string[] = [];
  let at = layers;
  try {
    for await (const prefix of await opendir(layers)) {
      if (!/^[0-9a-f]{2}$/.test(prefix.name)) continue;
      const prefixDir = path.join(layers, prefix.name);
      if (!(await realDir(prefixDir))) continue;
      at = prefixDir;
      for await (const entry of await opendir(prefixDir)) {
        if (!/^[0-9a-f]{64}$/.test(entry.name) || !entry.name.startsWith(prefix.name)) continue;
        const layerDir = path.join(prefixDir, entry.name);
        const layerfs = path.join(layerDir, LAYERFS_DIR);
        const digest = `sha256:${entry.name}`;
        if (!(await realDir(layerDir)) || !(await realDir(layerfs))) {
          examined.push(layerDir);
          if (examined.length >= maxExamined) return { state: 'no-layerfs', examined };
          continue;
        }
        try {
          return { state: 'layer', digest, path: layerfs, entries: (await readdir(layerfs)).length };
        } catch (err) {
          return { state: 'unlistable', digest, path: layerfs, error: errText(err) };
        }
      }
      at = layers;
    }
  } catch (err) {
    return { state: 'error', path: at, error: errText(err) };
  }
  return examined.length > 0 ? { state: 'no-layerfs', examined } : { state: 'empty' };
}

/** A glob as Go's filepath.Glob reads it (*, ?, [...]), matched one path component at a time. */
async function glob(pattern: string): Promise<string[]> {
  const abs = path.resolve(pattern);
  const parts = abs.split('/').filter(Boolean);
  let bases = ['/'];
  for (const part of parts) {
    const next: string[] = [];
    if (!/[*?[]/.test(part)) {
      for (const b of bases) next.push(path.join(b, part));
    } else {
      const re = new RegExp(`^${part.replace(/[.+^${}()|\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.').replace(/\[!/g, '[^')}$`);
      for (const b of bases) {
        const names = await readdir(b).catch(() => [] as string[]);
        for (const n of names.sort()) if (re.test(n)) next.push(path.join(b, n));
      }
    }
    bases = next;
  }
  const out: string[] = [];
  for (const b of bases) if (await stat(b).then(() => true, () => false)) out.push(b);
  return out;
}

async function readToml(file: string): Promise<TomlDoc> {
  const text = await readFile(file, 'utf8');
  try {
    return parse(text) as TomlDoc;
  } catch (err) {
    if (err instanceof TomlError) throw new Error(`${file}: not valid TOML: ${err.message.split('\n')[0]}`);
    throw err;
  }
}

/** Reads containerd's config and, as containerd does, every file it imports (breadth first, each once). */
export async function gatherContainerdConfig(file: string): Promise<ContainerdConfigFacts> {
  const files: ContainerdConfigFile[] = [];
  const seen = new Set<string>();
  const pending = [file];
  while (pending.length > 0) {
    const p = pending.shift() as string;
    if (seen.has(p)) continue;
    let doc: TomlDoc;
    try {
      doc = await readToml(p);
    } catch (err) {
      if (p === file && errnoCode(err) === 'ENOENT') return { state: 'missing', path: file };
      const why = errnoCode(err) !== undefined ? `cannot read ${p}: ${errText(err)}` : (err as Error).message;
      return { state: 'error', path: p, error: why };
    }
    files.push({ path: p, doc });
    seen.add(p);
    const imports = doc['imports'];
    if (Array.isArray(imports)) {
      for (const imp of imports) {
        if (typeof imp !== 'string') continue;
        if (imp.includes('*')) pending.push(...await glob(imp));
        else pending.push(path.isAbsolute(imp) ? path.normalize(imp) : path.join(path.dirname(p), imp));
      }
    }
  }
  return { state: 'ok', files };
}

export async function gatherContainerdBinary(): Promise<ContainerdBinary | undefined> {
  try {
    const r = await exec('containerd', ['--version'], { timeoutMs: 10_000 });
    // "containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3"
    const m = /\sv?(\d+)\.(\d+)\.(\d+)\S*/.exec(r.stdout);
    if (r.code !== 0 || !m) return undefined;
    return { version: m[0].trim().replace(/^v/, ''), major: Number(m[1]), minor: Number(m[2]) };
  } catch {
    return undefined;
  }
}

/** The path with its directory's symlinks resolved (/var/run/x.sock → /run/x.sock); the socket itself may not exist. */
export function canonicalSocketPath(p: string): string {
  const abs = path.resolve(p);
  try {
    return path.join(realpathSync(path.dirname(abs)), path.basename(abs));
  } catch {
    return abs;
  }
}

async function pathFacts(p: string, follow: boolean): Promise<PathFacts> {
  try {
    const st = follow ? await stat(p) : await lstat(p);
    const k = kindOf(st);
    return { state: 'present', kind: k === 'char' || k === 'block' ? 'other' : k, mode: st.mode, uid: st.uid };
  } catch (err) {
    return errnoCode(err) === 'ENOENT' ? { state: 'missing' } : { state: 'error', error: errText(err) };
  }
}

/** A key no snapshot can have: the daemon answers NOT_FOUND when it is alive. */
const PROBE_KEY = 'cvmfs-snapshotter-doctor/0/no such snapshot';

async function probeDaemon(address: string, timeoutMs: number): Promise<ProbeFacts> {
  const client = new SnapshotsClient(address);
  let timer: NodeJS.Timeout | undefined;
  try {
    const answer = client.stat(PROBE_KEY).then(
      (): ProbeFacts => ({ state: 'answered', code: status.OK, details: '' }),
      (err: unknown): ProbeFacts => (isServiceError(err)
        ? { state: 'answered', code: err.code, details: err.details }
        : { state: 'answered', code: status.UNKNOWN, details: String(err) }),
    );
    const late = new Promise<ProbeFacts>((resolve) => { timer = setTimeout(() => resolve({ state: 'timeout', ms: timeoutMs }), timeoutMs); });
    return await Promise.race([answer, late]);
  } finally {
    clearTimeout(timer);
    client.close();
  }
}

export async function gatherDaemon(address: string, timeoutMs = 5_000): Promise<DaemonFacts> {
  const socketDir = path.dirname(path.resolve(address));
  const socket = await pathFacts(address, false);
  const dir = await pathFacts(socketDir, true);
  const probe = socket.state === 'present' && socket.kind === 'socket' ? await probeDaemon(address, timeoutMs) : { state: 'skipped' as const };
  return { address, socketDir, socket, dir, probe };
}

export async function gatherRoot(root: string): Promise<RootFacts> {
  const dir = await pathFacts(root, true);
  const metadataDb = dir.state === 'present' && await stat(path.join(root, 'metadata.db')).then(() => true, () => false);
  return { root, dir, metadataDb };
}

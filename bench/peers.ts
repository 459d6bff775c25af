// The peer FUSE servers the product is measured against, built on this machine from Debian's
// packages into BENCH_CACHE_DIR/peers and kept there between runs (rebuilt when missing):
// - gofuse: a loopback server on go-fuse, the library stargz-snapshotter serves layers with
//   (bench/gofuse-loopback/main.go, built in GOPATH mode: Debian ships go-fuse's sources as a
//   GOPATH tree, and no Go module proxy is reachable here);
// - passthrough_hp: libfuse 3.14's high-performance passthrough example, from `apt-get source
//   fuse3` (a deb-src list of our own, so /etc/apt is untouched) compiled against libfuse3-dev.
// Nothing installed by hand survives on these machines, so the packages are installed here when
// missing. The `fuse3` package is never installed: it replaces `fuse`, which the tests need.
// A peer that cannot be built is reported missing with the reason; the run goes on without it.
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { exec, type ExecOptions, type ExecResult } from '../src/sys/exec.js';
import { BENCH_CACHE_DIR } from './images.js';
import { log } from './stats.js';

export const PEERS_DIR = join(BENCH_CACHE_DIR, 'peers');
export const PEER_NAMES = ['gofuse', 'passthrough_hp'] as const;
export type PeerName = (typeof PEER_NAMES)[number];

export type PeerBuild =
  | { name: PeerName; binary: string; built: boolean; buildMs: number }
  | { name: PeerName; missing: string };

/** The Go source sits beside the TypeScript sources (dist/bench/ → bench/). */
const LOOPBACK_MAIN = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bench', 'gofuse-loopback', 'main.go');
const GO_PACKAGES = ['golang-go', 'golang-github-hanwen-go-fuse-dev'];
const HP_PACKAGES = ['libfuse3-dev', 'g++', 'pkg-config', 'dpkg-dev', 'xz-utils'];
const DEBIAN_MIRROR = process.env.CVMFS_TEST_DEBIAN_MIRROR ?? 'http://deb.debian.org/debian';
/** passthrough_hp mounts with a fixed option string; the layer mounts of the product and go-fuse are read-only and allow_other. */
const HP_OPTIONS_FROM = '"default_permissions,fsname=hpps"';
const HP_OPTIONS_TO = '"default_permissions,fsname=hpps,ro,allow_other"';
const HP_CXXFLAGS = ['-std=c++17', '-O2', '-pthread'];

const env = (extra: Record<string, string> = {}): NodeJS.ProcessEnv => ({ ...process.env, DEBIAN_FRONTEND: 'noninteractive', LC_ALL: 'C', ...extra });

/** One build step; its error names the step and quotes the tool's last lines, not the whole command line. */
async function step(what: string, cmd: string, args: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
  const r = await exec(cmd, args, opts);
  if (r.code !== 0) {
    const out = (r.stderr.trim() || r.stdout.trim()).split('\n').slice(-8).join('\n');
    throw new Error(`${what} failed (${r.signal ?? `exit ${r.code}`}): ${out}`);
  }
  return r;
}

function short(s: string): string {
  return createHash('sha256').update(s).digest('hex').slice(0, 12);
}

async function installed(pkg: string): Promise<boolean> {
  const r = await exec('dpkg-query', ['-W', '-f=${Status}', pkg]);
  return r.code === 0 && r.stdout.includes('install ok installed');
}

/** apt-get install of whatever is missing; the package lists are refreshed once if the install fails on them. */
async function aptEnsure(packages: readonly string[]): Promise<void> {
  const missing: string[] = [];
  for (const p of packages) if (!(await installed(p))) missing.push(p);
  if (missing.length === 0) return;
  if (missing.includes('fuse3')) throw new Error('refusing to install fuse3: it replaces fuse');
  log(`peers: apt-get install ${missing.join(' ')}`);
  // Other engineers' apt runs hold the lock for a while; wait for it rather than fail.
  const args = ['-o', 'DPkg::Lock::Timeout=600', 'install', '-y', '-qq', '--no-install-recommends', ...missing];
  const first = await exec('apt-get', args, { env: env(), timeoutMs: 20 * 60_000 });
  if (first.code === 0) return;
  await step('apt-get update', 'apt-get', ['-o', 'DPkg::Lock::Timeout=600', 'update', '-qq'], { env: env(), timeoutMs: 10 * 60_000 });
  await step(`apt-get install ${missing.join(' ')}`, 'apt-get', args, { env: env(), timeoutMs: 20 * 60_000 });
}

/** Builds into a temporary directory under PEERS_DIR and renames the binary into place. */
async function cachedBinary(name: string, build: (work: string) => Promise<string>): Promise<{ binary: string; built: boolean; buildMs: number }> {
  const binary = join(PEERS_DIR, name);
  if (existsSync(binary)) return { binary, built: false, buildMs: 0 };
  await mkdir(PEERS_DIR, { recursive: true });
  const t0 = Date.now();
  const work = await mkdtemp(join(PEERS_DIR, `build-${name}-`));
  try {
    await rename(await build(work), binary);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  const buildMs = Date.now() - t0;
  log(`peers: built ${binary} in ${(buildMs / 1000).toFixed(0)} s`);
  return { binary, built: true, buildMs };
}

async function buildGoFuse(): Promise<{ binary: string; built: boolean; buildMs: number }> {
  const source = await readFile(LOOPBACK_MAIN, 'utf8');
  return cachedBinary(`gofuse-loopback-${short(source)}`, async (work) => {
    await aptEnsure(GO_PACKAGES);
    // A GOPATH of our own first, Debian's source tree second. GOPATH mode maps go-fuse's /v2
    // import paths onto Debian's tree (minimal module compatibility) only for an importer that
    // sits in a tree with a go.mod, so the package gets one; GO111MODULE=off ignores it otherwise.
    const pkg = join(work, 'src', 'cvmfsbench', 'gofuse-loopback');
    await mkdir(pkg, { recursive: true });
    await writeFile(join(pkg, 'main.go'), source);
    await writeFile(join(pkg, 'go.mod'), 'module cvmfsbench/gofuse-loopback\n');
    const out = join(work, 'gofuse-loopback');
    await step('go build of the go-fuse loopback', 'go', ['build', '-o', out, 'cvmfsbench/gofuse-loopback'], {
      cwd: work,
      env: env({ GO111MODULE: 'off', GOPATH: `${work}:/usr/share/gocode`, GOCACHE: join(work, 'gocache'), GOFLAGS: '', CGO_ENABLED: '0', HOME: work }),
      timeoutMs: 15 * 60_000,
    });
    return out;
  });
}

async function buildPassthroughHp(): Promise<{ binary: string; built: boolean; buildMs: number }> {
  const recipe = JSON.stringify([HP_OPTIONS_FROM, HP_OPTIONS_TO, HP_CXXFLAGS]);
  return cachedBinary(`passthrough_hp-${short(recipe)}`, async (work) => {
    await aptEnsure(HP_PACKAGES);
    // apt-get with a source list, list directory and caches of its own: /etc/apt and the system's
    // package lists stay as they are.
    const lists = join(work, 'apt', 'lists');
    const parts = join(work, 'apt', 'sources.list.d');
    await mkdir(join(lists, 'partial'), { recursive: true });
    await mkdir(parts, { recursive: true });
    const sourcesList = join(work, 'apt', 'sources.list');
    await writeFile(sourcesList, `deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] ${DEBIAN_MIRROR} bookworm main\n`);
    const apt = ['-o', `Dir::Etc::SourceList=${sourcesList}`, '-o', `Dir::Etc::SourceParts=${parts}`, '-o', `Dir::State::Lists=${lists}`,
      '-o', 'Dir::Cache::pkgcache=', '-o', 'Dir::Cache::srcpkgcache=', '-o', 'APT::Sandbox::User=root'];
    const update = await step('apt-get update of our deb-src list', 'apt-get', [...apt, 'update', '-qq'], { env: env(), timeoutMs: 10 * 60_000 });
    // A mirror that cannot be reached is only a warning to apt-get update.
    if (!(await readdir(lists)).some((f) => f.includes('_source_Sources'))) {
      throw new Error(`apt-get update fetched no source index from ${DEBIAN_MIRROR}: ${update.stderr.trim().split('\n').slice(-4).join('\n')}`);
    }
    const srcDir = join(work, 'src');
    await mkdir(srcDir);
    await step('apt-get source fuse3', 'apt-get', [...apt, 'source', '-qq', 'fuse3'], { cwd: srcDir, env: env(), timeoutMs: 10 * 60_000 });
    const tree = (await readdir(srcDir, { withFileTypes: true })).find((d) => d.isDirectory() && d.name.startsWith('fuse3-'));
    if (tree === undefined) throw new Error(`apt-get source fuse3 unpacked no fuse3-* directory in ${srcDir}`);
    if (!tree.name.startsWith('fuse3-3.14.')) throw new Error(`apt-get source fuse3 gave ${tree.name}, not libfuse 3.14`);
    const example = join(srcDir, tree.name, 'example');
    const file = join(example, 'passthrough_hp.cc');
    const text = await readFile(file, 'utf8');
    if (!text.includes(HP_OPTIONS_FROM)) throw new Error(`passthrough_hp.cc no longer mounts with ${HP_OPTIONS_FROM}; cannot make it read-only and allow_other`);
    await writeFile(file, text.replace(HP_OPTIONS_FROM, HP_OPTIONS_TO));
    const flags = (await step('pkg-config fuse3', 'pkg-config', ['--cflags', '--libs', 'fuse3'])).stdout.trim().split(/\s+/);
    const out = join(work, 'passthrough_hp');
    await step('g++ of passthrough_hp.cc', 'g++', [...HP_CXXFLAGS, '-I', example, file, '-o', out, ...flags], { cwd: example, timeoutMs: 10 * 60_000 });
    return out;
  });
}

const BUILDERS: Record<PeerName, () => Promise<{ binary: string; built: boolean; buildMs: number }>> = {
  gofuse: buildGoFuse,
  passthrough_hp: buildPassthroughHp,
};

/** Every peer, built if needed; one that fails to build comes back with the reason. */
export async function ensurePeers(): Promise<Record<PeerName, PeerBuild>> {
  const out = {} as Record<PeerName, PeerBuild>;
  for (const name of PEER_NAMES) {
    try {
      out[name] = { name, ...(await BUILDERS[name]()) };
    } catch (err) {
      const reason = (err instanceof Error ? err.message : String(err)).slice(0, 2000);
      log(`peers: ${name} is missing: ${reason}`);
      out[name] = { name, missing: reason };
    }
  }
  return out;
}

// `node dist/bench/peers.js` builds the peers ahead of a run.
if (process.argv[1] !== undefined && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  for (const p of Object.values(await ensurePeers())) log('binary' in p ? `${p.name}: ${p.binary}` : `${p.name}: missing (${p.missing})`);
}

// `cvmfs-snapshotter pull`: a lazy pull without Kubernetes. It asks containerd's CRI
// ImageService to pull, because only CRI pulls carry the labels (snapshot.ref, cri.layer-digest)
// that let the snapshotter answer "already exists" for layers in the store; `ctr pull` sends none.
// Before pulling it checks that containerd is there and that its CRI is set up for this
// snapshotter, and says exactly what to change when it is not.
import { stat } from 'node:fs/promises';
import { parseCommand, usageError as commandUsageError } from './args.js';
import { errnoCode } from '../errors.js';
import type { exec } from '../sys/exec.js';
import type { ImageManifest } from '../layers/ingest/manifest.js';
import type { Platform } from '../layers/ingest/platform.js';
import { DEFAULT_ADDRESS } from './defaults.js';
import { CriClient, GRPC, isServiceError } from './pull-cri.js';

export const DEFAULT_CONTAINERD_SOCKET = '/run/containerd/containerd.sock';
const SNAPSHOTTER = 'cvmfs-snapshotter';

const USAGE = `Usage: cvmfs-snapshotter pull [--containerd SOCK] [--verbose] [--force] IMAGE

Pulls IMAGE through containerd's CRI image service, so that containerd passes each layer's
digest to the ${SNAPSHOTTER} snapshotter and layers found in the layer store are not downloaded.
The image lands in containerd's "k8s.io" namespace, where Kubernetes and
'ctr -n k8s.io run --snapshotter ${SNAPSHOTTER}' find it.

Options:
  --containerd SOCK  containerd's socket (default ${DEFAULT_CONTAINERD_SOCKET})
  --verbose, -v      afterwards, list which layers containerd downloaded and which stayed lazy
  --force            pull even if containerd's CRI is not set up for ${SNAPSHOTTER}
  -h, --help         this text

While containerd cannot reach the ${SNAPSHOTTER} daemon (just started: containerd's connection
to its socket backs off for up to 3 s), the pull is tried again for up to 10 s.
`;

export function criSettingsText(): string {
  return `containerd's CRI must use this snapshotter and pass it the layer annotations. In
/etc/containerd/config.toml (containerd 1.6/1.7, config version 2):

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "${SNAPSHOTTER}"
    disable_snapshot_annotations = false

  [proxy_plugins.${SNAPSHOTTER}]
    type = "snapshot"
    address = "${DEFAULT_ADDRESS}"

"cri" must not be listed in disabled_plugins. disable_snapshot_annotations placed directly under
[plugins."io.containerd.grpc.v1.cri"] is ignored. Restart containerd afterwards; its start-up log
shows the value in force ("DisableSnapshotAnnotations:false").
`;
}

export async function pullCommand(args: string[]): Promise<number> {
  const parsed = parseCommand('pull', USAGE, args, {
    containerd: { type: 'string', default: DEFAULT_CONTAINERD_SOCKET },
    verbose: { type: 'boolean', short: 'v', default: false },
    force: { type: 'boolean', default: false },
  });
  if (typeof parsed === 'number') return parsed;
  const { values, positionals } = parsed;
  if (positionals.length !== 1) return usageError(positionals.length === 0 ? 'name the IMAGE to pull' : 'pull takes exactly one IMAGE');
  const image = positionals[0] as string;
  const socket = values.containerd;

  const problem = await socketProblem(socket);
  if (problem) return fail(problem);

  const cri = new CriClient(socket);
  try {
    try {
      await cri.version();
    } catch (err) {
      return fail(unreachable(err, socket), isServiceError(err) && err.code === GRPC.UNIMPLEMENTED ? 3 : 1);
    }

    const setup = await criSetup(cri);
    if (setup.ok === false) {
      if (!values.force) {
        process.stderr.write(`error: ${setup.problem}\n\n${criSettingsText()}\n(--force pulls anyway, downloading every layer.)\n`);
        return 3;
      }
      process.stderr.write(`warning: ${setup.problem}; pulling anyway because of --force\n`);
    } else if (setup.ok === undefined) {
      process.stderr.write(`warning: ${setup.problem}; make sure containerd is set up as follows.\n${criSettingsText()}`);
    }

    let imageRef: string;
    try {
      imageRef = await pullWhileReachable(() => cri.pullImage(image), {
        onRetry: (retry) => {
          if (retry === 1) process.stderr.write(`containerd cannot reach the ${SNAPSHOTTER} daemon yet; trying again for up to ${SNAPSHOTTER_WAIT_MS / 1000} s (its connection to a daemon that just started may still be backing off)\n`);
        },
      });
    } catch (err) {
      return fail(pullFailure(err, image));
    }
    // The command's whole time, Node's start included: performance.now() counts from the
    // process's time origin, taken as Node starts, before any module is loaded.
    process.stdout.write(`${image} pulled in ${formatSeconds(performance.now())} (${imageRef})\n`);

    if (values.verbose) await reportLaziness(cri, socket, image);
    return 0;
  } finally {
    cri.close();
  }
}

function formatSeconds(ms: number): string {
  return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
}

const usageError = (message: string): number => commandUsageError('pull', message);

function fail(message: string, code = 1): number {
  process.stderr.write(`error: ${message}\n`);
  return code;
}

// gRPC's own message for a missing socket is a retry loop's "No connection established"; the
// file system says it better and at once.
async function socketProblem(socket: string): Promise<string | undefined> {
  try {
    const st = await stat(socket);
    if (!st.isSocket()) return `${socket} is not a socket; pass containerd's socket with --containerd SOCK`;
    return undefined;
  } catch (err) {
    const code = errnoCode(err);
    if (code === 'ENOENT') return `cannot reach containerd: there is no socket at ${socket}. Is containerd running? If it listens elsewhere, pass --containerd SOCK`;
    if (code === 'EACCES') return `cannot reach containerd: permission denied on ${socket}; run as root`;
    return `cannot reach containerd at ${socket}: ${(err as Error).message}`;
  }
}

function unreachable(err: unknown, socket: string): string {
  if (!isServiceError(err)) return `cannot reach containerd at ${socket}: ${String(err)}`;
  switch (err.code) {
    case GRPC.UNIMPLEMENTED:
      return `containerd at ${socket} does not serve the CRI API (runtime.v1): its "cri" plugin is disabled or failed to start (see containerd's log).\n\n${criSettingsText()}`;
    case GRPC.UNAVAILABLE:
      return `cannot reach containerd at ${socket}: ${/ECONNREFUSED/.test(err.details) ? 'connection refused; the socket is there but nothing listens on it (containerd stopped?)' : err.details}`;
    case GRPC.DEADLINE_EXCEEDED:
      return `containerd at ${socket} did not answer within 5 s`;
    default:
      return `containerd at ${socket} answered ${GRPC[err.code] ?? err.code}: ${err.details}`;
  }
}

type Setup = { ok: true } | { ok: false; problem: string } | { ok: undefined; problem: string };

/** Reads the CRI configuration in force from Status(verbose), where containerd publishes it as JSON. */
async function criSetup(cri: CriClient): Promise<Setup> {
  let config: unknown;
  try {
    const st = await cri.status(true);
    const text = st.info.config;
    if (!text) return { ok: undefined, problem: 'containerd did not report its CRI configuration' };
    config = JSON.parse(text);
  } catch (err) {
    return { ok: undefined, problem: `cannot read containerd's CRI configuration: ${isServiceError(err) ? err.details : String(err)}` };
  }
  return checkCriConfig(config);
}

/** Judges the CRI config JSON that containerd reports in Status(verbose).info.config. */
export function checkCriConfig(config: unknown): Setup {
  const c = typeof config === 'object' && config !== null && 'containerd' in config ? config.containerd : undefined;
  if (typeof c !== 'object' || c === null) return { ok: undefined, problem: 'containerd reported a CRI configuration without a "containerd" section' };
  const snapshotter = 'snapshotter' in c ? c.snapshotter : undefined;
  const disabled = 'disableSnapshotAnnotations' in c ? c.disableSnapshotAnnotations : undefined;
  const problems: string[] = [];
  if (snapshotter !== SNAPSHOTTER) problems.push(`its snapshotter is ${JSON.stringify(snapshotter ?? '')}, not "${SNAPSHOTTER}"`);
  if (disabled !== false) problems.push('disable_snapshot_annotations is not false, so layer digests never reach the snapshotter');
  if (problems.length === 0) return { ok: true };
  return { ok: false, problem: `containerd's CRI is not configured for ${SNAPSHOTTER}: ${problems.join('; ')}` };
}

/**
 * Whether containerd failed the pull because it could not reach the snapshotter: containerd
 * reaches it through its proxy plugin, and while the daemon is down every Prepare fails with the
 * dial error of its socket.
 */
export function snapshotterUnreachable(err: unknown): boolean {
  if (!isServiceError(err)) return false;
  const d = err.details;
  return /snapshot/i.test(d) && /(connection refused|no such file|connection error|Unavailable)/i.test(d);
}

/** How long a pull is tried again while containerd cannot reach the snapshotter. */
export const SNAPSHOTTER_WAIT_MS = 10_000;
const SNAPSHOTTER_RETRY_MS = 500;

/**
 * Runs pull, and runs it again while it fails because containerd cannot reach the snapshotter,
 * for up to waitMs. containerd's connection to the daemon's socket backs off between attempts
 * (up to 3 s in 1.6/1.7) and fails every call meanwhile with the last attempt's error, so a pull
 * made just after the daemon came up (a node's first pod, the daemon restarted) can fail with
 * the daemon ready. Anything else fails at once.
 */
export async function pullWhileReachable<T>(pull: () => Promise<T>, o: {
  waitMs?: number; retryMs?: number; onRetry?: (retry: number) => void; now?: () => number; sleep?: (ms: number) => Promise<void>;
} = {}): Promise<T> {
  const now = o.now ?? (() => performance.now());
  const sleep = o.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  const started = now();
  for (let retry = 1; ; retry++) {
    try {
      return await pull();
    } catch (err) {
      if (!snapshotterUnreachable(err) || now() - started >= (o.waitMs ?? SNAPSHOTTER_WAIT_MS)) throw err;
      o.onRetry?.(retry);
      await sleep(o.retryMs ?? SNAPSHOTTER_RETRY_MS);
    }
  }
}

function pullFailure(err: unknown, image: string): string {
  if (!isServiceError(err)) return `pulling ${image} failed: ${String(err)}`;
  const d = err.details;
  if (snapshotterUnreachable(err)) {
    return `containerd could not reach the ${SNAPSHOTTER} daemon while pulling ${image} (tried for ${SNAPSHOTTER_WAIT_MS / 1000} s): ${d}\nIs the daemon running, and does [proxy_plugins.${SNAPSHOTTER}] address name its socket?`;
  }
  if (/snapshotter .*not (found|loaded)|failed to find snapshotter/i.test(d)) {
    return `pulling ${image} failed: ${d}\n\n${criSettingsText()}`;
  }
  if (err.code === GRPC.NOT_FOUND || /not found/i.test(d)) return `${image} was not found: ${d}`;
  return `pulling ${image} failed (${GRPC[err.code] ?? err.code}): ${d}`;
}

// Layers that stayed lazy are not in containerd's content store; downloaded ones are. Read
// through ctr because the content service is not part of CRI.
async function reportLaziness(cri: CriClient, socket: string, image: string): Promise<void> {
  // Loaded only here: a plain pull need not pay for them.
  const { exec } = await import('../sys/exec.js');
  const { parseManifest } = await import('../layers/ingest/manifest.js');
  const { selectManifest } = await import('../layers/ingest/platform.js');
  const ctr: Ctr = (args) => exec('ctr', ['--address', socket, '--namespace', 'k8s.io', ...args], { timeoutMs: 30_000 });
  try {
    const img = await cri.imageStatus(image);
    const top = img?.repo_digests[0]?.split('@')[1];
    if (!top) {
      process.stdout.write('  (containerd reports no manifest digest for the image; cannot tell which layers were downloaded)\n');
      return;
    }
    const manifest = await manifestFromContent(ctr, top, parseManifest, selectManifest);
    const listed = await ctr(['content', 'ls', '--quiet']);
    if (listed.code !== 0) throw new Error(`ctr content ls: ${listed.stderr.trim()}`);
    const present = new Set(listed.stdout.split('\n').map((l) => l.trim()).filter(Boolean));
    let lazy = 0;
    for (const layer of manifest.layers) {
      const downloaded = present.has(layer.digest);
      if (!downloaded) lazy++;
      process.stdout.write(`  ${layer.digest} ${downloaded ? 'downloaded' : 'lazy (not in containerd\'s content store)'}\n`);
    }
    process.stdout.write(`  ${lazy} of ${manifest.layers.length} layers lazy\n`);
  } catch (err) {
    process.stdout.write(`  (cannot tell which layers were downloaded: ${(err as Error).message})\n`);
  }
}

type Ctr = (args: string[]) => ReturnType<typeof exec>;
type Parse = typeof import('../layers/ingest/manifest.js').parseManifest;
type Select = typeof import('../layers/ingest/platform.js').selectManifest;

async function manifestFromContent(ctr: Ctr, digest: string, parseManifest: Parse, selectManifest: Select): Promise<ImageManifest> {
  const get = async (d: string): Promise<Buffer> => {
    const r = await ctr(['content', 'get', d]);
    if (r.code !== 0) throw new Error(`ctr content get ${d}: ${r.stderr.trim()}`);
    return Buffer.from(r.stdout, 'utf8');
  };
  const doc = parseManifest(await get(digest), null);
  if (doc.kind === 'manifest') return doc;
  const inner = parseManifest(await get(selectManifest(doc.manifests, hostPlatform()).digest), null);
  if (inner.kind !== 'manifest') throw new Error('nested image index');
  return inner;
}

function hostPlatform(): Platform {
  const arch: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' };
  return { os: 'linux', architecture: arch[process.arch] ?? process.arch };
}

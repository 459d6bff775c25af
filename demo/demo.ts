// The demo: a Debian image with python3 pulled lazily through cvmfs-snapshotter and run, next to
// an ordinary overlayfs pull of the same image, with private instances of everything (registry,
// containerd, the daemon) in one temp directory that is removed at the end, also after a failure
// or Ctrl-C. It runs as root; `./scripts/install-deps.sh && npm ci && npm run demo`.
import { existsSync } from 'node:fs';
import { exec } from '../src/sys/exec.js';
import type { Containerd } from '../test/helpers/containerd.js';
import { defaultDaemonConfig } from '../test/helpers/daemon.js';
import { debianPythonTarball, rootfsTarballLayer } from '../test/helpers/debian.js';
import { Harness } from '../test/helpers/harness.js';
import { CRI_NAMESPACE, cli, ingest } from '../test/helpers/lazy.js';
import { busyboxRootfs } from '../test/helpers/rootfs.js';

const HELLO = 'hello from a lazy container';
const BASELINE_HELLO = 'hello from an overlayfs container';
/** The namespace of the ordinary pull, apart from CRI's. */
const BASELINE_NAMESPACE = 'demo';
/** The namespace of the untimed busybox container that starts containerd's first shim. */
const WARMUP_NAMESPACE = 'demo-warmup';
const TOOLS = ['containerd', 'ctr', 'runc', 'docker-registry', 'skopeo', 'umoci', 'debootstrap', 'tar'];

const say = (line: string): void => { process.stdout.write(`${line}\n`); };
const seconds = (ms: number): string => `${(ms / 1000).toFixed(2)} s`;
const mb = (bytes: number): string => `${(bytes / 1e6).toFixed(0)} MB`;

class Interrupted extends Error {}

let interrupted: NodeJS.Signals | undefined;
let harness: Harness | undefined;

/** Throws between steps once a signal came (a Ctrl-C in a terminal also stops the running step's commands). */
function checkpoint(): void {
  if (interrupted !== undefined) throw new Interrupted(`stopped by ${interrupted}`);
}

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  checkpoint();
  const t0 = performance.now();
  const r = await fn();
  return [r, performance.now() - t0];
}

async function missingTools(): Promise<string[]> {
  const missing: string[] = [];
  for (const t of TOOLS) if ((await exec('sh', ['-c', `command -v ${t}`])).code !== 0) missing.push(t);
  return missing;
}

/** `ctr run --rm` of python3 in the image; returns what it printed. */
async function runPython(ctd: Containerd, opts: { namespace: string; snapshotter: string; ref: string; name: string; text: string }): Promise<string> {
  const out = await ctd.ctr(['run', ...ctd.runFlags, '--rm', '--snapshotter', opts.snapshotter, opts.ref, opts.name,
    'python3', '-c', `print(${JSON.stringify(opts.text)})`], { namespace: opts.namespace, timeoutMs: 120_000 });
  return out.trim();
}

async function demo(h: Harness): Promise<void> {
  say(`work directory: ${h.dir} (removed at the end)`);

  const [debian, debianMs] = await timed(() => debianPythonTarball());
  say(`[1/6] Debian bookworm + python3 root filesystem: ${debian.built ? `built with debootstrap in ${seconds(debianMs)}` : 'cached'} (${debian.tarball})`);

  const [registry] = await timed(() => h.startRegistry());
  const [image, buildMs] = await timed(() => h.buildImage({
    registry,
    name: 'demo/debian-python',
    tag: 'bookworm',
    layers: [rootfsTarballLayer(debian.tarball, 'debootstrap bookworm minbase + python3-minimal')],
    config: { cmd: ['python3'] },
  }));
  const size = image.layers.reduce((n, l) => n + l.size, 0);
  say(`[2/6] private registry at ${registry.url}; image ${image.ref} (${image.layers.length} layer, ${mb(size)} compressed) built and pushed in ${seconds(buildMs)}`);

  const store = await h.scope.mkdir('store');
  const [, ingestMs] = await timed(() => ingest(store, image.ref));
  say(`[3/6] ingested into a layer store in DUCC's layout (${store}) in ${seconds(ingestMs)}`);

  const [daemon] = await timed(() => h.startDaemon({ logLevel: 'info', configToml: defaultDaemonConfig(store) }));
  const [ctd] = await timed(() => h.startContainerd({ snapshotterSocket: daemon.socket, registries: [registry], criEnabled: true }));
  say(`[4/6] started cvmfs-snapshotter (pid ${daemon.pid}) and containerd (pid ${ctd.process.pid}, CRI using cvmfs-snapshotter)`);
  // A freshly started containerd takes about a second more for its very first container, whatever
  // the snapshotter (its first shim). A node has run containers before: that second is paid here,
  // by a busybox container of its own, and not by whichever of the two timed runs comes first.
  const warmRef = (await h.buildImage({ registry, name: 'demo/warmup', layers: [(r) => busyboxRootfs(r)] })).ref;
  await ctd.ctr(['images', 'pull', ...ctd.pullFlags, '--snapshotter', 'overlayfs', warmRef], { namespace: WARMUP_NAMESPACE, timeoutMs: 120_000 });
  const [, warmMs] = await timed(() => ctd.ctr(['run', ...ctd.runFlags, '--rm', '--snapshotter', 'overlayfs', warmRef, 'demo-warmup', '/bin/busybox', 'true'],
    { namespace: WARMUP_NAMESPACE, timeoutMs: 120_000 }));
  say(`      containerd's first container (busybox, not counted below): ${seconds(warmMs)}`);

  const [pulled, lazyPullMs] = await timed(() => cli(['pull', '--containerd', ctd.socket, '--verbose', image.ref]));
  const lazyLine = pulled.stdout.split('\n').find((l) => /layers lazy/.test(l))?.trim() ?? '';
  say(`[5/6] lazy pull (cvmfs-snapshotter pull, through containerd's CRI): ${seconds(lazyPullMs)}${lazyLine ? `, ${lazyLine}` : ''}`);
  const [hello, lazyRunMs] = await timed(() => runPython(ctd, { namespace: CRI_NAMESPACE, snapshotter: 'cvmfs-snapshotter', ref: image.ref, name: 'demo-lazy', text: HELLO }));
  say(`      $ ctr run --snapshotter cvmfs-snapshotter ... python3 -c 'print("${HELLO}")'`);
  say(`      ${hello}`);
  if (hello !== HELLO) throw new Error(`the lazy container printed ${JSON.stringify(hello)}, not ${JSON.stringify(HELLO)}`);

  const [, plainPullMs] = await timed(() => ctd.ctr(['images', 'pull', ...ctd.pullFlags, '--snapshotter', 'overlayfs', image.ref],
    { namespace: BASELINE_NAMESPACE, timeoutMs: 300_000 }));
  say(`[6/6] ordinary pull (ctr images pull, overlayfs: download and unpack every layer): ${seconds(plainPullMs)}`);
  const [plain, plainRunMs] = await timed(() => runPython(ctd, { namespace: BASELINE_NAMESPACE, snapshotter: 'overlayfs', ref: image.ref, name: 'demo-plain', text: BASELINE_HELLO }));
  say(`      ${plain}`);
  if (plain !== BASELINE_HELLO) throw new Error(`the overlayfs container printed ${JSON.stringify(plain)}`);

  const row = (what: string, pull: number, run: number): string =>
    `${what.padEnd(34)}${seconds(pull).padStart(9)}${seconds(run).padStart(12)}${seconds(pull + run).padStart(10)}`;
  say('');
  say(`${''.padEnd(34)}${'pull'.padStart(9)}${'start+run'.padStart(12)}${'total'.padStart(10)}`);
  say(row('lazy (cvmfs-snapshotter, CRI)', lazyPullMs, lazyRunMs));
  say(row('overlayfs (ctr pull)', plainPullMs, plainRunMs));
  say('(one run each, wall time of the commands; `npm run bench` repeats and compares properly)');
}

async function cleanUp(): Promise<string[]> {
  const h = harness;
  if (h === undefined) return [];
  try {
    await h.teardown();
    return [];
  } catch (err) {
    return [(err as Error).message];
  }
}

async function main(): Promise<number> {
  say('cvmfs-snapshotter demo: a lazy pull and start of a Debian image with python3, next to an ordinary pull');
  if (process.getuid?.() !== 0) {
    say('error: the demo mounts filesystems and runs containerd: run it as root');
    return 1;
  }
  const missing = await missingTools();
  if (missing.length > 0) {
    say(`error: missing ${missing.join(', ')}: run ./scripts/install-deps.sh first`);
    return 1;
  }
  const onSignal = (signal: NodeJS.Signals): void => {
    if (interrupted === undefined) {
      interrupted = signal;
      say(`${signal}: stopping and cleaning up (again to clean up at once)`);
      return;
    }
    say(`${signal} again: cleaning up now`);
    void cleanUp().finally(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  let code = 0;
  try {
    harness = await Harness.create('demo');
    await demo(harness);
  } catch (err) {
    if (interrupted !== undefined) {
      say(`interrupted (${interrupted})`);
    } else {
      say(`error: ${(err as Error).message}`);
      code = 1;
    }
  }
  const problems = await cleanUp();
  // After an interruption the servers have already stopped on the terminal's signal: what the
  // clean-up found then is expected, so it is only reported.
  if (problems.length > 0) {
    say(`${interrupted !== undefined ? 'clean-up' : 'error: clean-up'}: ${problems.join('\n')}`);
    if (interrupted === undefined) code = 1;
  }
  if (harness !== undefined && !existsSync(harness.dir)) say(`cleaned up: every process stopped, nothing left mounted, ${harness.dir} removed`);
  return interrupted !== undefined ? 130 : code;
}

main().then((code) => { process.exitCode = code; }, (err: unknown) => {
  say(`error: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
  process.exitCode = 1;
});

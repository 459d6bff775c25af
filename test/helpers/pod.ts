// A DaemonSet's pod run the way a kubelet would run it, with podman in a private store: the pod
// spec is read from the manifest (deploy/kubernetes/daemonset.yaml), not from a copy, and turned
// into one `podman run` per container. The only change made to it is a relocation: every
// hostPath directory moves under a private "host" directory, on both sides of the volume (the
// host path and the path in the container), and so do the container arguments and the ConfigMap
// values that name them. A pod whose mounts must appear on the host at the same path thus still
// has them at the same path, and nothing of the real host's /var/lib, /run or /cvmfs is used.
//
// What a kubelet gives a pod and this runner gives too: privileged containers, the hostPath and
// ConfigMap volumes with their mount propagation (Bidirectional: rshared, HostToContainer:
// rslave), the args, the termination grace period on stop (SIGTERM, then SIGKILL), and exec-free
// httpGet probes (run from inside the container on 127.0.0.1, which is the pod's own network
// namespace). Both containers of a pod share its host name, as a pod's containers share its UTS
// namespace; each has a network namespace of its own with only loopback, which is all the probes
// need. Helpers here observe; the test files judge.
import { mkdir, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, join, relative } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { parse as parseToml, stringify as stringifyToml, type TomlPrimitive } from 'smol-toml';
import { exec, execOk, type ExecResult } from '../../src/sys/exec.js';
import type { Scope } from './scope.js';

export interface HttpProbe { httpGet: { path: string; port: number }; periodSeconds?: number; failureThreshold?: number; timeoutSeconds?: number }
export interface VolumeMount { name: string; mountPath: string; mountPropagation?: 'None' | 'HostToContainer' | 'Bidirectional'; readOnly?: boolean }
export interface Volume {
  name: string;
  hostPath?: { path: string; type?: string };
  configMap?: { name: string; items?: { key: string; path: string }[] };
}
export interface ContainerSpec {
  name: string;
  image: string;
  args?: string[];
  securityContext?: { privileged?: boolean };
  volumeMounts?: VolumeMount[];
  readinessProbe?: HttpProbe;
  livenessProbe?: HttpProbe;
}
export interface PodSpec {
  containers: ContainerSpec[];
  volumes: Volume[];
  terminationGracePeriodSeconds?: number;
  hostNetwork?: boolean;
  hostPID?: boolean;
}
export interface DaemonSetManifest {
  pod: PodSpec;
  updateStrategy: { type?: string; rollingUpdate?: { maxSurge?: number | string; maxUnavailable?: number | string } };
  configMaps: Map<string, Record<string, string>>;
}

interface K8sObject {
  kind: string;
  metadata: { name: string };
  data?: Record<string, string>;
  spec?: { updateStrategy?: DaemonSetManifest['updateStrategy']; template: { spec: PodSpec } };
}

/** The DaemonSet and the ConfigMaps of a manifest file. */
export function readDaemonSet(file: string): DaemonSetManifest {
  const docs = parseAllDocuments(readFileSync(file, 'utf8'));
  if (!Array.isArray(docs)) throw new Error(`${file}: not a list of YAML documents`);
  const objects = docs.map((d) => {
    if (d.errors.length > 0) throw new Error(`${file}: ${d.errors.map((e) => e.message).join('; ')}`);
    return d.toJS() as K8sObject;
  });
  const sets = objects.filter((o) => o.kind === 'DaemonSet');
  if (sets.length !== 1 || sets[0]?.spec === undefined) throw new Error(`${file}: expected one DaemonSet with a spec, found ${sets.length}`);
  const configMaps = new Map(objects.filter((o) => o.kind === 'ConfigMap').map((o) => [o.metadata.name, o.data ?? {}]));
  return { pod: sets[0].spec.template.spec, updateStrategy: sets[0].spec.updateStrategy ?? {}, configMaps };
}

/** Moves hostPath directories (and everything that names them) under a private host directory. */
export class Relocation {
  private readonly moved: string[];
  constructor(readonly hostRoot: string, pod: PodSpec) {
    this.moved = pod.volumes.filter((v) => v.hostPath !== undefined && v.hostPath.type !== 'CharDevice')
      .map((v) => v.hostPath?.path as string);
  }

  /** p, moved under hostRoot if it is (or is below) a relocated hostPath directory. */
  path(p: string): string {
    if (!isAbsolute(p)) return p;
    for (const m of this.moved) {
      const rel = relative(m, p);
      if (rel === '' || (!rel.startsWith('..') && !isAbsolute(rel))) return join(this.hostRoot, p);
    }
    return p;
  }

  /** A TOML text with every string value that names a relocated path relocated. */
  toml(text: string): string {
    const walk = (v: unknown): unknown => {
      if (typeof v === 'string') return this.path(v);
      if (Array.isArray(v)) return v.map(walk);
      if (v !== null && typeof v === 'object' && !(v instanceof Date)) {
        return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, walk(x)]));
      }
      return v;
    };
    return stringifyToml(walk(parseToml(text)) as Record<string, TomlPrimitive>);
  }
}

/** This process's hard limit of a resource, from /proc/self/limits. */
function hardLimit(name: string): number {
  const line = readFileSync('/proc/self/limits', 'utf8').split('\n').find((l) => l.startsWith(name));
  const n = Number(line?.slice(name.length).trim().split(/\s+/)[1]);
  if (!Number.isSafeInteger(n)) throw new Error(`no numeric hard limit "${name}" in /proc/self/limits`);
  return n;
}

/** podman with its storage, run state and temp files in a private directory. */
export class Podman {
  readonly global: string[];
  /**
   * The containers' resource limits: those a container runtime started from here has. Left to
   * itself podman asks for more (nofile 1048576) than a process without CAP_SYS_RESOURCE may
   * raise to, and it lowers its own nproc to 32768 at start, so no container could ask for more.
   */
  readonly ulimits: string[];
  constructor(readonly dir: string) {
    const nofile = hardLimit('Max open files');
    const nproc = Math.min(hardLimit('Max processes'), 32768);
    this.ulimits = ['--ulimit', `nofile=${nofile}:${nofile}`, '--ulimit', `nproc=${nproc}:${nproc}`];
    this.global = [
      '--root', join(dir, 'storage'), '--runroot', join(dir, 'run'), '--tmpdir', join(dir, 'tmp'),
      '--storage-driver', 'vfs', '--cgroup-manager', 'cgroupfs', '--events-backend', 'file', '--runtime', 'runc',
    ];
  }

  run(args: readonly string[], timeoutMs = 120_000): Promise<ExecResult> {
    return exec('podman', [...this.global, ...args], { timeoutMs });
  }

  async ok(args: readonly string[], timeoutMs = 120_000): Promise<string> {
    const r = await this.run(args, timeoutMs);
    if (r.code !== 0) throw new Error(`podman ${args.join(' ')} failed (exit ${String(r.code)}):\n${r.stderr.trim()}\n${r.stdout.trim()}`);
    return r.stdout;
  }

  /** Loads an OCI archive; returns the names it was loaded under. */
  async load(archive: string): Promise<string> {
    return (await this.ok(['load', '--quiet', '--input', archive], 600_000)).trim();
  }

  /** Removes every container of this private store (cleanup). */
  async removeAll(): Promise<void> {
    await this.run(['rm', '--all', '--force', '--time', '5'], 120_000);
  }
}

export interface PodContainer {
  readonly spec: ContainerSpec;
  /** The podman container name: <pod>-<container>. */
  readonly name: string;
  /** The full `podman run` command line (after the global flags). */
  readonly runArgs: readonly string[];
}

export interface ContainerState { running: boolean; exitCode: number; pid: number }

/** One pod of the DaemonSet, as podman containers. */
export class Pod {
  readonly containers: PodContainer[];
  private constructor(readonly name: string, private readonly podman: Podman, readonly spec: PodSpec, containers: PodContainer[]) {
    this.containers = containers;
  }

  /**
   * Plans the pod: makes its hostPath directories (DirectoryOrCreate) and ConfigMap files, and
   * the `podman run` arguments of each container. image replaces every container's image (an
   * upgrade: the manifest with a new tag).
   */
  static async plan(opts: {
    scope: Scope; podman: Podman; manifest: DaemonSetManifest; relocation: Relocation; name: string; image?: string;
  }): Promise<Pod> {
    const { manifest, relocation: rel, name } = opts;
    const pod = manifest.pod;
    const volumeArgs = new Map<string, (m: VolumeMount) => string[]>();
    for (const v of pod.volumes) {
      if (v.hostPath) {
        const host = v.hostPath.type === 'CharDevice' ? v.hostPath.path : rel.path(v.hostPath.path);
        if (v.hostPath.type === 'DirectoryOrCreate') await mkdir(host, { recursive: true });
        const device = v.hostPath.type === 'CharDevice';
        volumeArgs.set(v.name, (m) => {
          const flags = m.readOnly ? ['ro'] : [];
          if (!device) {
            flags.push(m.mountPropagation === 'Bidirectional' ? 'rshared' : m.mountPropagation === 'HostToContainer' ? 'rslave' : 'rprivate', 'rbind');
          }
          const target = device ? m.mountPath : rel.path(m.mountPath);
          return ['--volume', `${host}:${target}${flags.length > 0 ? `:${flags.join(',')}` : ''}`];
        });
      } else if (v.configMap) {
        const data = manifest.configMaps.get(v.configMap.name);
        if (data === undefined) throw new Error(`volume ${v.name}: no ConfigMap ${v.configMap.name} in the manifest`);
        const dir = await opts.scope.mkdir('configmaps', name, v.name);
        const items = v.configMap.items ?? Object.keys(data).map((key) => ({ key, path: key }));
        for (const item of items) {
          const text = data[item.key];
          if (text === undefined) throw new Error(`volume ${v.name}: ConfigMap ${v.configMap.name} has no key ${item.key}`);
          await mkdir(dirname(join(dir, item.path)), { recursive: true });
          await writeFile(join(dir, item.path), item.path.endsWith('.toml') ? rel.toml(text) : text);
        }
        volumeArgs.set(v.name, (m) => ['--volume', `${dir}:${rel.path(m.mountPath)}:ro`]);
      } else {
        throw new Error(`volume ${v.name}: only hostPath and configMap volumes are supported here`);
      }
    }
    const grace = pod.terminationGracePeriodSeconds ?? 30;
    const containers = pod.containers.map((c): PodContainer => {
      const cname = `${name}-${c.name}`;
      const args = ['run', '--detach', '--name', cname, '--hostname', name,
        '--network', pod.hostNetwork ? 'host' : 'none', '--ipc', 'private', '--pid', pod.hostPID ? 'host' : 'private',
        '--log-driver', 'k8s-file', '--log-opt', `path=${opts.scope.path(`${cname}.log`)}`,
        '--stop-timeout', String(grace), '--pull', 'never', ...opts.podman.ulimits];
      if (c.securityContext?.privileged) args.push('--privileged');
      for (const m of c.volumeMounts ?? []) {
        const make = volumeArgs.get(m.name);
        if (!make) throw new Error(`container ${c.name}: volumeMount ${m.name} names no volume`);
        args.push(...make(m));
      }
      args.push(opts.image ?? c.image, ...(c.args ?? []).map((a) => rel.path(a)));
      return { spec: c, name: cname, runArgs: args };
    });
    return new Pod(name, opts.podman, pod, containers);
  }

  container(name: string): PodContainer {
    const c = this.containers.find((x) => x.spec.name === name);
    if (!c) throw new Error(`pod ${this.name} has no container ${name}`);
    return c;
  }

  /** Starts the containers in the given order (the manifest's by default), as a kubelet does. */
  async start(order: readonly string[] = this.containers.map((c) => c.spec.name)): Promise<void> {
    for (const n of order) await this.startContainer(n);
  }

  async startContainer(name: string): Promise<void> {
    await this.podman.ok(this.container(name).runArgs);
  }

  async state(name: string): Promise<ContainerState> {
    const out = await this.podman.ok(['inspect', '--format', '{{.State.Running}} {{.State.ExitCode}} {{.State.Pid}}', this.container(name).name]);
    const [running, code, pid] = out.trim().split(' ');
    return { running: running === 'true', exitCode: Number(code), pid: Number(pid) };
  }

  /** The container's output so far (its k8s-file log, message text only). */
  async logs(name: string): Promise<string> {
    return (await this.podman.run(['logs', this.container(name).name])).stdout;
  }

  /**
   * Runs a container's httpGet probe the way the kubelet judges it (2xx and 3xx pass), from inside
   * the container: the pod's network namespace. Returns the status (0: no answer) and the body.
   */
  async probe(name: string, kind: 'readinessProbe' | 'livenessProbe'): Promise<{ pass: boolean; status: number; body: string }> {
    const p = this.container(name).spec[kind];
    if (!p) throw new Error(`container ${name} has no ${kind}`);
    const timeout = (p.timeoutSeconds ?? 1) * 1000;
    const script = `fetch('http://127.0.0.1:${p.httpGet.port}${p.httpGet.path}', { signal: AbortSignal.timeout(${timeout}) })`
      + '.then(async (r) => { process.stdout.write(r.status + " " + (await r.text())); })'
      + '.catch((e) => { process.stdout.write("0 " + e.message); })';
    const r = await this.podman.run(['exec', this.container(name).name, '/usr/local/bin/node', '-e', script], 30_000);
    const m = /^(\d+) ([\s\S]*)$/.exec(r.stdout);
    const status = m ? Number(m[1]) : 0;
    return { pass: status >= 200 && status < 400, status, body: m ? (m[2] ?? '').trim() : `${r.stdout}${r.stderr}`.trim() };
  }

  /** Deletes the pod as the API server and kubelet do: SIGTERM to every container, SIGKILL after the grace period. */
  async delete(): Promise<Map<string, ContainerState>> {
    const grace = this.spec.terminationGracePeriodSeconds ?? 30;
    await this.podman.ok(['stop', '--time', String(grace), ...this.containers.map((c) => c.name)], (grace + 60) * 1000);
    const states = new Map<string, ContainerState>();
    for (const c of this.containers) states.set(c.spec.name, await this.state(c.spec.name));
    await this.podman.ok(['rm', ...this.containers.map((c) => c.name)]);
    return states;
  }
}

/** Makes dir a mount point of its own with shared propagation (rshared volumes need it); returns the undo. */
export async function makeShared(dir: string): Promise<() => Promise<void>> {
  await execOk('mount', ['--bind', dir, dir]);
  await execOk('mount', ['--make-rshared', dir]);
  return async () => { await exec('umount', ['--lazy', dir]); };
}

// deploy/kubernetes/daemonset.yaml: a privileged DaemonSet whose layer mounts reach the host's
// containerd (Bidirectional at the same paths), /dev/fuse and /cvmfs from the host, and a
// ConfigMap whose two TOML files are the ones in deploy/ and say what the daemon and containerd need.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { parse as parseToml } from 'smol-toml';
import { configFromToml, DEFAULT_ADDRESS, DEFAULT_CONFIG_PATH, DEFAULT_ROOT } from '../../src/cli/config.js';
import { repoRoot } from '../helpers/paths.js';

interface VolumeMount { name: string; mountPath: string; mountPropagation?: string; readOnly?: boolean }
interface Volume { name: string; hostPath?: { path: string; type?: string }; configMap?: { name: string; items?: { key: string; path: string }[] } }
interface Container { name: string; image: string; args?: string[]; securityContext?: { privileged?: boolean }; volumeMounts?: VolumeMount[] }
interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string };
  data?: Record<string, string>;
  spec?: {
    selector: { matchLabels: Record<string, string> };
    template: { metadata: { labels: Record<string, string> }; spec: { containers: Container[]; volumes: Volume[]; hostPID?: boolean } };
  };
}

const deployFile = (...p: string[]): string => readFileSync(join(repoRoot, 'deploy', ...p), 'utf8');

function load(): Manifest[] {
  const docs = parseAllDocuments(deployFile('kubernetes', 'daemonset.yaml'));
  assert.ok(Array.isArray(docs), 'the file parses as YAML documents');
  for (const d of docs) assert.deepEqual(d.errors, [], 'no YAML errors');
  return docs.map((d) => d.toJS() as Manifest);
}

function the(kind: string): Manifest {
  const found = load().filter((m) => m.kind === kind);
  assert.equal(found.length, 1, `one ${kind}`);
  return found[0] as Manifest;
}

/** The two containers: the FUSE server, which a daemon restart must not take down, and the daemon. */
const CONTAINERS = ['fuse-server', 'daemon'] as const;
type ContainerName = typeof CONTAINERS[number];

function daemonSet(name: ContainerName = 'daemon'): { ds: Manifest; container: Container; volumes: Volume[] } {
  const ds = the('DaemonSet');
  const pod = ds.spec?.template.spec;
  assert.ok(pod, 'the DaemonSet has a pod template');
  assert.deepEqual(pod.containers.map((c) => c.name), [...CONTAINERS], 'a FUSE server container and a daemon container');
  return { ds, container: pod.containers.find((c) => c.name === name) as Container, volumes: pod.volumes };
}

/** The host directory mounted at mountPath in a container, with its mount and volume. */
function hostMount(mountPath: string, name: ContainerName = 'fuse-server'): { mount: VolumeMount; volume: Volume } {
  const { container, volumes } = daemonSet(name);
  const mount = container.volumeMounts?.find((m) => m.mountPath === mountPath);
  assert.ok(mount, `something is mounted at ${mountPath} in ${name}`);
  const volume = volumes.find((v) => v.name === mount.name);
  assert.ok(volume, `volume ${mount.name} exists`);
  return { mount, volume };
}

test('a DaemonSet in kube-system whose selector matches its pods, privileged, without the host PID namespace', () => {
  const { ds } = daemonSet();
  assert.equal(ds.apiVersion, 'apps/v1');
  assert.equal(ds.metadata.namespace, 'kube-system');
  const selector = ds.spec?.selector.matchLabels ?? {};
  const labels = ds.spec?.template.metadata.labels ?? {};
  assert.ok(Object.keys(selector).length > 0);
  for (const [k, v] of Object.entries(selector)) assert.equal(labels[k], v, `pods carry the selector's ${k}`);
  for (const name of CONTAINERS) {
    assert.equal(daemonSet(name).container.securityContext?.privileged, true, `${name} is privileged: FUSE mounts, and it sees them`);
  }
  assert.notEqual(ds.spec?.template.spec.hostPID, true);
});

test('/dev/fuse and /cvmfs come from the host; /cvmfs with HostToContainer propagation', () => {
  const fuse = hostMount('/dev/fuse');
  assert.deepEqual(fuse.volume.hostPath, { path: '/dev/fuse', type: 'CharDevice' });
  for (const name of CONTAINERS) {
    const cvmfs = hostMount('/cvmfs', name);
    assert.equal(cvmfs.volume.hostPath?.path, '/cvmfs');
    assert.equal(cvmfs.mount.mountPropagation, 'HostToContainer', `repositories autofs mounts later reach ${name}`);
  }
});

test('the root and the socket directory are the host\'s, at the same paths, with Bidirectional propagation', () => {
  for (const name of CONTAINERS) {
    for (const dir of [DEFAULT_ROOT, '/run/containerd-cvmfs-grpc']) {
      const { mount, volume } = hostMount(dir, name);
      assert.equal(volume.hostPath?.path, dir, `${dir} is the host's ${dir}: containerd gets these paths as overlay lowerdirs`);
      assert.equal(mount.mountPropagation, 'Bidirectional', `FUSE mounts made under ${dir} in ${name} reach the host and the other container`);
    }
  }
  const args = (name: ContainerName): string[] => daemonSet(name).container.args ?? [];
  const arg = (name: ContainerName, flag: string): string | undefined => args(name)[args(name).indexOf(flag) + 1];
  assert.equal(arg('daemon', '--root'), DEFAULT_ROOT);
  assert.equal(arg('daemon', '--address'), DEFAULT_ADDRESS);
  assert.equal(arg('daemon', '--config'), DEFAULT_CONFIG_PATH);
  assert.equal(arg('fuse-server', '--root'), DEFAULT_ROOT, 'the FUSE server mounts layers only below the daemon\'s root');
  assert.equal(arg('fuse-server', '--config'), DEFAULT_CONFIG_PATH, 'the FUSE server reads the same config');
  assert.equal(arg('fuse-server', '--socket'), join(DEFAULT_ADDRESS, '..', 'fuse-server.sock'), 'the FUSE server listens where the daemon looks by default');
});

test('upgrades: the new pod replaces the old one\'s FUSE server and daemon, and the old pod goes only once the new one is ready', () => {
  const { ds } = daemonSet();
  const strategy = (ds.spec as { updateStrategy?: unknown } | undefined)?.updateStrategy;
  assert.deepEqual(strategy, { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } });
  const fuse = daemonSet('fuse-server').container;
  const daemon = daemonSet('daemon').container;
  assert.equal(fuse.args?.[0], 'fuse-server');
  assert.ok(fuse.args?.includes('--replace'), 'the FUSE server takes the mounts over from the old pod\'s');
  assert.ok(daemon.args?.includes('--replace'), 'the daemon asks the old pod\'s daemon to step down');
  assert.ok(daemon.args?.includes('--external-fuse-server'), 'the daemon never starts a FUSE server inside its own container');
  const probes = daemon as Container & { readinessProbe?: { httpGet?: { path: string; port: number } }; livenessProbe?: { httpGet?: { path: string; port: number } } };
  assert.equal(probes.readinessProbe?.httpGet?.path, '/readyz');
  assert.equal(probes.livenessProbe?.httpGet?.path, '/livez');
  const cm = the('ConfigMap');
  const config = configFromToml(parseToml(cm.data?.['config.toml'] ?? '') as Record<string, unknown>, 'ConfigMap config.toml');
  assert.equal(config.metrics?.port, probes.readinessProbe?.httpGet?.port, 'the probes ask the port the daemon serves /metrics on');
  assert.equal(config.metrics?.host, '', 'on the pod\'s address, where the kubelet probes it');
  assert.equal((fuse as { livenessProbe?: unknown }).livenessProbe, undefined, 'no liveness probe on the FUSE server: a restart would take every layer down');
});

test('a pod deleted on its own gives the next pod\'s FUSE server time to take the mounts over, within its grace period', () => {
  const { ds } = daemonSet();
  const grace = (ds.spec as { template?: { spec?: { terminationGracePeriodSeconds?: number } } } | undefined)?.template?.spec?.terminationGracePeriodSeconds ?? 30;
  const args = daemonSet('fuse-server').container.args ?? [];
  const wait = Number(args[args.indexOf('--successor-wait') + 1]);
  assert.ok(args.includes('--successor-wait') && Number.isInteger(wait) && wait > 0, `--successor-wait is given: ${args.join(' ')}`);
  // What is left of the grace period unmounts the layers when no successor came.
  assert.ok(grace - wait >= 10, `${grace} s of grace for a ${wait} s wait`);
});

test('the ConfigMap\'s config.toml is deploy/config.toml, mounted where the daemon reads it, with the store under /cvmfs', () => {
  const cm = the('ConfigMap');
  const text = cm.data?.['config.toml'];
  assert.ok(text?.startsWith(deployFile('config.toml')), 'it begins as deploy/config.toml');
  assert.equal(text?.slice(deployFile('config.toml').length).replace(/^\s*#.*$/gm, '').trim(), '[metrics]\naddress = ":9110"', 'and adds only the metrics address');
  const config = configFromToml(parseToml(text ?? '') as Record<string, unknown>, 'ConfigMap config.toml');
  assert.ok(config.absoluteMountpoint.startsWith('/cvmfs/'), 'the layer store is inside the /cvmfs host mount');

  const { mount, volume } = hostMount('/etc/containerd-cvmfs-grpc', 'daemon');
  assert.equal(volume.configMap?.name, cm.metadata.name);
  assert.equal(cm.metadata.namespace, the('DaemonSet').metadata.namespace);
  assert.deepEqual(volume.configMap?.items, [{ key: 'config.toml', path: 'config.toml' }]);
  assert.equal(join(mount.mountPath, 'config.toml'), DEFAULT_CONFIG_PATH);
});

test('the ConfigMap\'s containerd-config.toml is deploy/containerd/config.toml: proxy plugin, CRI snapshotter, annotations on', () => {
  const text = the('ConfigMap').data?.['containerd-config.toml'];
  assert.equal(text, deployFile('containerd', 'config.toml'));
  const doc = parseToml(text ?? '') as {
    version?: number;
    proxy_plugins?: Record<string, { type?: string; address?: string }>;
    plugins?: Record<string, { containerd?: Record<string, unknown> } & Record<string, unknown>>;
  };
  assert.equal(doc.version, 2);
  assert.deepEqual({ ...doc.proxy_plugins?.['cvmfs-snapshotter'] }, { type: 'snapshot', address: DEFAULT_ADDRESS });
  const cri = doc.plugins?.['io.containerd.grpc.v1.cri'];
  assert.deepEqual({ ...cri?.containerd }, { snapshotter: 'cvmfs-snapshotter', disable_snapshot_annotations: false },
    'both keys under [plugins."io.containerd.grpc.v1.cri".containerd], where containerd reads them');
  assert.equal(cri?.['disable_snapshot_annotations'], undefined, 'one level up it would be ignored');
});

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

function daemonSet(): { ds: Manifest; container: Container; volumes: Volume[] } {
  const ds = the('DaemonSet');
  const pod = ds.spec?.template.spec;
  assert.ok(pod, 'the DaemonSet has a pod template');
  assert.equal(pod.containers.length, 1, 'one container');
  return { ds, container: pod.containers[0] as Container, volumes: pod.volumes };
}

/** The host directory mounted at mountPath, with its mount and volume. */
function hostMount(mountPath: string): { mount: VolumeMount; volume: Volume } {
  const { container, volumes } = daemonSet();
  const mount = container.volumeMounts?.find((m) => m.mountPath === mountPath);
  assert.ok(mount, `something is mounted at ${mountPath}`);
  const volume = volumes.find((v) => v.name === mount.name);
  assert.ok(volume, `volume ${mount.name} exists`);
  return { mount, volume };
}

test('a DaemonSet in kube-system whose selector matches its pods, privileged, without the host PID namespace', () => {
  const { ds, container } = daemonSet();
  assert.equal(ds.apiVersion, 'apps/v1');
  assert.equal(ds.metadata.namespace, 'kube-system');
  const selector = ds.spec?.selector.matchLabels ?? {};
  const labels = ds.spec?.template.metadata.labels ?? {};
  assert.ok(Object.keys(selector).length > 0);
  for (const [k, v] of Object.entries(selector)) assert.equal(labels[k], v, `pods carry the selector's ${k}`);
  assert.equal(container.securityContext?.privileged, true, 'privileged: it mounts FUSE filesystems');
  assert.notEqual(ds.spec?.template.spec.hostPID, true);
});

test('/dev/fuse and /cvmfs come from the host; /cvmfs with HostToContainer propagation', () => {
  const fuse = hostMount('/dev/fuse');
  assert.deepEqual(fuse.volume.hostPath, { path: '/dev/fuse', type: 'CharDevice' });
  const cvmfs = hostMount('/cvmfs');
  assert.equal(cvmfs.volume.hostPath?.path, '/cvmfs');
  assert.equal(cvmfs.mount.mountPropagation, 'HostToContainer', 'repositories autofs mounts later reach the pod');
});

test('the root and the socket directory are the host\'s, at the same paths, with Bidirectional propagation', () => {
  for (const dir of [DEFAULT_ROOT, '/run/containerd-cvmfs-grpc']) {
    const { mount, volume } = hostMount(dir);
    assert.equal(volume.hostPath?.path, dir, `${dir} is the host's ${dir}: containerd gets these paths as overlay lowerdirs`);
    assert.equal(mount.mountPropagation, 'Bidirectional', `FUSE mounts made under ${dir} in the pod reach the host`);
  }
  const { container } = daemonSet();
  const arg = (flag: string): string | undefined => container.args?.[container.args.indexOf(flag) + 1];
  assert.equal(arg('--root'), DEFAULT_ROOT);
  assert.equal(arg('--address'), DEFAULT_ADDRESS);
  assert.equal(arg('--config'), DEFAULT_CONFIG_PATH);
});

test('the ConfigMap\'s config.toml is deploy/config.toml, mounted where the daemon reads it, with the store under /cvmfs', () => {
  const cm = the('ConfigMap');
  const text = cm.data?.['config.toml'];
  assert.equal(text, deployFile('config.toml'));
  const config = configFromToml(parseToml(text ?? '') as Record<string, unknown>, 'ConfigMap config.toml');
  assert.ok(config.absoluteMountpoint.startsWith('/cvmfs/'), 'the layer store is inside the /cvmfs host mount');

  const { mount, volume } = hostMount('/etc/containerd-cvmfs-grpc');
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

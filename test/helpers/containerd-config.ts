// The config.toml (version 2) of a private containerd 1.6: every path inside its own directories,
// the snapshotter under test as a proxy plugin, CRI set up to use it.
export const PROXY_SNAPSHOTTER = 'cvmfs-snapshotter';

export interface ContainerdPaths {
  root: string;
  state: string;
  temp: string;
  /** grpc address; ttrpc listens on the same path + ".ttrpc". */
  socket: string;
  /** runc --root for CRI containers. */
  runcRoot: string;
  /** replaces /opt/containerd */
  opt: string;
  /** registry hosts.toml directory (certs.d layout) */
  hostsDir: string;
  cniBin: string;
  cniConf: string;
}

export interface ContainerdConfigOptions {
  paths: ContainerdPaths;
  /** The daemon's socket; the proxy plugin is left out if undefined. */
  snapshotterSocket?: string;
  /** Start the CRI plugin. Its config is written either way. */
  criEnabled: boolean;
  /** Snapshotter CRI uses (default: the proxy when there is one, else overlayfs). */
  criSnapshotter?: string;
  logLevel: string;
}

/** Plugins a test never needs; overlayfs stays, for baseline comparisons. */
const ALWAYS_DISABLED = [
  'io.containerd.snapshotter.v1.aufs',
  'io.containerd.snapshotter.v1.btrfs',
  'io.containerd.snapshotter.v1.devmapper',
  'io.containerd.snapshotter.v1.zfs',
  'io.containerd.tracing.processor.v1.otlp',
];

const CRI = 'io.containerd.grpc.v1.cri';

function q(s: string): string {
  // A TOML basic string; JSON's escapes are a subset of TOML's.
  return JSON.stringify(s);
}

export function renderContainerdConfig(o: ContainerdConfigOptions): string {
  const p = o.paths;
  const disabled = [...ALWAYS_DISABLED, ...(o.criEnabled ? [] : [CRI])];
  const criSnapshotter = o.criSnapshotter ?? (o.snapshotterSocket !== undefined ? PROXY_SNAPSHOTTER : 'overlayfs');
  const lines = [
    'version = 2',
    `root = ${q(p.root)}`,
    `state = ${q(p.state)}`,
    `temp = ${q(p.temp)}`,
    `disabled_plugins = [${disabled.map(q).join(', ')}]`,
    '',
    '[grpc]',
    `  address = ${q(p.socket)}`,
    '',
    '[ttrpc]',
    `  address = ${q(`${p.socket}.ttrpc`)}`,
    '',
    '[debug]',
    '  address = ""',
    `  level = ${q(o.logLevel)}`,
    '',
    '[metrics]',
    '  address = ""',
    '',
    '[plugins]',
    '  [plugins."io.containerd.internal.v1.opt"]',
    `    path = ${q(p.opt)}`,
    `  [plugins.${q(CRI)}]`,
    '    disable_tcp_service = true',
    '    stream_server_address = "127.0.0.1"',
    '    stream_server_port = "0"',
    '    netns_mounts_under_state_dir = true',
    '    enable_selinux = false',
    '    disable_apparmor = true',
    // NOTES: these two only take effect in the .containerd table, not one level up.
    `    [plugins.${q(CRI)}.containerd]`,
    `      snapshotter = ${q(criSnapshotter)}`,
    '      disable_snapshot_annotations = false',
    '      default_runtime_name = "runc"',
    `      [plugins.${q(CRI)}.containerd.runtimes.runc]`,
    '        runtime_type = "io.containerd.runc.v2"',
    `        [plugins.${q(CRI)}.containerd.runtimes.runc.options]`,
    `          Root = ${q(p.runcRoot)}`,
    `    [plugins.${q(CRI)}.cni]`,
    `      bin_dir = ${q(p.cniBin)}`,
    `      conf_dir = ${q(p.cniConf)}`,
    `    [plugins.${q(CRI)}.registry]`,
    `      config_path = ${q(p.hostsDir)}`,
    '',
  ];
  if (o.snapshotterSocket !== undefined) {
    lines.push(
      '[proxy_plugins]',
      `  [proxy_plugins.${q(PROXY_SNAPSHOTTER)}]`,
      '    type = "snapshot"',
      `    address = ${q(o.snapshotterSocket)}`,
      '',
    );
  }
  return lines.join('\n');
}

/** hosts.toml for a plain-HTTP registry at host (host:port). */
export function renderRegistryHosts(host: string): string {
  return [
    `server = ${q(`http://${host}`)}`,
    '',
    `[host.${q(`http://${host}`)}]`,
    '  capabilities = ["pull", "resolve", "push"]',
    '',
  ].join('\n');
}

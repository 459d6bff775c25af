// Judging containerd's config.toml: the proxy plugin that points at our socket, and the CRI
// settings that make pulls lazy. Pure functions over parsed TOML (gather.ts reads the files).
//
// containerd reads a plugin's settings from one table only and ignores keys it does not know,
// so a setting one table too high or too low is silently dropped (NOTES: containerd 1.6 with
// disable_snapshot_annotations under [plugins."io.containerd.grpc.v1.cri"]). Hence the search
// for our keys anywhere else in the file.
import { finding, type Finding } from './findings.js';

export const PROXY_NAME = 'cvmfs-snapshotter';
const ANNOTATIONS = 'disable_snapshot_annotations';
const SNAPSHOTTER = 'snapshotter';

export type TomlDoc = Record<string, unknown>;

export interface ContainerdConfigFile {
  path: string;
  doc: TomlDoc;
}

export type ContainerdConfigFacts =
  | { state: 'missing'; path: string }
  | { state: 'error'; path: string; error: string }
  /** The main file first, then its imports in the order containerd loads them. */
  | { state: 'ok'; files: ContainerdConfigFile[] };

/** What the containerd binary says it is (`containerd --version`), if it could be run. */
export interface ContainerdBinary {
  version: string;
  major: number;
  minor: number;
}

/** Where each config version keeps what doctor checks. */
interface Layout {
  /** The table that holds snapshotter and disable_snapshot_annotations. */
  criTable: string[];
  /** disabled_plugins entries that switch CRI pulls off. */
  criPlugins: string[];
  /** disabled_plugins entry that switches the proxy plugin off. */
  proxyPlugin: string;
}

export function layoutFor(version: number): Layout {
  if (version === 1) return { criTable: ['plugins', 'cri', 'containerd'], criPlugins: ['cri'], proxyPlugin: PROXY_NAME };
  const proxyPlugin = `io.containerd.snapshotter.v1.${PROXY_NAME}`;
  if (version === 2) return { criTable: ['plugins', 'io.containerd.grpc.v1.cri', 'containerd'], criPlugins: ['io.containerd.grpc.v1.cri'], proxyPlugin };
  return { criTable: ['plugins', 'io.containerd.cri.v1.images'], criPlugins: ['io.containerd.grpc.v1.cri', 'io.containerd.cri.v1.images'], proxyPlugin };
}

function isTable(v: unknown): v is TomlDoc {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

/** `[plugins."io.containerd.grpc.v1.cri".containerd]`, or "the top level" for the root table. */
export function tableName(path: readonly string[]): string {
  if (path.length === 0) return 'the top level';
  return `[${path.map((p) => (/^[A-Za-z0-9_-]+$/.test(p) ? p : JSON.stringify(p))).join('.')}]`;
}

function lookup(doc: TomlDoc, path: readonly string[]): unknown {
  let cur: unknown = doc;
  for (const p of path) {
    if (!isTable(cur)) return undefined;
    cur = cur[p];
  }
  return cur;
}

function samePath(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** Every table (not inside arrays) that holds key, as paths from the root. */
export function tablesHolding(doc: TomlDoc, key: string): Array<{ path: string[]; value: unknown }> {
  const out: Array<{ path: string[]; value: unknown }> = [];
  const walk = (t: TomlDoc, path: string[]): void => {
    if (key in t) out.push({ path, value: t[key] });
    for (const [k, v] of Object.entries(t)) if (isTable(v)) walk(v, [...path, k]);
  };
  walk(doc, []);
  return out;
}

/** containerd's merge of a config and its imports: later files win per plugin section. */
export interface MergedConfig {
  version: number;
  plugins: TomlDoc;
  proxyPlugins: TomlDoc;
  disabledPlugins: unknown[];
}

export function mergeContainerdConfigs(files: readonly ContainerdConfigFile[]): MergedConfig {
  const m: MergedConfig = { version: 0, plugins: {}, proxyPlugins: {}, disabledPlugins: [] };
  for (const { doc } of files) {
    // mergo with override: a later non-zero version wins; slices are appended.
    if (typeof doc['version'] === 'number' && doc['version'] !== 0) m.version = doc['version'];
    if (isTable(doc['plugins'])) Object.assign(m.plugins, doc['plugins']);
    if (isTable(doc['proxy_plugins'])) Object.assign(m.proxyPlugins, doc['proxy_plugins']);
    if (Array.isArray(doc['disabled_plugins'])) m.disabledPlugins.push(...(doc['disabled_plugins'] as unknown[]));
  }
  if (m.version === 0) m.version = 1;
  return m;
}

export interface AnalysisInput {
  facts: ContainerdConfigFacts;
  /** The socket the daemon serves on (doctor's --address). */
  address: string;
  /** Canonical form of a socket path (symlinked directories resolved, e.g. /var/run → /run). */
  canonical: (path: string) => string;
  binary: ContainerdBinary | undefined;
}

export function analyzeContainerdConfig(input: AnalysisInput): Finding[] {
  const { facts } = input;
  const f = (check: string, level: 'ok' | 'warn' | 'fail', m: string): Finding => finding(`containerd.${check}`, 'containerd', level, m);
  if (facts.state === 'missing') {
    return [f('config', 'fail', `no config at ${facts.path}, so containerd runs with defaults that know nothing of ${PROXY_NAME}: write one with the settings under "Configuring containerd" in the README (or pass --containerd-config)`)];
  }
  if (facts.state === 'error') return [f('config', 'fail', `${facts.error}; containerd will not start with it`)];

  const files = facts.files;
  const main = files[0];
  if (!main) return [f('config', 'fail', 'no config file was read')];
  const merged = mergeContainerdConfigs(files);
  const out: Finding[] = [];
  const imported = files.length > 1 ? ` (with imports ${files.slice(1).map((x) => x.path).join(', ')})` : '';
  const inFile = (path: string): string => (files.length > 1 ? ` in ${path}` : '');

  const v = merged.version;
  const bin = input.binary;
  if (v < 1 || v > 3 || !Number.isInteger(v)) {
    return [f('version', 'fail', `${main.path}: version = ${v} is not a containerd config version (1, 2 or 3); write version = 2 for containerd 1.6/1.7`)];
  }
  if (bin && bin.major < 2 && v === 3) {
    out.push(f('version', 'fail', `${main.path}: version = 3 is containerd 2's format, but containerd here is ${bin.version}, which reads it as version 2 and finds none of the version 3 tables: write version = 2 and put the CRI settings under ${tableName(layoutFor(2).criTable)}`));
    return out;
  }
  if (bin && bin.major >= 2 && v === 1) {
    out.push(f('version', 'fail', `${main.path} has no "version = 2" or "version = 3" line, so it is version 1, which containerd ${bin.version} does not read: convert it (containerd config migrate)`));
    return out;
  }
  if (v === 1) {
    out.push(f('version', 'warn', `${main.path}${imported} is config version 1 (no version line), deprecated since containerd 1.5: consider version = 2, with the CRI settings under ${tableName(layoutFor(2).criTable)}`));
  } else {
    out.push(f('version', 'ok', `${main.path}${imported}: config version ${v}`));
  }
  // Version 2 and 3 refuse plugin keys that are not full plugin names, such as version 1's "cri".
  if (v >= 2) {
    // Our own keys placed directly under [plugins] are reported below, with where they belong.
    const short = Object.keys(merged.plugins).filter((k) => k.split('.').length < 4 && isTable(merged.plugins[k]));
    for (const k of short) {
      const hint = k === 'cri' ? `; version ${v} calls it "${v === 2 ? 'io.containerd.grpc.v1.cri' : 'io.containerd.cri.v1.images'}"` : '; quote the plugin name, as in [plugins."io.containerd.grpc.v1.cri"]';
      out.push(f('plugins', 'fail', `${tableName(['plugins', k])} is not a full plugin name, so containerd refuses to start ("invalid plugin key URI")${hint}`));
    }
  }

  const layout = layoutFor(v);
  out.push(checkProxy(merged, input));
  out.push(...checkDisabled(merged, layout));
  out.push(...checkCriSnapshotter(files, merged, layout, inFile));
  out.push(...checkAnnotations(files, merged, layout, inFile));
  return out;
}

function checkProxy(merged: MergedConfig, input: AnalysisInput): Finding {
  const f = (level: 'ok' | 'fail', m: string): Finding => finding('containerd.proxy', 'containerd', level, m);
  const table = tableName(['proxy_plugins', PROXY_NAME]);
  const want = `type = "snapshot" and address = ${JSON.stringify(input.address)}`;
  const ours = input.canonical(input.address);
  const p = merged.proxyPlugins[PROXY_NAME];
  if (!isTable(p)) {
    const other = Object.entries(merged.proxyPlugins).find(([, v]) => isTable(v) && typeof v['address'] === 'string' && input.canonical(v['address']) === ours);
    if (other) {
      return f('fail', `the proxy plugin for ${input.address} is named "${other[0]}": rename its table to ${table}, the name CRI's snapshotter setting, nerdctl and "cvmfs-snapshotter pull" use`);
    }
    return f('fail', `no ${table}: add it with ${want}, then restart containerd`);
  }
  if (p['type'] !== 'snapshot') {
    return f('fail', `${table} has type = ${JSON.stringify(p['type'] ?? '')}, so containerd does not load it as a snapshotter: set type = "snapshot"`);
  }
  const addr = p['address'];
  if (typeof addr !== 'string' || addr === '') return f('fail', `${table} has no address: set address = ${JSON.stringify(input.address)}`);
  if (input.canonical(addr) !== ours) {
    return f('fail', `${table} has address = ${JSON.stringify(addr)}, but the daemon serves on ${input.address}: set address = ${JSON.stringify(input.address)} (or run the daemon with --address ${addr})`);
  }
  return f('ok', `${table} has type "snapshot" and address ${addr}`);
}

function checkDisabled(merged: MergedConfig, layout: Layout): Finding[] {
  const out: Finding[] = [];
  for (const name of [...layout.criPlugins, layout.proxyPlugin]) {
    if (!merged.disabledPlugins.includes(name)) continue;
    const what = name === layout.proxyPlugin ? `the ${PROXY_NAME} proxy plugin` : 'CRI, which lazy pulls (Kubernetes, "cvmfs-snapshotter pull") need';
    out.push(finding('containerd.disabled', 'containerd', 'fail', `disabled_plugins lists "${name}", which switches off ${what}: remove it`));
  }
  return out;
}

function checkCriSnapshotter(files: readonly ContainerdConfigFile[], merged: MergedConfig, layout: Layout, inFile: (p: string) => string): Finding[] {
  const f = (level: 'ok' | 'fail', m: string): Finding => finding('containerd.snapshotter', 'containerd', level, m);
  const table = tableName(layout.criTable);
  const current = lookup(merged.plugins, layout.criTable.slice(1));
  const v = isTable(current) ? current[SNAPSHOTTER] : undefined;
  if (v === PROXY_NAME) return [f('ok', `CRI uses snapshotter = "${PROXY_NAME}" (${table})`)];
  const misplaced = files.flatMap((file) => tablesHolding(file.doc, SNAPSHOTTER)
    .filter((h) => h.value === PROXY_NAME && !samePath(h.path, layout.criTable))
    .map((h) => ({ file: file.path, path: h.path })));
  if (misplaced.length > 0) {
    return misplaced.map((m) => f('fail', `snapshotter = "${PROXY_NAME}" sits under ${tableName(m.path)}${inFile(m.file)}, where CRI does not read it as its snapshotter: move it to ${table}`));
  }
  const now = v === undefined ? 'not set (so it is "overlayfs")' : `${JSON.stringify(v)}`;
  return [f('fail', `CRI's snapshotter is ${now}: set snapshotter = "${PROXY_NAME}" under ${table}, or CRI pulls never use ${PROXY_NAME}`)];
}

function checkAnnotations(files: readonly ContainerdConfigFile[], merged: MergedConfig, layout: Layout, inFile: (p: string) => string): Finding[] {
  const f = (level: 'ok' | 'warn' | 'fail', m: string): Finding => finding('containerd.annotations', 'containerd', level, m);
  const table = tableName(layout.criTable);
  const current = lookup(merged.plugins, layout.criTable.slice(1));
  const v = isTable(current) ? current[ANNOTATIONS] : undefined;
  const misplaced = files.flatMap((file) => tablesHolding(file.doc, ANNOTATIONS)
    .filter((h) => !samePath(h.path, layout.criTable))
    .map((h) => ({ file: file.path, path: h.path })));
  if (v === false) {
    return [
      f('ok', `${ANNOTATIONS} = false (${table}), so CRI passes each layer's digest`),
      ...misplaced.map((m) => f('warn', `another ${ANNOTATIONS} under ${tableName(m.path)}${inFile(m.file)} is ignored by containerd: remove it`)),
    ];
  }
  if (misplaced.length > 0) {
    const replacing = v === undefined ? '' : ` (in place of the ${JSON.stringify(v)} there)`;
    return misplaced.map((m) => f('fail', `${ANNOTATIONS} sits under ${tableName(m.path)}${inFile(m.file)}; move it to ${table}${replacing} or CRI ignores it and pulls every layer`));
  }
  if (v === undefined) {
    return [f('fail', `${ANNOTATIONS} is not set, and containerd's default is true, so CRI passes no layer digests and pulls every layer: add ${ANNOTATIONS} = false under ${table}`)];
  }
  if (v === true) return [f('fail', `${ANNOTATIONS} = true under ${table}, so CRI passes no layer digests and pulls every layer: set it to false`)];
  return [f('fail', `${ANNOTATIONS} under ${table} is ${JSON.stringify(v)}, not a boolean, so the CRI plugin fails to load: write ${ANNOTATIONS} = false (no quotes)`)];
}

export function checkContainerdBinary(bin: ContainerdBinary | undefined): Finding {
  if (!bin) return finding('containerd.binary', 'containerd', 'warn', '"containerd --version" did not run (not in PATH?), so only its config file is checked; this needs containerd 1.6 or newer');
  if (bin.major < 1 || (bin.major === 1 && bin.minor < 6)) {
    return finding('containerd.binary', 'containerd', 'warn', `containerd ${bin.version} is older than 1.6, the oldest this is tested with: upgrade containerd`);
  }
  return finding('containerd.binary', 'containerd', 'ok', `containerd ${bin.version}`);
}

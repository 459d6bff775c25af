// Judging the snapshotter's own config and the layer store it points at. Pure functions over
// facts gathered elsewhere (gather.ts).
import { LAYERFS_DIR, LAYERS_DIR } from '../../layers/store.js';
import { finding, type Finding } from './findings.js';

export type ConfigFacts =
  | { state: 'error'; file: string; error: string }
  | { state: 'ok'; file: string; fromFile: boolean; repository: string; storeRoot: string; fusePassthrough: boolean };

/** What walking the store found, stopping at the first sample layer that can be listed. */
export type StoreProbe =
  | { state: 'root-missing' }
  | { state: 'layers-missing' }
  | { state: 'not-dir'; path: string; is: string }
  | { state: 'error'; path: string; error: string }
  | { state: 'empty' }
  /** Layer directories were there, but none held a layerfs directory. */
  | { state: 'no-layerfs'; examined: string[] }
  | { state: 'layer'; digest: string; path: string; entries: number }
  | { state: 'unlistable'; digest: string; path: string; error: string };

export function checkConfig(c: ConfigFacts): Finding {
  if (c.state === 'error') return finding('config', 'config', 'fail', `${c.error}; the daemon will not start with it: fix the file`);
  const what = `repository ${c.repository}, store ${c.storeRoot}`;
  if (c.fromFile) return finding('config', 'config', 'ok', `${c.file}: ${what}`);
  return finding('config', 'config', 'ok', `${c.file} absent, so the defaults apply: ${what}`);
}

export function checkStore(c: ConfigFacts, p: StoreProbe): Finding[] {
  if (c.state === 'error') return [];
  const root = c.storeRoot;
  const layers = `${root}/${LAYERS_DIR}`;
  const store = (level: 'ok' | 'warn' | 'fail', m: string): Finding => finding('store', 'store', level, m);
  const layer = (level: 'ok' | 'warn' | 'fail', m: string): Finding => finding('store.layer', 'store layer', level, m);
  const setIt = `absolute-mountpoint in ${c.file}`;
  switch (p.state) {
    case 'root-missing':
      return [store('fail', `${root} does not exist: mount the CernVM-FS repository ${c.repository} there (cvmfs_config probe ${c.repository}), or set ${setIt}; until then every layer is downloaded`)];
    case 'layers-missing':
      return [store('fail', `${root} has no ${LAYERS_DIR} directory, so it is not a DUCC layer store and every layer is downloaded: set ${setIt} to the directory that holds ${LAYERS_DIR}`)];
    case 'not-dir':
      if (p.path === root) return [store('fail', `${root} is a ${p.is}, not a directory: set ${setIt} to the store's root directory`)];
      return [store('fail', `${p.path} is a ${p.is}, not a directory: the daemon follows no links below the store root, so it finds no layers; make ${p.path} a real directory`)];
    case 'error':
      return [store('fail', `cannot read ${p.path} (${p.error}): a broken CernVM-FS mount gives EIO (cvmfs_config probe ${c.repository}); a permission error needs root`)];
    default:
      break;
  }
  const found = store('ok', `${layers} is there (DUCC's layout: ${LAYERS_DIR}/<xx>/<64 hex>/${LAYERFS_DIR})`);
  switch (p.state) {
    case 'empty':
      return [found, layer('warn', `${layers} holds no layer directories yet, so every layer is downloaded: publish layers with DUCC, or fill it with "cvmfs-snapshotter ingest --store ${root} IMAGE"`)];
    case 'no-layerfs':
      return [found, layer('fail', `no ${LAYERFS_DIR} directory in ${p.examined.join(', ')}: not DUCC's layout, so the daemon finds no layers; the unpacked tree must sit in <layer>/${LAYERFS_DIR}`)];
    case 'unlistable':
      return [found, layer('fail', `cannot list ${p.path} (${p.error}): the daemon cannot serve ${p.digest}; check the repository (cvmfs_config probe ${c.repository}) and that the daemon runs as root`)];
    case 'layer':
      return [found, layer('ok', `${p.digest}: ${LAYERFS_DIR} lists ${p.entries} ${p.entries === 1 ? 'entry' : 'entries'}`)];
  }
}

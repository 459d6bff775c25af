// Where a layer lives: DUCC's layout in unpacked.cern.ch,
//   <root>/.layers/<first two hex>/<64 hex>/layerfs
// keyed by the compressed blob digest from the image manifest.
import { lstat } from 'node:fs/promises';
import path from 'node:path';
import { errnoCode, InvalidArgument } from '../errors.js';
import { digestHex, parseDigest, type LayerDigest } from './digest.js';

export const LAYERS_DIR = '.layers';
export const LAYERFS_DIR = 'layerfs';

export class LayerStore {
  /** Absolute, normalised store root (e.g. /cvmfs/unpacked.cern.ch). */
  readonly root: string;

  constructor(root: string) {
    if (typeof root !== 'string' || root === '' || !path.isAbsolute(root)) {
      throw new InvalidArgument(`layer store root ${JSON.stringify(root)} must be an absolute path`);
    }
    this.root = path.resolve(root);
  }

  /** `<root>/.layers/<xx>/<hex>`: the layer's own directory, which holds `layerfs`. */
  layerDir(digest: string): string {
    const hex = digestHex(parseDigest(digest, 'layer digest'));
    return path.join(this.root, LAYERS_DIR, hex.slice(0, 2), hex);
  }

  /** `<root>/.layers/<xx>/<hex>/layerfs`: the root of the layer's unpacked file tree. */
  layerPath(digest: string): string {
    return path.join(this.layerDir(digest), LAYERFS_DIR);
  }

  /**
   * Whether the layer is in the store: every component below the root (.layers, xx, hex,
   * layerfs) must be a real directory. A symlink anywhere below the root is "absent", because a
   * link could point a layer at some other part of the host. Missing components answer false;
   * other errors (EIO from a broken CernVM-FS mount, EACCES) are thrown so the caller can log
   * them and fall back.
   */
  async has(digest: string): Promise<boolean> {
    const hex = digestHex(parseDigest(digest, 'layer digest'));
    let p = this.root;
    for (const component of [LAYERS_DIR, hex.slice(0, 2), hex, LAYERFS_DIR]) {
      p = path.join(p, component);
      try {
        const st = await lstat(p);
        if (!st.isDirectory()) return false;
      } catch (err) {
        const code = errnoCode(err);
        if (code === 'ENOENT' || code === 'ENOTDIR') return false;
        throw err;
      }
    }
    return true;
  }
}

export type { LayerDigest };

// Whiteout translation, pure. DUCC stores OCI whiteouts AUFS-style (empty `.wh.<name>` files and
// `.wh..wh..opq`); kernel overlayfs only understands a 0/0 character device and the
// trusted.overlay.opaque xattr. Overlay-style whiteouts already present in a layer are ordinary
// entries here and pass through untouched.
import { constants } from 'node:fs';
import type { LayerAttr } from './stat.js';

export const WHITEOUT_PREFIX = '.wh.';
/** AUFS keeps its own bookkeeping under this prefix (`.wh..wh.plnk`, `.wh..wh.aufs`); never user data. */
export const AUFS_META_PREFIX = '.wh..wh.';
export const OPAQUE_MARKER = '.wh..wh..opq';
export const OVERLAY_OPAQUE_XATTR = 'trusted.overlay.opaque';

export type NameKind =
  | { readonly kind: 'plain' }
  | { readonly kind: 'opaque-marker' }
  /** AUFS metadata, or a `.wh.` name that cannot hide anything (`.wh.`, `.wh..`). */
  | { readonly kind: 'hidden' }
  | { readonly kind: 'whiteout'; readonly target: string };

export function classifyName(name: string): NameKind {
  if (!name.startsWith(WHITEOUT_PREFIX)) return { kind: 'plain' };
  if (name === OPAQUE_MARKER) return { kind: 'opaque-marker' };
  if (name.startsWith(AUFS_META_PREFIX)) return { kind: 'hidden' };
  const target = name.slice(WHITEOUT_PREFIX.length);
  if (target === '' || target === '.' || target === '..') return { kind: 'hidden' };
  return { kind: 'whiteout', target };
}

/** Names with the `.wh.` prefix never appear in the translated view. */
export function isHiddenName(name: string): boolean {
  return name.startsWith(WHITEOUT_PREFIX);
}

export function whiteoutMarkerFor(name: string): string {
  return WHITEOUT_PREFIX + name;
}

export interface ListedEntry {
  /** The name shown in the translated directory. */
  readonly name: string;
  /** The name on disk that supplies its attributes (`.wh.<name>` for a translated whiteout). */
  readonly source: string;
  readonly whiteout: boolean;
}

export interface TranslatedListing {
  readonly entries: readonly ListedEntry[];
  /** The directory holds `.wh..wh..opq`. */
  readonly opaqueMarker: boolean;
}

/**
 * Translates one directory's names. A real entry wins over a whiteout of the same name: per the
 * OCI spec a whiteout only hides lower layers, and the same layer may then add the name again.
 */
export function translateListing(names: readonly string[]): TranslatedListing {
  const plain = new Set<string>();
  const whiteouts: string[] = [];
  let opaqueMarker = false;
  for (const n of names) {
    const c = classifyName(n);
    if (c.kind === 'plain') plain.add(n);
    else if (c.kind === 'opaque-marker') opaqueMarker = true;
    else if (c.kind === 'whiteout') whiteouts.push(c.target);
  }
  const entries: ListedEntry[] = [];
  for (const n of names) {
    if (plain.has(n)) entries.push({ name: n, source: n, whiteout: false });
  }
  for (const t of whiteouts) {
    if (!plain.has(t)) entries.push({ name: t, source: whiteoutMarkerFor(t), whiteout: true });
  }
  return { entries, opaqueMarker };
}

/** The overlayfs whiteout shown in place of an AUFS marker: a 0/0 character device, mode 0. */
export function whiteoutStat(marker: LayerAttr): LayerAttr {
  return { ...marker, mode: constants.S_IFCHR, rdev: 0, size: 0, nlink: 1, blocks: 0 };
}

export function isDirectoryMode(mode: number): boolean {
  return (mode & constants.S_IFMT) === constants.S_IFDIR;
}

export function isSymlinkMode(mode: number): boolean {
  return (mode & constants.S_IFMT) === constants.S_IFLNK;
}

export function isRegularMode(mode: number): boolean {
  return (mode & constants.S_IFMT) === constants.S_IFREG;
}

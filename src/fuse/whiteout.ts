// Whiteout translation, pure. DUCC stores OCI whiteouts AUFS-style (empty `.wh.<name>` files and
// `.wh..wh..opq`); kernel overlayfs only understands a 0/0 character device and the
// trusted.overlay.opaque xattr. Overlay-style whiteouts already present in a layer are ordinary
// entries here and pass through untouched.
import { constants } from 'node:fs';

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

export function isDirectoryMode(mode: number): boolean {
  return (mode & constants.S_IFMT) === constants.S_IFDIR;
}

export function isSymlinkMode(mode: number): boolean {
  return (mode & constants.S_IFMT) === constants.S_IFLNK;
}

export function isRegularMode(mode: number): boolean {
  return (mode & constants.S_IFMT) === constants.S_IFREG;
}

// Paths as the kernel hands them to a FUSE filesystem ("/", "/usr/bin/env"), checked before they
// touch the host. The kernel never sends "." or ".." components, but a path is an input from
// outside this module all the same: anything that could climb out of the layer is refused.
import { FsError } from './errno.js';

const NAME_MAX = 255;

/** The components of a layer path; "/" has none. Throws EINVAL/ENAMETOOLONG for unusable ones. */
export function layerPathComponents(p: string): string[] {
  if (!p.startsWith('/')) throw new FsError('EINVAL', `layer path must be absolute: ${JSON.stringify(p)}`);
  if (p === '/') return [];
  const parts = p.slice(1).split('/');
  // One trailing slash is tolerated; libfuse never sends one, but a test might.
  if (parts.length > 1 && parts[parts.length - 1] === '') parts.pop();
  for (const c of parts) {
    if (c === '' || c === '.' || c === '..' || c.includes('\0')) {
      throw new FsError('EINVAL', `bad component ${JSON.stringify(c)} in layer path ${JSON.stringify(p)}`);
    }
    // Paths are binary strings (one char per byte, see layer-tree.ts).
    if (c.length > NAME_MAX) throw new FsError('ENAMETOOLONG', `component too long in ${JSON.stringify(p)}`);
  }
  return parts;
}

export function joinLayerPath(parent: string, name: string): string {
  return parent === '/' ? `/${name}` : `${parent}/${name}`;
}

/** "/a/b" → ["/a", "b"]; callers never pass "/". */
export function splitParent(p: string): [parent: string, name: string] {
  const i = p.lastIndexOf('/');
  return [i <= 0 ? '/' : p.slice(0, i), p.slice(i + 1)];
}

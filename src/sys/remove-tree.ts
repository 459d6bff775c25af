// Removing a directory tree of any depth. Node's fs.rm names each file by its full path, and the
// kernel takes no path of PATH_MAX (4,096) bytes or more: below that depth it fails with
// ENAMETOOLONG and leaves the tree. A container can write such a tree into its upper directory
// (a deeply nested build), and an image layer can hold one. There GNU rm takes over: it walks
// the tree by directory descriptors, so depth does not matter to it.
import { rm } from 'node:fs/promises';
import { errnoCode } from '../errors.js';
import { exec } from './exec.js';

/**
 * Removes dir and everything below it; nothing to remove is not an error. retries: fs.rm's
 * maxRetries (EBUSY, ENOTEMPTY and the like, 100 ms more wait each time); none by default.
 */
export async function removeTree(dir: string, retries = 0): Promise<void> {
  try {
    await rm(dir, { recursive: true, force: true, maxRetries: retries });
    return;
  } catch (err) {
    if (errnoCode(err) !== 'ENAMETOOLONG') throw err;
  }
  // --one-file-system: a mount left somewhere below is an error, never a tree to empty.
  const r = await exec('rm', ['-rf', '--one-file-system', '--', dir]);
  if (r.code !== 0) {
    throw new Error(`removing ${dir} (deeper than PATH_MAX, by rm -rf): ${r.signal ?? `exit ${String(r.code)}`}: ${r.stderr.trim()}`);
  }
}

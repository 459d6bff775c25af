// Where an ingested image's manifest is recorded, as DUCC does:
//   <store>/.metadata/<registry>/<repository>:<tag>/manifest.json
// The reference parser already holds every component to the distribution grammar; this module
// checks again, segment by segment, because these strings become directories.
import { mkdir, rename, rm, rmdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { InvalidArgument } from '../../errors.js';
import type { LayerStore } from '../store.js';
import type { ImageReference } from './reference.js';

export const METADATA_DIR = '.metadata';

const SEGMENT_RE = /^[A-Za-z0-9_\[\]][A-Za-z0-9_.:@\[\]-]*$/;

function checkSegment(segment: string, what: string): string {
  if (!SEGMENT_RE.test(segment) || segment === '.' || segment === '..' || segment.length > 255) {
    throw new InvalidArgument(`${what} ${JSON.stringify(segment)} cannot be a directory name in the store`);
  }
  return segment;
}

/** The directory that holds the image's manifest.json. */
export function imageMetadataDir(store: LayerStore, ref: ImageReference): string {
  const repoParts = ref.repository.split('/');
  const last = repoParts.pop() ?? '';
  // A tag names the record when there is one; an image pulled by digest alone is named by it.
  const leaf = ref.tag !== undefined ? `${last}:${ref.tag}` : `${last}@${ref.digest ?? ''}`;
  const segments = [
    checkSegment(ref.registry, 'registry'),
    ...repoParts.map((p) => checkSegment(p, 'repository component')),
    checkSegment(leaf, 'image name'),
  ];
  const base = path.join(store.root, METADATA_DIR);
  const dir = path.join(base, ...segments);
  if (!dir.startsWith(base + path.sep)) throw new InvalidArgument(`image reference would leave the store: ${dir}`);
  return dir;
}

/**
 * Writes manifest.json atomically (a reader sees the old or the new file, never half of one).
 * The new file is written in tmpDir (the ingest run's staging area, on the store's file system)
 * or beside manifest.json; when writing fails (a full disk), neither the file nor the
 * directories made for it stay.
 */
export async function recordManifest(store: LayerStore, ref: ImageReference, manifest: Buffer, tmpDir?: string): Promise<string> {
  const dir = imageMetadataDir(store, ref);
  const created = await mkdir(dir, { recursive: true, mode: 0o755 });
  const file = path.join(dir, 'manifest.json');
  const tmp = path.join(tmpDir ?? dir, `manifest.json.tmp-${process.pid}-${Date.now()}`);
  try {
    await writeFile(tmp, manifest, { mode: 0o644 });
    await rename(tmp, file);
    return file;
  } catch (err) {
    await rm(tmp, { force: true });
    if (created !== undefined) await removeEmptyDirs(dir, created);
    throw err;
  }
}

/** rmdir from dir up to and including top, stopping at the first that is not empty. */
async function removeEmptyDirs(dir: string, top: string): Promise<void> {
  for (let p = dir; p.startsWith(top); p = path.dirname(p)) {
    try {
      await rmdir(p);
    } catch {
      return;
    }
    if (p === top) return;
  }
}

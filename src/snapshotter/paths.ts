import { join } from 'node:path';

// Every path under the root comes from these helpers; ids are integers the store allocates,
// so no outside input ever becomes part of a snapshot path.
export const snapshotsDir = (root: string): string => join(root, 'snapshots');
export const snapshotDir = (root: string, id: number): string => join(snapshotsDir(root), String(id));
export const upperPath = (root: string, id: number): string => join(snapshotDir(root, id), 'fs');
export const workPath = (root: string, id: number): string => join(snapshotDir(root, id), 'work');
export const databasePath = (root: string): string => join(root, 'metadata.db');

/** Directory names under snapshots/ that belong to a record: plain decimal ids. */
export function idOfDirName(name: string): number | null {
  return /^[1-9][0-9]{0,15}$/.test(name) ? Number(name) : null;
}

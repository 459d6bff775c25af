// A private world for a daemon under attack: a strictatime tmpfs that holds the daemon's root,
// a layer store, and sentinels beside them, named like the places that path traversal from
// the root or the store would reach. Whatever the daemon creates, changes or reads out there
// shows in the witnesses.
import { createHash } from 'node:crypto';
import { mkdirSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { execOk } from '../../../src/sys/exec.js';
import type { Scope } from '../scope.js';
import type { StoreDigests } from './generator.js';
import { TreeWitness } from './witness.js';

export interface FuzzWorld {
  /** The tmpfs mount. */
  dir: string;
  /** The daemon's --root. */
  root: string;
  /** The layer store (absolute-mountpoint). */
  store: string;
  digests: StoreDigests;
  /** Everything in the world but root and store: no create, change or read. */
  outside: TreeWitness;
  /** The store: no create or change (reads are its purpose). */
  storeWitness: TreeWitness;
  /** Sentinel files and directories, for the report. */
  sentinels: string[];
}

const digestOf = (s: string): string => `sha256:${createHash('sha256').update(s).digest('hex')}`;
const hexOf = (d: string): string => d.slice('sha256:'.length);
const PAST = new Date('2001-02-03T04:05:06Z');

export async function makeWorld(scope: Scope, name = 'world'): Promise<FuzzWorld> {
  const dir = await scope.mkdir(name);
  await execOk('mount', ['-t', 'tmpfs', '-o', 'strictatime,size=1g,mode=0755', 'cvmfs-fuzz-world', dir]);
  scope.defer(`unmount ${dir}`, async () => { await execOk('umount', [dir]); });

  const root = join(dir, 'daemon', 'root');
  const store = join(dir, 'store', 'unpacked.cern.ch');
  mkdirSync(root, { recursive: true, mode: 0o700 });
  const layerDir = (d: string): string => join(store, '.layers', hexOf(d).slice(0, 2), hexOf(d));

  // Sentinels where traversal lands: <store>/.layers/../../etc is <dir>/store/etc, one more ..
  // is <dir>/etc; <root>/snapshots/../../x is <dir>/daemon/x.
  const files: Record<string, string> = {
    'etc/passwd': 'root:x:0:0::/root:/bin/sh\n',
    'etc/layerfs/passwd': 'sentinel: a layer the store must not reach\n',
    'etc/layerfs/bin/sh': 'sentinel\n',
    'store/etc/passwd': 'sentinel\n',
    'store/layerfs/secret': 'sentinel\n',
    'daemon/x': 'sentinel\n',
    'daemon/etc/passwd': 'sentinel\n',
    'daemon/metadata.db': 'sentinel: not the database\n',
    'daemon/snapshots/1/fs/secret': 'sentinel\n',
    'x': 'sentinel\n',
    'passwd': 'sentinel\n',
    'metadata.db': 'sentinel\n',
    'secrets/layers/key': 'sentinel\n',
  };
  const present = [digestOf('fuzz layer one'), digestOf('fuzz layer two')];
  const absent = [digestOf('not in the store'), digestOf('not there either')];
  const trapLinkedDir = digestOf('layer dir is a symlink out of the store');
  const trapLinkedLayerfs = digestOf('layerfs is a symlink out of the store');
  const trapFile = digestOf('layerfs is a file');
  const trapLinkedPrefix = digestOf('the two-hex directory is a symlink');
  const trap = [trapLinkedDir, trapLinkedLayerfs, trapFile, trapLinkedPrefix];
  const prefix = (d: string): string => hexOf(d).slice(0, 2);
  if ([...present, ...trap].filter((d) => prefix(d) === prefix(trapLinkedPrefix)).length !== 1) throw new Error('store fixture: two-hex prefixes collide');

  for (const [rel, content] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, rel)), { recursive: true });
    writeFileSync(join(dir, rel), content);
  }
  const secretsLayer = join(dir, 'secrets', 'layers', hexOf(trapLinkedPrefix), 'layerfs');
  mkdirSync(secretsLayer, { recursive: true });
  writeFileSync(join(secretsLayer, 'secret'), 'sentinel\n');

  for (const [i, d] of present.entries()) {
    const l = join(layerDir(d), 'layerfs');
    mkdirSync(join(l, 'etc'), { recursive: true });
    writeFileSync(join(l, 'etc', 'layer'), `layer ${i}\n`);
    writeFileSync(join(l, 'big'), Buffer.alloc(100_000, i));
    symlinkSync('/etc/passwd', join(l, 'passwd-link'));
  }
  mkdirSync(dirname(layerDir(trapLinkedDir)), { recursive: true });
  symlinkSync(join(dir, 'etc'), layerDir(trapLinkedDir));
  mkdirSync(layerDir(trapLinkedLayerfs), { recursive: true });
  symlinkSync(join(dir, 'etc', 'layerfs'), join(layerDir(trapLinkedLayerfs), 'layerfs'));
  mkdirSync(layerDir(trapFile), { recursive: true });
  writeFileSync(join(layerDir(trapFile), 'layerfs'), 'not a directory\n');
  symlinkSync(join(dir, 'secrets', 'layers'), join(store, '.layers', hexOf(trapLinkedPrefix).slice(0, 2)));

  // Old times, so any touch shows.
  for (const rel of Object.keys(files)) utimesSync(join(dir, rel), PAST, PAST);

  const outside = new TreeWitness(dir, { skip: [root, store], atime: true });
  const storeWitness = new TreeWitness(store, { atime: false });
  return {
    dir, root, store, digests: { present, absent, trap }, outside, storeWitness,
    sentinels: Object.keys(files).map((f) => join(dir, f)),
  };
}

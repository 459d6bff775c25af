// The snapshotter core: containerd's snapshot semantics over overlayfs directories, with
// metadata in SQLite and layers from the store served by RemoteLayers.
//
// Every public method does its checks and its metadata change in one transaction. The only
// disk change inside a transaction is renaming a fully made directory into place, and it is
// renamed back out when the transaction fails (SQLite gives a rolled-back id out again, so a
// directory left under it would meet the next snapshot); deletions happen after the commit, so a
// crash leaves at worst an orphan directory, which startup and Cleanup remove.
import { mkdir, readdir, chmod, lchown, stat } from 'node:fs/promises';
import { renameSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { basename, join } from 'node:path';
import { AlreadyExists, errnoCode, FailedPrecondition, InvalidArgument, NotFound, quote, ResourceExhausted } from '../errors.js';
import type { Logger } from '../log.js';
import { diskUsage } from '../sys/du.js';
import { removeTree } from '../sys/remove-tree.js';
import { LAYER_DIGEST_LABEL, REMOTE_LABEL, validateLabels } from './labels.js';
import { MetaStore } from './metastore.js';
import { mounts } from './mounts.js';
import { databasePath, idOfDirName, snapshotDir, snapshotsDir, upperPath, workPath } from './paths.js';
import type { RemoteLayers } from './remote.js';
import type { Info, Kind, Labels, Mount, SnapshotRecord, Usage } from './types.js';
import { compileFilters } from './filters.js';

export interface SnapshotterOptions {
  root: string;
  log: Logger;
  remote?: RemoteLayers;
  /** The clock, in microseconds since the epoch. */
  nowUs?: () => number;
}

const MAX_KEY_BYTES = 4096;

function wallClockUs(): number {
  return Math.round((performance.timeOrigin + performance.now()) * 1000);
}

export function validateKey(key: string, what = 'key'): string {
  if (key === '') throw new InvalidArgument(`snapshot ${what} must not be empty`);
  if (key.includes('\0')) throw new InvalidArgument(`snapshot ${what} ${quote(key)} contains a NUL byte`);
  if (Buffer.byteLength(key) > MAX_KEY_BYTES) {
    throw new InvalidArgument(`snapshot ${what} ${quote(key, 64)} is longer than ${MAX_KEY_BYTES} bytes`);
  }
  return key;
}

/**
 * The remote label is the daemon's own statement that a snapshot is served from the layer
 * store, and with which digest; whatever a client sends for it is replaced or dropped.
 */
function ownRemoteLabel(labels: Labels, remoteDigest: string | null): Labels {
  const out = { ...labels };
  if (remoteDigest === null) delete out[REMOTE_LABEL];
  else out[REMOTE_LABEL] = remoteDigest;
  return out;
}

/** Errors that mean the file system under the root has no room (SQLite says so for ENOSPC). */
const DISK_FULL = new Set(['ENOSPC', 'EDQUOT', 'SQLITE_FULL']);

function publicInfo(r: SnapshotRecord): Info {
  return { name: r.name, parent: r.parent, kind: r.kind, createdUs: r.createdUs, updatedUs: r.updatedUs, labels: r.labels };
}

export class Snapshotter {
  readonly root: string;
  private readonly store: MetaStore;
  private readonly log: Logger;
  private readonly remote: RemoteLayers | undefined;
  private readonly now: () => number;
  /**
   * Names of the temporary directories that a Prepare is filling right now. Cleanup runs
   * concurrently with Prepare (containerd's GC calls it while other pulls go on) and must not
   * take them for orphans.
   */
  private readonly making = new Set<string>();
  private remounting: Promise<void> | undefined;
  private remountAgain = false;

  private constructor(root: string, store: MetaStore, opts: SnapshotterOptions) {
    this.root = root;
    this.store = store;
    this.log = opts.log;
    this.remote = opts.remote;
    this.now = opts.nowUs ?? wallClockUs;
  }

  /** Opens (or creates) the root and its database, and reconciles the disk with the records. */
  static async open(opts: SnapshotterOptions): Promise<Snapshotter> {
    await mkdir(opts.root, { recursive: true, mode: 0o700 });
    await mkdir(snapshotsDir(opts.root), { recursive: true, mode: 0o700 });
    const s = new Snapshotter(opts.root, new MetaStore(databasePath(opts.root)), opts);
    if (s.remote) {
      await s.remote.reconcile(snapshotsDir(s.root), s.layerMountsWanted());
    }
    const removed = await s.removeOrphans();
    if (removed.length > 0) s.log.info({ removed }, 'removed snapshot directories that no record owns');
    return s;
  }

  /** Closes the database and unmounts every layer. Deletes nothing. */
  async close(): Promise<void> {
    await this.remote?.close();
    this.store.close();
  }

  /**
   * The layers' server changed under a running daemon (a fresh one after a crash): every layer
   * an active snapshot stands on is mounted again where it is not. Runs one at a time; a change
   * during a run makes one more run.
   */
  remountLayers(): Promise<void> {
    if (!this.remote) return Promise.resolve();
    const remote = this.remote;
    if (this.remounting) {
      this.remountAgain = true;
      return this.remounting;
    }
    const run = async (): Promise<void> => {
      do {
        this.remountAgain = false;
        await remote.remount(snapshotsDir(this.root), this.layerMountsWanted());
      } while (this.remountAgain);
    };
    this.remounting = run().finally(() => { this.remounting = undefined; });
    return this.remounting;
  }

  /** The directories where a layer must be mounted for the snapshots in use (one query, no disk access). */
  layerMountsNeeded(): string[] {
    return [...this.layerMountsWanted().keys()];
  }

  /** Those directories, each with the digest of the layer it needs. */
  private layerMountsWanted(): Map<string, string> {
    return new Map(this.store.remoteInUse().map((r) => [upperPath(this.root, r.id), r.remoteDigest as string]));
  }

  stat(key: string): Info {
    return publicInfo(this.mustGet(key));
  }

  async prepare(key: string, parent: string, labels: Labels): Promise<Mount[]> {
    // Bad input is refused the same way whether or not the layer could come from the store.
    this.validateNew(key, parent, labels);
    return this.onDisk(`preparing ${quote(key)}`, async () => {
      if (this.remote && labels[LAYER_DIGEST_LABEL] !== undefined) await this.tryRemote(key, parent, labels);
      return this.create('active', key, parent, labels);
    });
  }

  async view(key: string, parent: string, labels: Labels): Promise<Mount[]> {
    return this.onDisk(`making view ${quote(key)}`, () => this.create('view', key, parent, labels));
  }

  async mounts(key: string): Promise<Mount[]> {
    const rec = this.mustGet(key);
    if (rec.kind === 'committed') {
      throw new FailedPrecondition(`snapshot ${quote(key)} is committed; only active snapshots and views have mounts`);
    }
    return this.mountsOf(rec);
  }

  async commit(name: string, key: string, labels: Labels): Promise<void> {
    validateKey(name, 'name');
    labels = ownRemoteLabel(validateLabels(labels, name), null);
    const active = this.mustGet(key);
    if (active.kind !== 'active') {
      throw new FailedPrecondition(`snapshot ${quote(key)} is not active (it is ${active.kind === 'view' ? 'a view' : 'committed'}); only active snapshots can be committed`);
    }
    // Measured before the transaction: nothing writes to a snapshot while it is being committed.
    const usage = await this.measure(key, active.id);
    this.onDiskSync(`committing ${quote(key)} as ${quote(name)}`, () => this.store.tx(() => {
      if (this.store.get(name)) throw new AlreadyExists(`snapshot ${quote(name)} already exists`);
      const again = this.store.get(key);
      if (!again || again.id !== active.id || again.kind !== 'active') {
        throw new NotFound(`snapshot ${quote(key)} does not exist`);
      }
      this.store.commit(active.id, name, labels, usage.size, usage.inodes, this.now());
    }));
    this.log.debug({ key, name, ...usage }, 'committed');
    // The active snapshot stood on its parents' layers; now nothing may.
    await this.releaseUnusedLayers();
  }

  async remove(key: string): Promise<void> {
    const rec = this.onDiskSync(`removing ${quote(key)}`, () => this.store.tx(() => {
      const r = this.mustGet(key);
      if (this.store.hasChildren(r.id)) {
        throw new FailedPrecondition(`snapshot ${quote(key)} has children; remove them first`);
      }
      this.store.delete(r.id);
      return r;
    }));
    const dir = snapshotDir(this.root, rec.id);
    if (rec.remoteDigest !== null && this.remote) {
      const mnt = upperPath(this.root, rec.id);
      await this.remote.unmount(mnt, () => true);
      // Never walk into a layer that is still mounted: the walk would wait on the store. Cleanup
      // removes the directory once the layer is gone (it skips mounted ones too).
      if (this.remote.mounted().includes(mnt)) {
        this.log.warn({ key, dir }, 'the layer of a removed snapshot is still mounted; its directory stays until Cleanup');
        return;
      }
    }
    await this.removeDir(dir);
    if (rec.kind !== 'committed') await this.releaseUnusedLayers();
  }

  update(name: string, labels: Labels, fieldpaths: readonly string[]): Info {
    for (const p of fieldpaths) {
      if (p !== 'labels' && !p.startsWith('labels.')) {
        throw new InvalidArgument(`cannot update field ${quote(p)} of snapshot ${quote(name)}: only "labels" and "labels.<key>" can be updated`);
      }
    }
    return this.onDiskSync(`updating ${quote(name)}`, () => this.store.tx(() => {
      const rec = this.mustGet(name);
      let next: Labels;
      if (fieldpaths.length === 0 || fieldpaths.includes('labels')) {
        next = { ...labels };
      } else {
        next = { ...rec.labels };
      }
      for (const p of fieldpaths) {
        if (!p.startsWith('labels.')) continue;
        const k = p.slice('labels.'.length);
        if (Object.hasOwn(labels, k)) next[k] = labels[k] as string;
        else delete next[k];
      }
      next = ownRemoteLabel(validateLabels(next, name), rec.remoteDigest);
      const now = this.now();
      this.store.setLabels(rec.id, next, now);
      return { ...publicInfo(rec), labels: next, updatedUs: now };
    }));
  }

  list(filters: readonly string[]): Info[] {
    const match = compileFilters(filters);
    return this.store.all().map(publicInfo).filter(match);
  }

  async usage(key: string): Promise<Usage> {
    const rec = this.mustGet(key);
    if (rec.kind === 'active') return this.measure(key, rec.id);
    if (rec.remoteDigest !== null && this.remote) return this.remote.usage(rec.remoteDigest);
    return { size: rec.size ?? 0, inodes: rec.inodes ?? 0 };
  }

  /** Removes every directory under snapshots/ that no record owns. */
  async cleanup(): Promise<string[]> {
    return this.removeOrphans();
  }

  // ---- internals ----

  private mustGet(key: string): SnapshotRecord {
    const rec = this.store.get(key);
    if (!rec) throw new NotFound(`snapshot ${quote(key)} does not exist`);
    return rec;
  }

  /**
   * The disk usage of a snapshot's directory. A Remove that runs meanwhile (containerd's GC
   * while CRI asks for Usage) deletes the directory under the walk: that is NotFound, as if the
   * Remove had come first, not a raw ENOENT.
   */
  private async measure(key: string, id: number): Promise<Usage> {
    try {
      return await diskUsage(upperPath(this.root, id));
    } catch (err) {
      if (errnoCode(err) === 'ENOENT' && this.store.getById(id) === undefined) throw new NotFound(`snapshot ${quote(key)} does not exist`);
      throw err;
    }
  }

  private checkParent(key: string, parent: string): SnapshotRecord | undefined {
    if (parent === '') return undefined;
    const p = this.store.get(parent);
    if (!p) throw new NotFound(`parent snapshot ${quote(parent)} of ${quote(key)} does not exist`);
    if (p.kind !== 'committed') {
      throw new InvalidArgument(`parent snapshot ${quote(parent)} of ${quote(key)} is not committed (it is ${p.kind})`);
    }
    return p;
  }

  private validateNew(key: string, parent: string, labels: Labels): Labels {
    validateKey(key);
    if (parent !== '') validateKey(parent, 'parent');
    return ownRemoteLabel(validateLabels(labels, key), null);
  }

  private async create(kind: Kind, key: string, parent: string, labels: Labels): Promise<Mount[]> {
    labels = this.validateNew(key, parent, labels);
    // Fail fast, before touching the disk; the transaction checks again.
    if (this.store.get(key)) throw new AlreadyExists(`snapshot ${quote(key)} already exists`);
    const parentRec = this.checkParent(key, parent);
    const tmp = await this.makeDirs(kind, parentRec);
    let rec: SnapshotRecord;
    const placed = { dir: undefined as string | undefined };
    try {
      rec = this.store.tx(() => {
        if (this.store.get(key)) throw new AlreadyExists(`snapshot ${quote(key)} already exists`);
        const p = this.checkParent(key, parent);
        const id = this.store.insert({ key, kind, parentId: p?.id ?? null, nowUs: this.now(), labels });
        this.place(tmp, id, placed);
        return this.store.getById(id) as SnapshotRecord;
      });
    } catch (err) {
      this.unplace(tmp, placed);
      await this.discard(tmp);
      throw err;
    }
    this.making.delete(basename(tmp));
    try {
      return await this.mountsOf(rec);
    } catch (err) {
      // The snapshot is of no use if its layers cannot be mounted; do not leave it behind.
      await this.remove(key).catch((e: unknown) => this.log.warn({ key, err: e }, 'could not undo a failed prepare'));
      throw err;
    }
  }

  /**
   * Makes a new snapshot's directories under a temporary name. The name stays in `making` until
   * the caller has renamed the directory into place or discarded it.
   */
  private async makeDirs(kind: Kind, parent: SnapshotRecord | undefined): Promise<string> {
    // The name is registered before the directory exists, so a concurrent Cleanup never sees it unregistered.
    const name = `new-${randomBytes(8).toString('hex')}`;
    const tmp = join(snapshotsDir(this.root), name);
    this.making.add(name);
    try {
      await mkdir(tmp, { mode: 0o700 });
      const fs = join(tmp, 'fs');
      await mkdir(fs);
      await chmod(fs, 0o755);
      if (kind === 'active') await mkdir(join(tmp, 'work'), { mode: 0o711 });
      // Like containerd: the new root directory belongs to whoever owns the parent's root.
      if (parent && parent.remoteDigest === null) {
        const st = await stat(upperPath(this.root, parent.id));
        await lchown(fs, st.uid, st.gid);
      }
      return tmp;
    } catch (err) {
      await this.discard(tmp);
      throw err;
    }
  }

  /** Removes a temporary directory if it is still there (not renamed into place) and forgets it. */
  private async discard(tmp: string): Promise<void> {
    try {
      await removeTree(tmp);
    } finally {
      this.making.delete(basename(tmp));
    }
  }

  private async mountsOf(rec: SnapshotRecord): Promise<Mount[]> {
    const parents = rec.parentId === null ? [] : this.store.chain(rec.parentId);
    if (this.remote) {
      for (const p of parents) {
        if (p.remoteDigest !== null) await this.remote.mount(p.remoteDigest, upperPath(this.root, p.id));
      }
    }
    return mounts({
      kind: rec.kind,
      dir: upperPath(this.root, rec.id),
      workDir: workPath(this.root, rec.id),
      parentDirs: parents.map((p) => upperPath(this.root, p.id)),
    });
  }

  /**
   * containerd's remote snapshot protocol: when the layer is in the store, commit a snapshot
   * under the target name that containerd gave, and answer AlreadyExists so that containerd
   * does not download the layer. Otherwise return, and the caller prepares an ordinary snapshot.
   */
  private async tryRemote(key: string, parent: string, labels: Labels): Promise<void> {
    const remote = this.remote as RemoteLayers;
    const decision = await remote.decide(labels);
    const log = this.log.child({ key, digest: decision.digest ?? labels[LAYER_DIGEST_LABEL] });
    if (!decision.remote) {
      // A store that did not answer is worth a warning: the node pulls what it could have served.
      const level = decision.code === 'store_timeout' || decision.code === 'store_busy' || decision.code === 'store_error' ? 'warn' : 'info';
      log[level]({ decision: 'downloaded', code: decision.code, reason: decision.detail }, 'layer will be downloaded');
      return;
    }
    validateKey(decision.target, 'target');
    const remoteLabels: Labels = { ...validateLabels(labels, key), [REMOTE_LABEL]: decision.digest };
    // An empty fs/ directory: the mountpoint of the layer.
    const made = await this.makeDirs('committed', undefined);
    const placed = { dir: undefined as string | undefined };
    try {
      this.store.tx(() => {
        if (this.store.get(decision.target)) return;
        const p = this.checkParent(key, parent);
        const id = this.store.insert({
          key: decision.target, kind: 'committed', parentId: p?.id ?? null, nowUs: this.now(), labels: remoteLabels, remoteDigest: decision.digest,
        });
        this.place(made, id, placed);
      });
    } catch (err) {
      this.unplace(made, placed);
      throw err;
    } finally {
      await this.discard(made);
    }
    log.info({ decision: 'remote', code: decision.code, reason: 'the layer is in the layer store', target: decision.target }, 'layer served from the store');
    throw new AlreadyExists(`target snapshot ${quote(decision.target)} already exists`);
  }

  /**
   * Inside a transaction: renames a new snapshot's directory to the id just inserted. A
   * directory already there is a leftover of a run that crashed between the rename and the
   * commit (no record owns it: the id was given out again); it is moved aside for Cleanup.
   */
  private place(tmp: string, id: number, placed: { dir: string | undefined }): void {
    const dest = snapshotDir(this.root, id);
    try {
      renameSync(tmp, dest);
    } catch (err) {
      const code = errnoCode(err);
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw err;
      const aside = join(snapshotsDir(this.root), `stale-${id}-${randomBytes(4).toString('hex')}`);
      renameSync(dest, aside);
      this.log.warn({ dir: dest, movedTo: aside }, 'a directory no record owns sat where a new snapshot goes; moved aside for Cleanup');
      renameSync(tmp, dest);
    }
    placed.dir = dest;
  }

  /**
   * After a failed transaction, before anything else runs: the directory goes back to its
   * temporary name, so the id that SQLite hands out again finds no directory.
   */
  private unplace(tmp: string, placed: { dir: string | undefined }): void {
    if (placed.dir === undefined) return;
    try {
      renameSync(placed.dir, tmp);
    } catch (err) {
      // Nothing of value is in it (empty fs/ and work/), and it must not stay under the id.
      this.log.warn({ dir: placed.dir, err }, 'could not rename a new snapshot directory back after a failed transaction; removing it');
      rmSync(placed.dir, { recursive: true, force: true });
    }
    placed.dir = undefined;
  }

  /** A full disk as ResourceExhausted, saying so and where; any other error unchanged. */
  private diskFull(err: unknown, what: string): unknown {
    const code = errnoCode(err);
    if (code === undefined || !DISK_FULL.has(code)) return err;
    return new ResourceExhausted(`the disk is full: no space left on the file system of ${this.root} while ${what} (${code}); free some space and try again`, err);
  }

  private async onDisk<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw this.diskFull(err, what);
    }
  }

  private onDiskSync<T>(what: string, fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      throw this.diskFull(err, what);
    }
  }

  /** Unmounts every layer that no active snapshot or view stands on any more. */
  private async releaseUnusedLayers(): Promise<void> {
    if (!this.remote) return;
    const inUse = (): Set<string> => new Set(this.layerMountsNeeded());
    const now = inUse();
    for (const dir of this.remote.mounted()) {
      if (!now.has(dir)) await this.remote.unmount(dir, () => !inUse().has(dir));
    }
  }

  private async removeDir(dir: string): Promise<void> {
    try {
      await removeTree(dir);
    } catch (err) {
      // Not fatal: the record is gone, so Cleanup or the next start removes the directory.
      this.log.warn({ dir, err }, 'could not remove a snapshot directory');
    }
  }

  private async removeOrphans(): Promise<string[]> {
    // The directory first, the records after: a snapshot created while readdir runs is then
    // either missing from the listing or present in the records, never taken for an orphan.
    const names = await readdir(snapshotsDir(this.root));
    const known = this.store.ids();
    const mounted = new Set(this.remote?.mounted() ?? []);
    const removed: string[] = [];
    for (const name of names) {
      if (this.making.has(name)) continue;
      const id = idOfDirName(name);
      if (id !== null && known.has(id)) continue;
      const dir = join(snapshotsDir(this.root), name);
      if (mounted.has(join(dir, 'fs'))) continue;
      await this.removeDir(dir);
      removed.push(dir);
    }
    return removed;
  }
}

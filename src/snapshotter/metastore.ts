// The metadata store: one SQLite database, synchronous (better-sqlite3), so that a whole
// snapshot operation runs inside one transaction with nothing else interleaved.
import Database from 'better-sqlite3';
import type { Kind, Labels, SnapshotRecord } from './types.js';

const SCHEMA_VERSION = 1;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS snapshots (
  id            INTEGER PRIMARY KEY AUTOINCREMENT,
  key           TEXT NOT NULL UNIQUE,
  kind          TEXT NOT NULL CHECK (kind IN ('view', 'active', 'committed')),
  parent_id     INTEGER REFERENCES snapshots(id) ON DELETE RESTRICT,
  created_us    INTEGER NOT NULL,
  updated_us    INTEGER NOT NULL,
  labels        TEXT NOT NULL,
  remote_digest TEXT,
  size          INTEGER,
  inodes        INTEGER
);
CREATE INDEX IF NOT EXISTS snapshots_parent ON snapshots(parent_id);
`;

interface Row {
  id: number;
  key: string;
  kind: Kind;
  parent_id: number | null;
  parent_key: string | null;
  created_us: number;
  updated_us: number;
  labels: string;
  remote_digest: string | null;
  size: number | null;
  inodes: number | null;
}

const SELECT = `SELECT s.*, p.key AS parent_key FROM snapshots s LEFT JOIN snapshots p ON p.id = s.parent_id`;

function toRecord(r: Row): SnapshotRecord {
  return {
    id: r.id,
    name: r.key,
    kind: r.kind,
    parentId: r.parent_id,
    parent: r.parent_key ?? '',
    createdUs: r.created_us,
    updatedUs: r.updated_us,
    labels: JSON.parse(r.labels) as Labels,
    remoteDigest: r.remote_digest,
    size: r.size,
    inodes: r.inodes,
  };
}

export interface NewSnapshot {
  key: string;
  kind: Kind;
  parentId: number | null;
  nowUs: number;
  labels: Labels;
  remoteDigest?: string | null;
}

export class MetaStore {
  private readonly db: Database.Database;

  constructor(file: string) {
    this.db = new Database(file);
    // WAL with FULL sync: a committed transaction survives a crash of the process and of the machine.
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    this.db.pragma('foreign_keys = ON');
    this.db.pragma('busy_timeout = 5000');
    const version = this.db.pragma('user_version', { simple: true }) as number;
    if (version > SCHEMA_VERSION) {
      throw new Error(`metadata database ${file} has schema version ${version}; this build knows up to ${SCHEMA_VERSION}`);
    }
    this.db.exec(SCHEMA);
    this.db.pragma(`user_version = ${SCHEMA_VERSION}`);
  }

  /** Runs fn in one write transaction: all of it lands, or none of it. */
  tx<T>(fn: () => T): T {
    return this.db.transaction(fn).immediate();
  }

  get(key: string): SnapshotRecord | undefined {
    const r = this.db.prepare(`${SELECT} WHERE s.key = ?`).get(key) as Row | undefined;
    return r && toRecord(r);
  }

  getById(id: number): SnapshotRecord | undefined {
    const r = this.db.prepare(`${SELECT} WHERE s.id = ?`).get(id) as Row | undefined;
    return r && toRecord(r);
  }

  all(): SnapshotRecord[] {
    return (this.db.prepare(`${SELECT} ORDER BY s.id`).all() as Row[]).map(toRecord);
  }

  ids(): Set<number> {
    return new Set((this.db.prepare('SELECT id FROM snapshots').pluck().all() as number[]));
  }

  insert(s: NewSnapshot): number {
    const info = this.db
      .prepare(`INSERT INTO snapshots (key, kind, parent_id, created_us, updated_us, labels, remote_digest, size, inodes)
                VALUES (?, ?, ?, ?, ?, ?, ?, NULL, NULL)`)
      .run(s.key, s.kind, s.parentId, s.nowUs, s.nowUs, JSON.stringify(s.labels), s.remoteDigest ?? null);
    return Number(info.lastInsertRowid);
  }

  /** Turns an active snapshot into a committed one under a new name, as containerd does: labels are replaced. */
  commit(id: number, name: string, labels: Labels, size: number, inodes: number, nowUs: number): void {
    this.db
      .prepare(`UPDATE snapshots SET key = ?, kind = 'committed', labels = ?, size = ?, inodes = ?, created_us = ?, updated_us = ?
                WHERE id = ?`)
      .run(name, JSON.stringify(labels), size, inodes, nowUs, nowUs, id);
  }

  setLabels(id: number, labels: Labels, nowUs: number): void {
    this.db.prepare('UPDATE snapshots SET labels = ?, updated_us = ? WHERE id = ?').run(JSON.stringify(labels), nowUs, id);
  }

  delete(id: number): void {
    this.db.prepare('DELETE FROM snapshots WHERE id = ?').run(id);
  }

  hasChildren(id: number): boolean {
    return this.db.prepare('SELECT 1 FROM snapshots WHERE parent_id = ? LIMIT 1').get(id) !== undefined;
  }

  /** The ancestors of a snapshot, closest first, starting with the snapshot whose id is given. */
  chain(id: number): SnapshotRecord[] {
    const rows = this.db
      .prepare(`WITH RECURSIVE chain(id, depth) AS (
                  SELECT ?, 0
                  UNION ALL
                  SELECT s.parent_id, c.depth + 1 FROM snapshots s JOIN chain c ON s.id = c.id WHERE s.parent_id IS NOT NULL)
                ${SELECT} JOIN chain c ON c.id = s.id ORDER BY c.depth`)
      .all(id) as Row[];
    return rows.map(toRecord);
  }

  /** Remote snapshots that some active snapshot or view stands on: the layers that must stay mounted. */
  remoteInUse(): SnapshotRecord[] {
    const rows = this.db
      .prepare(`WITH RECURSIVE needed(id) AS (
                  SELECT parent_id FROM snapshots WHERE kind IN ('active', 'view') AND parent_id IS NOT NULL
                  UNION
                  SELECT s.parent_id FROM snapshots s JOIN needed n ON s.id = n.id WHERE s.parent_id IS NOT NULL)
                ${SELECT} JOIN needed n ON n.id = s.id WHERE s.remote_digest IS NOT NULL ORDER BY s.id`)
      .all() as Row[];
    return rows.map(toRecord);
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}

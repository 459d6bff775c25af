// The snapshot model, independent of the wire format and of storage.

export type Kind = 'view' | 'active' | 'committed';

export type Labels = Record<string, string>;

export interface Info {
  name: string;
  parent: string;
  kind: Kind;
  /** Microseconds since the epoch: containerd compares times finer than milliseconds. */
  createdUs: number;
  updatedUs: number;
  labels: Labels;
}

/** A stored snapshot: its public info plus what only the snapshotter knows. */
export interface SnapshotRecord extends Info {
  id: number;
  parentId: number | null;
  /** The layer digest of a snapshot served from the layer store; null for local snapshots. */
  remoteDigest: string | null;
  /** Usage recorded at commit time; null while the snapshot is active or a view. */
  size: number | null;
  inodes: number | null;
}

export interface Mount {
  type: string;
  source: string;
  options: string[];
}

export interface Usage {
  size: number;
  inodes: number;
}

/** What mounts() needs to know of a snapshot and its ancestry. */
export interface MountSubject {
  kind: Kind;
  /** This snapshot's own directory (upper dir for an active snapshot). */
  dir: string;
  workDir: string;
  /** The directories of the parent chain, closest parent first. */
  parentDirs: string[];
}

// The wire messages of the Snapshots service are the generated ones (generated/snapshots.ts, from
// proto/containerd/*.proto); here are the conversions between them and the snapshot model.
import type { Info, Kind, Labels, Mount, Usage } from '../snapshotter/types.js';
import { InvalidArgument, quote } from '../errors.js';
import type {
  Info as WireInfo, Kind as WireKind, Mount as WireMount, PrepareSnapshotResponse as MountsResponse, Timestamp as WireTimestamp,
  UsageResponse,
} from './generated/snapshots.js';

export type {
  CleanupRequest, CommitSnapshotRequest, Empty, Info as WireInfo, Kind as WireKind, ListSnapshotsRequest, ListSnapshotsResponse,
  Mount as WireMount, MountsRequest, MountsResponse, PrepareSnapshotRequest, RemoveSnapshotRequest, StatSnapshotRequest,
  StatSnapshotResponse as InfoResponse, Timestamp as WireTimestamp, UpdateSnapshotRequest, UsageRequest, UsageResponse,
  ViewSnapshotRequest,
} from './generated/snapshots.js';

const KIND_TO_WIRE: Record<Kind, WireKind> = { view: 'VIEW', active: 'ACTIVE', committed: 'COMMITTED' };

function timestamp(us: number): WireTimestamp {
  return { seconds: Math.floor(us / 1e6), nanos: (us % 1e6) * 1000 };
}

export function toWireInfo(i: Info): WireInfo {
  return {
    name: i.name,
    parent: i.parent,
    kind: KIND_TO_WIRE[i.kind],
    created_at: timestamp(i.createdUs),
    updated_at: timestamp(i.updatedUs),
    labels: i.labels,
  };
}

export function toWireMounts(ms: Mount[]): MountsResponse {
  return { mounts: ms.map((m): WireMount => ({ type: m.type, source: m.source, target: '', options: m.options })) };
}

export function toWireUsage(u: Usage): UsageResponse {
  return { size: u.size, inodes: u.inodes };
}

/** Labels as they arrived: a map of strings. Anything else is a malformed request. */
export function wireLabels(l: unknown): Labels {
  if (l === null || l === undefined) return {};
  if (typeof l !== 'object') throw new InvalidArgument('labels must be a map of strings');
  const out: Labels = {};
  for (const [k, v] of Object.entries(l)) {
    if (typeof v !== 'string') throw new InvalidArgument(`label ${quote(k)} must be a string`);
    out[k] = v;
  }
  return out;
}

// Types of the wire messages as @grpc/proto-loader decodes them (keepCase, enums as strings,
// longs as numbers), and the conversions between them and the snapshot model.
import type { Info, Kind, Labels, Mount, Usage } from '../snapshotter/types.js';
import { InvalidArgument, quote } from '../errors.js';

export type WireKind = 'UNKNOWN' | 'VIEW' | 'ACTIVE' | 'COMMITTED';

export interface WireTimestamp { seconds: number | string; nanos: number }
export interface WireMount { type: string; source: string; target: string; options: string[] }
export interface WireInfo {
  name: string;
  parent: string;
  kind: WireKind;
  created_at: WireTimestamp | null;
  updated_at: WireTimestamp | null;
  labels: Labels;
}

export interface PrepareSnapshotRequest { snapshotter: string; key: string; parent: string; labels: Labels }
export type ViewSnapshotRequest = PrepareSnapshotRequest;
export interface MountsRequest { snapshotter: string; key: string }
export interface MountsResponse { mounts: WireMount[] }
export interface RemoveSnapshotRequest { snapshotter: string; key: string }
export interface CommitSnapshotRequest { snapshotter: string; name: string; key: string; labels: Labels }
export interface StatSnapshotRequest { snapshotter: string; key: string }
export interface InfoResponse { info: WireInfo }
export interface UpdateSnapshotRequest { snapshotter: string; info: WireInfo | null; update_mask: { paths: string[] } | null }
export interface ListSnapshotsRequest { snapshotter: string; filters: string[] }
export interface ListSnapshotsResponse { info: WireInfo[] }
export interface UsageRequest { snapshotter: string; key: string }
export interface UsageResponse { size: number; inodes: number }
export interface CleanupRequest { snapshotter: string }
export type Empty = Record<string, never>;

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
  return { mounts: ms.map((m) => ({ type: m.type, source: m.source, target: '', options: m.options })) };
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

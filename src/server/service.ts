// The gRPC adapter: decodes each request, calls the snapshotter, encodes the answer, and logs
// one line per call. Errors are mapped to status codes in status.ts only.
import type { sendUnaryData, ServerUnaryCall, ServerWritableStream, UntypedServiceImplementation } from '@grpc/grpc-js';
import { InvalidArgument } from '../errors.js';
import type { Logger } from '../log.js';
import type { Snapshotter } from '../snapshotter/snapshotter.js';
import { assertDecoded } from './decode.js';
import { codeName, codeOf, toServiceError } from './status.js';
import {
  toWireInfo, toWireMounts, toWireUsage, wireLabels,
  type CleanupRequest, type CommitSnapshotRequest, type Empty, type InfoResponse, type ListSnapshotsRequest,
  type ListSnapshotsResponse, type MountsRequest, type MountsResponse, type PrepareSnapshotRequest,
  type RemoveSnapshotRequest, type StatSnapshotRequest, type UpdateSnapshotRequest, type UsageRequest,
  type UsageResponse, type ViewSnapshotRequest,
} from './wire.js';

const LIST_BATCH = 100;

/** Called once per finished RPC, for metrics. */
export type CallObserver = (method: string, code: string, seconds: number) => void;

export function snapshotsHandlers(sn: Snapshotter, log: Logger, observe?: CallObserver): UntypedServiceImplementation {
  function finish(method: string, key: string, start: bigint, err: unknown): void {
    const seconds = Number(process.hrtime.bigint() - start) / 1e9;
    const code = err === undefined ? 'OK' : codeName(codeOf(err));
    observe?.(method, code, seconds);
    const fields = { method, key, code, ms: Math.round(seconds * 1e6) / 1e3 };
    if (err === undefined) log.debug(fields, 'rpc');
    else if (code === 'NOT_FOUND' || code === 'ALREADY_EXISTS') log.debug({ ...fields, msg: (err as Error).message }, 'rpc');
    else if (code === 'UNKNOWN' || code === 'INTERNAL') log.error({ ...fields, err }, 'rpc failed');
    else log.warn({ ...fields, error: err instanceof Error ? err.message : String(err) }, 'rpc refused');
  }

  function unary<Req, Res>(method: string, keyOf: (r: Req) => string, fn: (r: Req) => Promise<Res> | Res) {
    return (call: ServerUnaryCall<Req, Res>, cb: sendUnaryData<Res>): void => {
      const start = process.hrtime.bigint();
      const req = call.request;
      let key = '';
      Promise.resolve()
        .then(() => {
          assertDecoded(req);
          key = String(keyOf(req) ?? '');
          // Keys may be anything a client sends; the log gets enough to recognise one.
          if (key.length > 256) key = `${key.slice(0, 256)}… (${Buffer.byteLength(key)} bytes)`;
          return fn(req);
        })
        .then(
          (res) => { finish(method, key, start, undefined); cb(null, res); },
          (err: unknown) => { finish(method, key, start, err); cb(toServiceError(err)); },
        );
    };
  }

  const empty: Empty = {};
  return {
    Prepare: unary<PrepareSnapshotRequest, MountsResponse>('Prepare', (r) => r.key, async (r) =>
      toWireMounts(await sn.prepare(r.key, r.parent, wireLabels(r.labels)))),
    View: unary<ViewSnapshotRequest, MountsResponse>('View', (r) => r.key, async (r) =>
      toWireMounts(await sn.view(r.key, r.parent, wireLabels(r.labels)))),
    Mounts: unary<MountsRequest, MountsResponse>('Mounts', (r) => r.key, async (r) => toWireMounts(await sn.mounts(r.key))),
    Commit: unary<CommitSnapshotRequest, Empty>('Commit', (r) => r.key, async (r) => {
      await sn.commit(r.name, r.key, wireLabels(r.labels));
      return empty;
    }),
    Remove: unary<RemoveSnapshotRequest, Empty>('Remove', (r) => r.key, async (r) => {
      await sn.remove(r.key);
      return empty;
    }),
    Stat: unary<StatSnapshotRequest, InfoResponse>('Stat', (r) => r.key, (r) => ({ info: toWireInfo(sn.stat(r.key)) })),
    Update: unary<UpdateSnapshotRequest, InfoResponse>('Update', (r) => r.info?.name ?? '', (r) => {
      if (!r.info) throw new InvalidArgument('Update needs the snapshot info with its name');
      return { info: toWireInfo(sn.update(r.info.name, wireLabels(r.info.labels), r.update_mask?.paths ?? [])) };
    }),
    Usage: unary<UsageRequest, UsageResponse>('Usage', (r) => r.key, async (r) => toWireUsage(await sn.usage(r.key))),
    Cleanup: unary<CleanupRequest, Empty>('Cleanup', () => '', async () => {
      await sn.cleanup();
      return empty;
    }),
    List: (call: ServerWritableStream<ListSnapshotsRequest, ListSnapshotsResponse>): void => {
      const start = process.hrtime.bigint();
      try {
        assertDecoded(call.request);
        const infos = sn.list(call.request.filters ?? []).map(toWireInfo);
        for (let i = 0; i < infos.length; i += LIST_BATCH) call.write({ info: infos.slice(i, i + LIST_BATCH) });
        finish('List', (call.request.filters ?? []).join(' OR '), start, undefined);
        call.end();
      } catch (err) {
        finish('List', (call.request.filters ?? []).join(' OR '), start, err);
        call.emit('error', toServiceError(err));
      }
    },
  };
}

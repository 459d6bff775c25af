// A typed client of the Snapshots service, for tests and for commands that talk to a daemon.
import { credentials, type Client, type ServiceError } from '@grpc/grpc-js';
import { snapshotsService } from './proto.js';
import type {
  CommitSnapshotRequest, Empty, InfoResponse, ListSnapshotsResponse, MountsResponse, PrepareSnapshotRequest,
  UpdateSnapshotRequest, UsageResponse, WireInfo,
} from './wire.js';

type Callback<T> = (err: ServiceError | null, res: T) => void;
type Unary = (req: object, cb: Callback<unknown>) => void;

export class SnapshotsClient {
  private readonly client: Client;

  constructor(readonly socket: string, readonly snapshotter = 'cvmfs-snapshotter') {
    const Ctor = snapshotsService();
    this.client = new Ctor(`unix://${socket}`, credentials.createInsecure());
  }

  private call<T>(method: string, req: object): Promise<T> {
    const fn = (this.client as unknown as Record<string, Unary>)[method] as Unary;
    return new Promise((resolve, reject) =>
      fn.call(this.client, { snapshotter: this.snapshotter, ...req }, (err, res) => (err ? reject(err) : resolve(res as T))));
  }

  prepare(key: string, parent = '', labels: Record<string, string> = {}): Promise<MountsResponse> {
    return this.call('Prepare', { key, parent, labels } satisfies Omit<PrepareSnapshotRequest, 'snapshotter'>);
  }
  view(key: string, parent = '', labels: Record<string, string> = {}): Promise<MountsResponse> {
    return this.call('View', { key, parent, labels });
  }
  mounts(key: string): Promise<MountsResponse> { return this.call('Mounts', { key }); }
  commit(name: string, key: string, labels: Record<string, string> = {}): Promise<Empty> {
    return this.call('Commit', { name, key, labels } satisfies Omit<CommitSnapshotRequest, 'snapshotter'>);
  }
  remove(key: string): Promise<Empty> { return this.call('Remove', { key }); }
  stat(key: string): Promise<InfoResponse> { return this.call('Stat', { key }); }
  update(info: Partial<WireInfo> & { name: string }, paths: string[] = []): Promise<InfoResponse> {
    return this.call('Update', { info, update_mask: { paths } } satisfies Omit<UpdateSnapshotRequest, 'snapshotter' | 'info'> & { info: object });
  }
  usage(key: string): Promise<UsageResponse> { return this.call('Usage', { key }); }
  cleanup(): Promise<Empty> { return this.call('Cleanup', {}); }

  list(filters: string[] = []): Promise<WireInfo[]> {
    const stream = (this.client as unknown as Record<string, (req: object) => NodeJS.ReadableStream>)['List'] as (req: object) => NodeJS.ReadableStream;
    const s = stream.call(this.client, { snapshotter: this.snapshotter, filters });
    const out: WireInfo[] = [];
    return new Promise((resolve, reject) => {
      s.on('data', (r: ListSnapshotsResponse) => out.push(...r.info));
      s.on('error', reject);
      s.on('end', () => resolve(out));
    });
  }

  close(): void { this.client.close(); }
}

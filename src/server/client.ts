// A typed client of the Snapshots service, for tests and for commands that talk to a daemon.
import { credentials, type Client, type ServiceError } from '@grpc/grpc-js';
import type { Input } from './codec.js';
import { snapshotsService, type SnapshotsMethod } from './proto.js';
import type { Messages, Snapshots } from './generated/snapshots.js';
import type { Empty, MountsResponse, UsageResponse, WireInfo } from './wire.js';

type Methods = typeof Snapshots.methods;
type RequestOf<M extends SnapshotsMethod> = Input<Messages[Methods[M]['request']]>;
type ResponseOf<M extends SnapshotsMethod> = Messages[Methods[M]['response']];

type Callback<T> = (err: ServiceError | null, res: T) => void;
type Unary = (req: object, cb: Callback<unknown>) => void;

/** A Stat or Update answer; the server always sends the info (a missing one is an error here). */
export interface InfoAnswer { info: WireInfo }

export class SnapshotsClient {
  private readonly client: Client;

  constructor(readonly socket: string, readonly snapshotter = 'cvmfs-snapshotter') {
    const Ctor = snapshotsService();
    this.client = new Ctor(`unix://${socket}`, credentials.createInsecure());
  }

  private call<M extends SnapshotsMethod>(method: M, req: Omit<RequestOf<M>, 'snapshotter'>): Promise<ResponseOf<M>> {
    const fn = (this.client as unknown as Record<string, Unary>)[method] as Unary;
    return new Promise((resolve, reject) =>
      fn.call(this.client, { snapshotter: this.snapshotter, ...req }, (err, res) => (err ? reject(err) : resolve(res as ResponseOf<M>))));
  }

  private async info(answer: Promise<{ info: WireInfo | null }>): Promise<InfoAnswer> {
    const { info } = await answer;
    if (!info) throw new Error('the daemon answered without the snapshot info');
    return { info };
  }

  prepare(key: string, parent = '', labels: Record<string, string> = {}): Promise<MountsResponse> {
    return this.call('Prepare', { key, parent, labels });
  }
  view(key: string, parent = '', labels: Record<string, string> = {}): Promise<MountsResponse> {
    return this.call('View', { key, parent, labels });
  }
  mounts(key: string): Promise<MountsResponse> { return this.call('Mounts', { key }); }
  commit(name: string, key: string, labels: Record<string, string> = {}): Promise<Empty> {
    return this.call('Commit', { name, key, labels });
  }
  remove(key: string): Promise<Empty> { return this.call('Remove', { key }); }
  stat(key: string): Promise<InfoAnswer> { return this.info(this.call('Stat', { key })); }
  update(info: Partial<WireInfo> & { name: string }, paths: string[] = []): Promise<InfoAnswer> {
    return this.info(this.call('Update', { info, update_mask: { paths } }));
  }
  usage(key: string): Promise<UsageResponse> { return this.call('Usage', { key }); }
  cleanup(): Promise<Empty> { return this.call('Cleanup', {}); }

  list(filters: string[] = []): Promise<WireInfo[]> {
    const stream = (this.client as unknown as Record<string, (req: object) => NodeJS.ReadableStream>)['List'] as (req: object) => NodeJS.ReadableStream;
    const s = stream.call(this.client, { snapshotter: this.snapshotter, filters });
    const out: WireInfo[] = [];
    return new Promise((resolve, reject) => {
      s.on('data', (r: Messages['containerd.services.snapshots.v1.ListSnapshotsResponse']) => out.push(...r.info));
      s.on('error', reject);
      s.on('end', () => resolve(out));
    });
  }

  close(): void { this.client.close(); }
}

// A typed client of the Snapshots service, for tests and for commands that talk to a daemon.
import { Client, credentials } from '@grpc/grpc-js';
import type { Input } from './codec.js';
import { snapshotsCodec, type SnapshotsMethod } from './proto.js';
import { Snapshots, type Messages } from './generated/snapshots.js';
import type { Empty, MountsResponse, UsageResponse, WireInfo } from './wire.js';

type Methods = typeof Snapshots.methods;
type RequestOf<M extends SnapshotsMethod> = Input<Messages[Methods[M]['request']]>;
type ResponseOf<M extends SnapshotsMethod> = Messages[Methods[M]['response']];

/** A Stat or Update answer; the server always sends the info (a missing one is an error here). */
export interface InfoAnswer { info: WireInfo }

export class SnapshotsClient {
  private readonly client: Client;

  constructor(readonly socket: string, readonly snapshotter = 'cvmfs-snapshotter') {
    this.client = new Client(`unix://${socket}`, credentials.createInsecure());
  }

  private call<M extends SnapshotsMethod>(method: M, req: Omit<RequestOf<M>, 'snapshotter'>): Promise<ResponseOf<M>> {
    const m: Methods[M] = Snapshots.methods[method];
    const request = { snapshotter: this.snapshotter, ...req } as RequestOf<M>;
    return new Promise((resolve, reject) => {
      this.client.makeUnaryRequest(
        m.path,
        (r: RequestOf<M>) => snapshotsCodec.encode(m.request, r),
        (b: Buffer) => snapshotsCodec.decode<Methods[M]['response']>(m.response, b),
        request,
        (err, res) => (err || res === undefined ? reject(err ?? new Error(`${method}: no answer`)) : resolve(res)),
      );
    });
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
    const m = Snapshots.methods.List;
    const s = this.client.makeServerStreamRequest(
      m.path,
      (r: RequestOf<'List'>) => snapshotsCodec.encode(m.request, r),
      (b: Buffer) => snapshotsCodec.decode(m.response, b),
      { snapshotter: this.snapshotter, filters },
    );
    const out: WireInfo[] = [];
    return new Promise((resolve, reject) => {
      s.on('data', (r: ResponseOf<'List'>) => out.push(...r.info));
      s.on('error', reject);
      s.on('end', () => resolve(out));
    });
  }

  close(): void { this.client.close(); }
}

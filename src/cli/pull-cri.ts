// A small typed client of containerd's CRI (runtime.v1) over containerd's own socket, for
// `cvmfs-snapshotter pull`. Only the calls pull needs: Version, Status, PullImage, ImageStatus.
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { credentials, loadPackageDefinition, Metadata, status as grpcStatus, type Client, type GrpcObject, type ServiceClientConstructor, type ServiceError } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';

/** proto/ at the package root: dist/src/cli/ is three levels below it. */
const PROTO_FILE = join(fileURLToPath(new URL('../../../proto/', import.meta.url)), 'cri', 'api.proto');

export interface CriVersion {
  version: string;
  runtime_name: string;
  runtime_version: string;
  runtime_api_version: string;
}

export interface CriStatus {
  status: { conditions: Array<{ type: string; status: boolean; reason: string; message: string }> } | null;
  info: Record<string, string>;
}

export interface CriImage {
  id: string;
  repo_tags: string[];
  repo_digests: string[];
  size: number;
}

type Callback<T> = (err: ServiceError | null, res: T) => void;
type Unary = (req: object, md: Metadata, opts: { deadline?: Date }, cb: Callback<unknown>) => void;

function lookup(root: GrpcObject, path: string): ServiceClientConstructor {
  let node: unknown = root;
  for (const part of path.split('.')) node = (node as Record<string, unknown>)[part];
  if (typeof node !== 'function') throw new Error(`service ${path} not found in ${PROTO_FILE}`);
  return node as ServiceClientConstructor;
}

export function isServiceError(err: unknown): err is ServiceError {
  return err instanceof Error && 'code' in err && typeof err.code === 'number' && 'details' in err;
}

export const GRPC = grpcStatus;

export class CriClient {
  private readonly runtime: Client;
  private readonly images: Client;

  constructor(readonly socket: string) {
    const def = loadSync(PROTO_FILE, { keepCase: true, longs: Number, enums: String, defaults: true, arrays: true, objects: true });
    const root = loadPackageDefinition(def);
    const target = `unix://${socket}`;
    const RuntimeService = lookup(root, 'runtime.v1.RuntimeService');
    const ImageService = lookup(root, 'runtime.v1.ImageService');
    this.runtime = new RuntimeService(target, credentials.createInsecure());
    // Shares the channel: one connection to containerd.
    this.images = new ImageService(target, credentials.createInsecure(), { channelOverride: this.runtime.getChannel() });
  }

  private call<T>(client: Client, method: string, req: object, timeoutMs?: number): Promise<T> {
    const fn = (client as unknown as Record<string, Unary>)[method] as Unary;
    const opts = timeoutMs ? { deadline: new Date(Date.now() + timeoutMs) } : {};
    return new Promise((resolve, reject) =>
      fn.call(client, req, new Metadata(), opts, (err, res) => (err ? reject(err) : resolve(res as T))));
  }

  version(timeoutMs = 5000): Promise<CriVersion> {
    return this.call(this.runtime, 'Version', { version: 'v1' }, timeoutMs);
  }

  status(verbose: boolean, timeoutMs = 10_000): Promise<CriStatus> {
    return this.call(this.runtime, 'Status', { verbose }, timeoutMs);
  }

  async pullImage(image: string, timeoutMs?: number): Promise<string> {
    const res = await this.call<{ image_ref: string }>(this.images, 'PullImage', { image: { image } }, timeoutMs);
    return res.image_ref;
  }

  async imageStatus(image: string, timeoutMs = 10_000): Promise<CriImage | undefined> {
    const res = await this.call<{ image: CriImage | null }>(this.images, 'ImageStatus', { image: { image }, verbose: false }, timeoutMs);
    return res.image ?? undefined;
  }

  close(): void {
    this.images.close();
    this.runtime.close();
  }
}

// A small typed client of containerd's CRI (runtime.v1) over containerd's own socket, for
// `cvmfs-snapshotter pull`. Only the calls pull needs: Version, Status, PullImage, ImageStatus.
// The messages are the generated ones (proto/cri/api.proto); the transport is the small unary
// client, so that the command loads neither gRPC nor a .proto parser.
import { ProtoCodec, type Input } from '../server/codec.js';
import { GrpcCode } from '../server/grpc-codes.js';
import { ImageService, RuntimeService, schema, type Image, type Messages, type StatusResponse, type VersionResponse } from '../server/generated/cri.js';
import { UnaryClient } from '../server/unary-client.js';

const codec = new ProtoCodec<Messages>(schema);

type Method = { readonly path: string; readonly request: keyof Messages; readonly response: keyof Messages };

/** A failed call: the status code and the server's message (grpc-js's ServiceError has both too). */
export function isServiceError(err: unknown): err is Error & { code: number; details: string } {
  return err instanceof Error && 'code' in err && typeof err.code === 'number' && 'details' in err && typeof err.details === 'string';
}

export const GRPC = GrpcCode;

export class CriClient {
  private readonly client: UnaryClient;

  constructor(readonly socket: string) {
    // One connection to containerd for both services.
    this.client = new UnaryClient(socket);
  }

  private async call<M extends Method>(m: M, req: Input<Messages[M['request']]>, timeoutMs?: number): Promise<Messages[M['response']]> {
    const answer = await this.client.call(m.path, codec.encode(m.request, req), timeoutMs);
    return codec.decode<M['response']>(m.response, answer);
  }

  version(timeoutMs = 5000): Promise<VersionResponse> {
    return this.call(RuntimeService.methods.Version, { version: 'v1' }, timeoutMs);
  }

  status(verbose: boolean, timeoutMs = 10_000): Promise<StatusResponse> {
    return this.call(RuntimeService.methods.Status, { verbose }, timeoutMs);
  }

  async pullImage(image: string, timeoutMs?: number): Promise<string> {
    const res = await this.call(ImageService.methods.PullImage, { image: { image } }, timeoutMs);
    return res.image_ref;
  }

  async imageStatus(image: string, timeoutMs = 10_000): Promise<Image | undefined> {
    const res = await this.call(ImageService.methods.ImageStatus, { image: { image }, verbose: false }, timeoutMs);
    return res.image ?? undefined;
  }

  close(): void {
    this.client.close();
  }
}

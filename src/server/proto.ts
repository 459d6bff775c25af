// The Snapshots service for @grpc/grpc-js, from the generated messages (generated/snapshots.ts,
// made from proto/ by scripts/gen-proto.mjs): nothing parses a .proto file at run time.
import { makeGenericClientConstructor, type MethodDefinition, type ServiceClientConstructor, type ServiceDefinition } from '@grpc/grpc-js';
import { ProtoCodec } from './codec.js';
import { schema, Snapshots, type Messages } from './generated/snapshots.js';

export const snapshotsCodec = new ProtoCodec<Messages>(schema);

export type SnapshotsMethod = keyof typeof Snapshots.methods;

type RequestDecoder = (method: string, decode: (bytes: Buffer) => object) => (bytes: Buffer) => object;

/**
 * The grpc-js definition of containerd.services.snapshots.v1.Snapshots. The server passes
 * decode.ts's tolerant(), so that a request that is not protobuf is InvalidArgument, not INTERNAL.
 */
export function snapshotsDefinition(requestDecoder: RequestDecoder = (_method, decode) => decode): ServiceDefinition {
  const def: Record<string, MethodDefinition<object, object>> = {};
  for (const [name, m] of Object.entries(Snapshots.methods)) {
    def[name] = {
      path: m.path,
      requestStream: false,
      responseStream: m.responseStream,
      requestSerialize: (o: object) => snapshotsCodec.encode(m.request, o),
      requestDeserialize: requestDecoder(name, (b: Buffer) => snapshotsCodec.decode(m.request, b)),
      responseSerialize: (o: object) => snapshotsCodec.encode(m.response, o),
      responseDeserialize: (b: Buffer) => snapshotsCodec.decode(m.response, b),
      originalName: name,
    };
  }
  return def as ServiceDefinition;
}

/** A grpc-js client class of the Snapshots service; its `service` is snapshotsDefinition(). */
export function snapshotsService(): ServiceClientConstructor {
  return makeGenericClientConstructor(snapshotsDefinition(), Snapshots.name);
}

// The Snapshots service for @grpc/grpc-js, from the generated messages (generated/snapshots.ts,
// made from proto/ by scripts/gen-proto.mjs): nothing parses a .proto file at run time.
import { makeGenericClientConstructor, type MethodDefinition, type ServiceClientConstructor, type ServiceDefinition } from '@grpc/grpc-js';
import { ProtoCodec } from './codec.js';
import { schema, Snapshots, type Messages } from './generated/snapshots.js';

export const snapshotsCodec = new ProtoCodec<Messages>(schema);

export type SnapshotsMethod = keyof typeof Snapshots.methods;

/** The grpc-js definition of containerd.services.snapshots.v1.Snapshots. */
export function snapshotsDefinition(): ServiceDefinition {
  const def: Record<string, MethodDefinition<object, object>> = {};
  for (const [name, m] of Object.entries(Snapshots.methods)) {
    def[name] = {
      path: m.path,
      requestStream: false,
      responseStream: m.responseStream,
      requestSerialize: (o: object) => snapshotsCodec.encode(m.request, o),
      requestDeserialize: (b: Buffer) => snapshotsCodec.decode(m.request, b),
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

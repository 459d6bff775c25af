// A request whose bytes are not a valid protobuf message is bad input like any other and gets
// InvalidArgument with the decoder's reason. Left to grpc-js it would be INTERNAL ("Error
// deserializing request"), which says the server is at fault. The decoder is wrapped so that a
// failure becomes a marker the handlers turn into the typed error.
import type { MethodDefinition, ServiceDefinition } from '@grpc/grpc-js';
import { InvalidArgument } from '../errors.js';

const MALFORMED = Symbol('malformed request');

interface MalformedRequest {
  readonly [MALFORMED]: string;
}

export function tolerantDecoding(def: ServiceDefinition): ServiceDefinition {
  const out: Record<string, MethodDefinition<unknown, unknown>> = {};
  for (const [name, m] of Object.entries(def) as [string, MethodDefinition<unknown, unknown>][]) {
    out[name] = {
      ...m,
      requestDeserialize: (bytes: Buffer): unknown => {
        try {
          return m.requestDeserialize(bytes);
        } catch (err) {
          const why = err instanceof Error ? err.message : String(err);
          return { [MALFORMED]: `the ${name} request is not a valid protobuf message (${bytes.length} bytes): ${why}` } satisfies MalformedRequest;
        }
      },
    };
  }
  return out as ServiceDefinition;
}

/** Throws InvalidArgument when the request could not be decoded. */
export function assertDecoded(request: unknown): void {
  if (typeof request === 'object' && request !== null && MALFORMED in request) {
    throw new InvalidArgument((request as MalformedRequest)[MALFORMED]);
  }
}

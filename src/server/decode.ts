// A request whose bytes are not a valid protobuf message is bad input like any other and gets
// InvalidArgument with the decoder's reason. Left to grpc-js it would be INTERNAL ("Error
// deserializing request"), which says the server is at fault. The decoder is wrapped so that a
// failure becomes a marker the handlers turn into the typed error.
import { InvalidArgument } from '../errors.js';

const MALFORMED = Symbol('malformed request');

interface MalformedRequest {
  readonly [MALFORMED]: string;
}

/** Wraps a request decoder so that bytes it refuses become the marker assertDecoded() turns into InvalidArgument. */
export function tolerant(method: string, decode: (bytes: Buffer) => object): (bytes: Buffer) => object {
  return (bytes) => {
    try {
      return decode(bytes);
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      return { [MALFORMED]: `the ${method} request is not a valid protobuf message (${bytes.length} bytes): ${why}` } satisfies MalformedRequest;
    }
  };
}

/** Throws InvalidArgument when the request could not be decoded. */
export function assertDecoded(request: unknown): void {
  if (typeof request === 'object' && request !== null && MALFORMED in request) {
    throw new InvalidArgument((request as MalformedRequest)[MALFORMED]);
  }
}

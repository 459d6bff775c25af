// The one validator of layer digests. A digest names a directory in the store, so a string
// that has not passed through here must never become part of a path.
import { InvalidArgument } from '../errors.js';

/** A validated `sha256:<64 lowercase hex>` string. Only parseDigest() makes one. */
export type LayerDigest = string & { readonly __brand: 'LayerDigest' };

const DIGEST_RE = /^sha256:[0-9a-f]{64}$/;
const EXPECTED = 'expected "sha256:" followed by exactly 64 lowercase hex characters';

/** True when `value` is a well-formed sha256 digest. */
export function isLayerDigest(value: unknown): value is LayerDigest {
  return typeof value === 'string' && DIGEST_RE.test(value);
}

/** Returns the digest, typed, or throws InvalidArgument saying what was wrong and what is expected. */
export function parseDigest(value: unknown, what = 'digest'): LayerDigest {
  if (isLayerDigest(value)) return value;
  throw new InvalidArgument(`invalid ${what} ${describe(value)}: ${reason(value)}; ${EXPECTED}`);
}

/** The 64 hex characters after `sha256:`. */
export function digestHex(digest: LayerDigest): string {
  return digest.slice('sha256:'.length);
}

function reason(value: unknown): string {
  if (typeof value !== 'string') return `not a string (${value === null ? 'null' : typeof value})`;
  const colon = value.indexOf(':');
  if (colon < 0) return 'no algorithm prefix';
  const algo = value.slice(0, colon);
  const hex = value.slice(colon + 1);
  if (algo.toLowerCase() !== 'sha256') return `algorithm "${algo}" is not supported`;
  if (algo !== 'sha256') return 'the algorithm must be lowercase';
  if (/[A-F]/.test(hex) && /^[0-9a-fA-F]*$/.test(hex)) return 'hex must be lowercase';
  if (!/^[0-9a-f]*$/.test(hex)) return 'contains characters other than hex';
  return `hex has ${hex.length} characters`;
}

// Quote and shorten untrusted input so an error message stays one readable line.
function describe(value: unknown): string {
  if (typeof value !== 'string') return '';
  const s = value.length > 80 ? `${value.slice(0, 80)}…` : value;
  return JSON.stringify(s);
}

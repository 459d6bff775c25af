// Registry authentication: the WWW-Authenticate challenge, and the token dance of the
// distribution token spec (GET <realm>?service=..&scope=.., optionally with Basic credentials).
import { Unavailable, FailedPrecondition } from '../../errors.js';

export interface Credentials {
  username: string;
  password: string;
}

export interface Challenge {
  /** Lowercased scheme: `bearer`, `basic`, ... */
  scheme: string;
  /** Parameters with lowercased names: realm, service, scope, error, ... */
  params: Record<string, string>;
}

/**
 * Parses the first challenge of a WWW-Authenticate header (RFC 7235 auth-params; quoted strings
 * may hold commas and backslash escapes). Returns undefined when the header has no scheme.
 */
export function parseChallenge(header: string): Challenge | undefined {
  const m = /^\s*([A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]*)\s*/.exec(header);
  if (!m || m[1] === undefined) return undefined;
  const scheme = m[1].toLowerCase();
  const params: Record<string, string> = {};
  let i = m[0].length;
  const s = header;
  while (i < s.length) {
    const km = /^\s*,?\s*([A-Za-z0-9_.-]+)\s*=\s*/.exec(s.slice(i));
    if (!km || km[1] === undefined) break; // a second challenge or junk: the first one is enough
    i += km[0].length;
    let value = '';
    if (s[i] === '"') {
      i++;
      while (i < s.length && s[i] !== '"') {
        if (s[i] === '\\' && i + 1 < s.length) i++;
        value += s[i];
        i++;
      }
      i++; // closing quote
    } else {
      const vm = /^[^,\s]*/.exec(s.slice(i));
      value = vm ? vm[0] : '';
      i += value.length;
    }
    params[km[1].toLowerCase()] = value;
  }
  return { scheme, params };
}

export function basicAuthorization(c: Credentials): string {
  return `Basic ${Buffer.from(`${c.username}:${c.password}`, 'utf8').toString('base64')}`;
}

/** Credentials from CVMFS_SNAPSHOTTER_REGISTRY_USER / _PASSWORD, when both are set. */
export function credentialsFromEnv(env: NodeJS.ProcessEnv = process.env): Credentials | undefined {
  const username = env.CVMFS_SNAPSHOTTER_REGISTRY_USER;
  const password = env.CVMFS_SNAPSHOTTER_REGISTRY_PASSWORD;
  return username && password !== undefined ? { username, password } : undefined;
}

/**
 * Fetches a bearer token for `scope` from the challenge's realm. Anonymous unless credentials
 * are given. Returns the value for the Authorization header.
 */
export async function fetchBearerToken(
  challenge: Challenge,
  scope: string,
  credentials: Credentials | undefined,
  fetchImpl: typeof fetch,
): Promise<string> {
  const realm = challenge.params.realm;
  if (!realm) throw new FailedPrecondition('the registry asked for a bearer token but named no realm to get it from');
  let url: URL;
  try {
    url = new URL(realm);
  } catch {
    throw new FailedPrecondition(`the registry's token realm ${JSON.stringify(realm)} is not a URL`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new FailedPrecondition(`the registry's token realm ${realm} is not http(s)`);
  }
  if (challenge.params.service) url.searchParams.set('service', challenge.params.service);
  // The challenge may name several space-separated scopes; each is its own query parameter.
  for (const s of (challenge.params.scope || scope).split(' ').filter(Boolean)) url.searchParams.append('scope', s);

  const headers: Record<string, string> = { Accept: 'application/json' };
  if (credentials) headers.Authorization = basicAuthorization(credentials);
  let res: Response;
  try {
    res = await fetchImpl(url, { headers, signal: AbortSignal.timeout(30_000) });
  } catch (err) {
    throw new Unavailable(`cannot reach the token server ${url.origin}: ${causeText(err)}`, err);
  }
  const text = await res.text();
  if (!res.ok) {
    throw new FailedPrecondition(`the token server ${url.origin} answered ${res.status} ${res.statusText}${credentials ? '' : ' to an anonymous request (set CVMFS_SNAPSHOTTER_REGISTRY_USER and CVMFS_SNAPSHOTTER_REGISTRY_PASSWORD for a private image)'}: ${text.slice(0, 200)}`);
  }
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new FailedPrecondition(`the token server ${url.origin} did not answer JSON`);
  }
  const token = typeof body === 'object' && body !== null
    ? ('token' in body && typeof body.token === 'string' && body.token) || ('access_token' in body && typeof body.access_token === 'string' && body.access_token)
    : undefined;
  if (!token) throw new FailedPrecondition(`the token server ${url.origin} answered without a token`);
  return `Bearer ${token}`;
}

/** The most useful text of a fetch failure: undici hides the errno in `cause`. */
export function causeText(err: unknown): string {
  const parts: string[] = [];
  let e: unknown = err;
  for (let depth = 0; e && depth < 4; depth++) {
    if (e instanceof Error) {
      const code = 'code' in e && typeof e.code === 'string' ? `${e.code}: ` : '';
      parts.push(`${code}${e.message}`);
      e = e.cause;
    } else {
      parts.push(String(e));
      break;
    }
  }
  return parts.filter((p) => p !== 'fetch failed').join(': ') || 'unknown error';
}

// A small client for the OCI distribution API: manifests and blobs, with token auth on demand.
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { FailedPrecondition, InvalidArgument, NotFound, Unavailable } from '../../errors.js';
import type { Logger } from '../../log.js';
import type { LayerDigest } from '../digest.js';
import { basicAuthorization, causeText, fetchBearerToken, parseChallenge, type Credentials } from './auth.js';
import { MANIFEST_ACCEPT } from './manifest.js';

export interface RegistryClientOptions {
  /** Speak http:// instead of https:// (a registry on 127.0.0.1 without TLS). */
  plainHttp?: boolean;
  credentials?: Credentials;
  fetch?: typeof fetch;
  logger?: Logger;
}

export interface FetchedManifest {
  body: Buffer;
  contentType: string | null;
  /** sha256 of the bytes as received: the manifest's own digest. */
  digest: LayerDigest;
}

export interface BlobStream {
  body: Readable;
  contentLength?: number;
}

// distribution refuses manifests above 4 MiB; anything bigger is not a manifest.
const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
const USER_AGENT = 'cvmfs-snapshotter-ingest';

export class RegistryClient {
  readonly baseUrl: string;
  private readonly fetchImpl: typeof fetch;
  // One Authorization value per repository: tokens are scoped to a repository.
  private readonly authByRepo = new Map<string, string>();

  constructor(readonly apiHost: string, private readonly opts: RegistryClientOptions = {}) {
    this.baseUrl = `${opts.plainHttp ? 'http' : 'https'}://${apiHost}`;
    this.fetchImpl = opts.fetch ?? fetch;
  }

  async getManifest(repository: string, reference: string, signal?: AbortSignal): Promise<FetchedManifest> {
    const res = await this.request(repository, `manifests/${reference}`, MANIFEST_ACCEPT, 60_000, signal);
    const length = Number(res.headers.get('content-length') ?? '0');
    if (length > MAX_MANIFEST_BYTES) {
      await res.body?.cancel();
      throw new InvalidArgument(`manifest ${repository}:${reference} is ${length} bytes; a manifest is at most ${MAX_MANIFEST_BYTES}`);
    }
    const body = Buffer.from(await res.arrayBuffer());
    if (body.length > MAX_MANIFEST_BYTES) {
      throw new InvalidArgument(`manifest ${repository}:${reference} is larger than ${MAX_MANIFEST_BYTES} bytes`);
    }
    const digest = `sha256:${createHash('sha256').update(body).digest('hex')}` as LayerDigest;
    return { body, contentType: res.headers.get('content-type'), digest };
  }

  /** Opens a blob for streaming. The caller verifies its digest while reading it. */
  async openBlob(repository: string, digest: LayerDigest, signal?: AbortSignal): Promise<BlobStream> {
    // No overall timeout: a big layer on a slow link legitimately takes long. undici's own
    // header and body timeouts still end a stalled transfer; `signal` ends it at the user's wish.
    const res = await this.request(repository, `blobs/${digest}`, '*/*', undefined, signal);
    if (!res.body) throw new FailedPrecondition(`blob ${digest} came with no body`);
    const len = res.headers.get('content-length');
    const out: BlobStream = { body: Readable.fromWeb(res.body as WebReadableStream<Uint8Array>) };
    if (len !== null && /^\d+$/.test(len)) out.contentLength = Number(len);
    return out;
  }

  private async request(repository: string, suffix: string, accept: string, timeoutMs: number | undefined, signal: AbortSignal | undefined): Promise<Response> {
    const url = `${this.baseUrl}/v2/${repository}/${suffix}`;
    let res = await this.send(url, repository, accept, timeoutMs, signal);
    if (res.status === 401) {
      const header = res.headers.get('www-authenticate');
      await res.body?.cancel();
      await this.authorize(repository, header, url);
      res = await this.send(url, repository, accept, timeoutMs, signal);
    }
    if (res.ok) return res;

    const detail = await errorDetail(res);
    const what = suffix.startsWith('manifests/') ? `manifest ${repository}:${suffix.slice('manifests/'.length)}` : `blob ${suffix.slice('blobs/'.length)} of ${repository}`;
    if (res.status === 404) throw new NotFound(`${what} not found at ${this.baseUrl}${detail}`);
    if (res.status === 401 || res.status === 403) {
      throw new FailedPrecondition(`${this.baseUrl} refused access to ${what} (${res.status})${detail}${this.opts.credentials ? '' : '; for a private image set CVMFS_SNAPSHOTTER_REGISTRY_USER and CVMFS_SNAPSHOTTER_REGISTRY_PASSWORD'}`);
    }
    throw new Unavailable(`${this.baseUrl} answered ${res.status} ${res.statusText} for ${what}${detail}`);
  }

  private async send(url: string, repository: string, accept: string, timeoutMs: number | undefined, signal: AbortSignal | undefined): Promise<Response> {
    const headers: Record<string, string> = { Accept: accept, 'User-Agent': USER_AGENT };
    const auth = this.authByRepo.get(repository);
    if (auth) headers.Authorization = auth;
    try {
      const signals = [...(timeoutMs ? [AbortSignal.timeout(timeoutMs)] : []), ...(signal ? [signal] : [])];
      return await this.fetchImpl(url, { headers, redirect: 'follow', ...(signals.length > 0 ? { signal: AbortSignal.any(signals) } : {}) });
    } catch (err) {
      const text = causeText(err);
      // An https request to a plain-http registry fails in the TLS handshake.
      const hint = !this.opts.plainHttp && /wrong version number|EPROTO|packet length too long/i.test(text)
        ? '; the registry seems to speak plain HTTP: pass --plain-http'
        : '';
      throw new Unavailable(`cannot reach registry ${this.baseUrl}: ${text}${hint}`, err);
    }
  }

  private async authorize(repository: string, header: string | null, url: string): Promise<void> {
    const challenge = header ? parseChallenge(header) : undefined;
    if (!challenge) throw new FailedPrecondition(`${url} requires authentication but sent no WWW-Authenticate challenge`);
    if (challenge.scheme === 'bearer') {
      const token = await fetchBearerToken(challenge, `repository:${repository}:pull`, this.opts.credentials, this.fetchImpl);
      this.authByRepo.set(repository, token);
      this.opts.logger?.debug({ repository, realm: challenge.params.realm }, 'got a registry token');
      return;
    }
    if (challenge.scheme === 'basic') {
      if (!this.opts.credentials) {
        throw new FailedPrecondition(`${this.baseUrl} requires a user name and password: set CVMFS_SNAPSHOTTER_REGISTRY_USER and CVMFS_SNAPSHOTTER_REGISTRY_PASSWORD`);
      }
      this.authByRepo.set(repository, basicAuthorization(this.opts.credentials));
      return;
    }
    throw new FailedPrecondition(`${this.baseUrl} asks for "${challenge.scheme}" authentication, which is not supported (Bearer and Basic are)`);
  }
}

// The registry's error JSON ({"errors":[{"code","message"}]}) names the problem better than the status.
async function errorDetail(res: Response): Promise<string> {
  let text = '';
  try {
    text = (await res.text()).slice(0, 2000);
  } catch {
    return '';
  }
  try {
    const body: unknown = JSON.parse(text);
    if (typeof body === 'object' && body !== null && 'errors' in body && Array.isArray(body.errors)) {
      const msgs = body.errors
        .map((e: unknown) => (typeof e === 'object' && e !== null && 'message' in e && typeof e.message === 'string' ? e.message : ''))
        .filter(Boolean);
      if (msgs.length) return `: ${msgs.join('; ')}`;
    }
  } catch {
    // not JSON: fall through to the raw text
  }
  return text.trim() ? `: ${text.trim().slice(0, 200)}` : '';
}

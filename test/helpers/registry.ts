// A private docker-registry (distribution 2.x) on 127.0.0.1, plain HTTP, storage in the scope.
import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { ManagedProcess } from './process.js';
import { freePort } from './ports.js';
import type { Scope } from './scope.js';
import { httpOk, waitUntil } from './wait.js';

export interface Registry {
  /** host:port, the prefix of image references, e.g. 127.0.0.1:40123 */
  host: string;
  /** http://host:port */
  url: string;
  process: ManagedProcess;
  stop(): Promise<void>;
}

function registryConfig(storageDir: string, port: number): string {
  // YAML; JSON is valid YAML, which keeps quoting right for any path.
  return JSON.stringify({
    version: 0.1,
    log: { level: 'warn', accesslog: { disabled: true } },
    storage: { filesystem: { rootdirectory: storageDir }, delete: { enabled: true } },
    http: { addr: `127.0.0.1:${port}` },
  }, null, 2);
}

export async function startRegistry(scope: Scope, name = 'registry'): Promise<Registry> {
  const dir = await scope.mkdir(name);
  const storage = await scope.mkdir(name, 'storage');
  // A port can be taken between freePort() and the registry's bind; try a few.
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const configFile = `${dir}/config.yml`;
    await writeFile(configFile, registryConfig(storage, port));
    const proc = await ManagedProcess.start({ name, cmd: 'docker-registry', args: ['serve', configFile], logFile: `${dir}/registry.log` });
    const url = `http://127.0.0.1:${port}`;
    try {
      await waitUntil(() => httpOk(`${url}/v2/`), { what: `${name} at ${url}`, process: proc, timeoutMs: 15_000 });
    } catch (err) {
      await proc.stop(2_000);
      if (attempt < 3 && /address already in use/.test(proc.log())) continue;
      throw err;
    }
    const stop = async (): Promise<void> => { await proc.stop(5_000); };
    scope.defer(`stop ${name}`, stop);
    return { host: `127.0.0.1:${port}`, url, process: proc, stop };
  }
}

// ---- pushing hand-made images through the registry API (blobs, then a manifest) ----

function sha256Of(b: Buffer): string {
  return `sha256:${createHash('sha256').update(b).digest('hex')}`;
}

export interface PushedLayer { digest: string; size: number; mediaType: string }

/** Uploads a blob in one monolithic PUT; resolves its digest. */
export async function pushBlob(registry: Registry, name: string, data: Buffer): Promise<string> {
  const digest = sha256Of(data);
  const start = await fetch(`${registry.url}/v2/${name}/blobs/uploads/`, { method: 'POST' });
  if (start.status !== 202) throw new Error(`starting an upload to ${name}: ${start.status} ${await start.text()}`);
  const url = new URL(start.headers.get('location') ?? '', registry.url);
  url.searchParams.set('digest', digest);
  const put = await fetch(url, { method: 'PUT', body: new Uint8Array(data), headers: { 'Content-Type': 'application/octet-stream' } });
  if (put.status !== 201) throw new Error(`uploading ${digest} to ${name}: ${put.status} ${await put.text()}`);
  return digest;
}

export async function pushManifest(registry: Registry, name: string, ref: string, mediaType: string, doc: unknown): Promise<{ digest: string; size: number }> {
  const body = Buffer.from(JSON.stringify(doc));
  const put = await fetch(`${registry.url}/v2/${name}/manifests/${ref}`, { method: 'PUT', body: new Uint8Array(body), headers: { 'Content-Type': mediaType } });
  if (put.status !== 201) throw new Error(`pushing manifest ${name}:${ref}: ${put.status} ${await put.text()}`);
  return { digest: sha256Of(body), size: body.length };
}

/** Pushes an OCI image of these layer blobs (and a minimal config) as name:ref. */
export async function pushLayersImage(
  registry: Registry,
  name: string,
  ref: string,
  layers: ReadonlyArray<{ blob: Buffer; mediaType: string; diffId: string }>,
): Promise<{ digest: string; size: number; layers: PushedLayer[] }> {
  const pushed: PushedLayer[] = [];
  for (const l of layers) pushed.push({ digest: await pushBlob(registry, name, l.blob), size: l.blob.length, mediaType: l.mediaType });
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) }, config: {} }));
  const configDigest = await pushBlob(registry, name, config);
  const m = await pushManifest(registry, name, ref, 'application/vnd.oci.image.manifest.v1+json', {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: config.length },
    layers: pushed,
  });
  return { ...m, layers: pushed };
}

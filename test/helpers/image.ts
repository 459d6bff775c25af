// Builds a small OCI image offline with umoci, one layer per builder, and pushes it with skopeo
// to a private registry.
import { createHash } from 'node:crypto';
import { mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { execOk } from '../../src/sys/exec.js';
import { readLayoutImage, type LayerInfo } from './oci-layout.js';
import type { Registry } from './registry.js';
import type { Scope } from './scope.js';

/** Changes the image's root filesystem; umoci repack turns the difference into a layer. */
export type RootfsEdit = (rootfs: string) => Promise<unknown> | void;

/**
 * A layer whose tar is exactly the contents of the directory fill() writes, whiteout files
 * (`.wh.name`, `.wh..wh..opq`) included: for what umoci repack cannot express.
 */
export interface RawLayer {
  raw: (dir: string) => Promise<unknown> | void;
  comment?: string;
}

export interface EditLayer {
  edit: RootfsEdit;
  comment?: string;
}

export type LayerSpec = RootfsEdit | EditLayer | RawLayer;

export interface ImageConfig {
  cmd?: string[];
  entrypoint?: string[];
  env?: string[];
  workingDir?: string;
}

export interface BuildImageOptions {
  registry: Registry;
  /** Repository name in the registry, e.g. "test/busybox". */
  name: string;
  tag?: string;
  layers: readonly LayerSpec[];
  config?: ImageConfig;
}

export interface BuiltImage {
  /** host:port/name:tag */
  ref: string;
  name: string;
  tag: string;
  manifestDigest: string;
  configDigest: string;
  /** Bottom layer first. */
  layers: LayerInfo[];
  /** containerd's name for the committed snapshot of each layer (bottom first); the last is the image's top. */
  chainIds: string[];
  /** The OCI layout the image was built in (blobs/sha256/<hex> are the layer blobs). */
  layout: string;
}

function normalizeLayer(l: LayerSpec): EditLayer | RawLayer {
  return typeof l === 'function' ? { edit: l } : l;
}

async function tarDirectory(dir: string, out: string): Promise<void> {
  const entries = (await readdir(dir)).sort();
  // Entries by name, not ".", so the layer carries no entry for the image's root directory.
  const args = ['--create', '--file', out, '--format=pax', '--numeric-owner', '--xattrs', '--xattrs-include=*', '--sort=name', '-C', dir];
  await execOk('tar', entries.length > 0 ? [...args, '--', ...entries] : [...args, '--files-from', '/dev/null']);
}

/** OCI chain IDs: chain(0) = diffId(0); chain(n) = sha256(chain(n-1) + " " + diffId(n)). */
export function chainIds(diffIds: readonly string[]): string[] {
  const out: string[] = [];
  for (const d of diffIds) {
    const prev = out[out.length - 1];
    out.push(prev === undefined ? d : `sha256:${createHash('sha256').update(`${prev} ${d}`).digest('hex')}`);
  }
  return out;
}

let imageCounter = 0;

export async function buildImage(scope: Scope, opts: BuildImageOptions): Promise<BuiltImage> {
  const tag = opts.tag ?? 'latest';
  const work = await scope.mkdir('images', `${opts.name.replace(/[^A-Za-z0-9._-]/g, '_')}-${tag}-${++imageCounter}`);
  const layout = join(work, 'oci');
  const image = `${layout}:${tag}`;
  const bundle = join(work, 'bundle');
  await execOk('umoci', ['init', '--layout', layout]);
  await execOk('umoci', ['new', '--image', image]);

  let bundleCurrent = false;
  for (const [i, spec] of opts.layers.map(normalizeLayer).entries()) {
    const history = ['--history.created_by', spec.comment ?? `test layer ${i}`];
    if ('edit' in spec) {
      if (!bundleCurrent) {
        await rm(bundle, { recursive: true, force: true });
        await execOk('umoci', ['unpack', '--image', image, bundle]);
        bundleCurrent = true;
      }
      await spec.edit(join(bundle, 'rootfs'));
      await execOk('umoci', ['repack', '--refresh-bundle', ...history, '--image', image, bundle]);
    } else {
      const dir = join(work, `raw-${i}`);
      await mkdir(dir);
      await spec.raw(dir);
      const tar = `${dir}.tar`;
      await tarDirectory(dir, tar);
      await execOk('umoci', ['raw', 'add-layer', ...history, '--image', image, tar]);
      bundleCurrent = false;
    }
  }
  await rm(bundle, { recursive: true, force: true });

  const c = opts.config ?? { cmd: ['/bin/sh'] };
  const configArgs = [
    ...(c.cmd ?? []).flatMap((a) => ['--config.cmd', a]),
    ...(c.entrypoint ?? []).flatMap((a) => ['--config.entrypoint', a]),
    ...(c.env ?? []).flatMap((e) => ['--config.env', e]),
    ...(c.workingDir !== undefined ? ['--config.workingdir', c.workingDir] : []),
  ];
  if (configArgs.length > 0) await execOk('umoci', ['config', '--no-history', '--image', image, ...configArgs]);

  const ref = `${opts.registry.host}/${opts.name}:${tag}`;
  await execOk('skopeo', ['copy', '--quiet', '--insecure-policy', '--dest-tls-verify=false', `oci:${layout}:${tag}`, `docker://${ref}`], { timeoutMs: 120_000 });
  const built = await readLayoutImage(layout, tag);
  return { ref, name: opts.name, tag, manifestDigest: built.manifest.digest, configDigest: built.config.digest, layers: built.layers, chainIds: chainIds(built.layers.map((l) => l.diffId)), layout };
}

// Images that share layers: each derived image is the base image's manifest plus one layer of its
// own, made in the base's OCI layout, so every one carries the very same base blob.
import { mkdir, readdir, rm } from 'node:fs/promises';
import { execOk } from '../../src/sys/exec.js';
import { chainIds, type BuiltImage } from './image.js';
import { readLayoutImage } from './oci-layout.js';
import type { Registry } from './registry.js';

export interface DerivedImage {
  registry: Registry;
  name: string;
  tag: string;
  /** Fills a directory whose tar (entries by name, parents included) becomes the top layer. */
  raw: (dir: string) => Promise<unknown>;
  cmd?: string[];
}

/**
 * Adds a tag to the base's layout, a raw layer on it, and pushes it. Calls on one base must
 * not run concurrently (they share the layout's index).
 */
export async function deriveImage(base: BuiltImage, d: DerivedImage): Promise<BuiltImage> {
  const layout = base.layout;
  const image = `${layout}:${d.tag}`;
  await execOk('umoci', ['tag', '--image', `${layout}:${base.tag}`, d.tag]);
  const dir = `${layout}-top-${d.tag}`;
  await mkdir(dir, { recursive: true });
  await d.raw(dir);
  const tar = `${dir}.tar`;
  const entries = (await readdir(dir)).sort();
  await execOk('tar', ['--create', '--file', tar, '--format=pax', '--numeric-owner', '--sort=name', '-C', dir, '--', ...entries]);
  await execOk('umoci', ['raw', 'add-layer', '--history.created_by', `top of ${d.tag}`, '--image', image, tar]);
  await rm(dir, { recursive: true });
  await rm(tar);
  if (d.cmd) await execOk('umoci', ['config', '--no-history', '--image', image, ...d.cmd.flatMap((a) => ['--config.cmd', a])]);
  const ref = `${d.registry.host}/${d.name}:${d.tag}`;
  await execOk('skopeo', ['copy', '--quiet', '--insecure-policy', '--dest-tls-verify=false', `oci:${layout}:${d.tag}`, `docker://${ref}`], { timeoutMs: 120_000 });
  const built = await readLayoutImage(layout, d.tag);
  return {
    ref, name: d.name, tag: d.tag, manifestDigest: built.manifest.digest, configDigest: built.config.digest,
    layers: built.layers, chainIds: chainIds(built.layers.map((l) => l.diffId)), layout,
  };
}

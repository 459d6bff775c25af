// Image references as docker and containerd write them: [registry/]repository[:tag][@digest].
// Every component is checked against the distribution grammar, because the registry, the
// repository and the tag become directories under <store>/.metadata.
import { InvalidArgument } from '../../errors.js';
import { parseDigest, type LayerDigest } from '../digest.js';

export interface ImageReference {
  /** Registry as written by the user, canonical for Docker Hub: `docker.io`, `127.0.0.1:5000`. */
  registry: string;
  /** Host[:port] that serves the registry API (Docker Hub's is registry-1.docker.io). */
  apiHost: string;
  /** Repository path, e.g. `library/busybox`. */
  repository: string;
  /** Tag; `latest` when neither tag nor digest was given. */
  tag?: string;
  /** Manifest digest when the reference pins one. */
  digest?: LayerDigest;
}

const DOCKER_HUB = 'docker.io';
const DOCKER_HUB_API = 'registry-1.docker.io';

// From github.com/distribution/reference's grammar.
const DOMAIN_COMPONENT = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const DOMAIN_RE = new RegExp(`^(?:${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*|\\[[0-9a-fA-F:.]+\\])(?::[0-9]{1,5})?$`);
const PATH_COMPONENT_RE = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const MAX_NAME = 255;

export function parseImageReference(input: string): ImageReference {
  const bad = (why: string): never => {
    throw new InvalidArgument(`invalid image reference ${JSON.stringify(input)}: ${why}`);
  };
  if (typeof input !== 'string' || input === '') bad('it is empty');

  let rest = input;
  let digest: LayerDigest | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    const d = rest.slice(at + 1);
    try {
      digest = parseDigest(d, 'manifest digest');
    } catch (err) {
      bad((err as Error).message);
    }
    rest = rest.slice(0, at);
  }

  // A colon after the last slash starts a tag; an earlier one belongs to a registry port.
  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf('/');
  const colon = rest.indexOf(':', lastSlash + 1);
  if (colon >= 0) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG_RE.test(tag)) bad(`tag ${JSON.stringify(tag)} must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`);
  }

  let registry = DOCKER_HUB;
  const parts = rest.split('/');
  const first = parts[0] ?? '';
  // Docker's rule: the first component is a registry if it looks like a host name.
  if (parts.length > 1 && (first.includes('.') || first.includes(':') || first === 'localhost' || first !== first.toLowerCase())) {
    registry = first;
    parts.shift();
    if (!DOMAIN_RE.test(registry)) bad(`registry ${JSON.stringify(registry)} is not a host name with an optional port`);
  }
  if (registry === DOCKER_HUB || registry === 'index.docker.io') {
    registry = DOCKER_HUB;
    if (parts.length === 1) parts.unshift('library');
  }
  for (const p of parts) {
    if (!PATH_COMPONENT_RE.test(p)) {
      bad(`repository component ${JSON.stringify(p)} must be lowercase letters and digits, separated by ".", "_", "__" or "-"`);
    }
  }
  const repository = parts.join('/');
  if (registry.length + 1 + repository.length > MAX_NAME) bad(`the name is longer than ${MAX_NAME} characters`);
  if (tag === undefined && digest === undefined) tag = 'latest';

  const ref: ImageReference = { registry, apiHost: registry === DOCKER_HUB ? DOCKER_HUB_API : registry, repository };
  if (tag !== undefined) ref.tag = tag;
  if (digest !== undefined) ref.digest = digest;
  return ref;
}

/** The canonical string: `registry/repository[:tag][@digest]`. */
export function formatImageReference(ref: ImageReference): string {
  return `${ref.registry}/${ref.repository}${ref.tag !== undefined ? `:${ref.tag}` : ''}${ref.digest !== undefined ? `@${ref.digest}` : ''}`;
}

// Platforms as `os/arch[/variant]`, and the choice of one manifest out of an index.
import { InvalidArgument, NotFound } from '../../errors.js';
import type { Descriptor, Platform } from './manifest.js';

export type { Platform };

/** What an index resolves to when no platform is given: the machines this runs on. */
export const DEFAULT_PLATFORM: Platform = { os: 'linux', architecture: 'amd64' };

const PART_RE = /^[a-z0-9][a-z0-9_.-]*$/;

export function parsePlatform(s: string): Platform {
  const parts = s.split('/');
  if (parts.length < 2 || parts.length > 3 || !parts.every((p) => PART_RE.test(p))) {
    throw new InvalidArgument(`invalid platform ${JSON.stringify(s)}: expected os/arch[/variant], e.g. linux/amd64 or linux/arm64/v8`);
  }
  const [os, architecture, variant] = parts as [string, string, string | undefined];
  return variant === undefined ? { os, architecture } : { os, architecture, variant };
}

export function formatPlatform(p: Platform): string {
  return `${p.os}/${p.architecture}${p.variant ? `/${p.variant}` : ''}`;
}

// arm64 images are published both with and without the "v8" variant; they are the same thing.
function normalVariant(p: Platform): string {
  if (p.architecture === 'arm64' && p.variant === 'v8') return '';
  return p.variant ?? '';
}

/**
 * The index entry for `want`. Without a wanted variant, an entry without a variant is preferred,
 * then the first match in the index's order.
 */
export function selectManifest(manifests: readonly Descriptor[], want: Platform): Descriptor {
  const candidates = manifests.filter((m) => m.platform && m.platform.os === want.os && m.platform.architecture === want.architecture);
  const chosen = want.variant !== undefined
    ? candidates.find((m) => m.platform && normalVariant(m.platform) === normalVariant(want))
    : candidates.find((m) => m.platform && normalVariant(m.platform) === '') ?? candidates[0];
  if (!chosen) {
    const offered = manifests.map((m) => (m.platform ? formatPlatform(m.platform) : 'unspecified')).join(', ');
    throw new NotFound(`the image index has no manifest for ${formatPlatform(want)}; it offers: ${offered || 'nothing'}`);
  }
  return chosen;
}

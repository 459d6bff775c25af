// What this build is and where its entry point lives: the version the daemon and the FUSE server
// report, and the command that starts another process of this same build. In a module of its own
// so that every command can read it without importing another command (main.ts imports them all).
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { DEFAULT_CACHE_BYTES } from '../fuse/tuning.js';

/** The installed entry point; dist/src/cli/ is three levels below the package root. */
export const BIN_PATH = fileURLToPath(new URL('../../../bin/cvmfs-snapshotter', import.meta.url));

/**
 * Node flags of the FUSE server process, whose metadata cache holds at most cacheBytes.
 * - A small young generation keeps its memory flat while a walk of a big layer allocates
 *   (measured: 82 MB RSS after walking /usr/share with the default semi-spaces, 61-65 MB with
 *   1 MB ones, at no cost in walk time).
 * - An old-space limit of 1 GiB (8x the cache's budget when that is more: the cache's estimate
 *   of its bytes is below what the heap holds for it). V8 lets the old generation grow further
 *   before a full collection the higher the limit; at its default here (4 GiB, from the
 *   machine's memory) the server's RSS rose by ~8 MiB per mount, cold walk and unmount of a
 *   Debian+python3 layer (87 MiB after four; the live heap stayed at 10-17 MiB, the rest was
 *   garbage not yet collected), as it did with a 2 GiB limit, and stayed at 68-70 MiB with
 *   256 MiB to 1 GiB, for the same CPU (three cycles: 1,990-2,000 ms against 1,980-2,010 ms, two
 *   more mark-compacts of ~6 ms each).
 * - One V8 platform thread instead of four: the server's heap is small, so its collections need
 *   little help, and each thread costs a stack and a malloc arena (1.8 MiB less RSS after two
 *   walks of that layer, 64.6 -> 62.8 MiB, census and walks 650 -> 660 ms of CPU, medians of 5).
 */
export function fuseServerNodeFlags(cacheBytes: number = DEFAULT_CACHE_BYTES): string[] {
  const oldSpaceMiB = Math.max(1024, Math.ceil((8 * cacheBytes) / (1024 * 1024)));
  return ['--max-semi-space-size=1', `--max-old-space-size=${oldSpaceMiB}`, '--v8-pool-size=1'];
}

let cached: string | undefined;

/** The package version from package.json, read once. */
export function version(): string {
  cached ??= (JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  return cached;
}

/**
 * Those of flags whose option this process was not started with, on its command line or in
 * NODE_OPTIONS (by name: a value given there is the operator's choice and is kept).
 */
export function missingNodeFlags(flags: readonly string[], execArgv: readonly string[] = process.execArgv, nodeOptions = process.env.NODE_OPTIONS ?? ''): string[] {
  const name = (f: string): string => f.split('=')[0]?.replace(/_/g, '-') ?? f;
  const given = new Set([...execArgv, ...nodeOptions.split(/\s+/)].filter((a) => a.startsWith('--')).map(name));
  return flags.filter((f) => !given.has(name(f)));
}

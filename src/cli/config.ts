// The config file, with the Go CernVM-FS snapshotter's keys and defaults. An unknown key or a
// value of the wrong type stops the daemon at start with a message that names the key.
import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { isAbsolute } from 'node:path';
import { parse, TomlError } from 'smol-toml';
import { errnoCode } from '../errors.js';
import { DEFAULT_TUNING, MAX_BUSY_POLL_US } from '../fuse/tuning.js';

import { DEFAULT_REPOSITORY } from './defaults.js';

export { DEFAULT_ADDRESS, DEFAULT_CONFIG_PATH, DEFAULT_FUSE_SOCKET, DEFAULT_REPOSITORY, DEFAULT_ROOT } from './defaults.js';

export interface Config {
  /** The CernVM-FS repository that holds the layers. */
  repository: string;
  /** Where the repository is mounted: the layer store root. */
  absoluteMountpoint: string;
  /** Bound of the FUSE layers' shared metadata cache, in entries. */
  metadataCacheEntries: number;
  /** Bound of the same cache in bytes: what keeps the FUSE server's memory in check. */
  metadataCacheBytes: number;
  /** Whether layer files are read through FUSE passthrough where the kernel offers it. */
  fusePassthrough: boolean;
  /** A layer-store call not answered in this many seconds is answered EIO to the container. */
  storeTimeoutSec: number;
  /**
   * The daemon's own deadline for a store call (is a layer there, its usage): past it, the
   * layer is downloaded instead (Usage: Unavailable). Not store-timeout, which bounds a
   * container's read and is long on purpose.
   */
  storeCheckTimeoutSec: number;
  /**
   * Entries the background walk of each newly mounted layer may list (it learns whether the
   * layer has any xattr and reads its metadata ahead); 0 turns the walk off.
   */
  layerWalkEntries: number;
  /**
   * Microseconds the FUSE server reads a layer's channel again after an answer before it sleeps
   * (the next request of a program that asks one thing after another is then read at once); 0: never.
   */
  fuseBusyPollUs: number;
  /** Where to serve Prometheus metrics; absent: no metrics endpoint. */
  metrics?: MetricsConfig;
}

export interface MetricsConfig {
  /** As written in the file, e.g. "127.0.0.1:9110". */
  address: string;
  /** IP address or host name without brackets; empty for every interface (":9110"). */
  host: string;
  port: number;
}

export const DEFAULT_CACHE_ENTRIES = 200_000;
export const DEFAULT_CACHE_BYTES = 64 * 1024 * 1024;
export const DEFAULT_STORE_TIMEOUT_SEC = 180;
/**
 * A healthy CernVM-FS answers a layer check in milliseconds, a cold one (a catalog fetched
 * through a proxy) in about a second. A download is always a correct answer, so waiting longer
 * than a few seconds only delays the pull: CRI prepares an image's layers one after another,
 * and each stalled check adds its deadline to the pull (at most 8 of them wait, the rest fail
 * at once; see src/remote).
 */
export const DEFAULT_STORE_CHECK_TIMEOUT_SEC = 5;
export const DEFAULT_LAYER_WALK_ENTRIES = DEFAULT_TUNING.censusEntries;
const MAX_LAYER_WALK_ENTRIES = 100_000_000;

export class ConfigError extends Error {}

function expectString(file: string, key: string, v: unknown): string {
  if (typeof v !== 'string') throw new ConfigError(`${file}: "${key}" must be a string, got ${Array.isArray(v) ? 'an array' : typeof v}`);
  if (v === '') throw new ConfigError(`${file}: "${key}" must not be empty`);
  return v;
}

const KNOWN_KEYS = ['repository', 'absolute-mountpoint', 'metadata-cache-entries', 'metadata-cache-bytes', 'fuse-passthrough', 'fuse-busy-poll-us', 'store-timeout', 'store-check-timeout', 'layer-walk-entries', '[metrics]'];
const KNOWN_METRICS_KEYS = ['address'];

const HOST_NAME = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

/**
 * "host:port", "[ipv6]:port" or ":port" (every interface), as Go's net.Listen takes it. The port
 * must be 1-65535: 0 would pick a random one that nobody could scrape.
 */
export function parseHostPort(address: string): { host: string; port: number } | string {
  let host: string;
  let port: string;
  const v6 = /^\[([^\]]*)\]:([^:]*)$/.exec(address);
  if (v6) {
    host = v6[1] ?? '';
    port = v6[2] ?? '';
    if (isIP(host) !== 6) return `"${host}" in brackets is not an IPv6 address`;
  } else {
    const colon = address.lastIndexOf(':');
    if (colon < 0) return 'there is no ":port"';
    host = address.slice(0, colon);
    port = address.slice(colon + 1);
    if (host.includes(':')) return 'an IPv6 address must be in brackets, as in [::1]:9110';
    if (host !== '' && isIP(host) === 0 && !HOST_NAME.test(host)) return `"${host}" is not an IP address or host name`;
  }
  if (!/^[0-9]{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 65535) return `port "${port}" is not a number from 1 to 65535`;
  return { host, port: Number(port) };
}

function isTable(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Date);
}

function metricsFromToml(file: string, value: unknown): MetricsConfig {
  if (!isTable(value)) {
    throw new ConfigError(`${file}: "metrics" must be a table ([metrics] with address = "127.0.0.1:9110"), got ${JSON.stringify(value)}`);
  }
  let address: string | undefined;
  for (const [key, v] of Object.entries(value)) {
    if (key !== 'address') {
      throw new ConfigError(`${file}: unknown key "metrics.${key}"; known keys in [metrics] are ${KNOWN_METRICS_KEYS.map((k) => `"${k}"`).join(', ')}`);
    }
    address = expectString(file, 'metrics.address', v);
  }
  if (address === undefined) throw new ConfigError(`${file}: [metrics] needs "address", e.g. address = "127.0.0.1:9110"; leave the table out for no metrics`);
  const parsed = parseHostPort(address);
  if (typeof parsed === 'string') {
    throw new ConfigError(`${file}: "metrics.address" must be host:port such as "127.0.0.1:9110", got ${JSON.stringify(address)}: ${parsed}`);
  }
  return { address, ...parsed };
}

/** Validates a parsed TOML document; `file` names the source in messages. */
export function configFromToml(doc: Record<string, unknown>, file: string): Config {
  let repository = DEFAULT_REPOSITORY;
  let absoluteMountpoint: string | undefined;
  let metadataCacheEntries = DEFAULT_CACHE_ENTRIES;
  let metadataCacheBytes = DEFAULT_CACHE_BYTES;
  let fusePassthrough = true;
  let storeTimeoutSec = DEFAULT_STORE_TIMEOUT_SEC;
  let storeCheckTimeoutSec = DEFAULT_STORE_CHECK_TIMEOUT_SEC;
  let layerWalkEntries = DEFAULT_LAYER_WALK_ENTRIES;
  let fuseBusyPollUs = DEFAULT_TUNING.busyPollUs;
  let metrics: MetricsConfig | undefined;
  for (const [key, value] of Object.entries(doc)) {
    switch (key) {
      case 'repository':
        repository = expectString(file, key, value);
        if (repository.includes('/') || repository === '.' || repository === '..') {
          throw new ConfigError(`${file}: "repository" must be a repository name such as unpacked.cern.ch, got ${JSON.stringify(repository)}`);
        }
        break;
      case 'absolute-mountpoint':
        absoluteMountpoint = expectString(file, key, value);
        if (!isAbsolute(absoluteMountpoint)) {
          throw new ConfigError(`${file}: "absolute-mountpoint" must be an absolute path, got ${JSON.stringify(absoluteMountpoint)}`);
        }
        break;
      case 'metadata-cache-entries':
        if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
          throw new ConfigError(`${file}: "metadata-cache-entries" must be a positive integer, got ${JSON.stringify(value)}`);
        }
        metadataCacheEntries = value;
        break;
      case 'metadata-cache-bytes':
        if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1024 * 1024) {
          throw new ConfigError(`${file}: "metadata-cache-bytes" must be an integer of at least 1048576 (1 MiB), got ${JSON.stringify(value)}`);
        }
        metadataCacheBytes = value;
        break;
      case 'fuse-passthrough':
        if (typeof value !== 'boolean') throw new ConfigError(`${file}: "fuse-passthrough" must be true or false, got ${JSON.stringify(value)}`);
        fusePassthrough = value;
        break;
      case 'fuse-busy-poll-us':
        if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > MAX_BUSY_POLL_US) {
          throw new ConfigError(`${file}: "fuse-busy-poll-us" must be a whole number of microseconds from 0 (off) to ${MAX_BUSY_POLL_US}, got ${JSON.stringify(value)}`);
        }
        fuseBusyPollUs = value;
        break;
      case 'store-timeout':
        if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > 86400) {
          throw new ConfigError(`${file}: "store-timeout" must be a whole number of seconds from 1 to 86400, got ${JSON.stringify(value)}`);
        }
        storeTimeoutSec = value;
        break;
      case 'store-check-timeout':
        if (typeof value !== 'number' || !Number.isFinite(value) || value < 0.1 || value > 600) {
          throw new ConfigError(`${file}: "store-check-timeout" must be a number of seconds from 0.1 to 600, got ${JSON.stringify(value)}`);
        }
        storeCheckTimeoutSec = value;
        break;
      case 'layer-walk-entries':
        if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > MAX_LAYER_WALK_ENTRIES) {
          throw new ConfigError(`${file}: "layer-walk-entries" must be a whole number from 0 (no walk) to ${MAX_LAYER_WALK_ENTRIES}, got ${JSON.stringify(value)}`);
        }
        layerWalkEntries = value;
        break;
      case 'metrics':
        metrics = metricsFromToml(file, value);
        break;
      default:
        throw new ConfigError(`${file}: unknown ${isTable(value) ? `table [${key}]` : `key "${key}"`}; known keys are ${KNOWN_KEYS.map((k) => (k.startsWith('[') ? k : `"${k}"`)).join(', ')}`);
    }
  }
  const config: Config = {
    repository, absoluteMountpoint: absoluteMountpoint ?? `/cvmfs/${repository}`, metadataCacheEntries, metadataCacheBytes, fusePassthrough, storeTimeoutSec, storeCheckTimeoutSec, layerWalkEntries, fuseBusyPollUs,
  };
  if (metrics) config.metrics = metrics;
  return config;
}

/** Reads the config file. A missing file gives the defaults unless the caller required it. */
export async function loadConfig(file: string, required: boolean): Promise<Config> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if (errnoCode(err) === 'ENOENT' && !required) return configFromToml({}, file);
    throw new ConfigError(`cannot read config ${file}: ${(err as Error).message}`);
  }
  try {
    return configFromToml(parse(text) as Record<string, unknown>, file);
  } catch (err) {
    if (err instanceof TomlError) throw new ConfigError(`${file}: not valid TOML: ${err.message.split('\n')[0]}`);
    throw err;
  }
}

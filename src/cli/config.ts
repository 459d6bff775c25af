// The config file, with the Go CernVM-FS snapshotter's keys and defaults. An unknown key or a
// value of the wrong type stops the daemon at start with a message that names the key.
import { readFile } from 'node:fs/promises';
import { isAbsolute } from 'node:path';
import { parse, TomlError } from 'smol-toml';
import { errnoCode } from '../errors.js';

export const DEFAULT_CONFIG_PATH = '/etc/containerd-cvmfs-grpc/config.toml';
export const DEFAULT_ADDRESS = '/run/containerd-cvmfs-grpc/containerd-cvmfs-grpc.sock';
export const DEFAULT_ROOT = '/var/lib/containerd-cvmfs-grpc';
export const DEFAULT_REPOSITORY = 'unpacked.cern.ch';

export interface Config {
  /** The CernVM-FS repository that holds the layers. */
  repository: string;
  /** Where the repository is mounted: the layer store root. */
  absoluteMountpoint: string;
  /** Bound of the FUSE layers' shared metadata cache, in entries. */
  metadataCacheEntries: number;
}

export const DEFAULT_CACHE_ENTRIES = 200_000;

export class ConfigError extends Error {}

function expectString(file: string, key: string, v: unknown): string {
  if (typeof v !== 'string') throw new ConfigError(`${file}: "${key}" must be a string, got ${Array.isArray(v) ? 'an array' : typeof v}`);
  if (v === '') throw new ConfigError(`${file}: "${key}" must not be empty`);
  return v;
}

const KNOWN_KEYS = ['repository', 'absolute-mountpoint', 'metadata-cache-entries'];

/** Validates a parsed TOML document; `file` names the source in messages. */
export function configFromToml(doc: Record<string, unknown>, file: string): Config {
  let repository = DEFAULT_REPOSITORY;
  let absoluteMountpoint: string | undefined;
  let metadataCacheEntries = DEFAULT_CACHE_ENTRIES;
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
      default:
        throw new ConfigError(`${file}: unknown key "${key}"; known keys are ${KNOWN_KEYS.map((k) => `"${k}"`).join(', ')}`);
    }
  }
  return { repository, absoluteMountpoint: absoluteMountpoint ?? `/cvmfs/${repository}`, metadataCacheEntries };
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

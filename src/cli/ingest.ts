// `cvmfs-snapshotter ingest`: fill a layer store from a registry, the way DUCC fills
// unpacked.cern.ch. On a terminal it draws one progress bar per layer; otherwise (CI, logs,
// pipes) it prints one plain line per layer.
import path from 'node:path';
import cliProgress from 'cli-progress';
import { parseCommand, usageError as commandUsageError } from './args.js';
import { SnapshotterError } from '../errors.js';
import { LayerStore } from '../layers/store.js';
import {
  credentialsFromEnv, DEFAULT_MAX_UNPACK_ENTRIES, formatSize, DEFAULT_MAX_UNPACK_RATIO, ingestImage, IngestFailed, Interrupted, LayerRefused,
  parsePlatform, UNPACK_FLOOR_BYTES, type IngestEvent, type Platform,
} from '../layers/ingest/index.js';

const USAGE = `Usage: cvmfs-snapshotter ingest --store DIR [--plain-http] [--platform OS/ARCH[/VARIANT]] IMAGE...

Pulls each IMAGE from its registry and unpacks every layer into DIR in DUCC's layout
(DIR/.layers/<xx>/<64 hex>/layerfs), keeping whiteouts as .wh. files. Layers already in the
store are skipped. The manifest is recorded in DIR/.metadata/<registry>/<repository>:<tag>/.
Each blob is downloaded to DIR/.ingest/ and its size and digest checked before it is unpacked;
a layer appears in the store only once it is completely unpacked.
Run it as root: owners, device files and xattrs are restored exactly.

Options:
  --store DIR                the layer store (a CernVM-FS repository root, or a directory to publish)
  --plain-http               talk http:// to the registry (e.g. 127.0.0.1:5000 without TLS)
  --platform P               the manifest to take from a multi-platform image (default linux/amd64)
  --jobs N                   layers downloaded at once (default 3)
  --max-unpack-ratio N       refuse a layer that unpacks to more than N times its compressed size
                             (default ${DEFAULT_MAX_UNPACK_RATIO}; any layer may unpack to ${UNPACK_FLOOR_BYTES / 1024 / 1024} MiB)
  --max-unpack-entries N     refuse a layer with more than N files and directories (default ${DEFAULT_MAX_UNPACK_ENTRIES})
  -h, --help                 this text

Environment: CVMFS_SNAPSHOTTER_REGISTRY_USER and CVMFS_SNAPSHOTTER_REGISTRY_PASSWORD log in to a
registry that needs credentials; without them, anonymous tokens are used.
`;

export async function ingestCommand(args: string[]): Promise<number> {
  const parsed = parseCommand('ingest', USAGE, args, {
    store: { type: 'string' },
    'plain-http': { type: 'boolean', default: false },
    platform: { type: 'string' },
    jobs: { type: 'string' },
    'max-unpack-ratio': { type: 'string' },
    'max-unpack-entries': { type: 'string' },
  });
  if (typeof parsed === 'number') return parsed;
  const { values, positionals } = parsed;
  if (!values.store) return usageError('--store DIR is required');
  if (positionals.length === 0) return usageError('name at least one IMAGE to ingest');
  let platform: Platform | undefined;
  let store: LayerStore;
  let concurrency = 3;
  let maxUnpackRatio = DEFAULT_MAX_UNPACK_RATIO;
  let maxUnpackEntries = DEFAULT_MAX_UNPACK_ENTRIES;
  const ratioText = values['max-unpack-ratio'];
  if (ratioText !== undefined) {
    maxUnpackRatio = Number(ratioText);
    if (!/^\d+(\.\d+)?$/.test(ratioText) || !(maxUnpackRatio >= 1) || maxUnpackRatio > 1e9) {
      return usageError(`--max-unpack-ratio ${ratioText}: expected a number from 1 to 1000000000`);
    }
  }
  const entriesText = values['max-unpack-entries'];
  if (entriesText !== undefined) {
    maxUnpackEntries = Number(entriesText);
    if (!/^\d+$/.test(entriesText) || !Number.isSafeInteger(maxUnpackEntries) || maxUnpackEntries < 1) {
      return usageError(`--max-unpack-entries ${entriesText}: expected a whole number of at least 1`);
    }
  }
  try {
    if (values.platform !== undefined) platform = parsePlatform(values.platform);
    store = new LayerStore(path.resolve(values.store));
    if (values.jobs !== undefined) {
      concurrency = Number(values.jobs);
      if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 32) return usageError(`--jobs ${values.jobs}: expected a whole number from 1 to 32`);
    }
  } catch (err) {
    return usageError((err as Error).message);
  }

  const credentials = credentialsFromEnv();
  // Ctrl-C or SIGTERM stops the run cleanly: unfinished layers and the staging area are removed
  // before exiting (a second signal kills at once, as usual).
  const stop = new AbortController();
  let caught: NodeJS.Signals | undefined;
  const onSignal = (sig: NodeJS.Signals): void => {
    caught = sig;
    process.stderr.write(`\n${sig}: stopping; removing the layers not yet complete\n`);
    stop.abort();
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  let failed = 0;
  try {
    for (const image of positionals) {
      if (caught) break;
      const view = process.stderr.isTTY ? new BarView() : new LineView();
      const started = Date.now();
      try {
        const result = await ingestImage(image, {
          store,
          plainHttp: values['plain-http'],
          concurrency,
          maxUnpackRatio,
          maxUnpackEntries,
          signal: stop.signal,
          ...(platform ? { platform } : {}),
          ...(credentials ? { credentials } : {}),
          onEvent: (e) => view.event(e),
        });
        view.stop();
        const ingested = result.layers.filter((l) => l.status === 'ingested').length;
        process.stdout.write(`${result.image}: ${result.layers.length} layers (${ingested} ingested, ${result.layers.length - ingested} already present) in ${formatMs(Date.now() - started)}; manifest ${result.manifestDigest}\n`);
      } catch (err) {
        view.stop();
        failed++;
        // IngestFailed and Interrupted name the image themselves.
        const named = err instanceof IngestFailed || err instanceof Interrupted;
        process.stderr.write(named ? `error: ${err.message}\n` : `error: ${image}: ${errorText(err)}\n`);
      }
    }
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  // The shell's convention for a command stopped by a signal.
  if (caught) return 128 + (caught === 'SIGINT' ? 2 : 15);
  return failed === 0 ? 0 : 1;
}

const usageError = (message: string): number => commandUsageError('ingest', message);

function errorText(err: unknown): string {
  if (err instanceof SnapshotterError || err instanceof Error) return err.message;
  return String(err);
}

/** What went wrong with a layer, for a line or a bar that already names it. */
function layerErrorText(err: Error): string {
  return err instanceof LayerRefused ? err.detail : err.message;
}

interface View {
  event(e: IngestEvent): void;
  stop(): void;
}

/** One line per event that matters: suitable for logs and pipes. */
class LineView implements View {
  event(e: IngestEvent): void {
    switch (e.type) {
      case 'resolved':
        process.stdout.write(`${e.image}: manifest ${e.manifestDigest}${e.platform ? ` (${e.platform})` : ''}, ${e.layers.length} layers\n`);
        break;
      case 'layer-done':
        process.stdout.write(`${e.digest} ${formatBytes(e.size)} ${e.status} ${formatMs(e.ms)}\n`);
        break;
      case 'layer-failed':
        process.stdout.write(`${e.digest} ${formatBytes(e.size)} FAILED ${formatMs(e.ms)}: ${layerErrorText(e.error)}\n`);
        break;
      default:
        break;
    }
  }
  stop(): void {}
}

/** A bar per layer on the terminal, redrawn in place. */
class BarView implements View {
  private readonly multi = new cliProgress.MultiBar({
    format: (_opts, params, payload: { name: string; status: string }) => {
      const width = 20;
      const filled = Math.round(params.progress * width);
      const bar = '█'.repeat(filled) + '░'.repeat(width - filled);
      return `${payload.name} ${bar} ${formatBytes(params.value).padStart(9)} / ${formatBytes(params.total).padEnd(9)} ${payload.status}`;
    },
    hideCursor: true,
    clearOnComplete: false,
    stopOnComplete: false,
  });
  private readonly bars = new Map<string, cliProgress.SingleBar>();

  event(e: IngestEvent): void {
    switch (e.type) {
      case 'resolved':
        this.multi.log(`${e.image}: manifest ${e.manifestDigest}${e.platform ? ` (${e.platform})` : ''}, ${e.layers.length} layers\n`);
        for (const l of e.layers) this.bars.set(l.digest, this.multi.create(Math.max(l.size, 1), 0, { name: short(l.digest), status: 'waiting' }));
        break;
      case 'layer-start':
        this.bars.get(e.digest)?.update({ status: 'checking' });
        break;
      case 'layer-progress':
        this.bars.get(e.digest)?.update(e.bytes, { status: 'downloading' });
        break;
      case 'layer-unpacking':
        this.bars.get(e.digest)?.update(Math.max(e.size, 1), { status: 'unpacking' });
        break;
      case 'layer-done':
        this.bars.get(e.digest)?.update(Math.max(e.size, 1), { status: `${e.status} ${formatMs(e.ms)}` });
        break;
      case 'layer-failed':
        this.bars.get(e.digest)?.update({ status: `FAILED: ${layerErrorText(e.error).slice(0, 60)}` });
        break;
    }
  }
  stop(): void {
    this.multi.stop();
  }
}

function short(digest: string): string {
  return digest.slice(0, 'sha256:'.length + 12);
}

export function formatBytes(n: number): string {
  return formatSize(n, true);
}

export function formatMs(ms: number): string {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

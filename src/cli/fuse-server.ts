// `cvmfs-snapshotter fuse-server`: the long-lived process that serves every layer mount. The
// daemon starts it when none runs; an operator only needs it for an upgrade (--handover) or to
// take every layer down (--stop).
import { writeFile, rm } from 'node:fs/promises';
import { createLogger, isLogLevel, LOG_LEVELS } from '../log.js';
import { FuseServer, READY_FD, READY_LINE, readHandoverState } from '../fuse/server/server.js';
import { closeSync, writeSync } from 'node:fs';
import { RemoteLayerMounter } from '../fuse/server/client.js';
import { isAbsolute, resolve } from 'node:path';
import { parseCommand, usageError } from './args.js';
import { DEFAULT_FUSE_SOCKET } from './config.js';
import { DEFAULT_CACHE_BYTES, DEFAULT_TUNING } from '../fuse/tuning.js';
import { BIN_PATH, FUSE_SERVER_NODE_FLAGS, version } from './build-info.js';

const USAGE = `Usage: cvmfs-snapshotter fuse-server [--socket SOCK] [--root DIR --store DIR] [--log-level LEVEL]
                                     [--cache-bytes N] [--cache-entries N] [--passthrough on|off] [--store-timeout SECONDS]
                                     [--walk-entries N]
       cvmfs-snapshotter fuse-server --handover [--socket SOCK]
       cvmfs-snapshotter fuse-server --stop [--socket SOCK]

Serves the layer mounts (FUSE) on behalf of the daemon, which starts it when none runs. It
outlives the daemon, so restarting the daemon never breaks a running container.

  --socket SOCK          control socket (default ${DEFAULT_FUSE_SOCKET})
  --root DIR             the daemon's root: layers are mounted only below it
  --store DIR            the layer store: only its layers are served (both are taken from the
                         first daemon that connects when not given here)
  --log-level LEVEL      ${LOG_LEVELS.join(', ')} (default info)
  --cache-bytes N        byte budget of the metadata cache shared by all layers (default ${DEFAULT_CACHE_BYTES})
  --cache-entries N      an extra bound on the cache's entries
  --passthrough on|off   FUSE passthrough: reads go straight to the store's files (default on,
                         where the kernel offers it: Linux 6.9 or later)
  --store-timeout S      a store call not answered in S seconds is answered EIO (default ${DEFAULT_TUNING.storeDeadlineMs / 1000})
  --walk-entries N       entries a background walk of each new layer may list, to learn whether
                         it has xattrs and read its metadata ahead; 0: no walk (default ${DEFAULT_TUNING.censusEntries})
  --handover             ask the running server to hand every mount to a new process started
                         from the code installed now (an upgrade), then exit; nothing is unmounted
  --stop                 ask the running server to unmount every layer (lazily where busy) and exit
`;

function positiveInt(v: string | undefined, flag: string): number | undefined | string {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 1) return `${flag} must be a positive integer, got ${v}`;
  return n;
}

export async function fuseServerCommand(args: string[]): Promise<number> {
  const p = parseCommand('fuse-server', USAGE, args, {
    socket: { type: 'string' },
    root: { type: 'string' },
    store: { type: 'string' },
    'log-level': { type: 'string' },
    'cache-bytes': { type: 'string' },
    'cache-entries': { type: 'string' },
    passthrough: { type: 'string' },
    'store-timeout': { type: 'string' },
    'walk-entries': { type: 'string' },
    handover: { type: 'boolean' },
    stop: { type: 'boolean' },
    takeover: { type: 'boolean' },
  });
  if (typeof p === 'number') return p;
  const v = p.values;
  if (p.positionals.length > 0) return usageError('fuse-server', `unexpected argument ${p.positionals[0]}`);
  const socket = v.socket ?? DEFAULT_FUSE_SOCKET;
  const level = v['log-level'] ?? 'info';
  if (!isLogLevel(level)) return usageError('fuse-server', `--log-level ${level}: expected one of ${LOG_LEVELS.join(', ')}`);
  const cacheBytes = positiveInt(v['cache-bytes'], '--cache-bytes');
  const cacheEntries = positiveInt(v['cache-entries'], '--cache-entries');
  const timeout = positiveInt(v['store-timeout'], '--store-timeout');
  for (const x of [cacheBytes, cacheEntries, timeout]) if (typeof x === 'string') return usageError('fuse-server', x);
  const walk = v['walk-entries'];
  if (walk !== undefined && !/^[0-9]{1,9}$/.test(walk)) return usageError('fuse-server', `--walk-entries must be a whole number (0: no walk), got ${walk}`);
  if (typeof cacheBytes === 'number' && cacheBytes < 1024 * 1024) return usageError('fuse-server', '--cache-bytes must be at least 1048576 (1 MiB)');
  if (v.passthrough !== undefined && v.passthrough !== 'on' && v.passthrough !== 'off') return usageError('fuse-server', `--passthrough must be on or off, got ${v.passthrough}`);
  if ((v.root === undefined) !== (v.store === undefined)) return usageError('fuse-server', '--root and --store go together');
  for (const [flag, dir] of [['--root', v.root], ['--store', v.store]] as const) {
    if (dir !== undefined && !isAbsolute(dir)) return usageError('fuse-server', `${flag} must be an absolute path, got ${dir}`);
  }
  const log = createLogger(level).child({ component: 'fuse-server' });

  if (v.handover || v.stop) {
    const client = new RemoteLayerMounter({ socket, log, startServer: () => undefined, startTimeoutMs: 2000 });
    try {
      if (v.handover) {
        await client.connect();
        const before = client.server;
        const { pid } = await client.handover();
        process.stdout.write(`FUSE server ${before?.pid ?? '?'} handed its mounts to ${pid}\n`);
      } else {
        await client.shutdownServer();
        process.stdout.write('FUSE server is unmounting every layer and stopping\n');
      }
      return 0;
    } catch (err) {
      process.stderr.write(`cvmfs-snapshotter fuse-server: ${(err as Error).message}\n`);
      return 1;
    } finally {
      await client.disconnect();
    }
  }

  process.on('uncaughtException', (err) => {
    log.fatal({ err }, 'uncaught exception in the FUSE server; exiting (its mounts die with it)');
    process.exit(70);
  });
  const tuning = {
    ...(v.passthrough ? { passthrough: v.passthrough === 'on' } : {}),
    ...(typeof timeout === 'number' ? { storeDeadlineMs: timeout * 1000 } : {}),
    ...(walk !== undefined ? { censusEntries: Number(walk) } : {}),
  };
  const server = new FuseServer({
    socket, log, version: version(),
    ...(typeof cacheBytes === 'number' ? { cacheBytes } : {}),
    ...(typeof cacheEntries === 'number' ? { cacheEntries } : {}),
    ...(v.root !== undefined && v.store !== undefined ? { scope: { root: resolve(v.root), store: resolve(v.store) } } : {}),
    tuning,
    successorCommand: [process.execPath, ...FUSE_SERVER_NODE_FLAGS, BIN_PATH],
    // The successor takes the scope from the handover state.
    successorArgs: [
      '--log-level', level,
      ...(typeof cacheBytes === 'number' ? ['--cache-bytes', String(cacheBytes)] : []),
      ...(typeof cacheEntries === 'number' ? ['--cache-entries', String(cacheEntries)] : []),
      ...(v.passthrough ? ['--passthrough', v.passthrough] : []),
      ...(typeof timeout === 'number' ? ['--store-timeout', String(timeout)] : []),
      ...(walk !== undefined ? ['--walk-entries', walk] : []),
    ],
  });
  if (v.takeover) await server.adopt(await readHandoverState(process.stdin));
  await server.listen();
  const pidFile = `${socket}.pid`;
  await writeFile(pidFile, `${process.pid}\n`);
  if (v.takeover) {
    writeSync(READY_FD, `${READY_LINE}\n`);
    closeSync(READY_FD);
  }
  const onSignal = (signal: NodeJS.Signals): void => void server.shutdown(signal);
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  const code = await server.done;
  // After a handover the successor has written its own pid file there.
  if (!server.handedOver) await rm(pidFile, { force: true }).catch(() => undefined);
  process.exit(code);
}

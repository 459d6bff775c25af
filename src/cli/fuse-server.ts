// `cvmfs-snapshotter fuse-server`: the long-lived process that serves every layer mount. The
// daemon starts it when none runs; an operator only needs it for an upgrade (--handover) or to
// take every layer down (--stop).
import { writeFile, rm } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { createLogger, isLogLevel, LOG_LEVELS } from '../log.js';
import { FuseServer, READY_FD, READY_LINE, readHandoverState } from '../fuse/server/server.js';
import { closeSync, writeSync } from 'node:fs';
import { RemoteLayerMounter } from '../fuse/server/client.js';
import { parseCommand, usageError } from './args.js';
import { DEFAULT_FUSE_SOCKET } from './config.js';
import { version } from './main.js';

const USAGE = `Usage: cvmfs-snapshotter fuse-server [--socket SOCK] [--log-level LEVEL] [--cache-entries N]
       cvmfs-snapshotter fuse-server --handover [--socket SOCK]
       cvmfs-snapshotter fuse-server --stop [--socket SOCK]

Serves the layer mounts (FUSE) on behalf of the daemon, which starts it when none runs. It
outlives the daemon, so restarting the daemon never breaks a running container.

  --socket SOCK       control socket (default ${DEFAULT_FUSE_SOCKET})
  --log-level LEVEL   ${LOG_LEVELS.join(', ')} (default info)
  --cache-entries N   metadata cache entries shared by all layers
  --handover          ask the running server to hand every mount to a new process started
                      from the code installed now (an upgrade), then exit; nothing is unmounted
  --stop              ask the running server to unmount every layer (lazily where busy) and exit
`;

export const BIN_PATH = fileURLToPath(new URL('../../../bin/cvmfs-snapshotter', import.meta.url));
/**
 * libuv pool threads the daemon gives the FUSE server: each mounted layer keeps one read
 * pending on /dev/fuse there (src/fuse/tuning.ts), so 512 serve about 500 layers. They cost
 * stack address space and a few pages each.
 */
export const FUSE_SERVER_THREADS = 512;

export async function fuseServerCommand(args: string[]): Promise<number> {
  const p = parseCommand('fuse-server', USAGE, args, {
    socket: { type: 'string' },
    'log-level': { type: 'string' },
    'cache-entries': { type: 'string' },
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
  let cacheEntries: number | undefined;
  if (v['cache-entries'] !== undefined) {
    cacheEntries = Number(v['cache-entries']);
    if (!Number.isSafeInteger(cacheEntries) || cacheEntries < 1) return usageError('fuse-server', `--cache-entries must be a positive integer, got ${v['cache-entries']}`);
  }
  const log = createLogger(level).child({ component: 'fuse-server' });
  // The pool is sized when the process first uses it, before any of our code runs; only the
  // environment the process started with counts.
  if (!v.handover && !v.stop && process.env.UV_THREADPOOL_SIZE === undefined) {
    return usageError('fuse-server', `start it with UV_THREADPOOL_SIZE in the environment (the daemon uses ${FUSE_SERVER_THREADS}): each layer holds one libuv pool thread`);
  }

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
      await client.close();
    }
  }

  process.on('uncaughtException', (err) => {
    log.fatal({ err }, 'uncaught exception in the FUSE server; exiting (its mounts die with it)');
    process.exit(70);
  });
  const server = new FuseServer({
    socket, log, version: version(), cacheEntries,
    successorCommand: [process.execPath, BIN_PATH],
    successorArgs: ['--log-level', level, ...(cacheEntries ? ['--cache-entries', String(cacheEntries)] : [])],
  });
  if (v.takeover) server.adopt(await readHandoverState(process.stdin));
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

// `cvmfs-snapshotter fuse-server`: the long-lived process that serves every layer mount. The
// daemon starts it when none runs; an operator only needs it for an upgrade (--handover) or to
// take every layer down (--stop). On Kubernetes it runs as its own container, and the next pod's
// server takes every mount over from it (--replace).
import { realpath, rm } from 'node:fs/promises';
import { createLogger, isLogLevel, LOG_LEVELS } from '../log.js';
import { FuseServer, READY_FD, READY_LINE, readHandoverState } from '../fuse/server/server.js';
import { closeSync, writeSync } from 'node:fs';
import { RemoteLayerMounter } from '../fuse/server/client.js';
import { isAbsolute, resolve } from 'node:path';
import { parseCommand, usageError } from './args.js';
import { ConfigError, DEFAULT_FUSE_SOCKET, loadConfig, type Config } from './config.js';
import { DEFAULT_CACHE_BYTES, DEFAULT_TUNING, MAX_BUSY_POLL_US } from '../fuse/tuning.js';
import { BIN_PATH, fuseServerNodeFlags, missingNodeFlags, version } from './build-info.js';
import { native } from '../sys/native.js';

/** Set (to the flags added) in the environment of a server that started again with its Node flags. */
const REEXEC_ENV = 'CVMFS_SNAPSHOTTER_FUSE_SERVER_FLAGS_ADDED';

const USAGE = `Usage: cvmfs-snapshotter fuse-server [--socket SOCK] [--config FILE] [--root DIR [--store DIR]] [--replace]
                                     [--log-level LEVEL] [--cache-bytes N] [--cache-entries N] [--passthrough on|off]
                                     [--store-timeout SECONDS] [--walk-entries N] [--busy-poll-us N]
                                     [--successor-wait SECONDS]
       cvmfs-snapshotter fuse-server --handover [--socket SOCK]
       cvmfs-snapshotter fuse-server --stop [--socket SOCK]

Serves the layer mounts (FUSE) on behalf of the daemon, which starts it when none runs. It
outlives the daemon, so restarting the daemon never breaks a running container.

  --socket SOCK          control socket (default ${DEFAULT_FUSE_SOCKET})
  --config FILE          the daemon's TOML config: the store (absolute-mountpoint) and the keys
                         metadata-cache-bytes, metadata-cache-entries, fuse-passthrough,
                         fuse-busy-poll-us, store-timeout and layer-walk-entries; the flags
                         below win over it
  --root DIR             the daemon's root: layers are mounted only below it (with --store or --config)
  --store DIR            the layer store: only its layers are served (the root and the store are
                         taken from the first daemon that connects when not given here)
  --replace              take every mount over from the server answering on SOCK, which may run in
                         another container or pod (it keeps running, idle, until SIGTERM, and then
                         exits without unmounting); with none answering, start as usual. A server
                         of another root or store is refused
  --log-level LEVEL      ${LOG_LEVELS.join(', ')} (default info)
  --cache-bytes N        byte budget of the metadata cache shared by all layers (default ${DEFAULT_CACHE_BYTES})
  --cache-entries N      an extra bound on the cache's entries
  --passthrough on|off   FUSE passthrough: reads go straight to the store's files (default on,
                         where the kernel offers it: Linux 6.9 or later)
  --store-timeout S      a store call not answered in S seconds is answered EIO (default ${DEFAULT_TUNING.storeDeadlineMs / 1000})
  --walk-entries N       entries a background walk of each new layer may list, to learn whether
                         it has xattrs and read its metadata ahead; 0: no walk (default ${DEFAULT_TUNING.censusEntries})
  --busy-poll-us N       after an answer, read the layer's channel again for N microseconds
                         before sleeping: the next request of a program asking one thing after
                         another is read at once (a LOOKUP round trip 38 -> 28 us measured);
                         0: never (default ${DEFAULT_TUNING.busyPollUs}, at most ${MAX_BUSY_POLL_US})
  --successor-wait S     on SIGTERM, serve on for up to S seconds for a successor (the next pod's
                         fuse-server --replace) to take the mounts over, and unmount them only if
                         none does (default 0: unmount at once; the DaemonSet gives 20, its pods
                         30 s to stop: a pod deleted on its own is replaced at once with maxSurge)
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
    'busy-poll-us': { type: 'string' },
    'successor-wait': { type: 'string' },
    handover: { type: 'boolean' },
    stop: { type: 'boolean' },
    replace: { type: 'boolean' },
    config: { type: 'string' },
    takeover: { type: 'boolean' },
  });
  if (typeof p === 'number') return p;
  const v = p.values;
  if (p.positionals.length > 0) return usageError('fuse-server', `unexpected argument ${p.positionals[0]}`);
  const socket = v.socket ?? DEFAULT_FUSE_SOCKET;
  const level = v['log-level'] ?? 'info';
  if (!isLogLevel(level)) return usageError('fuse-server', `--log-level ${level}: expected one of ${LOG_LEVELS.join(', ')}`);
  const modes = (['handover', 'stop', 'replace', 'takeover'] as const).filter((k) => v[k]);
  if (modes.length > 1) return usageError('fuse-server', `--${modes[0]} and --${modes[1]} do not go together`);
  let config: Config | undefined;
  if (v.config !== undefined) {
    try {
      config = await loadConfig(v.config, true);
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      process.stderr.write(`cvmfs-snapshotter fuse-server: ${err.message}\n`);
      return 2;
    }
  }
  // Explicit flags win over the config file, which gives what the daemon would pass.
  const cacheBytes = positiveInt(v['cache-bytes'], '--cache-bytes') ?? config?.metadataCacheBytes;
  const cacheEntries = positiveInt(v['cache-entries'], '--cache-entries') ?? config?.metadataCacheEntries;
  const timeout = positiveInt(v['store-timeout'], '--store-timeout') ?? config?.storeTimeoutSec;
  for (const x of [cacheBytes, cacheEntries, timeout]) if (typeof x === 'string') return usageError('fuse-server', x);
  const walk = v['walk-entries'] ?? (config ? String(config.layerWalkEntries) : undefined);
  if (walk !== undefined && !/^[0-9]{1,9}$/.test(walk)) return usageError('fuse-server', `--walk-entries must be a whole number (0: no walk), got ${walk}`);
  if (typeof cacheBytes === 'number' && cacheBytes < 1024 * 1024) return usageError('fuse-server', '--cache-bytes must be at least 1048576 (1 MiB)');
  const busyPoll = v['busy-poll-us'] ?? (config ? String(config.fuseBusyPollUs) : undefined);
  if (busyPoll !== undefined && !(/^[0-9]{1,7}$/.test(busyPoll) && Number(busyPoll) <= MAX_BUSY_POLL_US)) {
    return usageError('fuse-server', `--busy-poll-us must be a whole number of microseconds from 0 (off) to ${MAX_BUSY_POLL_US}, got ${busyPoll}`);
  }
  const successorWait = v['successor-wait'];
  if (successorWait !== undefined && !(/^[0-9]{1,4}$/.test(successorWait) && Number(successorWait) <= 3600)) {
    return usageError('fuse-server', `--successor-wait must be a whole number of seconds from 0 to 3600, got ${successorWait}`);
  }
  const passthrough = v.passthrough ?? (config ? (config.fusePassthrough ? 'on' : 'off') : undefined);
  if (passthrough !== undefined && passthrough !== 'on' && passthrough !== 'off') return usageError('fuse-server', `--passthrough must be on or off, got ${passthrough}`);
  const store = v.store ?? config?.absoluteMountpoint;
  if (v.store !== undefined && v.root === undefined) return usageError('fuse-server', '--store goes with --root');
  if (v.root !== undefined && store === undefined) return usageError('fuse-server', '--root goes with --store or --config');
  for (const [flag, dir] of [['--root', v.root], ['--store', v.store]] as const) {
    if (dir !== undefined && !isAbsolute(dir)) return usageError('fuse-server', `${flag} must be an absolute path, got ${dir}`);
  }
  // The daemon names its root canonically (realpath): so does its server, or their scopes differ.
  const root = v.root === undefined ? undefined : await realpath(resolve(v.root)).catch(() => resolve(v.root as string));
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

  // Started by hand or as a container's command (the DaemonSet), not by the daemon: without its
  // Node flags the server's heap may grow to several times what it holds (at the default
  // old-space limit, 108 MiB RSS after four mount, walk and unmount cycles of a Debian+python3
  // layer, against 68 MiB). It starts again with them, keeping its pid, before it serves.
  const missing = missingNodeFlags(fuseServerNodeFlags(typeof cacheBytes === 'number' ? cacheBytes : undefined));
  const added = process.env[REEXEC_ENV];
  // Not passed on to the processes this one starts (a successor at a handover).
  delete process.env[REEXEC_ENV];
  if (missing.length === 0 && added !== undefined) log.info({ flags: added.split(' ') }, 'started again with the FUSE server\'s Node flags');
  // A successor at a handover (--takeover) holds the mounts' descriptors, and its giver starts
  // it with the flags: it never starts again.
  if (missing.length > 0) {
    if (added === undefined && !v.takeover) {
      process.env[REEXEC_ENV] = missing.join(' ');
      const argv = [process.execPath, ...process.execArgv, ...missing, ...process.argv.slice(1)];
      const res = native.execv(Buffer.from(process.execPath), argv.map((a) => Buffer.from(a)));
      delete process.env[REEXEC_ENV];
      log.warn({ flags: missing, errno: -res }, 'could not start again with the FUSE server\'s Node flags; serving without them');
    } else {
      log.warn({ flags: missing }, `${v.takeover ? 'started for a handover' : 'started again'} without the FUSE server's Node flags taking effect; serving without them`);
    }
  }

  process.on('uncaughtException', (err) => {
    log.fatal({ err }, 'uncaught exception in the FUSE server; exiting (its mounts die with it)');
    process.exit(70);
  });
  const tuning = {
    ...(passthrough ? { passthrough: passthrough === 'on' } : {}),
    ...(typeof timeout === 'number' ? { storeDeadlineMs: timeout * 1000 } : {}),
    ...(walk !== undefined ? { censusEntries: Number(walk) } : {}),
    ...(busyPoll !== undefined ? { busyPollUs: Number(busyPoll) } : {}),
  };
  log.info({
    config: v.config, cacheBytes: cacheBytes ?? DEFAULT_CACHE_BYTES, cacheEntries, passthrough: passthrough ?? 'on',
    storeTimeoutSec: timeout ?? DEFAULT_TUNING.storeDeadlineMs / 1000, walkEntries: walk === undefined ? DEFAULT_TUNING.censusEntries : Number(walk),
    busyPollUs: busyPoll === undefined ? DEFAULT_TUNING.busyPollUs : Number(busyPoll), successorWaitSec: Number(successorWait ?? 0),
  }, 'FUSE server settings');
  const server = new FuseServer({
    socket, log, version: version(),
    ...(typeof cacheBytes === 'number' ? { cacheBytes } : {}),
    ...(typeof cacheEntries === 'number' ? { cacheEntries } : {}),
    ...(root !== undefined && store !== undefined ? { scope: { root, store: resolve(store) } } : {}),
    tuning,
    pidFile: `${socket}.pid`,
    ...(successorWait !== undefined ? { successorWaitMs: Number(successorWait) * 1000 } : {}),
    successorCommand: [process.execPath, ...fuseServerNodeFlags(typeof cacheBytes === 'number' ? cacheBytes : undefined), BIN_PATH],
    // The successor takes the scope from the handover state.
    successorArgs: [
      '--log-level', level,
      ...(typeof cacheBytes === 'number' ? ['--cache-bytes', String(cacheBytes)] : []),
      ...(typeof cacheEntries === 'number' ? ['--cache-entries', String(cacheEntries)] : []),
      ...(passthrough ? ['--passthrough', passthrough] : []),
      ...(typeof timeout === 'number' ? ['--store-timeout', String(timeout)] : []),
      ...(walk !== undefined ? ['--walk-entries', walk] : []),
      ...(busyPoll !== undefined ? ['--busy-poll-us', busyPoll] : []),
      ...(successorWait !== undefined ? ['--successor-wait', successorWait] : []),
    ],
  });
  const pidFile = `${socket}.pid`;
  if (v.takeover) await server.adopt(await readHandoverState(process.stdin));
  if (v.replace) {
    try {
      // Listens once it serves what it took over; false when no server answered.
      if (await server.replace() === false) {
        log.info({ socket }, 'no FUSE server answers on the socket: starting without mounts');
        await server.listen();
      }
    } catch (err) {
      log.error({ err }, 'could not take the mounts over from the running FUSE server');
      process.stderr.write(`cvmfs-snapshotter fuse-server: ${(err as Error).message}\n`);
      process.exit(1);
    }
  } else {
    await server.listen();
  }
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

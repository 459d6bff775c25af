// The daemon's side of the FUSE server: the mount calls of a mounter whose mounts live in the
// server process, each one a request of the control contract (wire.ts). It starts the server
// when none answers, and reconnects when the connection drops (a server handing over to its
// successor, or one that died and must be started again). Letting go of it is disconnect(): the
// server and its mounts stay, which is the point of a separate process; shutdownServer() is the
// other thing a close could mean, every layer unmounted and the server gone.
import type net from 'node:net';
import { isAlive } from '../../sys/pid.js';
import readline from 'node:readline';
import { SnapshotterError, Unavailable, type ErrorKind } from '../../errors.js';
import type { Logger } from '../../log.js';
import type { CacheStats } from '../../cache/index.js';
import type { MetricsJson } from '../../metrics/index.js';
import type { LayerMounts, MounterCounters, ReconcileReport, UnmountOutcome } from '../index.js';
import { encodeLine, type Answer, type Method, type Params, type Result, type ServerScope, type ServerState } from './wire.js';
import { dialControlSocket, ForeignSocket } from './socket.js';

export interface RemoteMounterOptions {
  socket: string;
  log: Logger;
  /**
   * Starts a server process (detached) and returns its pid; called when nothing answers on the
   * socket. Absent: a server is started by someone else (`--external-fuse-server`), only waited for.
   */
  startServer?: () => number | undefined | void;
  /** How long to wait for a started server's socket. */
  startTimeoutMs?: number;
  /**
   * Told when answers come from another server than before (another pid or host): a fresh
   * server after a crash, which serves none of the mounts the daemon's snapshots need, or the
   * successor of a handover, which serves them all.
   */
  onServerChange?: (now: { pid: number; host?: string }, before: { pid: number; host?: string }) => void;
  /** The daemon's root and store: the server takes mounts only there (sent with every hello). */
  scope?: ServerScope;
}

/** The server refused a call because it handed its mounts over to another one. */
class HandedOver extends Unavailable {}

const KINDS: readonly ErrorKind[] = ['NotFound', 'AlreadyExists', 'FailedPrecondition', 'InvalidArgument', 'Unavailable', 'ResourceExhausted', 'Unimplemented', 'Internal'];

export class RemoteLayerMounter implements LayerMounts {
  private readonly o: RemoteMounterOptions;
  private conn: net.Socket | undefined;
  private connecting: Promise<net.Socket> | undefined;
  private nextId = 1;
  /** Calls waiting for their answer, by id, with the connection each was sent on. */
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void; conn: net.Socket }>();
  private last: ServerState | undefined;
  private disconnected = false;
  /** The server's mountpoints as of `mountsVersion`; kept current by our own calls' results. */
  private mounts = new Set<string>();
  private mountsVersion = -1;
  private refreshing: Promise<unknown> | undefined;

  constructor(o: RemoteMounterOptions) {
    this.o = o;
  }

  /** The server's pid and version, as of the last answer. */
  get server(): { pid: number; version: string; host?: string } | undefined {
    return this.last ? { pid: this.last.pid, version: this.last.version, ...(this.last.host !== undefined ? { host: this.last.host } : {}) } : undefined;
  }

  async connect(): Promise<void> {
    await this.call('hello', this.hello());
  }

  private hello(): Params<'hello'> {
    return this.o.scope ? { scope: this.o.scope } : {};
  }

  /**
   * One round trip (hello): the server's pid, version and host, and every mountpoint it serves,
   * as of its answer. Reconnects first if the connection dropped. For a readiness probe.
   */
  async probe(): Promise<{ server: { pid: number; version: string; host?: string }; mounts: string[] }> {
    await this.call('hello', this.hello());
    const server = this.server;
    if (!server) throw new Unavailable('the FUSE server answered without its state');
    return { server, mounts: this.mountpoints() };
  }

  /** How the server reads files (known once it serves a layer). */
  get reads(): 'passthrough' | 'served' | undefined {
    return this.last?.reads;
  }

  async mount(layerDir: string, mountpoint: string, log?: Logger): Promise<void> {
    const digest = log?.bindings().digest as string | undefined;
    const before = this.mountsVersion;
    await this.call('mount', { layerDir, mountpoint, ...(digest ? { digest } : {}) });
    this.applied(before, () => this.mounts.add(mountpoint));
  }

  async unmount(mountpoint: string): Promise<UnmountOutcome | 'not-mounted'> {
    const before = this.mountsVersion;
    const r = await this.call('unmount', { mountpoint });
    this.applied(before, () => this.mounts.delete(mountpoint));
    return r;
  }

  isMounted(mountpoint: string): boolean {
    return this.mounts.has(mountpoint);
  }

  mountpoints(): string[] {
    return [...this.mounts];
  }

  /**
   * Our copy of the server's mount list follows our own calls; when the server's list changed
   * by more than our call (another client, a mount someone else unmounted), it is asked for again.
   */
  private applied(before: number, change: () => void): void {
    const now = this.last?.mountsVersion;
    if (now === undefined || now === this.mountsVersion) return;
    change();
    if (now - before <= 1) {
      this.mountsVersion = now;
      return;
    }
    this.refreshing ??= this.call('hello', this.hello())
      .catch((err: unknown) => this.o.log.debug({ err }, 'refreshing the FUSE server\'s mount list failed'))
      .finally(() => { this.refreshing = undefined; });
  }

  reconcile(prefix: string, keep: ReadonlySet<string>): Promise<ReconcileReport> {
    return this.call('reconcile', { prefix, keep: [...keep] });
  }

  /**
   * Leaves the server: the connection is closed (resolves once it is), later calls are refused,
   * and the server and its mounts stay, as for a daemon that restarts. What a daemon does at stop.
   */
  async disconnect(): Promise<void> {
    this.disconnected = true;
    const c = this.conn;
    this.conn = undefined;
    if (!c || c.destroyed) return;
    await new Promise<void>((resolve) => {
      // A server that does not close its side within a second (a busy one) is cut off.
      const timer = setTimeout(() => c.destroy(), 1000);
      c.once('close', () => { clearTimeout(timer); resolve(); });
      c.end();
    });
  }

  counters(): MounterCounters {
    return this.last?.counters ?? { mounts: 0, unmounts: 0, lazyUnmounts: 0, staleCleared: 0, failedUnmounts: 0, active: 0, passthrough: 0, xattrFree: 0, waitingForStore: 0 };
  }

  cacheStats(): CacheStats {
    return this.last?.cache ?? { hits: 0, negativeHits: 0, misses: 0, evictions: 0, size: 0, bytes: 0, maxBytes: 0, maxEntries: 0 };
  }

  /** The server's metrics; it collects them at most once a second and answers its last collection in between. */
  metrics(): Promise<MetricsJson> {
    return this.call('metrics', {});
  }

  /** The server hands every mount to a new server process (an upgrade); answers the new one's pid. */
  handover(): Promise<{ pid: number }> {
    return this.call('handover', {});
  }

  /** The server unmounts every layer (lazily where busy) and exits: the uninstall, not a restart. */
  async shutdownServer(): Promise<void> {
    await this.call('shutdown', {});
  }

  // ---- transport ------------------------------------------------------------------------------

  private async call<M extends Method>(method: M, params: Params<M>): Promise<Result<M>> {
    if (this.disconnected) throw new Unavailable('this client of the FUSE server has disconnected');
    const c = await this.connection();
    if (this.disconnected) throw new Unavailable('this client of the FUSE server has disconnected');
    try {
      return await this.send(c, method, params);
    } catch (err) {
      // The server handed its mounts over (a handover, or the next pod's --replace) after this
      // connection was made, and refused the call without doing anything: it is made again,
      // once, on a connection to the server that serves now (the old one no longer listens).
      if (!(err instanceof HandedOver) || this.disconnected) throw err;
      if (this.conn === c) this.conn = undefined;
      this.endIfIdle(c);
      this.o.log.info({ method }, 'the FUSE server handed its mounts over; calling the one that serves now');
      return this.send(await this.connection(), method, params);
    }
  }

  /** Closes a connection no longer used once no call waits for an answer on it. */
  private endIfIdle(c: net.Socket): void {
    if (this.conn === c) return;
    for (const p of this.pending.values()) if (p.conn === c) return;
    c.end();
  }

  private send<M extends Method>(c: net.Socket, method: M, params: Params<M>): Promise<Result<M>> {
    const id = this.nextId++;
    const p = new Promise<Result<M>>((resolve, reject) => {
      // The answer to this id is the answer to method M: the server answers each request with its own id.
      this.pending.set(id, { resolve: (v) => resolve(v as Result<M>), reject, conn: c });
      c.write(encodeLine({ id, method, params }));
    });
    // A hello sent on connect is checked by the next call's answer; its own failure is logged.
    if (method === 'hello') p.catch((err: unknown) => this.o.log.error({ err }, 'the FUSE server refused this daemon\'s scope'));
    return p;
  }

  private connection(): Promise<net.Socket> {
    if (this.conn && !this.conn.destroyed) return Promise.resolve(this.conn);
    this.connecting ??= this.open().finally(() => { this.connecting = undefined; });
    return this.connecting;
  }

  private async open(): Promise<net.Socket> {
    const deadline = Date.now() + (this.o.startTimeoutMs ?? 20_000);
    let started = false;
    let pid: number | undefined;
    // A server handing over closes its socket for a moment; give its successor time first.
    for (let attempt = 0; ; attempt++) {
      try {
        const c = await dialControlSocket(this.o.socket);
        // disconnect() while this connection was being made: it must not stay open.
        if (this.disconnected) {
          c.destroy();
          return c;
        }
        this.attach(c);
        // A server that took over from another, or was started by hand, learns its scope from us.
        if (this.o.scope) void this.send(c, 'hello', { scope: this.o.scope });
        return c;
      } catch (err) {
        if (err instanceof ForeignSocket) throw err;
        // Let go of while waiting for a server: waiting on would keep the process alive.
        if (this.disconnected) throw new Unavailable('this client of the FUSE server has disconnected');
        if (Date.now() > deadline) throw new Unavailable(`no FUSE server answers on ${this.o.socket}: ${(err as Error).message}`, err);
        if (pid !== undefined && !isAlive(pid)) {
          throw new Unavailable(`the FUSE server started for ${this.o.socket} (pid ${pid}) exited at once; its log says why`);
        }
        if (!started && attempt >= 10 && this.o.startServer) {
          started = true;
          this.o.log.info({ socket: this.o.socket }, 'no FUSE server answers; starting one');
          pid = this.o.startServer() ?? undefined;
        }
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
  }

  private attach(c: net.Socket): void {
    this.conn = c;
    const lines = readline.createInterface({ input: c, crlfDelay: Infinity });
    // readline hands the socket's errors on to its own listeners: without one, a server that dies
    // with a reset (ECONNRESET rather than a clean close) was an uncaught exception that took the
    // daemon down with it. The socket's own handler below logs it; its close does the rest.
    lines.on('error', () => undefined);
    lines.on('line', (line) => this.receive(line));
    c.on('error', (err) => this.o.log.debug({ err }, 'FUSE server connection error'));
    c.on('close', () => {
      const current = this.conn === c;
      if (current) this.conn = undefined;
      for (const [id, p] of [...this.pending]) {
        if (p.conn !== c) continue;
        this.pending.delete(id);
        p.reject(new Unavailable('the connection to the FUSE server was lost'));
      }
      if (current && !this.disconnected) this.o.log.info('FUSE server connection closed; the next call reconnects');
    });
  }

  private receive(line: string): void {
    let r: Answer<Method>;
    try {
      r = JSON.parse(line) as Answer<Method>;
    } catch {
      this.o.log.error({ line: line.slice(0, 200) }, 'unreadable answer from the FUSE server');
      return;
    }
    if (r.state) {
      const before = this.last;
      this.last = r.state;
      if (before && (before.pid !== r.state.pid || before.host !== r.state.host)) {
        this.o.onServerChange?.({ pid: r.state.pid, ...(r.state.host !== undefined ? { host: r.state.host } : {}) },
          { pid: before.pid, ...(before.host !== undefined ? { host: before.host } : {}) });
      }
      if (r.state.mounts) {
        this.mounts = new Set(r.state.mounts);
        this.mountsVersion = r.state.mountsVersion;
      }
    }
    const p = this.pending.get(r.id);
    if (!p) return;
    this.pending.delete(r.id);
    if ('error' in r) {
      const kind = (KINDS as readonly string[]).includes(r.error.kind) ? r.error.kind as ErrorKind : 'Internal';
      p.reject(kind === 'Unavailable' && r.state?.handedOver ? new HandedOver(r.error.message) : new SnapshotterError(kind, r.error.message));
    } else {
      p.resolve(r.result);
    }
  }
}

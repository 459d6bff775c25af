// The daemon's side of the FUSE server: a LayerMounter whose mounts live in the server process.
// It starts the server when none answers, and reconnects when the connection drops (a server
// handing over to its successor, or one that died and must be started again).
import net from 'node:net';
import { isAlive } from '../../sys/pid.js';
import readline from 'node:readline';
import { SnapshotterError, Unavailable, type ErrorKind } from '../../errors.js';
import type { Logger } from '../../log.js';
import type { CacheStats } from '../../cache/index.js';
import type { MetricsJson } from '../../metrics/index.js';
import type { CloseReport, LayerMounter, MounterCounters, ReconcileReport, UnmountOutcome } from '../mounts/lifecycle.js';
import type { Method, Response, ServerScope, ServerState } from './wire.js';

export interface RemoteMounterOptions {
  socket: string;
  log: Logger;
  /** Starts a server process (detached) and returns its pid; called when nothing answers on the socket. */
  startServer: () => number | undefined | void;
  /** How long to wait for a started server's socket. */
  startTimeoutMs?: number;
  /** The daemon's root and store: the server takes mounts only there (sent with every hello). */
  scope?: ServerScope;
}

const KINDS: readonly ErrorKind[] = ['NotFound', 'AlreadyExists', 'FailedPrecondition', 'InvalidArgument', 'Unavailable', 'ResourceExhausted', 'Unimplemented', 'Internal'];

export class RemoteLayerMounter implements LayerMounter {
  private readonly o: RemoteMounterOptions;
  private conn: net.Socket | undefined;
  private connecting: Promise<net.Socket> | undefined;
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private last: ServerState | undefined;
  private closed = false;
  /** The server's mountpoints as of `mountsVersion`; kept current by our own calls' results. */
  private mounts = new Set<string>();
  private mountsVersion = -1;
  private refreshing: Promise<unknown> | undefined;

  constructor(o: RemoteMounterOptions) {
    this.o = o;
  }

  /** The server's pid and version, as of the last answer. */
  get server(): { pid: number; version: string } | undefined {
    return this.last ? { pid: this.last.pid, version: this.last.version } : undefined;
  }

  async connect(): Promise<void> {
    await this.call('hello', this.o.scope ? { scope: this.o.scope } : {});
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
    const r = (await this.call('unmount', { mountpoint })) as UnmountOutcome | 'not-mounted';
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
    this.refreshing ??= this.call('hello', this.o.scope ? { scope: this.o.scope } : {})
      .catch((err: unknown) => this.o.log.debug({ err }, 'refreshing the FUSE server\'s mount list failed'))
      .finally(() => { this.refreshing = undefined; });
  }

  async reconcile(prefix: string, keep: ReadonlySet<string>): Promise<ReconcileReport> {
    return (await this.call('reconcile', { prefix, keep: [...keep] })) as ReconcileReport;
  }

  /** Disconnects. The server and its mounts stay: that is the point of a separate process. */
  async close(): Promise<CloseReport> {
    this.closed = true;
    this.conn?.end();
    this.conn = undefined;
    return { unmounted: [], lazilyUnmounted: [], failed: [] };
  }

  counters(): MounterCounters {
    return this.last?.counters ?? { mounts: 0, unmounts: 0, lazyUnmounts: 0, staleCleared: 0, failedUnmounts: 0, active: 0, passthrough: 0, waitingForStore: 0 };
  }

  cacheStats(): CacheStats {
    return this.last?.cache ?? { hits: 0, negativeHits: 0, misses: 0, evictions: 0, size: 0, bytes: 0, maxBytes: 0, maxEntries: 0 };
  }

  async metrics(): Promise<MetricsJson> {
    return (await this.call('metrics', {})) as MetricsJson;
  }

  async handover(): Promise<{ pid: number }> {
    return (await this.call('handover', {})) as { pid: number };
  }

  async shutdownServer(): Promise<void> {
    await this.call('shutdown', {});
  }

  // ---- transport ------------------------------------------------------------------------------

  private async call(method: Method, params: Record<string, unknown>): Promise<unknown> {
    if (this.closed && method !== 'shutdown') throw new Unavailable('the FUSE server client is closed');
    const c = await this.connection();
    return this.sendRaw(c, method, params);
  }

  private sendRaw(c: net.Socket, method: Method, params: Record<string, unknown>): Promise<unknown> {
    const id = this.nextId++;
    const p = new Promise<unknown>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      c.write(`${JSON.stringify({ id, method, params })}\n`);
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
        const c = await dial(this.o.socket);
        this.attach(c);
        // A server that took over from another, or was started by hand, learns its scope from us.
        if (this.o.scope) this.sendRaw(c, 'hello', { scope: this.o.scope });
        return c;
      } catch (err) {
        if (Date.now() > deadline) throw new Unavailable(`no FUSE server answers on ${this.o.socket}: ${(err as Error).message}`, err);
        if (pid !== undefined && !isAlive(pid)) {
          throw new Unavailable(`the FUSE server started for ${this.o.socket} (pid ${pid}) exited at once; its log says why`);
        }
        if (!started && attempt >= 10) {
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
    lines.on('line', (line) => this.receive(line));
    c.on('error', (err) => this.o.log.debug({ err }, 'FUSE server connection error'));
    c.on('close', () => {
      if (this.conn === c) this.conn = undefined;
      const lost = [...this.pending.values()];
      this.pending.clear();
      for (const p of lost) p.reject(new Unavailable('the connection to the FUSE server was lost'));
      if (!this.closed) this.o.log.info('FUSE server connection closed; the next call reconnects');
    });
  }

  private receive(line: string): void {
    let r: Response;
    try {
      r = JSON.parse(line) as Response;
    } catch {
      this.o.log.error({ line: line.slice(0, 200) }, 'unreadable answer from the FUSE server');
      return;
    }
    if (r.state) {
      this.last = r.state;
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
      p.reject(new SnapshotterError(kind, r.error.message));
    } else {
      p.resolve(r.result);
    }
  }
}

function dial(path: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const c = net.createConnection(path);
    c.once('connect', () => { c.off('error', reject); resolve(c); });
    c.once('error', reject);
  });
}

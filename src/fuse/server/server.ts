// The FUSE server: a long-lived process that owns every layer mount, so that the gRPC daemon can
// restart (upgrade, crash, SIGKILL) while containers keep reading their layers. It answers the
// daemon over a private unix socket (socket.ts, wire.ts). It can also hand its mounts to a successor
// process — the open /dev/fuse descriptors and the node tables — so that the server itself can
// be upgraded without unmounting anything: to its own child (systemd), or to a server in
// another pod that asks for them (Kubernetes; see peer-handover.ts).
import { hostname } from 'node:os';
import fs from 'node:fs';
import type net from 'node:net';
import path from 'node:path';
import readline from 'node:readline';
import { SnapshotterError, errnoCode } from '../../errors.js';
import type { Logger } from '../../log.js';
import { createFuseMetrics } from '../../metrics/fuse-metrics.js';
import { spawnSuccessor } from '../../sys/exec.js';
import { native, poolStats } from '../../sys/native.js';
import { adoptMount } from '../mounts/handover.js';
import { FuseLayerMounter } from '../mounts/lifecycle.js';
import { isMountpoint } from '../../sys/mount.js';
import type { LayerFsTuning } from '../tuning.js';
import {
  BadRequest, LineSplitter, MAX_LINE_BYTES, RULES, encodeLine, isBelow, parseEnvelope,
  type Answer, type Checked, type Envelope, type Method, type OnDisk, type Result, type ServerScope, type ServerState,
} from './wire.js';
import { checkHandoverState, type HandoverState } from './handover-state.js';
import { CensusFile } from './census-file.js';
import { IdleMemory } from './idle-memory.js';
import { PeerGiver, PeerTaker, checkPeerSocket, type PeerIdentity } from './peer-handover.js';
import { listenControlSocket } from './socket.js';

export type { HandoverState } from './handover-state.js';

export interface FuseServerOptions {
  socket: string;
  log: Logger;
  version: string;
  cacheBytes?: number;
  cacheEntries?: number;
  /** Set at start (--root, --store), or by the first daemon that says hello. */
  scope?: ServerScope;
  tuning?: Partial<LayerFsTuning>;
  /** The command that starts a successor: argv[0..] before `fuse-server`. */
  successorCommand: readonly string[];
  /** Extra arguments the successor gets (log level, cache size). */
  successorArgs: readonly string[];
  /** Where this server writes its pid each time it starts listening. */
  pidFile?: string;
  /**
   * Asked to stop (SIGTERM) while it serves mounts, the server serves on for up to this long
   * for a successor (the next pod's `fuse-server --replace`) to take them over, and unmounts
   * only if none does. 0: it unmounts at once.
   */
  successorWaitMs?: number;
}

/** The line a successor writes on its fd 3 once it serves everything and listens. */
export const READY_LINE = 'fuse-server ready';
export const READY_FD = 3;
export const FIRST_FUSE_FD = 4;

export class FuseServer {
  private readonly o: FuseServerOptions;
  private readonly log: Logger;
  readonly mounter: FuseLayerMounter;
  private readonly metrics: ReturnType<typeof createFuseMetrics>;
  private server: net.Server | undefined;
  private readonly conns = new Set<net.Socket>();
  private exiting = false;
  /** Asked to stop, serving on for a successor; a second request to stop does not wait. */
  private waitingForSuccessor = false;
  /** Ends that wait: a successor took the mounts over. */
  private successorCame: (() => void) | undefined;
  private scope: ServerScope | undefined;
  /** A successor serves the mounts now. */
  handedOver = false;
  /** The host name every answer carries: read once, not with a uname() per answer. */
  private readonly host = hostname();
  /** The server in another pod that serves them, after a peer handover. */
  private peer: PeerIdentity | undefined;
  /** Settles when the handover under way ends; requests that change mounts wait for it. */
  private handing: Promise<void> | undefined;
  private idle: NodeJS.Timeout | undefined;
  private readonly memory: IdleMemory;
  /** The layers' xattr verdicts, kept in the daemon's root across servers (once the root is known). */
  private census: CensusFile | undefined;
  /** Resolves with the exit code when the server is done. */
  readonly done: Promise<number>;
  private finish: (code: number) => void = () => undefined;

  constructor(o: FuseServerOptions) {
    this.o = o;
    this.log = o.log;
    this.done = new Promise<number>((resolve) => {
      // What the census learnt is written before the process may exit.
      this.finish = (code) => {
        const census = this.census;
        if (census) void census.close().then(() => resolve(code));
        else resolve(code);
      };
    });
    let mounter: FuseLayerMounter | undefined;
    this.metrics = createFuseMetrics({
      counters: () => (mounter as FuseLayerMounter).counters(),
      cacheStats: () => (mounter as FuseLayerMounter).cacheStats(),
      pool: () => poolStats(),
    });
    mounter = new FuseLayerMounter({
      log: o.log, cacheBytes: o.cacheBytes, cacheEntries: o.cacheEntries, observer: this.metrics.observer, store: o.scope?.store,
      ...(o.tuning ? { tuning: o.tuning } : {}),
    });
    this.mounter = mounter;
    this.scope = o.scope;
    if (o.scope) this.keepCensus(o.scope);
    this.memory = new IdleMemory({
      answered: () => this.metrics.answered(),
      busy: () => poolStats().inflight > 0,
      rss: () => process.memoryUsage.rss(),
      reduce: () => native.reduceMemory(),
      log: o.log,
    });
  }

  async adopt(state: HandoverState): Promise<void> {
    if (state.scope && !this.scope) this.setScope(state.scope);
    // The predecessor wrote what it learnt before it handed over (read again: this process may
    // have read the file before that).
    this.census?.load();
    for (const m of state.mounts) await this.mounter.adopt(m);
  }

  private setScope(scope: ServerScope): void {
    this.scope = scope;
    this.mounter.setStore(scope.store);
    this.keepCensus(scope);
    this.log.info({ root: scope.root, store: scope.store }, 'FUSE server scope: mountpoints below the root, layers of the store');
  }

  private keepCensus(scope: ServerScope): void {
    if (this.census) return;
    this.census = CensusFile.inRoot(scope.root, scope.store, this.log);
    this.census.load();
  }

  async listen(): Promise<void> {
    this.server = await listenControlSocket(this.o.socket, this.log, (c) => this.connection(c));
    this.memory.start();
    if (this.o.pidFile) await fs.promises.writeFile(this.o.pidFile, `${process.pid}\n`);
    this.log.info({ socket: this.o.socket, pid: process.pid, mounts: this.mounter.counters().active }, 'FUSE server listening');
  }

  /**
   * `fuse-server --replace`: takes every mount over from the server answering on the control
   * socket, if one does (false when none does: the caller starts fresh), and listens in its place.
   */
  async replace(): Promise<false | PeerIdentity> {
    const taker = await PeerTaker.ask(this.o.socket, this.scope, this.log);
    if (!taker) return false;
    const got = taker.received as NonNullable<PeerTaker['received']>;
    try {
      await taker.ready();
    } catch (err) {
      taker.abort((err as Error).message);
      throw err;
    }
    // Committed: the old server stopped listening, and it takes the mounts back only if this
    // process goes away before it says it serves. A failure from here on is an exit.
    if (got.state.scope && !this.scope) this.setScope(got.state.scope);
    this.census?.load();
    for (const m of got.state.mounts) {
      await this.mounter.adopt(m).catch((err: unknown) => {
        this.log.error({ err, mountpoint: m.mountpoint }, 'could not serve a mount handed over; its connection is closed (the mount is dead until reconciled)');
        native.closeFd(m.fd);
      });
    }
    await this.listen();
    await taker.serving();
    this.log.info({ from: got.giver, mounts: this.mounter.counters().active }, 'took every mount over from the FUSE server of another process');
    return got.giver;
  }

  /**
   * SIGTERM/SIGINT, or --stop (mayWait false): unmount everything (lazily where busy) and exit;
   * with successorWaitMs, a signal first gives a successor that long to take the mounts over.
   */
  async shutdown(reason: string, mayWait = true): Promise<void> {
    // A handover under way decides what there is to unmount.
    await this.handing;
    if (this.stopHandedOver(reason)) return;
    if (this.exiting) return;
    const waitMs = this.o.successorWaitMs ?? 0;
    const mounts = this.mounter.counters().active;
    if (mayWait && waitMs > 0 && mounts > 0 && !this.waitingForSuccessor && this.server) {
      // A pod deleted on its own (kubectl delete pod: the DaemonSet, with maxSurge, starts the
      // next one at once) or a node's last pod: the next pod's server may come for the mounts;
      // unmounting them now would take every running container's files away.
      this.waitingForSuccessor = true;
      this.log.info({ reason, mounts, waitSeconds: waitMs / 1000 },
        'FUSE server asked to stop: serving on, for a successor (fuse-server --replace) to take the mounts over, before unmounting them');
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, waitMs);
        this.successorCame = () => { clearTimeout(timer); resolve(); };
      });
      this.successorCame = undefined;
      await this.handing;
      if (this.stopHandedOver(reason)) return;
      if (this.exiting) return;
      this.log.info({ waitSeconds: waitMs / 1000 }, 'no successor took the mounts over');
    }
    this.exiting = true;
    this.log.info({ reason }, 'FUSE server stopping: unmounting every layer');
    this.stopListening();
    const r = await this.mounter.close();
    this.log.info({ unmounted: r.unmounted.length, lazily: r.lazilyUnmounted.length, failed: r.failed.length }, 'FUSE server stopped');
    this.finish(r.failed.length > 0 ? 1 : 0);
  }

  /** Stopping after the mounts went to another server: nothing to unmount. */
  private stopHandedOver(reason: string): boolean {
    if (!this.peer) return false;
    clearInterval(this.idle);
    this.log.info({ reason, servedBy: this.peer }, 'FUSE server stopping; it handed its mounts over and unmounts nothing');
    this.finish(0);
    return true;
  }

  private state(withMounts: boolean): ServerState {
    const counters = this.mounter.counters();
    return {
      pid: process.pid, host: this.host, version: this.o.version, mountsVersion: this.mounter.mountsVersion, mountCount: counters.active,
      ...(withMounts ? { mounts: this.mounter.mountpoints() } : {}),
      counters, cache: this.mounter.cacheStats(),
      ...(this.scope ? { scope: this.scope } : {}),
      ...(counters.active > 0 ? { reads: counters.passthrough === counters.active ? 'passthrough' as const : 'served' as const } : {}),
      ...(this.peer || this.handedOver ? { handedOver: true } : {}),
    };
  }

  private connection(c: net.Socket): void {
    this.conns.add(c);
    c.setEncoding('utf8');
    c.on('close', () => this.conns.delete(c));
    c.on('error', (err) => this.log.debug({ err }, 'control connection error'));
    const splitter = new LineSplitter(MAX_LINE_BYTES);
    c.on('data', (chunk: string) => {
      let lines: string[];
      try {
        lines = splitter.push(chunk);
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, 'control connection sent an over-long line; closing it');
        this.send(c, { id: -1, error: { kind: 'InvalidArgument', message: (err as Error).message } });
        c.end();
        c.destroy();
        return;
      }
      for (const line of lines) this.request(c, line);
    });
  }

  private request(c: net.Socket, line: string): void {
    let req: Envelope;
    try {
      req = parseEnvelope(line);
    } catch (err) {
      this.send(c, { id: -1, error: { kind: 'InvalidArgument', message: `bad control request: ${(err as Error).message}` } });
      return;
    }
    const { withMounts } = RULES[req.method];
    // A request that changes mounts waits for a handover under way: after it, this process has none.
    const wait = this.handing && CHANGES_MOUNTS.has(req.method) ? this.handing : undefined;
    const run = async (): Promise<Result<Method>> => {
      if (wait) await wait;
      if (this.peer || this.handedOver) throw new SnapshotterError('Unavailable', 'this FUSE server handed its mounts over to another one; reconnect');
      return this.take(req.method, req.params);
    };
    run().then((result) => this.send(c, { id: req.id, result, state: this.state(withMounts) }), (err: unknown) => {
      const kind = err instanceof BadRequest ? 'InvalidArgument' : err instanceof SnapshotterError ? err.kind : 'Internal';
      this.send(c, { id: req.id, error: { kind, message: err instanceof Error ? err.message : String(err) }, state: this.state(withMounts) });
    });
  }

  /** A request checked by the contract's rule for its method, then handled. */
  private async take<M extends Method>(method: M, raw: Record<string, unknown>): Promise<Result<M>> {
    const rule = RULES[method];
    const params = rule.check(raw, this.scope);
    for (const d of rule.onDisk?.(params) ?? []) await this.staysBelowRoot(d);
    return this.handlers[method](params);
  }

  /**
   * The checks on names are not enough: the mounter creates, resolves and mounts paths with
   * links followed, so a symlink below the root would take a mount, an unmount or a reconcile
   * anywhere on the host. A path is taken only if, its existing ancestors resolved, it is still
   * below the root (resolved too), and it is not itself a symlink (mount(2) follows one).
   */
  private async staysBelowRoot({ path: p, key, orRoot }: OnDisk): Promise<void> {
    const scope = this.scope;
    // The contract's check of the same request asked for a scope already.
    if (!scope) throw new SnapshotterError('Internal', 'a path was checked on disk without a scope');
    const root = await fs.promises.realpath(scope.root).catch(() => scope.root);
    // A mountpoint is never a symlink (mount(2) resolves one), and a stat of it would ask its
    // filesystem, which may be a FUSE mount whose server hangs: mountinfo answers instead.
    const mounted = await isMountpoint(p).catch(() => false);
    const isLink = !mounted && await fs.promises.lstat(p).then((st) => st.isSymbolicLink(), () => false);
    const resolved = isLink ? undefined : await resolveAncestors(p);
    if (resolved !== undefined && (isBelow(resolved, root) || (orRoot && resolved === root))) return;
    const what = isLink ? 'is a symlink' : resolved === undefined ? 'cannot be resolved (a symlink loop?)' : `leads through a symlink to ${JSON.stringify(resolved.slice(0, 300))}`;
    throw new BadRequest(`${key} ${JSON.stringify(p.slice(0, 300))} ${what}, which is not below the daemon's root ${scope.root}`);
  }

  private send(c: net.Socket, r: Answer<Method>): void {
    if (!c.destroyed) c.write(encodeLine(r));
  }

  /** What each request kind does, once its parameters passed the contract's checks. */
  private readonly handlers: { readonly [M in Method]: (p: Checked<M>) => Promise<Result<M>> } = {
    hello: async ({ scope }) => {
      if (scope && !this.scope) this.setScope(scope);
      else if (scope && this.scope && (scope.root !== this.scope.root || scope.store !== this.scope.store)) {
        throw new SnapshotterError('FailedPrecondition', `this FUSE server serves layers of ${this.scope.store} below ${this.scope.root}, `
          + `not of ${scope.store} below ${scope.root}: stop it (fuse-server --stop) or give this daemon its own --fuse-socket`);
      }
      return null;
    },
    mount: async ({ layerDir, mountpoint, digest }) => {
      await this.mounter.mount(layerDir, mountpoint, this.log.child({ digest }));
      return null;
    },
    unmount: ({ mountpoint }) => this.mounter.unmount(mountpoint),
    reconcile: ({ prefix, keep }) => this.mounter.reconcile(prefix, new Set(keep)),
    // At most one collection per second, whoever asks and however often.
    metrics: () => this.metrics.collect(),
    handover: () => this.gated(() => this.handover()),
    handoverTo: (p) => this.handOverToPeer(p),
    shutdown: async () => {
      // The uninstall (fuse-server --stop): no successor is waited for.
      setImmediate(() => void this.shutdown('asked over the control socket', false));
      return null;
    },
  };

  /**
   * Hands every mount to a FUSE server in another process that asked for them (its socket is
   * checked first); see peer-handover.ts. If that server fails or goes away before it serves,
   * this one serves again. Afterwards this process holds nothing and waits for SIGTERM.
   */
  private async handOverToPeer({ socket, scope }: Checked<'handoverTo'>): Promise<{ pid: number; host: string }> {
    if (this.exiting || this.handing || this.peer) throw new SnapshotterError('FailedPrecondition', 'the FUSE server is already stopping or handing over');
    if (scope && this.scope && (scope.root !== this.scope.root || scope.store !== this.scope.store)) {
      throw new SnapshotterError('FailedPrecondition', `this FUSE server serves layers of ${this.scope.store} below ${this.scope.root}; `
        + `the new one was started for ${scope.store} below ${scope.root}: give them the same root and store (--root, --store or --config)`);
    }
    checkPeerSocket(socket, this.o.socket);
    return this.gated(() => this.handOverToPeerNow(socket));
  }

  /** Runs a handover with the requests that change mounts held until it ends. */
  private async gated<T>(fn: () => Promise<T>): Promise<T> {
    let done: () => void = () => undefined;
    this.handing = new Promise<void>((resolve) => { done = resolve; });
    try {
      return await fn();
    } finally {
      this.handing = undefined;
      done();
    }
  }

  private async handOverToPeerNow(socket: string): Promise<{ pid: number; host: string }> {
    const handed = await this.mounter.drainForHandover();
    this.log.info({ mounts: handed.length, to: socket }, 'handing every layer mount to a new FUSE server in another process');
    const giver = new PeerGiver(this.log);
    // The next server reads what this one learnt of the layers.
    await this.census?.flush();
    let committed = false;
    let servedBy: PeerIdentity | undefined;
    try {
      await giver.send(socket, handed, this.scope, this.o.version);
      // The listener goes first: closing it removes the socket path, where the new server listens next.
      this.stopListening(false);
      committed = true;
      servedBy = await giver.commit();
    } catch (err) {
      giver.close();
      this.log.error({ err, committed }, 'handover to the new FUSE server failed; this process serves its mounts again');
      for (const m of handed) {
        await adoptMount(this.mounter, m, undefined, { resend: committed })
          .catch((e: unknown) => this.log.error({ err: e, mountpoint: m.mountpoint }, 'could not serve a mount again after a failed handover'));
      }
      if (committed) await this.listen();
      throw new SnapshotterError('Unavailable', `handover to the new FUSE server failed: ${(err as Error).message}; `
        + `this server (pid ${process.pid}) serves its ${handed.length} mounts again`);
    }
    giver.close();
    // The new server holds its own copies; this process keeps none.
    for (const m of handed) native.closeFd(m.fd);
    this.handedOver = true;
    this.peer = servedBy ?? { pid: 0, host: '?' };
    // Nothing else keeps the event loop alive now, and the container must not exit by itself.
    this.idle = setInterval(() => undefined, 2 ** 30);
    this.log.info({ servedBy: this.peer, mounts: handed.length },
      `handed every mount over to the FUSE server pid ${this.peer.pid} on host ${this.peer.host}; holding nothing, idle until SIGTERM or SIGINT`);
    // Clients reconnect, to the new server.
    setImmediate(() => { for (const c of this.conns) c.end(); });
    // Asked to stop before the successor came: now it may.
    this.successorCame?.();
    return { pid: this.peer.pid, host: this.peer.host };
  }

  /**
   * Starts a successor with the same command, hands it every mount and exits once it serves
   * them. If the successor fails to start, this process takes its mounts back and goes on.
   */
  private async handover(): Promise<{ pid: number }> {
    // Runs gated (see gated()): requests that change mounts, another handover too, wait for it.
    if (this.exiting || this.peer) throw new SnapshotterError('FailedPrecondition', 'the FUSE server is already stopping or handing over');
    this.exiting = true;
    this.stopListening(false);
    const handed = await this.mounter.drainForHandover();
    const fds = handed.map((m) => m.fd);
    // The successor's fd 3 carries its ready line; the /dev/fuse descriptors follow from fd 4.
    const state: HandoverState = { mounts: handed.map((m, i) => ({ ...m, fd: FIRST_FUSE_FD + i })), ...(this.scope ? { scope: this.scope } : {}) };
    const [cmd, ...pre] = this.o.successorCommand;
    await this.census?.flush();
    this.log.info({ mounts: handed.length }, 'handing every layer mount to a new FUSE server process');
    const child = spawnSuccessor(cmd as string, [...pre, 'fuse-server', '--socket', this.o.socket, '--takeover', ...this.o.successorArgs], fds, process.env);
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('the new FUSE server did not report ready within 30 s')), 30_000);
        child.once('error', (err) => { clearTimeout(timer); reject(err); });
        child.once('exit', (code, signal) => { clearTimeout(timer); reject(new Error(`the new FUSE server exited (${signal ?? code}) before it was ready`)); });
        const out = readline.createInterface({ input: child.stdio[3] as NodeJS.ReadableStream });
        // A successor dying is seen by 'exit' above; its pipe's error must not be uncaught here.
        out.on('error', () => undefined);
        out.on('line', (l) => { if (l.trim() === READY_LINE) { clearTimeout(timer); resolve(); } });
        child.stdin?.end(JSON.stringify(state));
      });
    } catch (err) {
      this.log.error({ err }, 'handover failed; this process serves its mounts again');
      child.kill('SIGKILL');
      for (const m of handed) await this.mounter.adopt(m).catch((e: unknown) => this.log.error({ err: e, mountpoint: m.mountpoint }, 'could not serve a mount again after a failed handover'));
      this.exiting = false;
      await this.listen();
      throw new SnapshotterError('Internal', `handover failed: ${(err as Error).message}`);
    }
    (child.stdio[3] as NodeJS.ReadableStream & { destroy(): void }).destroy();
    child.unref();
    this.handedOver = true;
    this.log.info({ successor: child.pid }, 'handover done; exiting without unmounting');
    // Our copies of the descriptors close with the process; the successor holds its own.
    setImmediate(() => this.finish(0));
    return { pid: child.pid ?? 0 };
  }

  /** Stops accepting connections (close()'s callback would wait for the open ones to end). */
  private stopListening(closeConnections = true): void {
    const s = this.server;
    this.server = undefined;
    s?.close();
    if (closeConnections) for (const c of this.conns) c.end();
  }
}

/**
 * p with its deepest existing ancestor resolved; p itself is left as named (it may be a dead
 * mount). Undefined when an ancestor cannot be resolved for another reason than being missing
 * or a dead mount (a symlink loop).
 */
async function resolveAncestors(p: string): Promise<string | undefined> {
  const rest = [path.basename(p)];
  let dir = path.dirname(p);
  for (;;) {
    try {
      return path.join(await fs.promises.realpath(dir), ...rest);
    } catch (err) {
      const code = errnoCode(err);
      if (dir === '/' || (code !== 'ENOENT' && code !== 'ENOTCONN')) return undefined;
      rest.unshift(path.basename(dir));
      dir = path.dirname(dir);
    }
  }
}

/** Reads a predecessor's state from stdin (takeover mode). */
export async function readHandoverState(input: NodeJS.ReadableStream): Promise<HandoverState> {
  const chunks: Buffer[] = [];
  for await (const c of input) chunks.push(Buffer.isBuffer(c) ? c : Buffer.from(String(c)));
  return checkHandoverState(JSON.parse(Buffer.concat(chunks).toString()));
}

/** Requests that change what is mounted: they wait for a handover under way. */
const CHANGES_MOUNTS: ReadonlySet<Method> = new Set<Method>(['mount', 'unmount', 'reconcile', 'handover', 'handoverTo', 'shutdown']);

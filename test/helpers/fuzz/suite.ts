// The fuzz bench against a real daemon, shared by the quick run in `npm test`
// (test/integration/fuzz-grpc.test.ts) and the long one in `npm run test:stress`
// (test/stress/fuzz-grpc.stress.test.ts): it sets up the world and the daemon, sends the
// requests, and returns what it saw; the test files assert.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SnapshotsClient } from '../../../src/server/client.js';
import { defaultDaemonConfig, parseJsonLines, startDaemon, type Daemon } from '../daemon.js';
import { Scope } from '../scope.js';
import { auditRoot, auditSnapshots, listAll, runFuzz, type FuzzReport } from './run.js';
import { makeWorld, type FuzzWorld } from './world.js';

export { METHODS } from './raw-client.js';
export type { FuzzReport } from './run.js';

export interface FuzzPhase {
  /** Requests in this phase. */
  count: number;
  /** In flight at once; only 1 is exactly repeatable. */
  concurrency: number;
}

export const SEED_ENV = 'CVMFS_FUZZ_SEED';

export function summary(r: FuzzReport): string {
  const fmt = (t: Record<string, number>): string => Object.entries(t).sort().map(([k, v]) => `${k} ${v}`).join(', ');
  return `seed ${r.seed}: ${r.sent} requests in ${(r.elapsedMs / 1000).toFixed(1)} s\n  by kind: ${fmt(r.byHow)}\n  by method: ${fmt(r.byMethod)}\n  by code: ${fmt(r.byCode)}`;
}

/** What the witnesses reported after a read of a sentinel, a new file in the store and a rewrite of the sentinel. */
export interface WitnessProbe {
  canary: string;
  afterRead: string[];
  afterCreate: string[];
  afterRewrite: string[];
}

export class FuzzBench {
  private constructor(
    readonly scope: Scope,
    readonly world: FuzzWorld,
    readonly daemon: Daemon,
    /** The daemon's pid when it started. */
    readonly pidAtStart: number,
  ) {}

  static async create(label: string): Promise<FuzzBench> {
    const scope = await Scope.create(label);
    try {
      const world = await makeWorld(scope);
      const daemon = await startDaemon(scope, { root: world.root, configToml: defaultDaemonConfig(world.store), logLevel: 'info' });
      return new FuzzBench(scope, world, daemon, daemon.pid);
    } catch (err) {
      await scope.teardown().catch(() => undefined);
      throw err;
    }
  }

  /** Reads a sentinel, creates a file in the store, rewrites the sentinel; returns what the witnesses saw after each. */
  probeWitnesses(): WitnessProbe {
    const { world } = this;
    world.outside.record();
    world.storeWitness.record();
    const canary = world.sentinels[0] as string;
    readFileSync(canary);
    const afterRead = world.outside.changes();
    writeFileSync(join(world.store, 'new-file'), 'x');
    const afterCreate = world.storeWitness.changes();
    writeFileSync(canary, readFileSync(canary));
    const afterRewrite = world.outside.changes();
    return { canary, afterRead, afterCreate, afterRewrite };
  }

  /** Records the state of everything outside the root, and of the store, to compare with at the end. */
  baseline(): void {
    this.world.outside.record();
    this.world.storeWitness.record();
  }

  runPhase(phase: FuzzPhase, seed: number, progress: (line: string) => void): Promise<FuzzReport> {
    return runFuzz({
      socket: this.daemon.socket, root: this.world.root, seed, count: phase.count, concurrency: phase.concurrency,
      store: this.world.digests, progress,
    });
  }

  /** Prepares, stats and removes one snapshot; returns the kind Stat reported. */
  async ordinaryCycle(key: string): Promise<string> {
    const c = new SnapshotsClient(this.daemon.socket);
    try {
      await c.prepare(key);
      const kind = String((await c.stat(key)).info.kind);
      await c.remove(key);
      return kind;
    } finally {
      c.close();
    }
  }

  /** Snapshots that break containerd's rules, and digests the daemon logged as served from the store. */
  async auditSnapshots(): Promise<{ problems: string[]; served: unknown[] }> {
    const problems = auditSnapshots(await listAll(this.daemon.socket), this.world.digests);
    const served = this.daemon.logRecords().filter((r) => r.msg === 'layer served from the store').map((r) => r.digest);
    return { problems, served };
  }

  /** Calls Cleanup, then returns what in the root is neither the database nor a snapshot's directory. */
  async cleanupAndAuditRoot(): Promise<string[]> {
    const c = new SnapshotsClient(this.daemon.socket);
    try { await c.cleanup(); } finally { c.close(); }
    return auditRoot(this.world.root, (await listAll(this.daemon.socket)).length);
  }

  /** The daemon's log records at level error or above. */
  loggedErrors(): Array<Record<string, unknown>> {
    return parseJsonLines(this.daemon.process.log()).filter((r) => typeof r.level === 'number' && r.level >= 50);
  }

  teardown(): Promise<void> {
    return this.scope.teardown();
  }
}

// A reader that lists a 100,000-entry directory again and again (a program rescanning a spool
// or a package index): the server lists it from the store once and answers every rewind from
// what it keeps; meanwhile other layers are answered; and a listing bigger than the whole cache
// budget is still listed, and stat'ed, correctly.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import readline from 'node:readline';
import { FuseLayerMounter } from '../../src/fuse/mounts/lifecycle.js';
import { NO_OBSERVER, type FuseObserver } from '../../src/fuse/observer.js';
import { silentLogger } from '../../src/log.js';
import { exec } from '../../src/sys/exec.js';
import { poolStats } from '../../src/sys/native.js';
import { Scope } from '../helpers/scope.js';
import { probe } from './fs-probe.js';
import { MiB, bigDirName, buildBigDir, missingName } from '../helpers/memory-load.js';

const ENTRIES = 100_000;
const PASSES = 10;

let scope: Scope;
let bigLayer = '';
let otherLayer = '';
/** Requests answered, by op name, over every mounter of this file. */
const ops = new Map<string, number>();
const observer: FuseObserver = { ...NO_OBSERVER, op: (name) => { ops.set(name, (ops.get(name) ?? 0) + 1); } };
const readdirs = (): number => (ops.get('readdirplus') ?? 0) + (ops.get('readdir') ?? 0);
let mounter: FuseLayerMounter;

before(async () => {
  scope = await Scope.create('big-directory');
  bigLayer = scope.path('layers', 'big');
  await buildBigDir(join(bigLayer, 'big'), ENTRIES);
  otherLayer = scope.path('layers', 'other');
  await buildBigDir(join(otherLayer, 'many'), 2000);
  // No xattr census: its own listing of the layer would be counted with the store calls below.
  mounter = new FuseLayerMounter({ log: silentLogger(), observer, tuning: { censusEntries: 0 } });
  scope.defer('unmount the default mounter', async () => {
    const r = await mounter.close();
    assert.deepEqual({ failed: r.failed, lazy: r.lazilyUnmounted }, { failed: [], lazy: [] });
  });
  await mounter.mount(bigLayer, scope.path('mnt', 'big'));
  await mounter.mount(otherLayer, scope.path('mnt', 'other'));
});

after(async () => {
  await scope?.teardown();
});

// Lists dir `passes` times, dropping the kernel's dentries and inodes before each pass after the
// first (the directory's cached pages go with its inode), so every pass's READDIRs reach the
// server. After each pass it reports what it saw; with `wait` it then waits for a line on stdin.
const REWINDER_PY = String.raw`
import json, os, sys
d, passes, n, wait = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == 'wait'
expected = set('e%06d' % i for i in range(n))
for p in range(passes):
    if p > 0:
        with open('/proc/sys/vm/drop_caches', 'w') as f: f.write('2\n')
    names = os.listdir(d)
    print(json.dumps({'pass': p + 1, 'count': len(names), 'exact': len(names) == len(expected) and set(names) == expected}), flush=True)
    if wait: sys.stdin.readline()
`;

interface Pass { pass: number; count: number; exact: boolean }

interface Rewinder {
  /** Every pass's report, in order, once the child exited cleanly. */
  readonly done: Promise<Pass[]>;
  readonly running: () => boolean;
}

/**
 * Starts the rewinder; onPass runs at each report (and, in wait mode, before the next pass
 * starts). A server that lists the directory from the store page after page would take minutes
 * for one pass: past maxStoreCalls store calls the reader is stopped and the run fails at once.
 */
function rewind(dir: string, passes: number, wait: boolean, onPass: (p: Pass) => Promise<void> | void, maxStoreCalls = Infinity): Rewinder {
  const child = spawn('/usr/bin/python3', ['-c', REWINDER_PY, dir, String(passes), String(ENTRIES), wait ? 'wait' : 'run'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (b: Buffer) => { stderr += b.toString(); });
  let exited = false;
  const closed = new Promise<number | null>((resolve) => child.once('close', (code) => { exited = true; resolve(code); }));
  const startedDone = poolStats().done;
  let overrun = 0;
  const watchdog = setInterval(() => {
    const calls = poolStats().done - startedDone;
    if (calls > maxStoreCalls && overrun === 0) {
      overrun = calls;
      child.kill('SIGKILL');
    }
  }, 100);
  const done = (async (): Promise<Pass[]> => {
    const seen: Pass[] = [];
    try {
      for await (const line of readline.createInterface({ input: child.stdout, crlfDelay: Infinity })) {
        const p = JSON.parse(line) as Pass;
        seen.push(p);
        await onPass(p);
        if (wait) child.stdin.write('go\n');
      }
    } finally {
      clearInterval(watchdog);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
    const code = await closed;
    if (overrun > 0) throw new Error(`the store was called ${overrun} times during ${seen.length + 1} pass(es) (at most ${maxStoreCalls} expected): the directory is listed again and again`);
    if (code !== 0) throw new Error(`the rewinding reader failed (exit ${String(code)}): ${stderr.trim()}`);
    return seen;
  })();
  return { done, running: () => !exited };
}

test('a reader listing a 100,000-entry directory 10 times, with the kernel\'s caches dropped between passes, gets it listed from the store once and sees every name each time', async (t) => {
  const startedDone = poolStats().done;
  const perPass: { readdirs: number; storeCalls: number }[] = [];
  let lastReaddirs = readdirs();
  let lastDone = startedDone;
  const passes = await rewind(scope.path('mnt', 'big', 'big'), PASSES, true, () => {
    const r = readdirs();
    const d = poolStats().done;
    perPass.push({ readdirs: r - lastReaddirs, storeCalls: d - lastDone });
    lastReaddirs = r;
    lastDone = d;
  }, 20).done;
  const storeCalls = poolStats().done - startedDone;
  t.diagnostic(`per pass: READDIRs answered ${perPass.map((p) => p.readdirs).join(', ')}; store calls ${perPass.map((p) => p.storeCalls).join(', ')}; ${storeCalls} store calls in all`);

  assert.deepEqual(passes.map((p) => [p.count, p.exact]), Array.from({ length: PASSES }, () => [ENTRIES, true]), 'every pass saw exactly the 100,000 names');
  for (const [i, p] of perPass.entries()) {
    assert.ok(p.readdirs >= (perPass[0]?.readdirs ?? 1) && p.readdirs > 1, `pass ${i + 1} was answered by the server (${p.readdirs} READDIRs), not from the kernel's cache`);
  }
  // Listing the directory, and the root it is found in: a rewind that listed the store again
  // would add at least one call per pass.
  assert.ok(storeCalls <= 3, `${storeCalls} store calls for ${PASSES} passes: the directory was listed more than once`);
});

test('one reader rewinding a big directory does not starve other layers: lookups on another mount finish while the rewinds go on', async (t) => {
  const other = scope.path('mnt', 'other', 'many');
  const names = [...Array.from({ length: 2000 }, (_, i) => bigDirName(i)), ...Array.from({ length: 2000 }, (_, i) => missingName(i, 40))];
  let lookups: Promise<{ atPass: number; rewinderRunning: boolean; wrong: number }> | undefined;
  let passesSoFar = 0;
  const rewinder = rewind(scope.path('mnt', 'big', 'big'), PASSES, false, (p) => {
    passesSoFar = p.pass;
    // From the first rewind on, another layer is asked for 4,000 names, each a store lookup.
    lookups ??= probe(names.map((n) => ({ op: 'lstat' as const, path: join(other, n) })), { timeoutMs: 120_000 }).then((rs) => ({
      atPass: passesSoFar,
      rewinderRunning: rewinder.running(),
      wrong: rs.filter((r, i) => (i < 2000 ? !r.ok || r.stat?.type !== 'file' : r.ok || r.errno !== 'ENOENT')).length,
    }));
  });
  const passes = await rewinder.done;
  assert.ok(lookups, 'the lookups started');
  const l = await lookups;
  t.diagnostic(`the 4,000 lookups on the other layer finished after rewind pass ${l.atPass} of ${PASSES}`);
  assert.equal(l.wrong, 0, 'every lookup on the other layer was answered right');
  assert.ok(l.rewinderRunning && l.atPass < PASSES, `the other layer's lookups finished while the rewinds went on (after pass ${l.atPass} of ${PASSES})`);
  assert.deepEqual(passes.map((p) => [p.count, p.exact]), Array.from({ length: PASSES }, () => [ENTRIES, true]));
});

test('a listing bigger than the whole cache budget (1 MiB) is listed correctly, rewinds included, and every one of its 100,000 names can be stat\'ed', async (t) => {
  const small = new FuseLayerMounter({ log: silentLogger(), cacheBytes: 1 * MiB, observer, tuning: { censusEntries: 0 } });
  const mnt = scope.path('mnt', 'tiny-cache');
  try {
    await small.mount(bigLayer, mnt);
    const startedDone = poolStats().done;
    const passes = await rewind(join(mnt, 'big'), 3, false, () => undefined, 20).done;
    const listCalls = poolStats().done - startedDone;
    const stats = small.cacheStats();
    t.diagnostic(`3 passes through a 1 MiB cache: ${listCalls} store calls; the cache holds ${stats.bytes} bytes in ${stats.size} entries`);
    assert.deepEqual(passes.map((p) => [p.count, p.exact]), [[ENTRIES, true], [ENTRIES, true], [ENTRIES, true]]);
    assert.ok(stats.bytes <= stats.maxBytes);
    // The listing stays with the mount while it is paged through and when it is read again
    // from offset 0, though the cache cannot hold it.
    assert.ok(listCalls <= 3, `${listCalls} store calls: the listing was made more than once`);

    // Looked up one by one now (the directory is far over 16 KiB), each answer from the store.
    const STAT_PY = String.raw`
import os, stat, sys
d, n = sys.argv[1], int(sys.argv[2])
with open('/proc/sys/vm/drop_caches', 'w') as f: f.write('2\n')
bad = [i for i in range(n) if not stat.S_ISREG(os.lstat(os.path.join(d, 'e%06d' % i)).st_mode)]
print(len(bad))
`;
    const lookupsBefore = ops.get('lookup') ?? 0;
    const s = await exec('/usr/bin/python3', ['-c', STAT_PY, join(mnt, 'big'), String(ENTRIES)], { timeoutMs: 180_000 });
    assert.equal(s.code, 0, s.stderr);
    assert.equal(s.stdout.trim(), '0', 'every name is a regular file');
    const asked = (ops.get('lookup') ?? 0) - lookupsBefore;
    t.diagnostic(`stat of every name after dropping the kernel's caches: ${asked} lookups answered by the server`);
    assert.ok(asked >= ENTRIES, 'the server answered every name');
    assert.ok(small.cacheStats().bytes <= small.cacheStats().maxBytes);
  } finally {
    const c = await small.close();
    assert.deepEqual(c.failed, []);
  }
});

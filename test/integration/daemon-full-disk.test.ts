// The daemon's root on a file system that fills up: the call that finds no room answers
// RESOURCE_EXHAUSTED with a message that says the disk is full and where; it leaves neither a
// record nor a directory behind; and once the space is back, Prepare and View work again without
// a restart (a failed transaction used to leave its directory under an id that SQLite then gave
// to the next snapshot, which failed with ENOTEMPTY until a restart).
//
// The root is on a private tmpfs of a few MiB under the test's scope, filled with a file.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { open, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { status, type ServiceError } from '@grpc/grpc-js';
import { SnapshotsClient } from '../../src/server/client.js';
import { errnoCode } from '../../src/errors.js';
import { exec } from '../../src/sys/exec.js';
import { startDaemon, type Daemon } from '../helpers/daemon.js';
import { readRecords } from '../helpers/root-check.js';
import { Scope } from '../helpers/scope.js';

let scope: Scope;
let daemon: Daemon;
let client: SnapshotsClient;
let disk: string;
const filler = (): string => join(disk, 'filler');

async function mustRun(cmd: string, args: string[]): Promise<void> {
  const r = await exec(cmd, args, { env: { ...process.env, LC_ALL: 'C' } });
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr.trim()}`);
}

before(async () => {
  scope = await Scope.create('full-disk');
  disk = await scope.mkdir('disk');
  await mustRun('mount', ['-t', 'tmpfs', '-o', 'size=4m,mode=0700', 'tmpfs-full-disk-test', disk]);
  // Registered first, so it runs last: after the daemon (and its FUSE server) have stopped.
  scope.defer('unmount the small tmpfs', () => mustRun('umount', [disk]));
  daemon = await startDaemon(scope, { root: join(disk, 'root'), logLevel: 'info' });
  client = new SnapshotsClient(daemon.socket);
  scope.defer('close the client', async () => client.close());
});
after(() => scope.teardown());

/** Writes a file until the file system has no byte left. */
async function fill(): Promise<void> {
  const f = await open(filler(), 'w');
  const chunk = Buffer.alloc(64 * 1024, 0x5a);
  try {
    for (;;) {
      try {
        await f.write(chunk);
      } catch (err) {
        if (errnoCode(err) === 'ENOSPC') return;
        throw err;
      }
    }
  } finally {
    await f.close();
  }
}

const code = (err: unknown): number | undefined => (err as ServiceError).code;

/** The directories under snapshots/ are exactly those of the records: no orphan, no missing one. */
function assertDirsMatchRecords(dirs: string[], what: string): void {
  const ids = readRecords(daemon.root).map((r) => String(r.id)).sort();
  assert.deepEqual([...dirs].sort(), ids, `${what}: the directories under snapshots/ are those of the records`);
}

test('a full disk answers RESOURCE_EXHAUSTED, leaves nothing behind, and the daemon works again once space is freed', async () => {
  await client.prepare('before', '');
  await client.commit('base', 'before');
  await client.prepare('active', 'base');
  const recordsBefore = readRecords(daemon.root).map((r) => r.key);

  await fill();
  // Each kind of call that writes: a new snapshot, a view, a commit (below).
  const full = (e: unknown): boolean => {
    assert.equal(code(e), status.RESOURCE_EXHAUSTED, `RESOURCE_EXHAUSTED, got ${String(e)}`);
    assert.match((e as Error).message, /the disk is full/);
    assert.ok((e as Error).message.includes(daemon.root), `the message names the root: ${(e as Error).message}`);
    return true;
  };
  const made: string[] = [];
  let failures = 0;
  for (let i = 0; i < 5; i++) {
    // A few, so that SQLite's log surely needs a page it cannot have.
    try {
      await client.prepare(`full/${i}`, 'base', { big: 'x'.repeat(3000) });
      made.push(`full/${i}`);
    } catch (e) {
      full(e);
      failures++;
    }
  }
  assert.ok(failures >= 1, 'a Prepare on the full disk was refused');
  await assert.rejects(client.view('full/view', 'base', { big: 'y'.repeat(3000) }), full);
  await assert.rejects(client.commit('committed', 'active', { big: 'z'.repeat(3000) }), full);
  assert.equal((await client.stat('active')).info.kind, 'ACTIVE', 'the refused Commit left the snapshot active');

  assert.deepEqual(readRecords(daemon.root).map((r) => r.key).sort(), [...recordsBefore, ...made].sort(), 'no record of a refused call');
  assertDirsMatchRecords((await readdir(join(daemon.root, 'snapshots'))), 'while the disk is full');

  await rm(filler());
  // The same ids SQLite gave the refused calls come out again: they must meet no directory.
  await client.prepare('after', 'base');
  const view = await client.view('after/view', 'base');
  assert.equal(view.mounts[0]?.type, 'bind');
  await client.prepare('after/2', '');
  await client.commit('committed', 'active');
  for (const k of ['after', 'after/view', 'after/2', 'committed']) assert.equal((await client.stat(k)).info.name, k);
  assertDirsMatchRecords((await readdir(join(daemon.root, 'snapshots'))), 'after space is back');
  // Nothing left for Cleanup to find.
  await client.cleanup();
  assertDirsMatchRecords((await readdir(join(daemon.root, 'snapshots'))), 'after Cleanup');
});

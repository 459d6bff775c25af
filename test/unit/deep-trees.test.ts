// Trees deeper than PATH_MAX on the daemon's side: a container may write one into its upper
// directory, and an ordinary layer may hold one. Removing and measuring them must not stop at
// ENAMETOOLONG, which is where Node's path-based fs gives up.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { link, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Snapshotter } from '../../src/snapshotter/snapshotter.js';
import { silentLogger } from '../../src/log.js';
import { diskUsage, duUsage } from '../../src/sys/du.js';
import { removeTree } from '../../src/sys/remove-tree.js';
import { makeDeepTree, DEEP_COMPONENT_BYTES } from '../helpers/deep-tree.js';

const DEPTH = 24; // 24 x 251 bytes: about 6,000, past PATH_MAX (4,096)

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'deep-'));
  try { await fn(dir); } finally { await removeTree(dir); }
}

test('removeTree removes a tree deeper than PATH_MAX, which fs.rm alone cannot', async () => {
  await withDir(async (dir) => {
    const top = join(dir, 'top');
    await mkdir(top);
    const tree = await makeDeepTree(top, DEPTH);
    assert.ok(tree.components.length * (DEEP_COMPONENT_BYTES + 1) > 4096);
    await assert.rejects(rm(top, { recursive: true, force: true }), /ENAMETOOLONG/, 'fs.rm stops at the depth (else this test shows nothing)');
    await removeTree(top);
    assert.equal(existsSync(top), false);
    await removeTree(top); // nothing left to remove is not an error
  });
});

test('diskUsage of a tree deeper than PATH_MAX counts every inode; its du fallback counts as the walk does, and a missing tree is ENOENT', async () => {
  await withDir(async (dir) => {
    const deep = join(dir, 'deep');
    await mkdir(deep);
    await makeDeepTree(deep, DEPTH);
    const u = await diskUsage(deep);
    assert.equal(u.inodes, 1 + DEPTH + 2, 'the top, each directory, the file and the symlink');
    assert.ok(u.size > 0 && u.apparentSize > 0, JSON.stringify(u));
    // On a shallow tree both ways run: the same numbers, hardlinks counted once, symlinks not followed.
    const shallow = join(dir, 'shallow');
    await mkdir(join(shallow, 'a', 'b'), { recursive: true });
    await writeFile(join(shallow, 'a', 'f'), 'x'.repeat(10_000));
    await link(join(shallow, 'a', 'f'), join(shallow, 'a', 'b', 'hard'));
    await symlink('/etc', join(shallow, 'a', 'to-etc'));
    assert.deepEqual(await duUsage(shallow), await diskUsage(shallow));
    // A tree removed meanwhile (Remove racing Usage) is ENOENT, which Usage turns into NotFound.
    await assert.rejects(duUsage(join(dir, 'gone')), (err: NodeJS.ErrnoException) => err.code === 'ENOENT');
  });
});

test('a snapshot whose upper directory holds a tree deeper than PATH_MAX: Usage counts it, Remove deletes it', async () => {
  await withDir(async (root) => {
    const sn = await Snapshotter.open({ root, log: silentLogger() });
    try {
      await sn.prepare('a', '', {});
      const upper = join(root, 'snapshots', '1', 'fs');
      await makeDeepTree(upper, DEPTH);
      assert.equal((await sn.usage('a')).inodes, 1 + DEPTH + 2);
      await sn.remove('a');
      assert.equal(existsSync(join(root, 'snapshots', '1')), false, 'the snapshot directory is gone');
    } finally {
      await sn.close();
    }
  });
});

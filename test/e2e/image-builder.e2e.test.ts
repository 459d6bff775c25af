// The test image builder, checked against containerd's own overlayfs snapshotter: the layers a
// test asks for (owners, modes, setuid, hardlinks, symlinks, fifos, xattrs, deletions, opaque
// directories) arrive in the container as asked. Later tests compare the daemon with this.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execOk } from '../../src/sys/exec.js';
import type { Containerd } from '../helpers/containerd.js';
import { Harness } from '../helpers/harness.js';
import type { BuiltImage } from '../helpers/image.js';
import { addDir, addFifo, addFile, addHardlink, addSymlink, busyboxRootfs, removePath, setXattr } from '../helpers/rootfs.js';
import { mountSnapshot } from '../helpers/snapshot-mount.js';

describe('test image builder (on containerd\'s overlayfs)', () => {
  let h: Harness;
  let ctd: Containerd;
  let image: BuiltImage;

  before(async () => {
    h = await Harness.create('e2e-images');
    const registry = await h.startRegistry();
    ctd = await h.startContainerd({ registries: [registry] });
    image = await h.buildImage({
      registry,
      name: 'e2e/features',
      tag: 'v1',
      layers: [
        busyboxRootfs,
        async (r) => {
          await addFile(r, 'opt/data/file.txt', 'data\n', { mode: 0o640, uid: 1234, gid: 5678 });
          await addHardlink(r, 'opt/data/hard.txt', 'opt/data/file.txt');
          await addSymlink(r, 'opt/data/link', 'file.txt');
          await addFile(r, 'opt/bin/suid', '#!/bin/sh\n', { mode: 0o4755 });
          await addFifo(r, 'opt/data/fifo');
          await setXattr(r, 'opt/data/file.txt', 'user.test', 'hello');
          await addDir(r, 'opt/old', { mode: 0o750 });
          await addFile(r, 'opt/old/a', 'a\n');
        },
        { comment: 'a deletion', edit: (r) => removePath(r, 'opt/data/link') },
        {
          comment: 'raw: opaque directory and a whiteout',
          raw: async (d) => {
            // A raw layer carries its directories' own entries: give them the modes they keep.
            await mkdir(join(d, 'opt', 'old'), { recursive: true });
            await chmod(join(d, 'opt', 'old'), 0o750);
            await writeFile(join(d, 'opt', 'old', '.wh..wh..opq'), '');
            await writeFile(join(d, 'opt', 'old', 'b'), 'b\n');
            await mkdir(join(d, 'etc'));
            await writeFile(join(d, 'etc', '.wh.group'), '');
          },
        },
        (r) => addFile(r, 'etc/after-raw', '5\n'),
      ],
    });
  });
  after(() => h.teardown());

  test('the image has one layer per builder and its chain IDs name containerd\'s snapshots', async () => {
    assert.equal(image.layers.length, 5);
    assert.equal(image.chainIds.length, 5);
    await ctd.ctr(['images', 'pull', ...ctd.pullFlags, '--snapshotter', 'overlayfs', image.ref]);
    const ls = await ctd.ctr(['snapshots', '--snapshotter', 'overlayfs', 'ls']);
    for (const id of image.chainIds) assert.ok(ls.includes(id), `snapshot ${id} in\n${ls}`);
  });

  test('a container sees every feature the layers asked for', async () => {
    const script = [
      'stat -c "%a %u %g %h" /opt/data/file.txt',
      'test -e /opt/data/link && echo link || echo no-link',
      'stat -c %a /opt/bin/suid',
      'test -p /opt/data/fifo && echo fifo',
      'ls /opt/old',
      'stat -c %a /opt/old',
      'test -e /etc/group && echo group || echo no-group',
      'cat /etc/after-raw',
    ].join('; ');
    const out = await ctd.ctr(['run', ...ctd.runFlags, '--rm', '--snapshotter', 'overlayfs', image.ref, 'features', 'sh', '-c', script]);
    assert.deepEqual(out.trim().split('\n'), ['640 1234 5678 2', 'no-link', '4755', 'fifo', 'b', '750', 'no-group', '5']);
  });

  test('the image mounts on the host, xattrs included', async () => {
    const top = image.chainIds[image.chainIds.length - 1] ?? '';
    const rootfs = await mountSnapshot(ctd, { snapshotter: 'overlayfs', parent: top, target: join(h.dir, 'rootfs') });
    try {
      const r = await execOk('getfattr', ['--only-values', '-n', 'user.test', join(rootfs.target, 'opt/data/file.txt')]);
      assert.equal(r.stdout, 'hello');
      await assert.rejects(writeFile(join(rootfs.target, 'new'), 'x'), { code: 'EROFS' });
    } finally {
      await rootfs.release();
    }
    assert.deepEqual(h.mounts(), []);
  });
});

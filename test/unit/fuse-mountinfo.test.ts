import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fuseMountsUnder, isUnder, parseMountInfo, parseMountInfoLine, unescapeMountPath } from '../../src/fuse/mountinfo.js';

const SAMPLE = [
  '22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw',
  '42 27 0:39 / /var/lib/cvmfs-snapshotter/mnt/ab\\040cd ro,nosuid,nodev,relatime - fuse.cvmfs-layer cvmfs-snapshotter ro,user_id=0,group_id=0,default_permissions,allow_other',
  '43 27 0:40 / /var/lib/cvmfs-snapshotter/mnt/ab/deeper ro,relatime master:3 shared:4 - fuse cvmfs-snapshotter ro,user_id=0,group_id=0',
  '44 27 0:41 / /var/lib/cvmfs-snapshotter/mntx ro,relatime - fuse.sshfs host:/ rw',
  '45 27 0:42 / /var/lib/cvmfs-snapshotter/mnt/ov rw,relatime - overlay overlay rw,lowerdir=/a:/b',
  '',
].join('\n');

test('octal escapes in mountinfo paths are undone', () => {
  assert.equal(unescapeMountPath('/a\\040b\\011c\\012d\\134e'), '/a b\tc\nd\\e');
});

test('a line with optional fields parses; fields after the separator land right', () => {
  const m = parseMountInfoLine('43 27 0:40 / /x ro,relatime master:3 shared:4 - fuse src ro,user_id=0');
  assert.deepEqual(m, { id: 43, parentId: 27, majorMinor: '0:40', root: '/', mountPoint: '/x', mountOptions: 'ro,relatime', fsType: 'fuse', source: 'src', superOptions: 'ro,user_id=0' });
  assert.equal(parseMountInfoLine('garbage'), undefined);
});

test('FUSE mounts under a prefix: only FUSE, only below it (not a sibling sharing the prefix), deepest first', () => {
  const all = parseMountInfo(SAMPLE);
  assert.equal(all.length, 5);
  const under = fuseMountsUnder(all, '/var/lib/cvmfs-snapshotter/mnt');
  assert.deepEqual(under.map((m) => m.mountPoint), [
    '/var/lib/cvmfs-snapshotter/mnt/ab/deeper',
    '/var/lib/cvmfs-snapshotter/mnt/ab cd',
  ]);
});

test('isUnder', () => {
  assert.ok(isUnder('/a/b', '/a'));
  assert.ok(isUnder('/a', '/a'));
  assert.ok(isUnder('/a/b', '/a/'));
  assert.ok(!isUnder('/ab', '/a'));
  assert.ok(isUnder('/x', '/'));
});

test('overlay users of a layer mount are found from the overlay super options, escapes included', async () => {
  const { overlayLayerDirs, overlaysUsing } = await import('../../src/fuse/mountinfo.js');
  const line = '46 27 0:41 / /run/c/rootfs rw,relatime - overlay overlay rw,lowerdir=/s/mnt/a\\040b:/s/mnt/c\\:d,upperdir=/s/up,workdir=/s/work,redirect_dir=on';
  const m = parseMountInfoLine(line);
  assert.ok(m);
  assert.deepEqual(overlayLayerDirs(m), ['/s/mnt/a b', '/s/mnt/c:d', '/s/up']);
  assert.equal(overlaysUsing([m], ['/s/mnt/a b']).length, 1);
  assert.equal(overlaysUsing([m], ['/s/mnt/a']).length, 0);
});

test('only the lines naming a path are parsed: its mounts, and the overlays that stack it, escapes included', async () => {
  const { escapeMountPath, readMountInfoAbout } = await import('../../src/fuse/mountinfo.js');
  const fs = await import('node:fs');
  const os = await import('node:os');
  const path = await import('node:path');
  assert.equal(escapeMountPath('/a b\tc\nd\\e'), '/a\\040b\\011c\\012d\\134e');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mountinfo-'));
  const file = path.join(dir, 'mountinfo');
  fs.writeFileSync(file, [
    SAMPLE,
    '46 27 0:43 / /run/c/rootfs rw,relatime - overlay overlay rw,lowerdir=/var/lib/cvmfs-snapshotter/mnt/ab\\040cd:/x\\:y,upperdir=/u,workdir=/w',
  ].join('\n'));
  try {
    const about = await readMountInfoAbout(['/var/lib/cvmfs-snapshotter/mnt/ab cd'], file);
    assert.deepEqual(about.map((m) => m.mountPoint), ['/var/lib/cvmfs-snapshotter/mnt/ab cd', '/run/c/rootfs']);
    assert.deepEqual((await readMountInfoAbout(['/x:y'], file)).map((m) => m.mountPoint), ['/run/c/rootfs']);
    assert.deepEqual(await readMountInfoAbout(['/nowhere'], file), []);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

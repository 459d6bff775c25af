// The FUSE face of a LayerTree: fuse-native operations and the mount options for one read-only
// layer. Every operation answers exactly once, with 0 or a negative errno; no error escapes to
// crash the daemon, and an unexpected one (EIO, a vanished file) is logged with its op and path.
import type { Logger } from '../log.js';
import { codeOf, isExpectedCode, negErrno } from './errno.js';
import type { DoneCb, FuseNativeOptions, FuseOps } from './fuse-native.js';
import type { LayerTree } from './layer-tree.js';

export interface LayerFsTuning {
  /** How long the kernel may trust a name lookup; layers are immutable, so long. */
  entryTimeoutSec: number;
  attrTimeoutSec: number;
  /** How long the kernel may remember that a name is absent. */
  negativeTimeoutSec: number;
  /** Let every user (the container's) use the mount; needs root or user_allow_other. */
  allowOther: boolean;
  /**
   * fuse-native's per-operation deadline, or false for none. Reads never get one: a late read
   * would land in a buffer that libfuse has already reused.
   */
  opTimeoutMs: number | false;
  /** Kernel read-ahead for the mount in KiB (see readahead.ts); 0 leaves the kernel default. */
  readAheadKb: number;
  debug: boolean;
}

export const DEFAULT_TUNING: Readonly<LayerFsTuning> = {
  entryTimeoutSec: 86400,
  attrTimeoutSec: 86400,
  negativeTimeoutSec: 86400,
  allowOther: true,
  opTimeoutMs: false,
  readAheadKb: 512,
  debug: false,
};

/** The filesystem type shows as `fuse.<subtype>` in /proc/self/mountinfo. */
export const LAYER_FS_SUBTYPE = 'cvmfs-layer';
export const LAYER_FS_NAME = 'cvmfs-snapshotter';

/**
 * fuse-native has no switch for several libfuse options, but it passes `fsname` through
 * verbatim inside one `-o` list, so the extra options ride on it:
 *  - ro: the kernel refuses writes before they reach us;
 *  - use_ino: st_ino comes from the store, so hardlinks share an inode number;
 *  - negative_timeout: the kernel caches absent names (python's import search, overlayfs lookups).
 * fuse_mount() consumes `ro`; fuse_new() takes the rest. A typo here makes fuse_new fail.
 */
export function layerMountOptions(t: LayerFsTuning = DEFAULT_TUNING): FuseNativeOptions {
  const extra = ['ro', 'use_ino', `negative_timeout=${t.negativeTimeoutSec}`];
  return {
    fsname: [LAYER_FS_NAME, ...extra].join(','),
    subtype: LAYER_FS_SUBTYPE,
    allowOther: t.allowOther,
    defaultPermissions: true,
    kernelCache: true,
    entryTimeout: t.entryTimeoutSec,
    attrTimeout: t.attrTimeoutSec,
    timeout: t.opTimeoutMs === false ? false : { default: t.opTimeoutMs, read: false },
    debug: t.debug,
  };
}

/** What the ops need from a layer; a LayerTree, or a stand-in in tests. */
export type LayerView = Pick<LayerTree, 'getattr' | 'readdir' | 'readlink' | 'open' | 'read' | 'release' | 'getxattr' | 'listxattr' | 'statfs'>;

export function layerFuseOps(tree: LayerView, log: Logger): FuseOps {
  const EROFS = negErrno('EROFS');
  const EIO = negErrno('EIO');

  /** Runs one operation and answers through onOk or with a negative errno. */
  function serve<T>(op: string, path: string, work: () => Promise<T>, onOk: (v: T) => void, onErr: (neg: number) => void): void {
    let p: Promise<T>;
    try {
      p = work();
    } catch (err) {
      p = Promise.reject(err);
    }
    p.then(onOk, (err: unknown) => {
      const code = codeOf(err);
      if (isExpectedCode(code)) {
        log.trace({ op, path, code }, 'layer op answered with an error');
        onErr(negErrno(code));
        return;
      }
      // The store's own trouble (ENOTCONN from a dead cvmfs, EMFILE here) means nothing to a
      // program in a container: it sees EIO, and the log keeps the real cause.
      log.warn({ op, path, code, err }, 'layer op failed');
      onErr(EIO);
    }).catch((err: unknown) => log.error({ op, path, err }, 'answering a layer op threw'));
  }

  return {
    init: (cb) => cb(0),
    getattr: (path, cb) => serve('getattr', path, () => tree.getattr(path), (st) => cb(0, st), (e) => cb(e)),
    readdir: (path, cb) =>
      serve('readdir', path, () => tree.readdir(path), (d) => cb(0, d.names, d.stats), (e) => cb(e)),
    readlink: (path, cb) => serve('readlink', path, () => tree.readlink(path), (t) => cb(0, t), (e) => cb(e)),
    open: (path, flags, cb) => serve('open', path, () => tree.open(path, flags), (fh) => cb(0, fh), (e) => cb(e)),
    read: (path, fh, buf, len, pos, cb) =>
      serve('read', path, () => tree.read(fh, buf, len, pos), (n) => cb(n), (e) => cb(e)),
    release: (path, fh, cb) => serve('release', path, () => tree.release(fh), () => cb(0), (e) => cb(e)),
    getxattr: (path, name, _position, cb) =>
      serve('getxattr', path, () => tree.getxattr(path, name), (v) => cb(0, v), (e) => cb(e)),
    listxattr: (path, cb) => serve('listxattr', path, () => tree.listxattr(path), (names) => cb(0, names), (e) => cb(e)),
    statfs: (path, cb) => serve('statfs', path, () => tree.statfs(), (s) => cb(0, s), (e) => cb(e)),
    // Only reached without default_permissions; existence is the whole answer for reads.
    access: (path, mode, cb) =>
      (mode & 2) !== 0 ? cb(EROFS) : serve('access', path, () => tree.getattr(path), () => cb(0), (e) => cb(e)),
    // The mount is read-only, so the kernel answers EROFS before asking; these are the backstop.
    write: (_p, _fh, _buf, _len, _pos, cb) => cb(EROFS),
    create: (_p, _mode, cb) => cb(EROFS),
    mkdir: (_p, _mode, cb: DoneCb) => cb(EROFS),
    mknod: (_p, _mode, _dev, cb: DoneCb) => cb(EROFS),
    unlink: (_p, cb: DoneCb) => cb(EROFS),
    rmdir: (_p, cb: DoneCb) => cb(EROFS),
    rename: (_s, _d, cb: DoneCb) => cb(EROFS),
    link: (_s, _d, cb: DoneCb) => cb(EROFS),
    symlink: (_t, _p, cb: DoneCb) => cb(EROFS),
    chmod: (_p, _mode, cb: DoneCb) => cb(EROFS),
    chown: (_p, _uid, _gid, cb: DoneCb) => cb(EROFS),
    truncate: (_p, _size, cb: DoneCb) => cb(EROFS),
    ftruncate: (_p, _fh, _size, cb: DoneCb) => cb(EROFS),
    utimens: (_p, _a, _m, cb: DoneCb) => cb(EROFS),
    setxattr: (_p, _n, _v, _pos, _flags, cb: DoneCb) => cb(EROFS),
    removexattr: (_p, _n, cb: DoneCb) => cb(EROFS),
  };
}

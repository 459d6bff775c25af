// Judging how the layers' files will be read on this node: straight from the store by the
// kernel (FUSE passthrough, Linux 6.9+), or served by the FUSE server. Pure: the facts come
// from a probe mount (read-mode-probe.ts).
import { finding, type Finding } from './findings.js';

export type ReadModeFacts =
  /** `fuse-passthrough = false` in the config. */
  | { state: 'disabled' }
  | { state: 'skipped'; why: string }
  | { state: 'probe-failed'; error: string }
  | {
    state: 'probed';
    /** The kernel granted passthrough to a probe mount. */
    kernel: boolean;
    /** A file of the store read through a probe mount of its layer, when the store had one. */
    storeFile?: { path: string; passthrough: boolean; refusedWith?: string };
  };

export function checkReadMode(f: ReadModeFacts, kernelRelease: string): Finding {
  const at = (level: 'ok' | 'warn', m: string): Finding => finding('fuse.passthrough', 'file reads', level, m);
  switch (f.state) {
    case 'disabled':
      return at('ok', 'fuse-passthrough = false in the config: every read of a layer file is served by the FUSE server');
    case 'skipped':
      return at('warn', `not probed (${f.why}); run doctor as root to learn whether reads go straight to the store`);
    case 'probe-failed':
      return at('warn', `a probe mount failed (${f.error}), so it is not known how reads will go`);
    case 'probed':
      break;
  }
  if (!f.kernel) {
    return at('warn', `kernel ${kernelRelease} does not offer FUSE passthrough (Linux 6.9 or later does): every read of a layer file is served by the FUSE server, slower than the store itself`);
  }
  const s = f.storeFile;
  if (!s) return at('ok', 'the kernel reads layer files straight from the store (FUSE passthrough); no store file was found to try it on');
  if (s.passthrough) return at('ok', `the kernel reads layer files straight from the store (FUSE passthrough), checked on ${s.path}`);
  const why = s.refusedWith === 'ELOOP' || s.refusedWith === 'EINVAL'
    ? 'the store sits on a filesystem that is itself stacked (overlayfs, or a FUSE filesystem using passthrough), and the kernel allows one level'
    : `the kernel refused it (${s.refusedWith ?? 'unknown'})`;
  return at('warn', `the kernel offers FUSE passthrough, but not for the store's files (${s.path}): ${why}; their reads are served by the FUSE server`);
}

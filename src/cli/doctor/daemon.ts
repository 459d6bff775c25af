// Judging the daemon's socket, its directory, whether a daemon answers there, and its root
// directory. Pure functions over facts gathered elsewhere (gather.ts).
import { status } from '@grpc/grpc-js';
import { finding, octal, type Finding, type Level } from './findings.js';

export type PathFacts =
  | { state: 'missing' }
  | { state: 'error'; error: string }
  | { state: 'present'; kind: 'socket' | 'dir' | 'file' | 'symlink' | 'other'; mode: number; uid: number };

/** The answer to a Stat of a key that cannot exist. */
export type ProbeFacts =
  | { state: 'skipped' }
  | { state: 'answered'; code: number; details: string }
  | { state: 'timeout'; ms: number };

export interface DaemonFacts {
  address: string;
  socketDir: string;
  socket: PathFacts;
  dir: PathFacts;
  probe: ProbeFacts;
}

export interface RootFacts {
  root: string;
  dir: PathFacts;
  metadataDb: boolean;
}

/**
 * Judges mode and owner of something only root may use: bits for group or others fail,
 * anything else that differs from `want` is a warning.
 */
function privateMode(p: { mode: number; uid: number }, want: number, path: string, why: string): { level: Level; message: string } {
  const mode = p.mode & 0o7777;
  if (p.uid !== 0) return { level: 'fail', message: `${path} is owned by uid ${p.uid}, not root: chown root:root ${path}` };
  if (mode & 0o077) return { level: 'fail', message: `${path} is ${octal(mode)}; ${why}: chmod ${octal(want)} ${path}` };
  if (mode !== want) return { level: 'warn', message: `${path} is ${octal(mode)}, not ${octal(want)}; only root can use it, but the daemon makes it ${octal(want)}` };
  return { level: 'ok', message: `${path} is ${octal(mode)}, owned by root` };
}

export function checkDaemon(f: DaemonFacts): Finding[] {
  const out: Finding[] = [];
  const reach = 'only root may reach the socket, since whoever talks to it makes the daemon mount file systems as root';
  if (f.dir.state === 'present') {
    if (f.dir.kind !== 'dir') {
      out.push(finding('socket.dir', 'socket dir', 'fail', `${f.socketDir} is a ${f.dir.kind}, not a directory: remove it, or pass --address with a socket in a directory`));
    } else {
      const j = privateMode(f.dir, 0o700, f.socketDir, reach);
      out.push(finding('socket.dir', 'socket dir', j.level, j.message));
    }
  } else if (f.dir.state === 'error') {
    out.push(finding('socket.dir', 'socket dir', 'fail', `cannot stat ${f.socketDir} (${f.dir.error}); run doctor as root`));
  }

  const s = f.socket;
  if (s.state === 'error') {
    out.push(finding('socket', 'socket', 'fail', `cannot stat ${f.address} (${s.error}); run doctor as root`));
  } else if (s.state === 'present') {
    if (s.kind !== 'socket') {
      out.push(finding('socket', 'socket', 'fail', `${f.address} is a ${s.kind}, not a socket, and the daemon refuses to replace it: remove it, or pass the daemon's --address`));
    } else {
      const j = privateMode(s, 0o600, f.address, reach.replace('reach the socket', 'use it'));
      out.push(finding('socket', 'socket', j.level, j.level === 'fail' ? `${j.message} (a restarted daemon makes it 0600)` : j.message));
    }
  }
  out.push(checkProbe(f));
  return out;
}

function checkProbe(f: DaemonFacts): Finding {
  const d = (level: Level, m: string): Finding => finding('daemon', 'daemon', level, m);
  const start = `start it (cvmfs-snapshotter --address ${f.address})`;
  if (f.socket.state === 'missing') {
    return d('fail', `not running: there is no socket at ${f.address}; ${start}, or pass the --address it serves on`);
  }
  const p = f.probe;
  if (p.state === 'skipped') return d('fail', `cannot ask it: ${f.address} is not a socket doctor can connect to`);
  if (p.state === 'timeout') return d('fail', `nothing answered on ${f.address} within ${p.ms / 1000} s: the daemon is hung or stopped (SIGSTOP); see its log, restart it`);
  if (p.code === status.NOT_FOUND || p.code === status.OK) return d('ok', `answers on ${f.address} (Stat of an unknown key: ${status[p.code]})`);
  if (p.code === status.UNAVAILABLE) {
    // grpc-js wraps the errno in a long sentence; the errno is what says it.
    const errno = /\b(ECONNREFUSED|EACCES|EPERM|ENOENT|ENOTSOCK)\b/.exec(p.details)?.[1];
    const why = errno === 'ECONNREFUSED' ? 'connection refused' : errno ?? p.details;
    if (errno === 'EACCES' || errno === 'EPERM') return d('fail', `cannot connect to ${f.address} (${why}); run doctor as root`);
    return d('fail', `nothing answers on ${f.address} (${why}): the socket is stale, its daemon is gone; start the daemon (cvmfs-snapshotter --address ${f.address}), which replaces a stale socket`);
  }
  if (p.code === status.UNIMPLEMENTED) {
    return d('fail', `what serves ${f.address} does not speak containerd's snapshots API (UNIMPLEMENTED: ${p.details}); point --address at the cvmfs-snapshotter socket`);
  }
  return d('fail', `the daemon on ${f.address} answered ${status[p.code] ?? p.code} (${p.details}) to a Stat of an unknown key, not NOT_FOUND; see its log`);
}

export function checkRoot(f: RootFacts): Finding {
  const r = (level: Level, m: string): Finding => finding('root', 'root', level, m);
  const d = f.dir;
  if (d.state === 'missing') return r('warn', `${f.root} does not exist yet: the daemon makes it (0700) at its first start; if it ran already, pass the --root it uses`);
  if (d.state === 'error') return r('fail', `cannot stat ${f.root} (${d.error}); run doctor as root`);
  if (d.kind !== 'dir') return r('fail', `${f.root} is a ${d.kind}, not a directory: remove it, or pass the daemon another --root`);
  const mode = d.mode & 0o7777;
  const db = f.metadataDb ? 'metadata.db present' : 'no metadata.db yet (the daemon has not run with this root)';
  if (d.uid !== 0) return r('fail', `${f.root} is owned by uid ${d.uid}, not root: chown root:root ${f.root}`);
  if (mode & 0o022) return r('fail', `${f.root} is ${octal(mode)}: others can write where containers' files and the snapshot database live: chmod 0700 ${f.root}`);
  if (mode & 0o077) return r('warn', `${f.root} is ${octal(mode)}: users other than root can read the containers' files under snapshots/: chmod 0700 ${f.root}`);
  return r('ok', `${f.root} is ${octal(mode)}, owned by root; ${db}`);
}

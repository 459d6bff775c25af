// Preparing the unix socket path: a private directory, no stale socket in the way, and never
// two daemons on one socket.
//
// Only the daemon's own user may reach the socket: it is made 0600 and its directory 0700. A
// directory that is missing is made so. One that exists must belong to the daemon's user; if
// it is open to others it is tightened to 0700, but only when it holds nothing but sockets and
// their .pid files (a runtime directory of its own, e.g. made by systemd's RuntimeDirectory=
// with its default mode 0755). A directory shared with other files (/run, /tmp) is refused
// rather than changed under its other users.
import { chmod, lstat, mkdir, readdir, stat, unlink } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { dirname, join } from 'node:path';
import { errnoCode } from '../errors.js';
import type { Logger } from '../log.js';

/** Whether something accepts connections on the unix socket at path right now. */
export function socketAnswers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = createConnection(path);
    c.once('connect', () => { c.destroy(); resolve(true); });
    c.once('error', () => resolve(false));
  });
}

const octal = (mode: number): string => `0${(mode & 0o7777).toString(8)}`;

/** Makes dir private to this process's user, or throws saying why it cannot. Returns whether it made dir. */
async function privateDirectory(dir: string, log: Logger | undefined): Promise<boolean> {
  let st;
  try {
    st = await stat(dir);
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT') throw err;
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await chmod(dir, 0o700);
    log?.info({ dir, mode: '0700' }, 'made the socket directory');
    return true;
  }
  if (!st.isDirectory()) throw new Error(`socket directory ${dir} exists and is not a directory`);
  const uid = process.geteuid?.() ?? st.uid;
  if (st.uid !== uid) {
    throw new Error(`socket directory ${dir} belongs to uid ${st.uid}, not to this daemon's uid ${uid}: its owner could replace the socket. `
      + `Remove it (the daemon makes it), or chown it to uid ${uid} and chmod it 0700`);
  }
  if ((st.mode & 0o077) === 0) return false;
  const others: string[] = [];
  for (const name of await readdir(dir)) {
    const s = await lstat(join(dir, name));
    if (!s.isSocket() && !(s.isFile() && name.endsWith('.pid'))) others.push(name);
  }
  if (others.length > 0) {
    throw new Error(`socket directory ${dir} has mode ${octal(st.mode)}, open to other users, and holds other files `
      + `(${others.slice(0, 3).join(', ')}${others.length > 3 ? ', ...' : ''}); refusing to change a shared directory. `
      + 'Give the socket a directory of its own (the default is /run/containerd-cvmfs-grpc), or chmod it 0700');
  }
  await chmod(dir, 0o700);
  log?.warn({ dir, was: octal(st.mode), now: '0700' }, 'the socket directory was open to other users; tightened it to 0700');
  return false;
}

/** Makes the socket's directory private and clears a stale socket; throws if another process serves there. */
export async function prepareSocketPath(path: string, log?: Logger): Promise<{ createdDir: boolean }> {
  const createdDir = await privateDirectory(dirname(path), log);
  try {
    const st = await lstat(path);
    if (!st.isSocket()) throw new Error(`${path} exists and is not a socket; refusing to replace it`);
    if (await socketAnswers(path)) throw new Error(`another process is serving on ${path}; stop it first`);
    await unlink(path);
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT') throw err;
  }
  return { createdDir };
}

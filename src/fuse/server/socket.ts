// The control socket's setup, for the server and its clients alike. Only the server's user (root)
// may reach it: the socket is made with umask 0177 and chmod 0600 in a directory private to that
// user (prepareSocketPath), a stale socket is cleared, and a path that is not a socket (a file, a
// symlink to elsewhere) is never replaced by the server nor dialled by a client. A client also
// refuses a socket that another user made: it would hand that user its mount requests.
import fs from 'node:fs';
import net from 'node:net';
import { Unavailable } from '../../errors.js';
import type { Logger } from '../../log.js';
import { prepareSocketPath } from '../../server/socket.js';

/** Listens on the control socket at path, made 0600 in a private directory. */
export async function listenControlSocket(path: string, log: Logger, onConnection: (c: net.Socket) => void): Promise<net.Server> {
  await prepareSocketPath(path, log);
  const server = net.createServer(onConnection);
  // The socket is born 0600: no moment in which another user could connect.
  const oldUmask = process.umask(0o177);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => { server.off('error', reject); resolve(); });
    });
  } finally {
    process.umask(oldUmask);
  }
  fs.chmodSync(path, 0o600);
  return server;
}

/** A control socket path that can never be dialled as it is (not a socket, or another user's): waiting does not help. */
export class ForeignSocket extends Unavailable {}

/**
 * Connects to the control socket at path. Throws ForeignSocket when the path is not a socket
 * (lstat: a symlink counts as not one) or belongs to another user, and the connect error (ENOENT,
 * ECONNREFUSED: no server yet) otherwise.
 */
export async function dialControlSocket(path: string): Promise<net.Socket> {
  let st: fs.Stats | undefined;
  try {
    st = await fs.promises.lstat(path);
  } catch {
    // Missing: let connect() say so, as the caller waits for a server that is starting.
  }
  if (st && !st.isSocket()) throw new ForeignSocket(`${path} is not a socket (${st.isSymbolicLink() ? 'a symlink' : 'another kind of file'}); refusing to talk to it as the FUSE server's control socket`);
  const uid = process.geteuid?.();
  if (st && uid !== undefined && st.uid !== uid) {
    throw new ForeignSocket(`the FUSE server's control socket ${path} belongs to uid ${st.uid}, not to this process's uid ${uid}; refusing to send it mount requests`);
  }
  return new Promise((resolve, reject) => {
    const c = net.createConnection(path);
    c.once('connect', () => { c.off('error', reject); resolve(c); });
    c.once('error', reject);
  });
}

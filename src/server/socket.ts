// Preparing the unix socket path: a private directory, no stale socket in the way, and never
// two daemons on one socket.
import { chmod, lstat, mkdir, unlink } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { dirname } from 'node:path';
import { errnoCode } from '../errors.js';

function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = createConnection(path);
    c.once('connect', () => { c.destroy(); resolve(true); });
    c.once('error', () => resolve(false));
  });
}

export async function prepareSocketPath(path: string): Promise<{ createdDir: boolean }> {
  const dir = dirname(path);
  let createdDir = false;
  try {
    await lstat(dir);
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT') throw err;
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await chmod(dir, 0o700);
    createdDir = true;
  }
  try {
    const st = await lstat(path);
    if (!st.isSocket()) throw new Error(`${path} exists and is not a socket; refusing to replace it`);
    if (await answers(path)) throw new Error(`another process is serving on ${path}; stop it first`);
    await unlink(path);
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT') throw err;
  }
  return { createdDir };
}

// Asking the snapshotter daemon itself (not containerd's view of it) what it holds.
import { SnapshotsClient } from '../../src/server/client.js';

export interface BackendSnapshot {
  name: string;
  parent: string;
  kind: string;
}

/** Every snapshot the daemon on socket lists, in every namespace (names carry the namespace). */
export async function backendSnapshots(socket: string): Promise<BackendSnapshot[]> {
  const client = new SnapshotsClient(socket);
  try {
    const infos = await client.list();
    return infos.map((i) => ({ name: i.name, parent: i.parent, kind: String(i.kind) }));
  } finally {
    client.close();
  }
}

// The gRPC server on a unix socket: 0600, in a 0700 directory (see socket.ts).
import { chmod, unlink } from 'node:fs/promises';
import { Server, ServerCredentials, type UntypedServiceImplementation } from '@grpc/grpc-js';
import type { Logger } from '../log.js';
import { tolerant } from './decode.js';
import { snapshotsDefinition } from './proto.js';
import { prepareSocketPath } from './socket.js';

export class SocketServer {
  private readonly server = new Server({ 'grpc.max_receive_message_length': 16 << 20 });
  constructor(readonly path: string, private readonly log: Logger) {}

  async listen(handlers: UntypedServiceImplementation): Promise<void> {
    this.server.addService(snapshotsDefinition(tolerant), handlers);
    await prepareSocketPath(this.path, this.log);
    // The umask closes the window between bind and chmod in which the socket would be open to all.
    const old = process.umask(0o177);
    try {
      await new Promise<void>((resolve, reject) =>
        this.server.bindAsync(`unix://${this.path}`, ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())));
    } finally {
      process.umask(old);
    }
    await chmod(this.path, 0o600);
    this.log.info({ address: this.path }, 'serving containerd.services.snapshots.v1.Snapshots');
  }

  /** Stops taking calls, lets running ones finish for up to graceMs, then closes the socket. */
  async close(graceMs = 5000): Promise<void> {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => { this.server.forceShutdown(); resolve(); }, graceMs);
      this.server.tryShutdown(() => { clearTimeout(timer); resolve(); });
    });
    await unlink(this.path).catch(() => undefined);
  }
}

// A Snapshots client that sends bytes, not objects: requests can be any payload at all, and the
// answer is kept as the status code and message the server sent, plus the raw response bytes.
import { Client, credentials, Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { snapshotsService } from '../../../src/server/proto.js';

export const SERVICE_PATH = '/containerd.services.snapshots.v1.Snapshots/';
export const METHODS = ['Prepare', 'View', 'Mounts', 'Commit', 'Remove', 'Stat', 'Update', 'List', 'Usage', 'Cleanup'] as const;
export type Method = (typeof METHODS)[number];

export interface Answer {
  code: status;
  details: string;
  /** Response messages (one for unary calls, any number for List). */
  messages: Buffer[];
}

type Codec = { requestSerialize: (o: object) => Buffer; responseDeserialize: (b: Buffer) => unknown };
const definition = snapshotsService().service as unknown as Record<Method, Codec>;

/** The protobuf encoding of a request object, as containerd's client would send it. */
export function encodeRequest(method: Method, request: object): Buffer {
  return definition[method].requestSerialize(request);
}

/** Decodes a response message; throws if the bytes are not a valid response of the method. */
export function decodeResponse(method: Method, bytes: Buffer): unknown {
  return definition[method].responseDeserialize(bytes);
}

const identity = (b: Buffer): Buffer => b;

export class RawSnapshotsClient {
  private readonly client: Client;

  constructor(socket: string) {
    this.client = new Client(`unix://${socket}`, credentials.createInsecure(), {
      'grpc.max_receive_message_length': -1,
      'grpc.max_send_message_length': -1,
    });
  }

  /** Calls any method (also one the service does not have) with payload as the message. */
  call(method: string, payload: Buffer, deadlineMs: number): Promise<Answer> {
    const deadline = new Date(Date.now() + deadlineMs);
    const path = SERVICE_PATH + method;
    if (method === 'List') {
      return new Promise((resolve) => {
        const messages: Buffer[] = [];
        const s = this.client.makeServerStreamRequest(path, identity, identity, payload, new Metadata(), { deadline });
        s.on('data', (b: Buffer) => messages.push(b));
        s.on('error', (e: ServiceError) => resolve({ code: e.code, details: e.details, messages }));
        s.on('status', (st: { code: status; details: string }) => {
          if (st.code === status.OK) resolve({ code: st.code, details: st.details, messages });
        });
      });
    }
    return new Promise((resolve) => {
      this.client.makeUnaryRequest(path, identity, identity, payload, new Metadata(), { deadline }, (err, res) => {
        if (err) resolve({ code: err.code, details: err.details, messages: [] });
        else resolve({ code: status.OK, details: '', messages: res === undefined ? [] : [res] });
      });
    });
  }

  close(): void {
    this.client.close();
  }
}

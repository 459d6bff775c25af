// The command line's unary gRPC client (node:http2 only) against a real grpc-js server on a
// unix socket: answers, status codes with their messages, deadlines, and a socket nobody serves.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Metadata, Server, ServerCredentials, status, type sendUnaryData, type ServerUnaryCall, type MethodDefinition, type ServiceDefinition } from '@grpc/grpc-js';
import { ProtoCodec } from '../../src/server/codec.js';
import { GrpcCode } from '../../src/server/grpc-codes.js';
import { ImageService, RuntimeService, schema, type Messages } from '../../src/server/generated/cri.js';
import { GrpcCallError, UnaryClient } from '../../src/server/unary-client.js';
import { CriClient } from '../../src/cli/pull-cri.js';

const codec = new ProtoCodec<Messages>(schema);
const dir = await mkdtemp(join(tmpdir(), 'unary-client-'));
after(() => rm(dir, { recursive: true, force: true }));

function definition(methods: Record<string, { path: string; request: keyof Messages; response: keyof Messages }>): ServiceDefinition {
  const def: Record<string, MethodDefinition<object, object>> = {};
  for (const [name, m] of Object.entries(methods)) {
    def[name] = {
      path: m.path, requestStream: false, responseStream: false,
      requestSerialize: (o: object) => codec.encode(m.request, o), requestDeserialize: (b: Buffer) => codec.decode(m.request, b),
      responseSerialize: (o: object) => codec.encode(m.response, o), responseDeserialize: (b: Buffer) => codec.decode(m.response, b),
    };
  }
  return def as ServiceDefinition;
}

type Handler = (call: ServerUnaryCall<Record<string, unknown>, object>, cb: sendUnaryData<object>) => void;

async function serve(socket: string, runtime: Record<string, Handler>, images: Record<string, Handler>): Promise<Server> {
  const server = new Server();
  server.addService(definition(RuntimeService.methods), runtime);
  server.addService(definition(ImageService.methods), images);
  await new Promise<void>((resolve, reject) => server.bindAsync(`unix://${socket}`, ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())));
  return server;
}

test('the gRPC codes are the protocol\'s, as grpc-js numbers them', () => {
  for (const [name, code] of Object.entries(status)) if (typeof code === 'number') assert.equal(GrpcCode[name as keyof typeof GrpcCode], code, name);
});

test('a CRI client on the small client gets answers and statuses as a grpc-js server sends them', async () => {
  const socket = join(dir, 'cri.sock');
  let pulled = '';
  const server = await serve(socket, {
    Version: (call, cb) => cb(null, { version: String(call.request.version), runtime_name: 'fake', runtime_version: '1', runtime_api_version: 'v1' }),
    Status: (call, cb) => cb(null, { status: { conditions: [{ type: 'RuntimeReady', status: true }] }, info: call.request.verbose ? { config: '{"x":1}' } : {} }),
  }, {
    PullImage: (call, cb) => {
      const image = (call.request.image as { image: string }).image;
      pulled = image;
      if (image === 'missing:1') { cb({ code: status.NOT_FOUND, details: `image "${image}" not found: ünïcode ✓ 100%`, metadata: new Metadata() }); return; }
      if (image === 'slow:1') { setTimeout(() => cb(null, { image_ref: 'late' }), 2000); return; }
      cb(null, { image_ref: 'sha256:' + 'e'.repeat(64) });
    },
    ImageStatus: (_call, cb) => cb(null, { image: null, info: {} }),
  });
  const cri = new CriClient(socket);
  try {
    assert.deepEqual(await cri.version(), { version: 'v1', runtime_name: 'fake', runtime_version: '1', runtime_api_version: 'v1' });
    const st = await cri.status(true);
    assert.equal(st.info.config, '{"x":1}');
    assert.deepEqual(st.status?.conditions, [{ type: 'RuntimeReady', status: true, reason: '', message: '' }]);
    assert.equal(await cri.pullImage('registry:5000/a:1'), 'sha256:' + 'e'.repeat(64));
    assert.equal(pulled, 'registry:5000/a:1');
    assert.equal(await cri.imageStatus('a:1'), undefined);
    await assert.rejects(cri.pullImage('missing:1'), (err: unknown) =>
      err instanceof GrpcCallError && err.code === GrpcCode.NOT_FOUND && err.details === 'image "missing:1" not found: ünïcode ✓ 100%');
    await assert.rejects(cri.pullImage('slow:1', 200), (err: unknown) => err instanceof GrpcCallError && err.code === GrpcCode.DEADLINE_EXCEEDED);
    // The connection is still good after a cancelled call.
    assert.equal((await cri.version()).runtime_name, 'fake');
  } finally {
    cri.close();
    server.forceShutdown();
  }
});

test('a method the server does not have is UNIMPLEMENTED', async () => {
  const socket = join(dir, 'partial.sock');
  const server = await serve(socket, {}, {});
  const client = new UnaryClient(socket);
  try {
    await assert.rejects(client.call('/runtime.v1.RuntimeService/Version', Buffer.alloc(0), 5000),
      (err: unknown) => err instanceof GrpcCallError && err.code === GrpcCode.UNIMPLEMENTED);
  } finally {
    client.close();
    server.forceShutdown();
  }
});

test('a socket nobody serves, or no socket at all, is UNAVAILABLE with the errno', async () => {
  const dead = join(dir, 'dead.sock');
  const listener = createNetServer();
  await new Promise<void>((resolve) => listener.listen(dead, resolve));
  await new Promise<void>((resolve) => listener.close(() => resolve()));
  await writeFile(join(dir, 'plain-file'), '');
  for (const [socket, errno] of [[dead, /ENOENT|ECONNREFUSED/], [join(dir, 'plain-file'), /ECONNREFUSED/], [join(dir, 'none.sock'), /ENOENT/]] as const) {
    const client = new UnaryClient(socket);
    try {
      await assert.rejects(client.call('/runtime.v1.RuntimeService/Version', Buffer.alloc(0), 5000),
        (err: unknown) => err instanceof GrpcCallError && err.code === GrpcCode.UNAVAILABLE && errno.test(err.details), socket);
    } finally {
      client.close();
    }
  }
});

test('a server that answers something other than gRPC is a clear error, not a hang', async () => {
  const { createServer } = await import('node:http2');
  const socket = join(dir, 'h2.sock');
  const server = createServer((_req, res) => { res.writeHead(404); res.end('no'); });
  await new Promise<void>((resolve) => server.listen(socket, resolve));
  const client = new UnaryClient(socket);
  try {
    await assert.rejects(client.call('/runtime.v1.RuntimeService/Version', Buffer.alloc(0), 5000),
      (err: unknown) => err instanceof GrpcCallError && err.code === GrpcCode.UNAVAILABLE && /HTTP status 404/.test(err.details));
  } finally {
    client.close();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
});

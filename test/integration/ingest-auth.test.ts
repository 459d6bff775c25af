// Token auth against a real docker-registry configured with `auth: token`, and a small token
// server here that signs JWTs (RS256, certificate in x5c) the way a real one does. The image is
// pushed through an open registry; a second registry serves the same storage behind token auth.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID, sign, X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { readFile, writeFile } from 'node:fs/promises';
import { execOk, type ExecResult } from '../../src/sys/exec.js';
import { LayerStore } from '../../src/layers/store.js';
import { Scope } from '../helpers/scope.js';
import { runCli } from '../helpers/cli.js';
import { startRegistry, type Registry } from '../helpers/registry.js';
import { buildImage, type BuiltImage } from '../helpers/image.js';
import { ManagedProcess } from '../helpers/process.js';
import { freePort } from '../helpers/ports.js';
import { waitUntil } from '../helpers/wait.js';

const SERVICE = 'test-registry';
const ISSUER = 'test-issuer';

interface TokenRequest { scope: string[]; service: string | null; authorization: string | undefined }

let scope: Scope;
let open: Registry;
let image: BuiltImage;
let tokenServer: Server;
let tokenUrl: string;
let guarded: { host: string; process: ManagedProcess };
const seen: TokenRequest[] = [];
/** When set, the token server wants exactly these Basic credentials. */
let requiredBasic: string | undefined;
/** When true, tokens grant nothing. */
let grantNothing = false;

function runIngest(args: string[], env: NodeJS.ProcessEnv = {}): Promise<ExecResult> {
  return runCli(['ingest', ...args], { env: { ...process.env, ...env }, timeoutMs: 60_000 });
}

const b64url = (b: Buffer | string): string => Buffer.from(b).toString('base64url');

function jwt(key: KeyObject, certDer: Buffer, access: unknown[]): string {
  const now = Math.floor(Date.now() / 1000);
  const header = { typ: 'JWT', alg: 'RS256', x5c: [certDer.toString('base64')] };
  const claims = { iss: ISSUER, sub: '', aud: SERVICE, exp: now + 300, nbf: now - 10, iat: now, jti: randomUUID(), access };
  const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
  return `${input}.${b64url(sign('sha256', Buffer.from(input), key))}`;
}

before(async () => {
  scope = await Scope.create('ingest-auth');
  open = await startRegistry(scope);
  image = await buildImage(scope, {
    registry: open,
    name: 'test/auth',
    tag: 'v1',
    layers: [async (root) => { await writeFile(`${root}/hello`, 'hello\n'); }],
  });

  const keyFile = scope.path('token.key');
  const certFile = scope.path('token.crt');
  await execOk('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '1', '-subj', '/CN=test-token-issuer']);
  const key = createPrivateKey(await readFile(keyFile));
  const certDer = new X509Certificate(await readFile(certFile)).raw;

  tokenServer = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    seen.push({ scope: url.searchParams.getAll('scope'), service: url.searchParams.get('service'), authorization: req.headers.authorization });
    if (requiredBasic !== undefined && req.headers.authorization !== requiredBasic) {
      res.writeHead(401, { 'Content-Type': 'application/json' }).end('{"details":"login required"}');
      return;
    }
    const access = grantNothing ? [] : url.searchParams.getAll('scope').map((s) => {
      const [type, name, actions] = s.split(':');
      return { type, name, actions: (actions ?? '').split(',') };
    });
    const token = jwt(key, certDer, access);
    res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ token, access_token: token, expires_in: 300 }));
  });
  await new Promise<void>((resolve) => tokenServer.listen(0, '127.0.0.1', resolve));
  const addr = tokenServer.address();
  tokenUrl = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}/token`;

  const port = await freePort();
  const config = scope.path('guarded.yml');
  await writeFile(config, JSON.stringify({
    version: 0.1,
    log: { level: 'warn', accesslog: { disabled: true } },
    storage: { filesystem: { rootdirectory: scope.path('registry', 'storage') } },
    http: { addr: `127.0.0.1:${port}` },
    auth: { token: { realm: tokenUrl, service: SERVICE, issuer: ISSUER, rootcertbundle: certFile } },
  }));
  const proc = await ManagedProcess.start({ name: 'guarded-registry', cmd: 'docker-registry', args: ['serve', config], logFile: scope.path('guarded.log') });
  scope.defer('stop guarded registry', async () => { await proc.stop(5_000); });
  // /v2/ answers 401 with a challenge once the registry is up.
  await waitUntil(async () => (await fetch(`http://127.0.0.1:${port}/v2/`).then((r) => r.status, () => 0)) === 401,
    { what: 'the token-auth registry', process: proc, timeoutMs: 15_000 });
  guarded = { host: `127.0.0.1:${port}`, process: proc };
});

after(async () => {
  await new Promise<void>((resolve) => tokenServer.close(() => resolve()));
  await scope.teardown();
});

test('the registry really requires a token', async () => {
  const res = await fetch(`http://${guarded.host}/v2/test/auth/manifests/v1`);
  assert.equal(res.status, 401);
  assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer realm=".*\/token",service="test-registry",scope="repository:test\/auth:pull"/);
});

test('an anonymous token is fetched on the 401 challenge and used for manifest and blobs', async () => {
  seen.length = 0;
  const store = new LayerStore(scope.path('store-anon'));
  const r = await runIngest(['--store', store.root, '--plain-http', `${guarded.host}/test/auth:v1`]);
  assert.equal(r.code, 0, r.stderr + guarded.process.logTail());
  for (const l of image.layers) assert.equal(await store.has(l.digest), true);
  assert.ok(seen.length >= 1);
  // One token per repository: the manifest's token also serves the blobs.
  assert.equal(seen.length, 1, JSON.stringify(seen));
  assert.deepEqual(seen[0], { scope: ['repository:test/auth:pull'], service: SERVICE, authorization: undefined });
});

test('credentials from the environment go to the token server as Basic auth', async () => {
  seen.length = 0;
  requiredBasic = `Basic ${Buffer.from('alice:s3cret').toString('base64')}`;
  try {
    const refused = await runIngest(['--store', scope.path('store-refused'), '--plain-http', `${guarded.host}/test/auth:v1`]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /token server http:\/\/127\.0\.0\.1:\d+ answered 401 Unauthorized to an anonymous request \(set CVMFS_SNAPSHOTTER_REGISTRY_USER/);

    const store = new LayerStore(scope.path('store-basic'));
    const r = await runIngest(['--store', store.root, '--plain-http', `${guarded.host}/test/auth:v1`],
      { CVMFS_SNAPSHOTTER_REGISTRY_USER: 'alice', CVMFS_SNAPSHOTTER_REGISTRY_PASSWORD: 's3cret' });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(seen.at(-1)?.authorization, requiredBasic);
    for (const l of image.layers) assert.equal(await store.has(l.digest), true);
  } finally {
    requiredBasic = undefined;
  }
});

test('a token without access ends in a clear refusal, not a loop', async () => {
  seen.length = 0;
  grantNothing = true;
  try {
    const r = await runIngest(['--store', scope.path('store-denied'), '--plain-http', `${guarded.host}/test/auth:v1`]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /refused access to manifest test\/auth:v1 \(401\)/);
    assert.equal(seen.length, 1, 'one token request, one retry, then stop');
  } finally {
    grantNothing = false;
  }
});

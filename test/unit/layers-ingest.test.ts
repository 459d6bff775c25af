// The pure parts of ingest: image references, platforms, auth challenges, manifests, and the
// metadata path of an image.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isKind } from '../../src/errors.js';
import { LayerStore } from '../../src/layers/store.js';
import { parseImageReference, formatImageReference, parsePlatform, parseChallenge, imageMetadataDir } from '../../src/layers/ingest/index.js';
import { selectManifest } from '../../src/layers/ingest/platform.js';
import { parseManifest, MEDIA, type Descriptor } from '../../src/layers/ingest/manifest.js';
import type { LayerDigest } from '../../src/layers/digest.js';

const D = (c: string): LayerDigest => `sha256:${c.repeat(64)}` as LayerDigest;

test('image references are normalised like docker does', () => {
  const cases: Array<[string, string, string, string | undefined]> = [
    ['busybox', 'docker.io', 'library/busybox', 'latest'],
    ['docker.io/busybox:1.36', 'docker.io', 'library/busybox', '1.36'],
    ['index.docker.io/library/busybox', 'docker.io', 'library/busybox', 'latest'],
    ['user/app:v1', 'docker.io', 'user/app', 'v1'],
    ['127.0.0.1:5000/test/img:v1', '127.0.0.1:5000', 'test/img', 'v1'],
    ['localhost/app', 'localhost', 'app', 'latest'],
    ['ghcr.io/a/b/c:tag-1.2_x', 'ghcr.io', 'a/b/c', 'tag-1.2_x'],
    ['registry.cern.ch:443/x__y/z-z', 'registry.cern.ch:443', 'x__y/z-z', 'latest'],
  ];
  for (const [input, registry, repository, tag] of cases) {
    const r = parseImageReference(input);
    assert.equal(r.registry, registry, input);
    assert.equal(r.repository, repository, input);
    assert.equal(r.tag, tag, input);
  }
  assert.equal(parseImageReference('busybox').apiHost, 'registry-1.docker.io');
  assert.equal(parseImageReference('127.0.0.1:5000/x').apiHost, '127.0.0.1:5000');
  const pinned = parseImageReference(`127.0.0.1:5000/x@${D('a')}`);
  assert.equal(pinned.digest, D('a'));
  assert.equal(pinned.tag, undefined);
  assert.equal(formatImageReference(parseImageReference(`x:1@${D('b')}`)), `docker.io/library/x:1@${D('b')}`);
});

test('references that could escape a directory or are malformed are refused', () => {
  for (const bad of [
    '', '../etc', 'a/../b', 'a/./b', 'host:5000/../../x', 'a//b', 'a/b/', '/abs', 'Host:5000/UPPER', 'x:', 'x:..', 'x:a/b',
    `x@sha256:../../etc`, 'x@sha256:abc', 'x:-tag', 'a/.hidden', 'a/b c', 'a\u0000b', `a/${'x'.repeat(260)}`,
  ]) {
    assert.throws(() => parseImageReference(bad), (e: unknown) => isKind(e, 'InvalidArgument'), JSON.stringify(bad));
  }
});

test('platforms parse as os/arch[/variant]', () => {
  assert.deepEqual(parsePlatform('linux/amd64'), { os: 'linux', architecture: 'amd64' });
  assert.deepEqual(parsePlatform('linux/arm/v7'), { os: 'linux', architecture: 'arm', variant: 'v7' });
  for (const bad of ['linux', 'linux/', 'a/b/c/d', 'Linux/AMD64', '../x']) {
    assert.throws(() => parsePlatform(bad), /expected os\/arch\[\/variant\]/, bad);
  }
});

test('an index resolves to the requested platform, arm64 with or without v8', () => {
  const m = (digest: LayerDigest, os: string, architecture: string, variant?: string): Descriptor =>
    ({ mediaType: MEDIA.ociManifest, digest, size: 1, platform: variant ? { os, architecture, variant } : { os, architecture } });
  const list = [m(D('1'), 'linux', 'arm', 'v7'), m(D('2'), 'linux', 'arm64', 'v8'), m(D('3'), 'linux', 'amd64'), m(D('4'), 'unknown', 'unknown')];
  assert.equal(selectManifest(list, { os: 'linux', architecture: 'amd64' }).digest, D('3'));
  assert.equal(selectManifest(list, { os: 'linux', architecture: 'arm64' }).digest, D('2'));
  assert.equal(selectManifest(list, { os: 'linux', architecture: 'arm64', variant: 'v8' }).digest, D('2'));
  assert.equal(selectManifest(list, { os: 'linux', architecture: 'arm', variant: 'v7' }).digest, D('1'));
  assert.throws(() => selectManifest(list, { os: 'linux', architecture: 's390x' }),
    (e: Error) => isKind(e, 'NotFound') && /offers: linux\/arm\/v7, linux\/arm64\/v8, linux\/amd64, unknown\/unknown/.test(e.message));
});

test('WWW-Authenticate challenges parse, quoted commas and escapes included', () => {
  assert.deepEqual(parseChallenge('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull"'), {
    scheme: 'bearer',
    params: { realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:library/busybox:pull' },
  });
  assert.deepEqual(parseChallenge('Bearer realm="http://x/t?a=1,b=2", error="invalid_token" , scope="repository:a:pull,push"'), {
    scheme: 'bearer',
    params: { realm: 'http://x/t?a=1,b=2', error: 'invalid_token', scope: 'repository:a:pull,push' },
  });
  assert.deepEqual(parseChallenge('Basic realm="Registry \\"R\\""'), { scheme: 'basic', params: { realm: 'Registry "R"' } });
  assert.deepEqual(parseChallenge('bearer realm=http://plain/token,service=svc'), { scheme: 'bearer', params: { realm: 'http://plain/token', service: 'svc' } });
  assert.equal(parseChallenge(''), undefined);
});

test('manifests: OCI and Docker schema 2, indexes, schema 1 and foreign layer types', () => {
  const layer = { mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip', digest: D('c'), size: 5 };
  const docker = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MEDIA.dockerManifest, config: { mediaType: 'x', digest: D('d'), size: 2 }, layers: [layer] }));
  const parsed = parseManifest(docker, `${MEDIA.dockerManifest}; charset=utf-8`);
  assert.equal(parsed.kind, 'manifest');
  assert.equal(parsed.kind === 'manifest' && parsed.layers[0]?.digest, D('c'));
  // No Content-Type and no mediaType: the shape decides.
  assert.equal(parseManifest(Buffer.from(JSON.stringify({ schemaVersion: 2, manifests: [] })), null).kind, 'index');
  assert.equal(parseManifest(Buffer.from(JSON.stringify({ schemaVersion: 2, config: layer, layers: [] })), 'application/json').kind, 'manifest');

  assert.throws(() => parseManifest(Buffer.from(JSON.stringify({ schemaVersion: 1, fsLayers: [] })), MEDIA.dockerSchema1Signed), /schema 1/);
  assert.throws(() => parseManifest(Buffer.from('{'), null), /not valid JSON/);
  const badDigest = { schemaVersion: 2, mediaType: MEDIA.ociManifest, config: layer, layers: [{ ...layer, digest: 'sha256:../../x' }] };
  assert.throws(() => parseManifest(Buffer.from(JSON.stringify(badDigest)), null), /layers\[0\] digest/);
  const badSize = { schemaVersion: 2, mediaType: MEDIA.ociManifest, config: layer, layers: [{ ...layer, size: -1 }] };
  assert.throws(() => parseManifest(Buffer.from(JSON.stringify(badSize)), null), /non-negative integer/);
  const encrypted = { schemaVersion: 2, mediaType: MEDIA.ociManifest, config: layer, layers: [{ ...layer, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip+encrypted' }] };
  assert.throws(() => parseManifest(Buffer.from(JSON.stringify(encrypted)), null), /not an image layer this tool can unpack/);
});

test('the manifest record lives at .metadata/<registry>/<repository>:<tag>', () => {
  const s = new LayerStore('/store');
  assert.equal(imageMetadataDir(s, parseImageReference('127.0.0.1:5000/test/img:v1')), '/store/.metadata/127.0.0.1:5000/test/img:v1');
  assert.equal(imageMetadataDir(s, parseImageReference('busybox')), '/store/.metadata/docker.io/library/busybox:latest');
  assert.equal(imageMetadataDir(s, parseImageReference(`x@${D('a')}`)), `/store/.metadata/docker.io/library/x@${D('a')}`);
  // Built by hand, bypassing the parser: still refused.
  for (const ref of [
    { registry: '..', apiHost: 'x', repository: 'a', tag: 't' },
    { registry: 'r', apiHost: 'x', repository: '../../etc', tag: 't' },
    { registry: 'r', apiHost: 'x', repository: 'a/./b', tag: 't' },
    { registry: 'r', apiHost: 'x', repository: 'a', tag: 't/../../x' },
  ]) {
    assert.throws(() => imageMetadataDir(s, ref), (e: unknown) => isKind(e, 'InvalidArgument'), JSON.stringify(ref));
  }
});

// The generated codec against @grpc/proto-loader, which parsed proto/ at run time before: both
// must read each other's bytes and give the same objects, so containerd sees no change.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { loadSync, type MessageTypeDefinition } from '@grpc/proto-loader';
import { ProtoCodec, ProtoDecodeError } from '../../src/server/codec.js';
import * as cri from '../../src/server/generated/cri.js';
import * as snap from '../../src/server/generated/snapshots.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const PROTO = join(ROOT, 'proto');
const OPTIONS = { keepCase: true, longs: Number, enums: String, defaults: true, arrays: true, objects: true };
const snapDefs = loadSync('containerd/snapshots.proto', { ...OPTIONS, includeDirs: [join(PROTO, 'containerd'), PROTO] });
const criDefs = loadSync('cri/api.proto', { ...OPTIONS, includeDirs: [PROTO] });
const snapCodec = new ProtoCodec<snap.Messages>(snap.schema);
const criCodec = new ProtoCodec<cri.Messages>(cri.schema);

type Reference = { serialize: (o: object) => Buffer; deserialize: (b: Buffer) => unknown };
function reference(defs: ReturnType<typeof loadSync>, service: string, method: string, side: 'request' | 'response'): Reference {
  const m = (defs[service] as Record<string, { requestSerialize: (o: object) => Buffer; requestDeserialize: (b: Buffer) => unknown; responseSerialize: (o: object) => Buffer; responseDeserialize: (b: Buffer) => unknown }>)[method];
  assert.ok(m, `${service}.${method}`);
  return side === 'request'
    ? { serialize: m.requestSerialize, deserialize: m.requestDeserialize }
    : { serialize: m.responseSerialize, deserialize: m.responseDeserialize };
}

const SNAPSHOTS = 'containerd.services.snapshots.v1.Snapshots';

test('Snapshots messages: the generated codec and proto-loader read each other\'s bytes the same way', () => {
  const info = {
    name: 'k8s.io/3/sha256:ab', parent: 'p', kind: 'COMMITTED' as const,
    created_at: { seconds: 1_700_000_000, nanos: 123_000 }, updated_at: { seconds: 1_700_000_001, nanos: 0 },
    labels: { 'containerd.io/snapshot.ref': 'sha256:' + 'a'.repeat(64), 'fz/é': 'ü ✓' },
  };
  const cases: Array<[string, 'request' | 'response', keyof snap.Messages, object]> = [
    ['Prepare', 'request', 'containerd.services.snapshots.v1.PrepareSnapshotRequest', { snapshotter: 'cvmfs-snapshotter', key: 'k', parent: '', labels: { a: 'b', '': 'empty key' } }],
    ['Prepare', 'response', 'containerd.services.snapshots.v1.PrepareSnapshotResponse', { mounts: [{ type: 'overlay', source: 'overlay', target: '', options: ['lowerdir=/a:/b', 'upperdir=/u'] }, { type: 'bind', source: '/x', target: '', options: [] }] }],
    ['Stat', 'response', 'containerd.services.snapshots.v1.StatSnapshotResponse', { info }],
    ['Update', 'request', 'containerd.services.snapshots.v1.UpdateSnapshotRequest', { snapshotter: 's', info: { ...info, kind: 'ACTIVE' }, update_mask: { paths: ['labels', 'labels.x'] } }],
    ['Update', 'request', 'containerd.services.snapshots.v1.UpdateSnapshotRequest', { snapshotter: 's', info: null, update_mask: null }],
    ['List', 'response', 'containerd.services.snapshots.v1.ListSnapshotsResponse', { info: [info, { ...info, name: 'two', kind: 'VIEW', labels: {} }] }],
    ['List', 'request', 'containerd.services.snapshots.v1.ListSnapshotsRequest', { snapshotter: 's', filters: ['name==x', 'labels."a"==b'] }],
    ['Usage', 'response', 'containerd.services.snapshots.v1.UsageResponse', { size: 2 ** 52 + 3, inodes: 0 }],
    ['Usage', 'response', 'containerd.services.snapshots.v1.UsageResponse', { size: -1, inodes: 7 }],
    ['Commit', 'response', 'google.protobuf.Empty', {}],
  ];
  for (const [method, side, type, msg] of cases) {
    const ref = reference(snapDefs, SNAPSHOTS, method, side);
    // (The bytes may differ: protobufjs also writes fields set to their default value.)
    const expected = ref.deserialize(ref.serialize(msg));
    const ours = snapCodec.encode(type, msg);
    assert.deepEqual(ref.deserialize(ours), expected, `${type}: proto-loader reads our bytes as the message`);
    assert.deepEqual(snapCodec.decode(type, ref.serialize(msg)), expected, `${type}: we read proto-loader's bytes as it does`);
    assert.deepEqual(snapCodec.decode(type, ours), expected, `${type}: we read our own bytes back`);
  }
});

test('CRI messages: the generated codec and proto-loader read each other\'s bytes the same way', () => {
  const cases: Array<[string, string, 'request' | 'response', keyof cri.Messages, object]> = [
    ['runtime.v1.RuntimeService', 'Version', 'request', 'runtime.v1.VersionRequest', { version: 'v1' }],
    ['runtime.v1.RuntimeService', 'Version', 'response', 'runtime.v1.VersionResponse', { version: '0.1.0', runtime_name: 'containerd', runtime_version: 'v1.7', runtime_api_version: 'v1' }],
    ['runtime.v1.RuntimeService', 'Status', 'response', 'runtime.v1.StatusResponse', { status: { conditions: [{ type: 'RuntimeReady', status: true, reason: '', message: '' }, { type: 'NetworkReady', status: false, reason: 'NetworkPluginNotReady', message: 'cni' }] }, info: { config: '{"containerd":{"snapshotter":"cvmfs-snapshotter"}}' } }],
    ['runtime.v1.ImageService', 'PullImage', 'request', 'runtime.v1.PullImageRequest', { image: { image: '127.0.0.1:5000/x:1', annotations: {} }, auth: null, sandbox_config: null }],
    ['runtime.v1.ImageService', 'PullImage', 'response', 'runtime.v1.PullImageResponse', { image_ref: 'sha256:' + 'b'.repeat(64) }],
    ['runtime.v1.ImageService', 'ImageStatus', 'response', 'runtime.v1.ImageStatusResponse', { image: { id: 'sha256:c', repo_tags: ['a:1'], repo_digests: ['a@sha256:d'], size: 123_456_789_012, uid: { value: -5 }, username: '', spec: { image: 'a:1', annotations: { k: 'v' } }, pinned: true }, info: {} }],
    ['runtime.v1.ImageService', 'ImageStatus', 'response', 'runtime.v1.ImageStatusResponse', { image: null, info: {} }],
  ];
  for (const [service, method, side, type, msg] of cases) {
    const ref = reference(criDefs, service, method, side);
    // (The bytes may differ: protobufjs also writes fields set to their default value.)
    const expected = ref.deserialize(ref.serialize(msg));
    const ours = criCodec.encode(type, msg);
    assert.deepEqual(ref.deserialize(ours), expected, `${type}: proto-loader reads our bytes as the message`);
    assert.deepEqual(criCodec.decode(type, ref.serialize(msg)), expected, `${type}: we read proto-loader's bytes as it does`);
    assert.deepEqual(criCodec.decode(type, ours), expected, `${type}: we read our own bytes back`);
  }
});

test('fields the schema does not know are skipped, and an enum value it does not name stays a number', () => {
  const known = snapCodec.encode('containerd.services.snapshots.v1.StatSnapshotRequest', { snapshotter: 's', key: 'k' });
  // field 9 varint 300, field 10 fixed64, field 11 bytes "zz", field 12 fixed32
  const unknown = Buffer.from([0x48, 0xac, 0x02, 0x51, 1, 2, 3, 4, 5, 6, 7, 8, 0x5a, 2, 0x7a, 0x7a, 0x65, 1, 2, 3, 4]);
  assert.deepEqual(snapCodec.decode('containerd.services.snapshots.v1.StatSnapshotRequest', Buffer.concat([known, unknown])), { snapshotter: 's', key: 'k' });
  const info = snapCodec.decode('containerd.services.snapshots.v1.Info', Buffer.from([0x18, 0x07]));
  assert.equal(info.kind, 7);
  assert.equal(info.created_at, null);
  assert.deepEqual(info.labels, {});
});

test('bytes that are not a message of the type are refused with the reason', () => {
  const type = 'containerd.services.snapshots.v1.PrepareSnapshotRequest';
  const bad: Array<[string, Buffer, RegExp]> = [
    ['a varint cut short', Buffer.from([0x48, 0xff]), /varint runs past the end/],
    ['a string longer than the message', Buffer.from([0x12, 0x10, 0x61]), /runs past the end/],
    ['wire type 7', Buffer.from([0x0f]), /wire type 7/],
    ['field number 0', Buffer.from([0x00, 0x01]), /field number 0/],
    ['a string field sent as a varint', Buffer.from([0x10, 0x01]), /PrepareSnapshotRequest\.key has wire type 0, expected 2/],
    ['a map entry longer than the message', Buffer.from([0x22, 0x05, 0x0a, 0x01]), /map entry of 5 bytes/],
    ['a varint of 11 bytes', Buffer.from([0x48, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]), /longer than 10 bytes/],
  ];
  for (const [what, bytes, reason] of bad) {
    assert.throws(() => snapCodec.decode(type, bytes), (err: unknown) => err instanceof ProtoDecodeError && reason.test(err.message), what);
  }
});

test('the generated files are what proto/ gives today (npm run gen:proto rewrites them)', () => {
  // Exits 1 and names the stale file when a .proto changed without regenerating.
  execFileSync(process.execPath, [join(ROOT, 'scripts', 'gen-proto.mjs'), '--check'], { stdio: 'pipe' });
});

test('every method of the generated services names messages the schema has', () => {
  for (const [codec, services] of [[snapCodec, [snap.Snapshots]], [criCodec, [cri.RuntimeService, cri.ImageService]]] as const) {
    for (const s of services) {
      for (const m of Object.values(s.methods)) {
        assert.ok(codec.has(m.request), m.request);
        assert.ok(codec.has(m.response), m.response);
        assert.ok(m.path.startsWith(`/${s.name}/`), m.path);
      }
    }
  }
  // A sample of what the proto files declare, checked against proto-loader's own reading.
  assert.equal(((snapDefs['containerd.services.snapshots.v1.Info'] as MessageTypeDefinition<object, object>).type as { field: unknown[] }).field.length, snap.schema.messages['containerd.services.snapshots.v1.Info'].length);
});

// The remote-layer decision is data: StoreLayers answers a reason code (and a detail for people),
// on a real store directory, and the metrics count that code as it is, whatever the detail says.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LayerStore } from '../../src/layers/store.js';
import { FuseLayerMounter } from '../../src/fuse/index.js';
import { PooledLayerStore, StoreLayers, StoreUnanswered, type LayerQueries } from '../../src/remote/index.js';
import { LAYER_DIGEST_LABEL, TARGET_REF_LABEL } from '../../src/snapshotter/labels.js';
import type { DecisionCode, RemoteDecision, RemoteLayers } from '../../src/snapshotter/remote.js';
import type { Labels } from '../../src/snapshotter/types.js';
import { CountingRemoteLayers, type DecisionReason } from '../../src/metrics/index.js';
import { silentLogger } from '../../src/log.js';

const digestOf = (s: string) => `sha256:${createHash('sha256').update(s).digest('hex')}`;
const present = digestOf('present');
const absent = digestOf('absent');
const linked = digestOf('linked');

let dir: string;
let store: LayerStore;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'metrics-decisions-'));
  store = new LayerStore(dir);
  await mkdir(store.layerPath(present), { recursive: true });
  // A layer reached through a symlink is not in the store: the link could point anywhere.
  await mkdir(join(store.layerDir(linked), '..'), { recursive: true });
  await symlink(join(store.layerDir(present)), store.layerDir(linked));
});
after(async () => { await rm(dir, { recursive: true, force: true }); });

const pooled = (s: LayerStore): LayerQueries => new PooledLayerStore(s, { deadlineMs: 5000, maxInFlight: 8 });

/** The store's answers as a CernVM-FS mount in trouble gives them. */
function failing(err: Error): LayerQueries {
  return { layerPath: (d) => store.layerPath(d), has: () => Promise.reject(err), usage: () => Promise.reject(err) };
}

const layers = (q: LayerQueries) => new StoreLayers(q, new FuseLayerMounter({ log: silentLogger() }), silentLogger());
const withTarget = (digest: string): Labels => ({ [LAYER_DIGEST_LABEL]: digest, [TARGET_REF_LABEL]: 'sha256:chain' });

const cases: Array<[string, () => LayerQueries, Labels, DecisionCode, RegExp]> = [
  ['a layer in the store', () => pooled(store), withTarget(present), 'in_store', /^$/],
  ['a layer not in the store', () => pooled(store), withTarget(absent), 'not_in_store', /not in the layer store/],
  ['a layer behind a symlink', () => pooled(store), withTarget(linked), 'not_in_store', /not in the layer store/],
  ['no layer digest label', () => pooled(store), { [TARGET_REF_LABEL]: 'sha256:chain' }, 'no_digest_label', /no containerd.io\/snapshot\/cri.layer-digest label/],
  ['a digest that is not sha256 hex', () => pooled(store), withTarget('sha256:XYZ'), 'invalid_digest', /"sha256:XYZ" is not sha256/],
  ['an empty digest', () => pooled(store), withTarget(''), 'invalid_digest', /is not sha256/],
  ['no target label', () => pooled(store), { [LAYER_DIGEST_LABEL]: present }, 'no_target', /no containerd.io\/snapshot.ref label/],
  ['an empty target label', () => pooled(store), { [LAYER_DIGEST_LABEL]: present, [TARGET_REF_LABEL]: '' }, 'no_target', /no containerd.io\/snapshot.ref label/],
  ['a store that fails', () => failing(Object.assign(new Error('EIO looking up x'), { code: 'EIO' })), withTarget(present), 'store_error', /the layer store failed: EIO/],
  ['a store that does not answer in time', () => failing(new StoreUnanswered('timeout', 'the layer store did not answer within 5 ms')), withTarget(present), 'store_timeout', /did not answer within 5 ms/],
  ['a store with too many calls unanswered', () => failing(new StoreUnanswered('busy', '8 calls into the layer store are still unanswered')), withTarget(present), 'store_busy', /still unanswered/],
];

for (const [what, makeStore, labels, code, detail] of cases) {
  test(`the decision for ${what} has code ${code}`, async () => {
    const decision = await layers(makeStore()).decide(labels);
    assert.equal(decision.code, code, JSON.stringify(decision));
    assert.equal(decision.remote, code === 'in_store', JSON.stringify(decision));
    if (!decision.remote) assert.match(decision.detail, detail);
  });
}

test('the counting decorator counts the code it is given, not the wording of the detail, and returns the decision unchanged', async () => {
  const seen: Array<[boolean, DecisionReason]> = [];
  const answers: RemoteDecision[] = [
    { remote: true, code: 'in_store', digest: present, target: 't' },
    { remote: false, code: 'store_timeout', digest: present, detail: 'not in the layer store (wording that once meant not_in_store)' },
    { remote: false, code: 'not_in_store', digest: absent, detail: 'any words at all' },
  ];
  let i = 0;
  const inner: RemoteLayers = Object.assign(Object.create(layers(pooled(store))) as RemoteLayers, {
    decide: () => Promise.resolve(answers[i++] as RemoteDecision),
  });
  const counting: RemoteLayers = new CountingRemoteLayers(inner, (remote, reason) => seen.push([remote, reason]));
  for (const want of answers) assert.deepEqual(await counting.decide(withTarget(present)), want);
  assert.deepEqual(seen, [[true, 'in_store'], [false, 'store_timeout'], [false, 'not_in_store']]);
  assert.deepEqual(counting.mounted(), []);
  assert.equal((await counting.usage(present)).inodes, 1);
});

// The bounded reason label of the layer-decision counter, checked against the real decisions
// of StoreLayers on a real store directory: if StoreLayers' wording changes, this fails.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LayerStore } from '../../src/layers/store.js';
import { FuseLayerMounter } from '../../src/fuse/index.js';
import { StoreLayers } from '../../src/snapshotter/store-layers.js';
import { LAYER_DIGEST_LABEL, TARGET_REF_LABEL } from '../../src/snapshotter/labels.js';
import type { RemoteDecision, RemoteLayers } from '../../src/snapshotter/remote.js';
import type { Labels } from '../../src/snapshotter/types.js';
import { CountingRemoteLayers, decisionReason, type DecisionReason } from '../../src/metrics/index.js';
import { silentLogger } from '../../src/log.js';

const digestOf = (s: string) => `sha256:${createHash('sha256').update(s).digest('hex')}`;
const present = digestOf('present');
const absent = digestOf('absent');

let dir: string;
let store: LayerStore;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'metrics-decisions-'));
  store = new LayerStore(dir);
  await mkdir(store.layerPath(present), { recursive: true });
});
after(async () => { await rm(dir, { recursive: true, force: true }); });

/** A store whose lookups fail as a broken CernVM-FS mount does (EIO). */
class BrokenStore extends LayerStore {
  override async has(): Promise<boolean> {
    throw Object.assign(new Error('EIO: i/o error, lstat'), { code: 'EIO' });
  }
}

const layers = (s: LayerStore) => new StoreLayers(s, new FuseLayerMounter({ log: silentLogger() }), silentLogger());
const withTarget = (digest: string): Labels => ({ [LAYER_DIGEST_LABEL]: digest, [TARGET_REF_LABEL]: 'sha256:chain' });

const cases: Array<[string, () => LayerStore, Labels, DecisionReason]> = [
  ['a layer in the store', () => store, withTarget(present), 'in_store'],
  ['a layer not in the store', () => store, withTarget(absent), 'not_in_store'],
  ['no layer digest label', () => store, { [TARGET_REF_LABEL]: 'sha256:chain' }, 'no_digest_label'],
  ['a digest that is not sha256 hex', () => store, withTarget('sha256:XYZ'), 'invalid_digest'],
  ['an empty digest', () => store, withTarget(''), 'invalid_digest'],
  ['no target label', () => store, { [LAYER_DIGEST_LABEL]: present }, 'no_target'],
  ['an empty target label', () => store, { [LAYER_DIGEST_LABEL]: present, [TARGET_REF_LABEL]: '' }, 'no_target'],
  ['a store that fails', () => new BrokenStore(dir), withTarget(present), 'store_error'],
];

for (const [what, makeStore, labels, reason] of cases) {
  test(`the reason for ${what} is ${reason}`, async () => {
    const decision = await layers(makeStore()).decide(labels);
    assert.equal(decision.remote, reason === 'in_store', JSON.stringify(decision));
    assert.equal(decisionReason(labels, decision), reason, `decision ${JSON.stringify(decision)}`);
  });
}

test('the counting decorator reports each decision once and returns it unchanged', async () => {
  const seen: Array<[boolean, DecisionReason]> = [];
  const inner = layers(store);
  const counting: RemoteLayers = new CountingRemoteLayers(inner, (remote, reason) => seen.push([remote, reason]));
  const a: RemoteDecision = await counting.decide(withTarget(present));
  const b: RemoteDecision = await counting.decide(withTarget(absent));
  assert.deepEqual(a, await inner.decide(withTarget(present)));
  assert.deepEqual(b, await inner.decide(withTarget(absent)));
  assert.deepEqual(seen, [[true, 'in_store'], [false, 'not_in_store']]);
  assert.deepEqual(counting.mounted(), []);
  assert.equal((await counting.usage(present)).inodes, 1);
});

// The census file is a cache read from the daemon's root: only what this module writes, and only
// layers of the configured store, is taken from it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CensusFile, MAX_REMEMBERED, parseCensusFile } from '../../src/fuse/server/census-file.js';
import { knownXattrFree } from '../../src/fuse/xattr-census.js';
import { silentLogger } from '../../src/log.js';

const STORE = '/cvmfs/unpacked.cern.ch';
const layer = (n: number): string => `${STORE}/.layers/${String(n % 100).padStart(2, '0')}/${String(n).padStart(64, '0')}/layerfs`;
const doc = (verdicts: unknown, format: unknown = 1): string => JSON.stringify({ format, verdicts });

test('a file that is not a census file gives nothing, with the reason', () => {
  assert.match((parseCensusFile('{"format":1,', STORE) as { error: string }).error, /not JSON/);
  assert.match((parseCensusFile(doc({}, 2), STORE) as { error: string }).error, /format 1/);
  assert.match((parseCensusFile('[]', STORE) as { error: string }).error, /format 1/);
  assert.match((parseCensusFile(doc([]), STORE) as { error: string }).error, /no verdicts/);
  assert.match((parseCensusFile(doc(null), STORE) as { error: string }).error, /no verdicts/);
});

test('only lasting verdicts of normalized layer directories inside the store are taken', () => {
  const r = parseCensusFile(doc({
    [layer(1)]: 'none',
    [layer(2)]: 'some',
    [layer(3)]: 'too-big',
    [layer(4)]: true,
    '/elsewhere/.layers/00/x/layerfs': 'none',
    [`${STORE}x/.layers/00/x/layerfs`]: 'none',
    [`${STORE}/../etc`]: 'none',
    [`${STORE}/.layers/00/a\0b`]: 'none',
    [STORE]: 'none',
  }), STORE);
  assert.deepEqual(r, { entries: [[layer(1), 'none'], [layer(2), 'some']], ignored: 7 });
  assert.deepEqual(parseCensusFile(doc({ [layer(1)]: 'none' }), `${STORE}/`), { entries: [[layer(1), 'none']], ignored: 0 });
});

test('a file names at most MAX_REMEMBERED layers', () => {
  const verdicts: Record<string, string> = {};
  for (let i = 0; i < MAX_REMEMBERED + 5; i++) verdicts[layer(i)] = 'none';
  const r = parseCensusFile(doc(verdicts), STORE) as { entries: unknown[]; ignored: number };
  assert.equal(r.entries.length, MAX_REMEMBERED);
  assert.equal(r.ignored, 5);
});

test('loading a file makes its layers known to this process', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'census-file-'));
  try {
    const file = path.join(dir, 'census.json');
    fs.writeFileSync(file, doc({ [layer(7)]: 'none', [layer(8)]: 'some' }));
    assert.equal(knownXattrFree(layer(7)), false);
    const c = new CensusFile(file, STORE, silentLogger());
    assert.equal(c.load(), 2);
    assert.equal(knownXattrFree(layer(7)), true);
    assert.equal(knownXattrFree(layer(8)), false, 'a layer with xattrs is known, and not as free of them');
    // A missing or damaged file is no error: nothing is taken.
    fs.writeFileSync(file, 'not json');
    assert.equal(c.load(), 0);
    fs.rmSync(file);
    assert.equal(c.load(), 0);
    await c.close();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

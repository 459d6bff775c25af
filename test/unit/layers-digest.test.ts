import { test } from 'node:test';
import assert from 'node:assert/strict';
import { digestHex, isLayerDigest, parseDigest } from '../../src/layers/digest.js';
import { isKind } from '../../src/errors.js';

const HEX = 'a'.repeat(62) + '0f';
const GOOD = `sha256:${HEX}`;

test('a sha256 digest with 64 lowercase hex characters is accepted', () => {
  assert.equal(parseDigest(GOOD), GOOD);
  assert.equal(isLayerDigest(GOOD), true);
  assert.equal(digestHex(parseDigest(GOOD)), HEX);
});

test('everything else is rejected with a message saying what is expected', () => {
  const cases: Array<[unknown, RegExp]> = [
    ['sha256:../../etc', /characters other than hex/],
    [`sha256:../${'a'.repeat(61)}`, /characters other than hex/],
    [`sha256:${HEX.toUpperCase()}`, /lowercase/],
    [`SHA256:${HEX}`, /algorithm must be lowercase/],
    [`sha256:${HEX.slice(1)}`, /63 characters/],
    [`sha256:${HEX}0`, /65 characters/],
    ['sha256:', /0 characters/],
    [`sha512:${'a'.repeat(128)}`, /algorithm "sha512" is not supported/],
    [`md5:${'a'.repeat(32)}`, /not supported/],
    [HEX, /no algorithm prefix/],
    ['', /no algorithm prefix/],
    [`sha256:${HEX}\n`, /other than hex/],
    [`sha256:${HEX.slice(0, 63)}/`, /other than hex/],
    [` ${GOOD}`, /not supported/],
    [null, /not a string/],
    [42, /not a string/],
  ];
  for (const [input, why] of cases) {
    assert.equal(isLayerDigest(input), false, String(input));
    assert.throws(() => parseDigest(input), (err: unknown) => {
      assert.ok(isKind(err, 'InvalidArgument'), `${String(input)}: ${String(err)}`);
      const msg = (err as Error).message;
      assert.match(msg, why, String(input));
      assert.match(msg, /expected "sha256:" followed by exactly 64 lowercase hex characters/);
      return true;
    });
  }
});

test('the message names what was being validated and quotes long input shortened', () => {
  assert.throws(() => parseDigest('x'.repeat(500), 'layer digest'), (err: Error) => {
    assert.match(err.message, /^invalid layer digest "x{80}…"/);
    assert.ok(err.message.length < 300);
    return true;
  });
});

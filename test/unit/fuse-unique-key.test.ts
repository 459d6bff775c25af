// A request the kernel resends (FUSE_NOTIFY_RESEND, after a handover) comes back with bit 63 of
// its unique set (fs/fuse/dev.c fuse_resend). The server keys its tables of pending requests by
// unique as a JS number, and an INTERRUPT names the request by the unique it was sent with.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { uniqueKey } from '../../src/fuse/kernel/transport.js';
import { UNIQUE_RESEND_HI } from '../../src/fuse/kernel/protocol.js';

test('the key of a resent request is exact and distinct from its neighbours\'; a unique never resent keeps its value', () => {
  // As a double, 2^63 + 2 and 2^63 + 4 are the same number: keys that kept bit 63 would collide.
  const resent = [2, 4, 6, 0x1_0000_0002].map((u) => uniqueKey(u % 0x1_0000_0000, UNIQUE_RESEND_HI | Math.floor(u / 0x1_0000_0000)));
  assert.deepEqual(resent, [2, 4, 6, 0x1_0000_0002]);
  assert.equal(new Set(resent).size, 4);
  assert.equal(uniqueKey(4, 0), 4);
  assert.equal(uniqueKey(0xffff_fffe, 0x7fff_ffff), 0x7fff_ffff * 0x1_0000_0000 + 0xffff_fffe);
  assert.ok(Number.isSafeInteger(uniqueKey(0xffff_fffe, 0x001f_ffff)));
});

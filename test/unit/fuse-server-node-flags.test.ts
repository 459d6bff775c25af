// Which of the FUSE server's Node flags a process lacks: by option name, wherever given (the
// command line or NODE_OPTIONS), so that a value an operator chose is kept, not overridden.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fuseServerNodeFlags, missingNodeFlags } from '../../src/cli/build-info.js';

const FLAGS = fuseServerNodeFlags();

test('a process started without any of the flags lacks them all, in order', () => {
  assert.deepEqual(missingNodeFlags(FLAGS, [], ''), FLAGS);
  assert.deepEqual(missingNodeFlags(FLAGS, ['--expose-gc'], '--no-warnings'), FLAGS);
});

test('a flag given with another value, on the command line or in NODE_OPTIONS, counts as given', () => {
  assert.deepEqual(missingNodeFlags(FLAGS, ['--max-old-space-size=4096'], ''), FLAGS.filter((f) => !f.startsWith('--max-old-space-size')));
  assert.deepEqual(missingNodeFlags(FLAGS, [], ' --max-semi-space-size=4  --v8-pool-size=2 '), FLAGS.filter((f) => f.startsWith('--max-old-space-size')));
  // V8 takes underscores for dashes.
  assert.deepEqual(missingNodeFlags(FLAGS, ['--max_old_space_size=512', '--max-semi-space-size=1', '--v8-pool-size=1'], ''), []);
});

test('the old-space limit follows the cache budget above 128 MiB', () => {
  assert.ok(fuseServerNodeFlags(64 * 1024 * 1024).includes('--max-old-space-size=1024'));
  assert.ok(fuseServerNodeFlags(512 * 1024 * 1024).includes('--max-old-space-size=4096'));
});

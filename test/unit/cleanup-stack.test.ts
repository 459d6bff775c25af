import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CleanupStack } from '../../src/cli/cleanup-stack.js';

test('unwinding runs the stops in reverse order of the starts, and only once', async () => {
  const stack = new CleanupStack();
  const ran: string[] = [];
  for (const name of ['metrics', 'connection', 'snapshotter', 'grpc']) stack.push(name, () => { ran.push(name); });
  assert.deepEqual(await stack.unwind(), []);
  assert.deepEqual(ran, ['grpc', 'snapshotter', 'connection', 'metrics']);
  assert.equal(stack.size, 0);
  await stack.unwind();
  assert.equal(ran.length, 4);
});

test('a stop that fails is reported and the stops after it still run', async () => {
  const stack = new CleanupStack();
  const ran: string[] = [];
  stack.push('first', async () => { ran.push('first'); });
  stack.push('broken', async () => { throw new Error('cannot close'); });
  stack.push('sync throw', () => { throw new Error('at once'); });
  stack.push('last', () => { ran.push('last'); });
  const failures = await stack.unwind();
  assert.deepEqual(ran, ['last', 'first']);
  assert.deepEqual(failures.map((f) => [f.step, (f.error as Error).message]), [['sync throw', 'at once'], ['broken', 'cannot close']]);
});

test('a start that fails half-way undoes exactly what was started before it', async () => {
  const stack = new CleanupStack();
  const stopped: string[] = [];
  const start = async (name: string, fail = false): Promise<void> => {
    if (fail) throw new Error(`${name} failed to start`);
    stack.push(name, () => { stopped.push(name); });
  };
  await assert.rejects(async () => {
    try {
      await start('metrics');
      await start('connection');
      await start('snapshotter', true);
      await start('grpc');
    } catch (err) {
      await stack.unwind();
      throw err;
    }
  }, /snapshotter failed to start/);
  assert.deepEqual(stopped, ['connection', 'metrics']);
});

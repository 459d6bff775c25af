// The daemon's --log-format flag: json or pretty, the default from whether stdout is a terminal.
// (What each format looks like is checked on the real daemon in test/integration/daemon-logs.test.ts.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseDaemonArgs } from '../../src/cli/daemon-args.js';
import { defaultLogFormat } from '../../src/log.js';

test('--log-format takes json or pretty; anything else is refused and the choices named', () => {
  for (const f of ['json', 'pretty'] as const) {
    const d = parseDaemonArgs(['--log-format', f]);
    assert.ok(typeof d === 'object');
    assert.equal(d.logFormat, f);
  }
  assert.throws(() => parseDaemonArgs(['--log-format', 'xml']), /--log-format xml: expected one of json, pretty/);
});

test('without --log-format the format follows stdout: json when it is not a terminal', () => {
  const d = parseDaemonArgs([]);
  assert.ok(typeof d === 'object');
  assert.equal(d.logFormat, defaultLogFormat());
  if (process.stdout.isTTY !== true) assert.equal(d.logFormat, 'json');
});

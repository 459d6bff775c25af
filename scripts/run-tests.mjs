#!/usr/bin/env node
// Runs the compiled test tiers with node's test runner, one file at a time (the e2e and
// conformance tiers start containerd and mount things; they must not overlap).
// Usage: node scripts/run-tests.mjs [tier ...]   tiers: unit integration e2e conformance stress
// Without arguments it runs the tiers of `npm test`; stress (`npm run test:stress`, about 15
// minutes on 2 cores) runs only when named.
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

const DEFAULT = ['unit', 'integration', 'e2e', 'conformance'];
const ALL = [...DEFAULT, 'stress'];
const tiers = process.argv.slice(2).length ? process.argv.slice(2) : DEFAULT;
for (const t of tiers) if (!ALL.includes(t)) { console.error(`unknown test tier ${t}; expected one of ${ALL.join(', ')}`); process.exit(2); }

function find(dir) {
  let out = [];
  let names;
  try { names = readdirSync(dir).sort(); } catch { return out; }
  for (const n of names) {
    const p = join(dir, n);
    if (statSync(p).isDirectory()) out = out.concat(find(p));
    else if (n.endsWith('.test.js')) out.push(p);
  }
  return out;
}

const files = tiers.flatMap((t) => find(join('dist', 'test', t)));
if (files.length === 0) { console.error('no test files found; did the build run?'); process.exit(1); }
const r = spawnSync(process.execPath, ['--test', '--test-concurrency=1', '--test-reporter=spec', ...files], { stdio: 'inherit' });
process.exit(r.status ?? 1);

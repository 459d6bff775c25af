// The rooms of src/ hold their rules: dependency-cruiser checks every import in src/ against
// .dependency-cruiser.cjs, which writes down README.md's "Architecture" section, and finds every
// import cycle. Reads the TypeScript sources (so `import type` counts), not dist/.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const CONFIG = join(ROOT, '.dependency-cruiser.cjs');
const CRUISER = join(ROOT, 'node_modules', 'dependency-cruiser', 'bin', 'dependency-cruise.mjs');

interface Violation {
  type: string;
  from: string;
  to: string;
  dependencyTypes: string[];
  rule: { name: string; severity: string };
  cycle?: Array<{ name: string }>;
}

function isViolation(v: unknown): v is Violation {
  if (typeof v !== 'object' || v === null) return false;
  const o = v as Record<string, unknown>;
  const rule = o.rule as Record<string, unknown> | undefined;
  return typeof o.from === 'string' && typeof o.to === 'string' && typeof rule?.name === 'string';
}

/** Runs dependency-cruiser with the project's rules over `dir`/src and returns what it found. */
function cruise(dir: string): Violation[] {
  const r = spawnSync(process.execPath, [CRUISER, '--config', CONFIG, '--output-type', 'json', 'src'], {
    cwd: dir,
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  assert.equal(r.error, undefined, `could not run dependency-cruiser: ${String(r.error)}`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(r.stdout);
  } catch {
    assert.fail(`dependency-cruiser did not answer JSON (exit ${r.status}):\n${r.stderr}\n${r.stdout.slice(0, 2000)}`);
  }
  const violations = (parsed as { summary?: { violations?: unknown } }).summary?.violations;
  assert.ok(Array.isArray(violations), `no summary.violations in dependency-cruiser's answer:\n${r.stderr}`);
  return violations.map((v) => {
    assert.ok(isViolation(v), `unexpected violation shape: ${JSON.stringify(v)}`);
    return v;
  });
}

/** The modules of a cycle, starting where dependency-cruiser reported it. */
function cycleModules(v: Violation): string[] {
  return [v.from, ...(v.cycle ?? []).map((c) => c.name).filter((n) => n !== v.from)];
}

/** The rooms of .dependency-cruiser.cjs: name → the regular expression of its files, as written there. */
function configRooms(): Map<string, string> {
  const text = readFileSync(CONFIG, 'utf8');
  const block = /const ROOMS = \{([^}]*)\};/.exec(text)?.[1] ?? '';
  return new Map([...block.matchAll(/^\s+(\w+): '([^']+)',$/gm)].map((m) => [m[1] as string, m[2] as string]));
}
const ROOMS = configRooms();
/** errors and log, the ground floor outside any folder (src/sys, ground floor too, is a room of its own). */
const GROUND = /^src\/(errors|log)\.ts$/;

function roomOf(file: string): string {
  if (GROUND.test(file)) return 'ground floor';
  for (const [name, re] of ROOMS) if (new RegExp(re).test(file)) return name;
  return 'no room';
}

function explain(v: Violation): string {
  if (v.rule.name === 'no-circular') return `cycle: ${[...cycleModules(v), v.from].join(' → ')}`;
  return `${v.from} (${roomOf(v.from)}) → ${v.to} (${roomOf(v.to)}), ${v.dependencyTypes.join(', ')}`;
}

/**
 * Known violations the work of issue 11 removes. Each names exactly what it excuses; the last test
 * fails once an exception excuses nothing, so it is deleted rather than left to hide a new one.
 */
interface Exception {
  why: string;
  matches(v: Violation): boolean;
}

const EXCEPTIONS: Exception[] = [];

let found: Violation[] | undefined;
function violations(): Violation[] {
  found ??= cruise(ROOT);
  return found;
}

function unexcused(rule: string): string[] {
  return violations()
    .filter((v) => v.rule.name === rule && !EXCEPTIONS.some((e) => e.matches(v)))
    .map(explain);
}

test('src has no import cycle', () => {
  const cycles = unexcused('no-circular');
  assert.deepEqual(cycles, [], `import cycles in src:\n  ${cycles.join('\n  ')}`);
});

test('every import in src follows the rooms\' rules of the README\'s Architecture section', () => {
  const crossings = unexcused('not-in-allowed');
  assert.deepEqual(
    crossings,
    [],
    `imports that cross the rooms' rules (README.md "Architecture", .dependency-cruiser.cjs):\n  ${crossings.join('\n  ')}`,
  );
  const other = violations().filter((v) => v.rule.name !== 'not-in-allowed' && v.rule.name !== 'no-circular');
  assert.deepEqual(other.map(explain), [], 'violations of other rules');
});

test('every exception to the rules still excuses an import that exists', () => {
  const stale = EXCEPTIONS.filter((e) => !violations().some((v) => e.matches(v))).map((e) => e.why);
  assert.deepEqual(stale, [], `exceptions that excuse nothing any more; delete them from this file:\n  ${stale.join('\n  ')}`);
});

test('the check finds a forbidden import and a cycle, and passes an allowed import', (t) => {
  // A small tree with the same rooms: the snapshotter importing the FUSE layer (forbidden),
  // metrics importing a FUSE value (forbidden) and a FUSE type (allowed), two cache modules
  // importing each other (a cycle), the snapshotter importing the errors (allowed).
  const dir = mkdtempSync(join(tmpdir(), 'rooms-check-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const files: Record<string, string> = {
    'tsconfig.json': JSON.stringify({ compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext', strict: true } }),
    'package.json': JSON.stringify({ type: 'module' }),
    'src/errors.ts': 'export class NotFound extends Error {}\n',
    'src/fuse/layer.ts': 'export const LAYER = 1;\nexport interface Layer { id: number }\n',
    'src/snapshotter/core.ts': "import { NotFound } from '../errors.js';\nimport { LAYER } from '../fuse/layer.js';\nexport const x = [NotFound, LAYER];\n",
    'src/metrics/count.ts': "import type { Layer } from '../fuse/layer.js';\nimport { LAYER } from '../fuse/layer.js';\nexport const f = (l: Layer) => l.id + LAYER;\n",
    'src/cache/a.ts': "import { b } from './b.js';\nexport const a = () => b;\n",
    'src/cache/b.ts': "import { a } from './a.js';\nexport const b = () => a;\n",
  };
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, name)), { recursive: true });
    writeFileSync(join(dir, name), text);
  }
  // A cycle is reported once, from one of its modules.
  const got = cruise(dir).map((v) => `${v.rule.name}: ${v.from} → ${v.to}`).sort();
  assert.deepEqual(got, [
    'no-circular: src/cache/a.ts → src/cache/b.ts',
    'not-in-allowed: src/metrics/count.ts → src/fuse/layer.ts',
    'not-in-allowed: src/snapshotter/core.ts → src/fuse/layer.ts',
  ]);
});

test('every file in src belongs to a room or to the ground floor', () => {
  assert.ok(ROOMS.size >= 10, `expected the rooms of ${CONFIG}, found ${[...ROOMS.keys()].join(', ')}`);
  const files = readdirSync(join(ROOT, 'src'), { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.ts')).map((f) => `src/${f}`).sort();
  const homeless = files.filter((f) => roomOf(f) === 'no room');
  assert.deepEqual(homeless, [], 'files outside every room: give their folder a row in README.md "Architecture" and a room in .dependency-cruiser.cjs');
});

test('the README\'s Architecture table has a row for every room the rules know', () => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const start = readme.indexOf('\n## Architecture\n');
  assert.ok(start >= 0, 'README.md has no "## Architecture" section');
  const end = readme.indexOf('\n## ', start + 1);
  const section = readme.slice(start, end < 0 ? undefined : end);
  // A room's folder is its expression without the anchor and the lookahead ('^src/fuse/(?!kernel/|server/)').
  const folders = [...ROOMS.values()].map((re) => re.replace(/^\^/, '').split('(')[0] as string);
  assert.ok(folders.length >= 10, `expected the rooms of ${CONFIG}, found ${folders.join(', ')}`);
  const rows = new Set([...section.matchAll(/^\| `([^`]+)` \|/gm)].map((m) => m[1]));
  const missing = folders.filter((f) => !rows.has(f));
  assert.deepEqual(missing, [], 'rooms of .dependency-cruiser.cjs without a row in the README\'s Architecture table');
});

// Reading `go test -v` output: the result of every test and the lines each test printed.

export type GoTestStatus = 'PASS' | 'FAIL' | 'SKIP';

export interface GoTestResult {
  name: string;
  status: GoTestStatus;
  seconds: number;
  /** Lines the test printed (t.Log, failures), in order. */
  output: string[];
}

export interface GoTestReport {
  /**
   * The cases: tests without subtests, in the order their results were printed, then any parent
   * that failed although none of its subtests did.
   */
  leaves: GoTestResult[];
  passed: string[];
  failed: string[];
  skipped: string[];
  /** Names that started (=== RUN) but never reported a result: a crash or a timeout. */
  unfinished: string[];
}

const MARKER = /^=== (RUN|PAUSE|CONT|NAME)\s+(\S+)/;
const RESULT = /^(\s*)--- (PASS|FAIL|SKIP): (\S+) \(([\d.]+)s\)/;

export function parseGoTestOutput(text: string): GoTestReport {
  const results = new Map<string, GoTestResult>();
  const output = new Map<string, string[]>();
  const started: string[] = [];
  const append = (name: string, line: string): void => {
    const lines = output.get(name) ?? [];
    lines.push(line);
    output.set(name, lines);
  };
  let current: string | undefined;
  // After a --- FAIL line, deeper-indented lines are that test's output.
  let resultIndent = -1;
  for (const line of text.split('\n')) {
    const marker = MARKER.exec(line);
    if (marker) {
      const name = marker[2] ?? '';
      if (marker[1] === 'RUN' && !started.includes(name)) started.push(name);
      current = name;
      resultIndent = -1;
      continue;
    }
    const result = RESULT.exec(line);
    if (result) {
      const name = result[3] ?? '';
      results.set(name, { name, status: result[2] as GoTestStatus, seconds: Number(result[4]), output: [] });
      current = name;
      resultIndent = (result[1] ?? '').length;
      continue;
    }
    if (current === undefined || line.trim() === '') continue;
    if (resultIndent >= 0 && line.length - line.trimStart().length <= resultIndent) { current = undefined; continue; }
    append(current, line);
  }
  const names = [...results.keys()];
  const leaves = names
    .filter((n) => !names.some((m) => m.startsWith(`${n}/`)))
    .map((n) => {
      const r = results.get(n);
      if (r === undefined) throw new Error(`lost result ${n}`);
      return { ...r, output: output.get(n) ?? [] };
    });
  const by = (s: GoTestStatus): string[] => leaves.filter((l) => l.status === s).map((l) => l.name);
  // A parent fails when a subtest fails, and also on its own (t.Error after its subtests, a
  // failed Cleanup): the second kind is a failed case too.
  const failedOnItsOwn = names.filter(
    (n) => results.get(n)?.status === 'FAIL' && names.some((m) => m.startsWith(`${n}/`))
      && !names.some((m) => m.startsWith(`${n}/`) && results.get(m)?.status === 'FAIL'),
  );
  for (const n of failedOnItsOwn) {
    const r = results.get(n);
    if (r !== undefined) leaves.push({ ...r, output: output.get(n) ?? [] });
  }
  return {
    leaves,
    passed: by('PASS'),
    failed: by('FAIL'),
    skipped: by('SKIP'),
    unfinished: started.filter((n) => !results.has(n)),
  };
}

/** A readable account of what failed, for an assertion message. */
export function describeFailures(report: GoTestReport): string {
  const parts: string[] = [];
  for (const l of report.leaves.filter((x) => x.status === 'FAIL')) {
    parts.push(`--- FAIL: ${l.name} (${l.seconds}s)\n${l.output.join('\n')}`);
  }
  if (report.unfinished.length > 0) parts.push(`never finished: ${report.unfinished.join(', ')}`);
  return parts.join('\n\n');
}

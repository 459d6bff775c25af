// Parsing ctr's table output.

export interface SnapshotRow {
  key: string;
  parent: string;
  kind: string;
}

/** `ctr snapshots ls`: KEY PARENT KIND, aligned with spaces; PARENT may be empty. */
export function parseSnapshotTable(stdout: string): SnapshotRow[] {
  const rows: SnapshotRow[] = [];
  const lines = stdout.split('\n').filter((l) => l.trim() !== '');
  if (lines.length === 0) return rows;
  if (!/^KEY\s+PARENT\s+KIND/.test(lines[0] ?? '')) throw new Error(`not a ctr snapshots table:\n${stdout}`);
  for (const line of lines.slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length === 3) rows.push({ key: f[0] ?? '', parent: f[1] ?? '', kind: f[2] ?? '' });
    else if (f.length === 2) rows.push({ key: f[0] ?? '', parent: '', kind: f[1] ?? '' });
    else throw new Error(`unexpected ctr snapshots row (a key with spaces?): ${JSON.stringify(line)}`);
  }
  return rows;
}

/** First column of a table with a header line (e.g. `ctr images ls`), header skipped. */
export function firstColumn(stdout: string): string[] {
  return stdout.split('\n').slice(1).map((l) => l.trim().split(/\s+/)[0] ?? '').filter((k) => k !== '');
}

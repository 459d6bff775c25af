// What a run writes: the terminal table, bench/results/latest.json, the ratio chart (SVG), and
// the results section of bench/README.md.
import { existsSync } from 'node:fs';
import { readFile, writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Summary } from './stats.js';

export interface Target {
  key: string;
  op: '>=' | '<=' | '<';
  value: number;
}

export const TARGETS: readonly Target[] = [
  { key: 'pull_speedup_small', op: '>=', value: 20 },
  { key: 'lazy_pull_growth', op: '<=', value: 2 },
  { key: 'first_output_speedup', op: '>=', value: 4 },
  { key: 'seq_read_cold_ratio', op: '>=', value: 0.7 },
  { key: 'seq_read_warm_ratio', op: '>=', value: 0.9 },
  { key: 'walk_cold_ratio', op: '<=', value: 4 },
  { key: 'walk_warm_ratio', op: '<=', value: 1.5 },
  { key: 'rss_100_layers_mb', op: '<', value: 150 },
];

export function holds(t: Target, v: number | undefined): boolean | undefined {
  if (v === undefined || Number.isNaN(v)) return undefined;
  return t.op === '>=' ? v >= t.value : t.op === '<=' ? v <= t.value : v < t.value;
}

export interface Row { what: string; a: string; b: string; unit: string; ratio: string }

export function fmt(x: number | undefined, digits = 2): string {
  if (x === undefined || Number.isNaN(x)) return '-';
  if (Math.abs(x) >= 100) return x.toFixed(0);
  if (Math.abs(x) >= 10) return x.toFixed(1);
  return x.toFixed(digits);
}

export function cell(s: Summary | undefined): string {
  if (s === undefined) return '-';
  return `${fmt(s.median)} ±${(s.relMad * 100).toFixed(0)}% [${fmt(s.min)}..${fmt(s.max)}]`;
}

export function table(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: readonly string[]): string => `| ${r.map((c, i) => c.padEnd(widths[i] ?? 0)).join(' | ')} |`;
  return [line(headers), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.map(line)].join('\n');
}

export function targetsTable(ratios: Record<string, number | undefined>): string {
  return table(['key', 'value', 'target', 'holds'], TARGETS.map((t) => {
    const h = holds(t, ratios[t.key]);
    return [t.key, fmt(ratios[t.key]), `${t.op} ${t.value}`, h === undefined ? 'not measured' : h ? 'yes' : 'NO'];
  }).concat([['pull_speedup_large', fmt(ratios.pull_speedup_large), '(none)', '']]));
}

/** A horizontal bar per ratio on a log scale, the target drawn as a tick; red when it misses. */
export function ratioChartSvg(ratios: Record<string, number | undefined>, title: string): string {
  const keys = ['pull_speedup_small', 'pull_speedup_large', 'lazy_pull_growth', 'first_output_speedup', 'seq_read_cold_ratio', 'seq_read_warm_ratio', 'walk_cold_ratio', 'walk_warm_ratio'];
  const rowH = 30;
  const left = 190;
  const width = 720;
  const plotW = width - left - 90;
  const top = 50;
  const height = top + keys.length * rowH + 40;
  const lo = Math.log10(0.05);
  const hi = Math.log10(200);
  const x = (v: number): number => left + ((Math.log10(Math.min(Math.max(v, 0.05), 200)) - lo) / (hi - lo)) * plotW;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect width="100%" height="100%" fill="white"/>`);
  out.push(`<text x="${width / 2}" y="20" text-anchor="middle" font-size="14" font-weight="bold">${escapeXml(title)}</text>`);
  out.push(`<text x="${width / 2}" y="36" text-anchor="middle" fill="#555">log scale; black tick = target of issue 4; green = holds, red = misses</text>`);
  for (const g of [0.1, 0.5, 1, 2, 4, 10, 20, 100]) {
    out.push(`<line x1="${x(g).toFixed(1)}" y1="${top - 4}" x2="${x(g).toFixed(1)}" y2="${top + keys.length * rowH}" stroke="${g === 1 ? '#888' : '#ddd'}"/>`);
    out.push(`<text x="${x(g).toFixed(1)}" y="${top + keys.length * rowH + 16}" text-anchor="middle" fill="#555">${g}</text>`);
  }
  keys.forEach((k, i) => {
    const y = top + i * rowH;
    const v = ratios[k];
    const t = TARGETS.find((tt) => tt.key === k);
    const ok = t === undefined ? undefined : holds(t, v);
    const color = ok === undefined ? '#6a8cc7' : ok ? '#4caf50' : '#e04848';
    out.push(`<text x="${left - 8}" y="${y + 19}" text-anchor="end">${k}</text>`);
    if (v !== undefined && !Number.isNaN(v)) {
      const x0 = x(1);
      const x1 = x(v);
      out.push(`<rect x="${Math.min(x0, x1).toFixed(1)}" y="${y + 6}" width="${Math.max(1, Math.abs(x1 - x0)).toFixed(1)}" height="${rowH - 12}" fill="${color}"/>`);
      out.push(`<text x="${(Math.max(x0, x1) + 4).toFixed(1)}" y="${y + 19}">${fmt(v)}</text>`);
    }
    if (t !== undefined) out.push(`<line x1="${x(t.value).toFixed(1)}" y1="${y + 2}" x2="${x(t.value).toFixed(1)}" y2="${y + rowH - 2}" stroke="black" stroke-width="2"/>`);
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

export async function writeOutputs(benchDir: string, json: unknown, svg: string, markdown: string): Promise<void> {
  const results = join(benchDir, 'results');
  await mkdir(results, { recursive: true });
  await writeFile(join(results, 'latest.json'), `${JSON.stringify(json, null, 2)}\n`);
  await writeFile(join(results, 'ratios.svg'), svg);
  await writeFile(join(results, 'latest.md'), markdown);
  const readme = join(benchDir, 'README.md');
  if (existsSync(readme)) {
    const text = await readFile(readme, 'utf8');
    const start = '<!-- results:start -->';
    const end = '<!-- results:end -->';
    const i = text.indexOf(start);
    const j = text.indexOf(end);
    if (i >= 0 && j > i) await writeFile(readme, `${text.slice(0, i + start.length)}\n${markdown}\n${text.slice(j)}`);
  }
}

// What a run writes: the terminal table, bench/results/latest.json, the ratio chart (SVG), and
// the results section of bench/README.md.
import { existsSync } from 'node:fs';
import { readFile, writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Summary } from './stats.js';

export interface Target {
  key: string;
  /** The issue that set it. */
  issue: number;
  /** An absolute bound; absent when the target is only to do better than the peers. */
  op?: '>=' | '<=' | '<';
  value?: number;
  /** Keys of the same figure for each peer: the product must be below every one that was measured. */
  belowPeers?: readonly string[];
}

const PEERS_OF = (key: string): string[] => [`${key}_gofuse`, `${key}_passthrough_hp`];

export const TARGETS: readonly Target[] = [
  { key: 'pull_speedup_small', issue: 4, op: '>=', value: 20 },
  { key: 'lazy_pull_growth', issue: 4, op: '<=', value: 2 },
  { key: 'first_output_speedup', issue: 4, op: '>=', value: 4 },
  { key: 'lookup_us', issue: 10, op: '<=', value: 25, belowPeers: PEERS_OF('lookup_us') },
  { key: 'walk_cold_ratio', issue: 10, op: '<=', value: 2.5, belowPeers: PEERS_OF('walk_cold_ratio') },
  { key: 'walk_warm_ratio', issue: 10, op: '<=', value: 1.1 },
  { key: 'python_cold_ratio', issue: 10, op: '<=', value: 1.3 },
  { key: 'python_warm_ratio', issue: 10, op: '<=', value: 1.1 },
  { key: 'seq_read_cold_ratio', issue: 10, op: '>=', value: 0.95 },
  { key: 'seq_read_warm_ratio', issue: 10, op: '>=', value: 0.95 },
  { key: 'rand_read_cold_ratio', issue: 10, op: '>=', value: 0.9 },
  { key: 'server_cpu_walk_ms', issue: 10, belowPeers: PEERS_OF('server_cpu_walk_ms') },
  { key: 'rss_100_layers_mb', issue: 4, op: '<', value: 150 },
  { key: 'fuse_server_rss_mb', issue: 10, op: '<=', value: 64 },
  { key: 'fuse_server_rss_rest_mb', issue: 10, op: '<=', value: 64 },
  { key: 'scale_rss_per_layer_kib', issue: 10, op: '<=', value: 20 },
  { key: 'pull_command_wall_s', issue: 11, op: '<=', value: 0.25 },
  { key: 'daemon_rss_rest_mb', issue: 11, op: '<=', value: 50 },
];

/** undefined when the figure was not measured; peers that were not measured do not count. */
export function holds(t: Target, ratios: Record<string, number | undefined>): boolean | undefined {
  const v = ratios[t.key];
  if (v === undefined || Number.isNaN(v)) return undefined;
  const abs = t.op === undefined || t.value === undefined ? true : t.op === '>=' ? v >= t.value : t.op === '<=' ? v <= t.value : v < t.value;
  const peers = (t.belowPeers ?? []).map((k) => ratios[k]).filter((p): p is number => p !== undefined && !Number.isNaN(p));
  return abs && peers.every((p) => v < p);
}

function targetText(t: Target): string {
  return [t.op !== undefined && t.value !== undefined ? `${t.op} ${t.value}` : '', t.belowPeers ? '< both peers' : ''].filter((x) => x !== '').join(', ');
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
  return table(['key', 'value', 'go-fuse', 'passthrough_hp', 'target', 'issue', 'holds'], TARGETS.map((t) => {
    const h = holds(t, ratios);
    const peer = (i: number): string => (t.belowPeers?.[i] === undefined ? '' : fmt(ratios[t.belowPeers[i] as string]));
    return [t.key, fmt(ratios[t.key]), peer(0), peer(1), targetText(t), `#${t.issue}`, h === undefined ? 'not measured' : h ? 'yes' : 'NO'];
  }).concat([['pull_speedup_large', fmt(ratios.pull_speedup_large), '', '', '(none)', '#4', ''], ['container_second_ratio', fmt(ratios.container_second_ratio), '', '', '(none)', '#10', '']]));
}

/** The peers' value of a chart key, when the key has peers. */
export type PeerValue = (key: string, peer: 'gofuse' | 'passthrough_hp') => number | undefined;

const CHART_KEYS = [
  'pull_speedup_small', 'pull_speedup_large', 'lazy_pull_growth', 'first_output_speedup',
  'seq_read_cold_ratio', 'seq_read_warm_ratio', 'rand_read_cold_ratio', 'walk_cold_ratio', 'walk_warm_ratio',
  'python_cold_ratio', 'python_warm_ratio', 'container_second_ratio',
];

/**
 * A horizontal bar per ratio on a log scale, the target drawn as a tick; the product's bar is
 * green when it holds and red when it misses. Where the peers ran the same case, their bars sit
 * under the product's (go-fuse blue, passthrough_hp orange).
 */
export function ratioChartSvg(ratios: Record<string, number | undefined>, peerValue: PeerValue, title: string): string {
  const keys = CHART_KEYS.filter((k) => ratios[k] !== undefined);
  const peerColors = { gofuse: '#5b8bd0', passthrough_hp: '#e0a040' } as const;
  const bars = (k: string): { v: number | undefined; color: string | undefined }[] => {
    const peers = (['gofuse', 'passthrough_hp'] as const).map((p) => ({ v: peerValue(k, p), color: peerColors[p] as string | undefined }));
    return [{ v: ratios[k], color: undefined }, ...(peers.some((p) => p.v !== undefined) ? peers : [])];
  };
  const barH = 12;
  const rowH = (k: string): number => bars(k).length * (barH + 2) + 12;
  const left = 190;
  const width = 760;
  const plotW = width - left - 90;
  const top = 66;
  const plotH = keys.reduce((sum, k) => sum + rowH(k), 0);
  const height = top + plotH + 40;
  const lo = Math.log10(0.05);
  const hi = Math.log10(500);
  const x = (v: number): number => left + ((Math.log10(Math.min(Math.max(v, 0.05), 500)) - lo) / (hi - lo)) * plotW;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect width="100%" height="100%" fill="white"/>`);
  out.push(`<text x="${width / 2}" y="20" text-anchor="middle" font-size="14" font-weight="bold">${escapeXml(title)}</text>`);
  out.push(`<text x="${width / 2}" y="36" text-anchor="middle" fill="#555">log scale; black tick = target (issues 4 and 10); product: green = holds, red = misses, grey = no target</text>`);
  out.push(`<rect x="${width / 2 - 120}" y="45" width="10" height="10" fill="${peerColors.gofuse}"/><text x="${width / 2 - 106}" y="54">go-fuse loopback</text>`);
  out.push(`<rect x="${width / 2 + 10}" y="45" width="10" height="10" fill="${peerColors.passthrough_hp}"/><text x="${width / 2 + 24}" y="54">passthrough_hp</text>`);
  for (const g of [0.1, 0.5, 1, 2, 4, 10, 20, 100]) {
    out.push(`<line x1="${x(g).toFixed(1)}" y1="${top - 4}" x2="${x(g).toFixed(1)}" y2="${top + plotH}" stroke="${g === 1 ? '#888' : '#ddd'}"/>`);
    out.push(`<text x="${x(g).toFixed(1)}" y="${top + plotH + 16}" text-anchor="middle" fill="#555">${g}</text>`);
  }
  let y = top;
  for (const k of keys) {
    const t = TARGETS.find((tt) => tt.key === k);
    const ok = t === undefined ? undefined : holds(t, ratios);
    const productColor = ok === undefined ? '#9e9e9e' : ok ? '#4caf50' : '#e04848';
    const h = rowH(k);
    out.push(`<text x="${left - 8}" y="${y + h / 2 + 4}" text-anchor="end">${k}</text>`);
    bars(k).forEach((b, i) => {
      const by = y + 6 + i * (barH + 2);
      if (b.v === undefined || Number.isNaN(b.v)) return;
      const x0 = x(1);
      const x1 = x(b.v);
      out.push(`<rect x="${Math.min(x0, x1).toFixed(1)}" y="${by}" width="${Math.max(1, Math.abs(x1 - x0)).toFixed(1)}" height="${barH}" fill="${b.color ?? productColor}"/>`);
      out.push(`<text x="${(Math.max(x0, x1) + 4).toFixed(1)}" y="${by + barH - 2}" font-size="11">${fmt(b.v)}</text>`);
    });
    if (t?.value !== undefined) out.push(`<line x1="${x(t.value).toFixed(1)}" y1="${y + 2}" x2="${x(t.value).toFixed(1)}" y2="${y + h - 2}" stroke="black" stroke-width="2"/>`);
    y += h;
  }
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

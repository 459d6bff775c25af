// One /metrics page from several registries, possibly in other processes: each source hands
// over its registry's getMetricsAsJSON() (plain data, so it can come over a socket), and
// prom-client's AggregatorRegistry puts them together.
import { AggregatorRegistry, type Registry } from 'prom-client';

export type MetricsJson = Awaited<ReturnType<Registry['getMetricsAsJSON']>>;

export interface MetricsSource {
  /** Names the source in the log when it fails. */
  readonly name: string;
  collect(): Promise<MetricsJson>;
}

export function registrySource(name: string, registry: Registry): MetricsSource {
  return { name, collect: () => registry.getMetricsAsJSON() };
}

export interface MergeResult {
  readonly registry: Registry;
  /** Sources that failed, with why: their metrics are missing from this scrape. */
  readonly failed: ReadonlyArray<{ name: string; error: unknown }>;
}

/**
 * Merges the sources' metrics. A family that appears in several sources is combined by its
 * aggregator (counters and histograms add up); one that only one source has is passed through
 * unchanged (aggregate() would otherwise drop a family whose aggregator is "omit", such as the
 * process start time). A failing source is left out, not the whole page.
 */
export async function mergeMetrics(sources: readonly MetricsSource[]): Promise<MergeResult> {
  const settled = await Promise.allSettled(sources.map((s) => s.collect()));
  const parts: MetricsJson[] = [];
  const failed: Array<{ name: string; error: unknown }> = [];
  settled.forEach((r, i) => {
    if (r.status === 'fulfilled') parts.push(r.value);
    else failed.push({ name: sources[i]?.name ?? String(i), error: r.reason });
  });
  const sourcesOf = new Map<string, number>();
  for (const families of parts) for (const f of families) sourcesOf.set(f.name, (sourcesOf.get(f.name) ?? 0) + 1);
  const prepared = parts.map((families) =>
    families.map((f) => (sourcesOf.get(f.name) === 1 ? { ...f, aggregator: 'first' as const } : f)));
  return { registry: AggregatorRegistry.aggregate(prepared), failed };
}

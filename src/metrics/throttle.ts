// At most one run of an expensive collection per interval, however often it is asked for: a
// scraper that asks 500 times a second gets the same answer for a second, and callers that ask
// while a run is under way share it. A failed run is not kept: the next caller runs again.

export interface Throttled<T> {
  /** The last run's answer if it started less than the interval ago, else a new run's. */
  (): Promise<T>;
  /** How many runs were started. */
  readonly runs: number;
}

/** `now` is a monotonic clock in milliseconds (performance.now by default; tests pass their own). */
export function throttle<T>(run: () => Promise<T>, intervalMs: number, now: () => number = () => performance.now()): Throttled<T> {
  let last: { at: number; answer: Promise<T>; settled: boolean } | undefined;
  let runs = 0;
  const get = (): Promise<T> => {
    const t = now();
    // A run under way is shared even past the interval: a slow collection is not started twice.
    if (last && (!last.settled || t - last.at < intervalMs)) return last.answer;
    runs++;
    const answer = Promise.resolve().then(run);
    const entry = { at: t, answer, settled: false };
    last = entry;
    answer.then(() => { entry.settled = true; }, () => {
      entry.settled = true;
      if (last === entry) last = undefined;
    });
    return answer;
  };
  return Object.defineProperty(get, 'runs', { get: () => runs, enumerable: true }) as Throttled<T>;
}

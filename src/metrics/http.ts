// The daemon's HTTP listener: GET /metrics on a TCP address, in Prometheus' text format, and,
// when the daemon gives its health, GET /livez (200 while the event loop answers) and /readyz
// (200 when the daemon says it is ready, else 503; the body is one line saying why). Anything
// else is 404 (or 405 for another method). The page is rendered at most once per
// second (cacheMs): every scrape within that second gets the same text, and scrapes that arrive
// while it is being rendered share that rendering. A scraper, however fast and whoever it is,
// thus costs the FUSE server at most one collection per second and this daemon one merge.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { Registry } from 'prom-client';
import type { Logger } from '../log.js';
import { mergeMetrics, type MetricsSource } from './merge.js';
import { throttle } from './throttle.js';

export interface MetricsServerOptions {
  /** Empty means every interface. */
  host: string;
  port: number;
  sources: readonly MetricsSource[];
  log: Logger;
  /** How long a rendered page is served again (default 1000 ms; 0 renders every scrape). */
  cacheMs?: number;
  /** Answers /readyz; absent: no /livez and /readyz. */
  readiness?: () => Promise<Readiness>;
}

/** Whether the daemon is ready, and a one-line reason either way (the body of /readyz). */
export interface Readiness {
  ready: boolean;
  reason: string;
}

/** How long one rendering of the page answers scrapes. */
export const METRICS_PAGE_CACHE_MS = 1000;

export interface MetricsServer {
  /** http://host:port/metrics, with the port actually bound. */
  readonly url: string;
  close(): Promise<void>;
}

export class MetricsServerError extends Error {}

function hostForUrl(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

export async function startMetricsServer(opts: MetricsServerOptions): Promise<MetricsServer> {
  const { log } = opts;
  const render = throttle(async () => {
    const merged = await mergeMetrics(opts.sources);
    for (const f of merged.failed) log.warn({ source: f.name, err: f.error }, 'a metrics source failed; its metrics are missing from this scrape');
    return merged.registry.metrics();
  }, opts.cacheMs ?? METRICS_PAGE_CACHE_MS);

  // Probes that arrive while one is under way share its answer: one check at a time, however many ask.
  const ready = opts.readiness ? throttle(opts.readiness, 0) : undefined;
  const paths = ready ? ['/metrics', '/livez', '/readyz'] : ['/metrics'];
  const text = (res: ServerResponse, code: number, body: string, head: boolean): void => {
    res.writeHead(code, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' }).end(head ? undefined : `${body}\n`);
  };

  async function answer(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    if (!paths.includes(path)) {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' })
        .end(ready ? 'not found; metrics are at /metrics, liveness at /livez, readiness at /readyz\n' : 'not found; metrics are at /metrics\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { 'content-type': 'text/plain; charset=utf-8', allow: 'GET, HEAD' }).end(`${String(req.method)} not allowed; use GET\n`);
      return;
    }
    const head = req.method === 'HEAD';
    // Answering at all is the proof: an event loop that is stuck answers nothing.
    if (path === '/livez') return text(res, 200, 'alive', head);
    if (path === '/readyz' && ready) {
      const r = await ready().catch((err: unknown): Readiness => ({ ready: false, reason: `the readiness check failed: ${err instanceof Error ? err.message : String(err)}` }));
      return text(res, r.ready ? 200 : 503, r.reason.replace(/\s*\n\s*/g, ' '), head);
    }
    const body = await render();
    res.writeHead(200, { 'content-type': Registry.PROMETHEUS_CONTENT_TYPE });
    res.end(req.method === 'HEAD' ? undefined : body);
  }

  const server = createServer((req, res) => {
    answer(req, res).catch((err: unknown) => {
      log.error({ err }, 'could not produce the metrics page');
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
      res.end('could not produce the metrics\n');
    });
  });

  const shown = `${opts.host}:${opts.port}`;
  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      const why = err.code === 'EADDRINUSE' ? 'the port is in use by another process'
        : err.code === 'EADDRNOTAVAIL' ? 'no interface of this machine has that address'
        : err.code === 'EACCES' ? 'not allowed to bind that port'
        : err.code === 'ENOTFOUND' || err.code === 'EAI_AGAIN' ? 'the host name does not resolve'
        : err.message;
      reject(new MetricsServerError(`cannot serve metrics on ${shown} ([metrics] address): ${why}`, { cause: err }));
    };
    server.once('error', onError);
    server.listen({ host: opts.host === '' ? undefined : opts.host, port: opts.port }, () => {
      server.off('error', onError);
      resolve();
    });
  });
  server.on('error', (err) => log.error({ err }, 'metrics server error'));

  const bound = server.address();
  const where = typeof bound === 'object' && bound !== null ? `${hostForUrl(bound.address)}:${bound.port}` : shown;
  return {
    url: `http://${where}/metrics`,
    close: () => new Promise<void>((resolve, reject) => {
      server.close((err) => (err ? reject(err) : resolve()));
      // A scraper's keep-alive connection would otherwise hold close() for its idle timeout.
      server.closeAllConnections();
    }),
  };
}

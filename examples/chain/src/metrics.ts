/**
 * The demo APIs' Prometheus metrics: each API keeps the SDK's metrics (`registerBatonMetrics`) in a
 * registry of its own and serves it at `/metrics` on a listener of its own on 127.0.0.1 — like the
 * token service, never on the API's public port. `baton dev --metrics-port N` puts the token
 * service's at N and the Tasks, Docs and Audit APIs' at N+1, N+2, N+3 (0: free ports); each is
 * one Prometheus target (docs/operations.md, Metrics).
 *
 * The APIs share the `baton dev` process, so none of them adds the process metrics (the token
 * service's listener has them); an API running alone would add `collectDefaultMetrics`.
 */
import { Registry } from 'prom-client';
import { registerBatonMetrics, type ResourceMetrics } from '@baton/resource/prometheus';
import { listenForMetrics, type MetricsListener } from '@baton/server';
import type { LineWriter } from './log.ts';

export interface ApiMetrics {
  /** The `metrics` option of the API's guard, OBO client and downstream calls. */
  metrics: ResourceMetrics;
  registry: Registry;
  /** `http://127.0.0.1:PORT/metrics`. */
  url: string;
  close(): Promise<void>;
}

/** One API's registry and its listener on 127.0.0.1:`port` (0: a free one). */
export async function serveApiMetrics(port: number, log: LineWriter): Promise<ApiMetrics> {
  const registry = new Registry();
  const metrics = registerBatonMetrics(registry);
  const listener: MetricsListener = await listenForMetrics(registry, { port, host: '127.0.0.1', warn: (message) => log(`warning: ${message}`) });
  return { metrics, registry, url: listener.url, close: () => listener.close() };
}

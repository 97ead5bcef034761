/**
 * `@baton/resource/prometheus`: the SDK's metrics in the application's own prom-client registry.
 * prom-client is an optional peer dependency: only an application that imports this subpath needs
 * it; the rest of the SDK never loads it.
 *
 * @example
 * import express from 'express';
 * import { Registry, collectDefaultMetrics } from 'prom-client';
 * import { createGuard } from '@baton/resource';
 * import { registerBatonMetrics } from '@baton/resource/prometheus';
 *
 * const registry = new Registry();
 * collectDefaultMetrics({ register: registry });
 * const metrics = registerBatonMetrics(registry);
 * const guard = createGuard({ authority, audience: 'api://tasks', metrics });
 * app.get('/metrics', async (_req, res) => res.type(registry.contentType).send(await registry.metrics()));
 */
import { Counter, Histogram, type Registry } from 'prom-client';
import type { CacheLookup, DownstreamOutcome, ResourceMetrics, TokenKind } from './metrics.ts';

export type { ResourceMetrics, CacheLookup, DownstreamOutcome, TokenKind, GuardResult } from './metrics.ts';

/** A call to the token service or a downstream API: milliseconds to seconds. */
const CALL_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** Children cached by label values: no label object per call on the request path. */
function cached<C>(make: (...values: string[]) => C): (...values: string[]) => C {
  const children = new Map<string, C>();
  return (...values) => {
    const key = values.join('\u0000');
    let child = children.get(key);
    if (child === undefined) {
      child = make(...values);
      children.set(key, child);
    }
    return child;
  };
}

/**
 * Registers the SDK's metrics in `registry` and returns the `metrics` option for `createGuard`,
 * `createOboClient` and `createDownstream`. Registering twice in one registry throws (prom-client:
 * a metric name is registered once); share the returned object instead. Several APIs in one
 * process sharing a registry tell themselves apart with `registry.setDefaultLabels({ service })`.
 *
 * | metric | type | labels |
 * |---|---|---|
 * | `baton_guard_requests_total` | counter | `result` (`ok` or the GuardErrorReason) |
 * | `baton_jwks_fetches_total` | counter | `result` (`ok`, `error`) |
 * | `baton_jwks_fetch_duration_seconds` | histogram | |
 * | `baton_obo_cache_lookups_total` | counter | `kind` (`obo`, `app`), `result` (`hit`, `miss`, `join`) |
 * | `baton_obo_token_requests_total` | counter | `kind`, `result` (`ok` or the OAuth error code) |
 * | `baton_obo_token_request_duration_seconds` | histogram | `kind` |
 * | `baton_downstream_requests_total` | counter | `api`, `outcome` |
 * | `baton_downstream_request_duration_seconds` | histogram | `api` |
 */
export function registerBatonMetrics(registry: Registry): ResourceMetrics {
  if (registry === null || typeof registry !== 'object' || typeof registry.registerMetric !== 'function') {
    throw new TypeError('registerBatonMetrics: a prom-client Registry is required');
  }
  const registers = [registry];
  const guard = new Counter({ name: 'baton_guard_requests_total', help: "Requests the guard judged, by result: 'ok' or the refusal's reason code.", labelNames: ['result'], registers });
  const jwks = new Counter({ name: 'baton_jwks_fetches_total', help: "Fetches of the issuer's signing keys (JWKS), by result.", labelNames: ['result'], registers });
  const jwksDuration = new Histogram({ name: 'baton_jwks_fetch_duration_seconds', help: 'Duration of JWKS fetches.', buckets: CALL_BUCKETS, registers });
  const cache = new Counter({ name: 'baton_obo_cache_lookups_total', help: "OBO client token cache lookups: 'hit', 'miss' (a token request follows), 'join' (waited for the same request already in flight).", labelNames: ['kind', 'result'], registers });
  const requests = new Counter({ name: 'baton_obo_token_requests_total', help: "Token requests to the token service (On-Behalf-Of exchanges and app tokens), by result: 'ok' or the OAuth error code.", labelNames: ['kind', 'result'], registers });
  const requestDuration = new Histogram({ name: 'baton_obo_token_request_duration_seconds', help: 'Duration of token requests to the token service, retries included.', labelNames: ['kind'], buckets: CALL_BUCKETS, registers });
  const downstream = new Counter({ name: 'baton_downstream_requests_total', help: "Calls to downstream APIs with an On-Behalf-Of token, by API and outcome (status class, 'claims_challenge', 'unavailable', 'token_error').", labelNames: ['api', 'outcome'], registers });
  const downstreamDuration = new Histogram({ name: 'baton_downstream_request_duration_seconds', help: 'Duration of downstream calls, token acquisition included.', labelNames: ['api'], buckets: CALL_BUCKETS, registers });

  const guardChild = cached((result) => guard.labels({ result }));
  const jwksChild = cached((result) => jwks.labels({ result }));
  const cacheChild = cached((kind, result) => cache.labels({ kind, result }));
  const requestChild = cached((kind, result) => requests.labels({ kind, result }));
  const requestDurationChild = cached((kind) => requestDuration.labels({ kind }));
  const downstreamChild = cached((api, outcome) => downstream.labels({ api, outcome }));
  const downstreamDurationChild = cached((api) => downstreamDuration.labels({ api }));
  return {
    guard: (result) => guardChild(result).inc(),
    jwksFetch(result, seconds) {
      jwksChild(result).inc();
      jwksDuration.observe(seconds);
    },
    tokenCache: (kind: TokenKind, lookup: CacheLookup) => cacheChild(kind, lookup).inc(),
    tokenRequest(kind, result, seconds) {
      requestChild(kind, result).inc();
      requestDurationChild(kind).observe(seconds);
    },
    downstream(api: string, outcome: DownstreamOutcome, seconds: number) {
      downstreamChild(api, outcome).inc();
      downstreamDurationChild(api).observe(seconds);
    },
  };
}

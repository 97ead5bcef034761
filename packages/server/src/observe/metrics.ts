/**
 * The token service's Prometheus metrics (prom-client), one {@link ServerMetrics} per running
 * server with its own `Registry` (two servers in one process — tests, `baton dev` — never clash).
 * `startServer({ metrics })` creates it; without that option no metric is recorded at all and the
 * hot path pays nothing (`ctx.metrics` is undefined).
 *
 * Label cardinality is bounded by construction: a tenant or client id is a label only when it is
 * registered (a tenant the service serves, an application of that tenant's directory), a grant
 * only when this server offers it, an error only when it is one of core's OAuth error codes;
 * anything else is `unknown` / `other`. No user id, token id, `jti`, scope string or raw input
 * is ever a label. The names follow Prometheus' conventions: `baton_` prefix, base units
 * (seconds), `_total` for counters. The list and its PromQL live in docs/operations.md (Metrics).
 *
 * Hot-path cost: the per-request counters and histograms are observe/series.ts's label-bound
 * series, found by their label values (one Map level per label, no key or label object made per
 * call), so a token request costs a few Map lookups per metric and a few additions; the in-flight
 * gauge is read at scrape time from two numbers. An answered token request keeps no state for the
 * metrics: the endpoint counts it as it answers (only a refusal hands its labels to a hook).
 */
import { performance } from 'node:perf_hooks';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { AggregatorRegistry, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { BoundCounter, BoundHistogram } from './series.ts';
import { EXCHANGE_RULES, OAUTH_ERROR_CODES, type JwsAlg, type SigningAlg, type TenantDirectory } from '@baton/core';
import type { Store } from '../store/types.ts';
import { observeStore } from '../store/observed.ts';
import type { ExchangeAuditEvent } from '../audit.ts';
import { passwordHashLoad } from '../crypto/passwords.ts';

/** What `startServer({ metrics })` takes. */
export interface MetricsOptions {
  /**
   * Serve `GET /metrics` on a listener of its own at this port (0: a free one). Absent: the
   * metrics are recorded and readable through `RunningServer.metrics.registry`, nothing listens.
   */
  port?: number | undefined;
  /** Address of that listener. Default `127.0.0.1`: never the public interface unless asked. */
  host?: string | undefined;
  /** Include prom-client's default process metrics (CPU, memory, event loop, GC). Default true. */
  processMetrics?: boolean | undefined;
}

/** The label value of anything outside the registered set. */
export const UNKNOWN = 'unknown';

/** Token request latency (seconds): a signature is ~0.1 ms, a store round trip ~1 ms, a scrypt-heavy path ~100 ms. */
const REQUEST_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];
/** A JWS signature or verification on the thread pool: tens of microseconds (ES256) to milliseconds (RS256, a queued pool). */
const CRYPTO_BUCKETS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1];
/** A store call: an in-process SQLite read is ~10 µs; PostgreSQL over the network ~1 ms. */
const STORE_BUCKETS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];

const ERROR_CODES: ReadonlySet<string> = new Set(OAUTH_ERROR_CODES);
/** Core's rules plus the steps the server runs before the decision (audit.ts `AuditRule`). */
const RULES: ReadonlySet<string> = new Set([...EXCHANGE_RULES, 'request', 'assertion-signature', 'server']);

export type SignInStep = 'password' | 'mfa';
/** `ok`, a wrong password or code (`failed`), a locked account or address (`throttled`), a disabled user (`disabled`). */
export type SignInResult = 'ok' | 'failed' | 'throttled' | 'disabled';

/** Where the collected gauges read their values (at scrape time, not per request). */
export interface MetricsSource {
  /** The raw store (not the instrumented one: a scrape is not a store call of the service). */
  store: Store;
  now(): number;
}

/** What the token endpoint knows about a request by the time it answers. */
export interface TokenRequestLabels {
  tenant: string;
  grant: string;
  client: string;
}

const UNKNOWN_REQUEST: TokenRequestLabels = Object.freeze({ tenant: UNKNOWN, grant: UNKNOWN, client: UNKNOWN });

/** The labels of refused token requests, from the endpoint (`tokenRequestRefused`) to the route's `onError` hook. */
const refusedRequests = new WeakMap<object, TokenRequestLabels>();

/**
 * A token request the endpoint is refusing (it is about to throw): the labels it had learned
 * (tenant resolved, grant offered, client named or authenticated), for the route's `onError` hook
 * to count the request with. Only refusals pass through here: an answered request is counted by
 * the endpoint itself (`ServerMetrics.tokenRequest`), with no per-request state kept anywhere.
 */
export function tokenRequestRefused(request: object, labels: TokenRequestLabels): void {
  refusedRequests.set(request, labels);
}

/** The `result` of a token request refused by the abuse limits (429), told apart from a 503 `temporarily_unavailable`. */
export const RATE_LIMITED = 'rate_limited';

/**
 * A refused token request's `result` label: the OAuth error code answered, except a 429 (the
 * abuse limits: the client is told `temporarily_unavailable` too) is `rate_limited`, so that a
 * client over its limit and a store that is down (503) are two series.
 */
export function tokenResult(answer: { error: string; status: number }): string {
  return answer.status === 429 ? RATE_LIMITED : errorLabel(answer.error);
}

/**
 * The token route's hook: `onError` counts and times a refused request (`tokenResult` of the
 * error handler's answer; errors thrown before the handler — a body that is not a form, too
 * large, a repeated parameter — included, with `unknown` labels), as the error answer is about to
 * be sent. `toAnswer` is the error handler's reading of an error (http/errors.ts `toOAuthError`).
 * A request answered without an error is counted by the endpoint as it hands over the answer:
 * no hook runs on that path (an `onSend` hook cost every request a hook call and a per-request
 * WeakMap entry, docs/performance.md).
 */
export function tokenRouteHooks(metrics: ServerMetrics, toAnswer: (error: unknown) => { error: string; status: number }) {
  return {
    onError(request: object, reply: { elapsedTime: number }, error: unknown, done: () => void) {
      const labels = refusedRequests.get(request) ?? UNKNOWN_REQUEST;
      metrics.tokenRequest(labels.tenant, labels.grant, labels.client, tokenResult(toAnswer(error)), reply.elapsedTime / 1000);
      done();
    },
  };
}

/** `clientId` if `directory` registers it, else `unknown`: raw input never becomes a label. */
export function clientLabel(directory: TenantDirectory | undefined, clientId: string | undefined): string {
  return directory !== undefined && clientId !== undefined && directory.application(clientId) !== undefined ? clientId : UNKNOWN;
}

/** An OAuth error code as a label: one of core's codes, else `other`. */
export function errorLabel(code: string): string {
  return ERROR_CODES.has(code) ? code : 'other';
}

export class ServerMetrics {
  readonly registry = new Registry();
  readonly #tokenRequests: BoundCounter;
  readonly #tokenDuration: BoundHistogram;
  readonly #exchanges: BoundCounter;
  readonly #jws: BoundHistogram;
  /** JWS operations in flight, read by the gauge at scrape time (a number, not a metric call per signature). */
  readonly #jwsInFlight = { sign: 0, verify: 0 };
  readonly #store: BoundHistogram;
  readonly #signIns: BoundCounter;

  constructor(source: MetricsSource, options: Pick<MetricsOptions, 'processMetrics'> = {}) {
    const registers = [this.registry];
    if (options.processMetrics !== false) {
      collectDefaultMetrics({ register: this.registry });
      // prom-client also reports these three gauges under a `_total` name, which Prometheus' naming
      // rules keep for counters (`promtool check metrics` flags them); the same figures stay in
      // nodejs_active_handles, nodejs_active_requests and nodejs_active_resources, by type.
      for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) this.registry.removeSingleMetric(name);
    }

    this.#tokenRequests = new BoundCounter({
      name: 'baton_token_requests_total',
      help: "Token endpoint requests by tenant, grant type, client and result ('ok', the OAuth error code, or 'rate_limited' for a 429). Unregistered tenants, clients and grant types are 'unknown'.",
      labelNames: ['tenant', 'grant', 'client', 'result'],
      registers,
    });
    this.#tokenDuration = new BoundHistogram({
      name: 'baton_token_request_duration_seconds',
      help: 'Token endpoint response time by grant type, from the request line to the response sent.',
      labelNames: ['grant'],
      buckets: REQUEST_BUCKETS,
      registers,
    });

    this.#exchanges = new BoundCounter({
      name: 'baton_token_exchanges_total',
      help: "Token exchanges (On-Behalf-Of and RFC 8693) by tenant, dialect, decision (allow, refuse, error), the rule that decided, the calling API and the downstream API ('none' before it is known).",
      labelNames: ['tenant', 'form', 'decision', 'rule', 'caller', 'api'],
      registers,
    });

    this.#jws = new BoundHistogram({
      name: 'baton_jws_duration_seconds',
      help: "Time to sign a token or verify a token's signature on libuv's thread pool, queueing included, by operation and algorithm.",
      labelNames: ['operation', 'alg'],
      buckets: CRYPTO_BUCKETS,
      registers,
    });
    const inFlight = this.#jwsInFlight;
    new Gauge({
      name: 'baton_jws_operations_in_flight',
      help: "JWS signatures and verifications handed to libuv's thread pool and not finished (queued or running).",
      labelNames: ['operation'],
      registers,
      collect() {
        this.labels('sign').set(inFlight.sign);
        this.labels('verify').set(inFlight.verify);
      },
    });
    new Gauge({
      name: 'baton_password_hash_pool',
      help: "The password-hashing pool (scrypt, at most half of libuv's threads): hashes running and waiting for a slot. Process-wide.",
      labelNames: ['state'],
      registers,
      collect() {
        const load = passwordHashLoad();
        this.labels('running').set(load.running);
        this.labels('waiting').set(load.waiting);
      },
    });

    this.#store = new BoundHistogram({
      name: 'baton_store_call_duration_seconds',
      help: "Store calls by operation (the Store interface's method) and result ('ok' or 'error').",
      labelNames: ['operation', 'result'],
      buckets: STORE_BUCKETS,
      registers,
    });

    this.#signIns = new BoundCounter({
      name: 'baton_signin_attempts_total',
      help: "Interactive sign-in attempts by tenant, step (password, mfa) and result (ok, failed, throttled, disabled).",
      labelNames: ['tenant', 'step', 'result'],
      registers,
    });

    // The three key gauges read the store once per scrape: the first of their collects to run
    // starts the read, the others (run concurrently by the registry) wait for the same one.
    let reading: Promise<void> | undefined;
    const readKeys = (): Promise<void> =>
      (reading ??= (async () => {
        const found: { tenant: string; alg: SigningAlg; status: string; createdAt: number; activatedAt?: number | undefined }[] = [];
        const now = source.now();
        for (const tenant of await source.store.listTenants()) {
          for (const key of await source.store.listSigningKeys(tenant.id)) {
            if (key.status === 'retired' && (key.removeAfter ?? 0) <= now) continue;
            found.push({ tenant: tenant.id, alg: key.alg, status: key.status, createdAt: key.createdAt, activatedAt: key.activatedAt });
          }
        }
        keys.reset();
        newestAge.reset();
        currentAge.reset();
        const newest = new Map<string, { tenant: string; alg: SigningAlg; createdAt: number }>();
        for (const key of found) {
          keys.labels(key.tenant, key.alg, key.status).inc();
          const id = `${key.tenant}|${key.alg}`;
          if ((newest.get(id)?.createdAt ?? -Infinity) < key.createdAt) newest.set(id, key);
          if (key.status === 'current') currentAge.labels(key.tenant, key.alg).set(Math.max(0, now - (key.activatedAt ?? key.createdAt)));
        }
        for (const key of newest.values()) newestAge.labels(key.tenant, key.alg).set(Math.max(0, now - key.createdAt));
      })().finally(() => {
        reading = undefined;
      }));
    const keys = new Gauge({
      name: 'baton_signing_keys',
      help: "Published signing keys by tenant, algorithm and status (current, next, retired within its grace period).",
      labelNames: ['tenant', 'alg', 'status'],
      registers,
      // Every worker of `serve --workers N` reads the same store: one worker's answer, not the sum.
      aggregator: 'first',
      collect: readKeys,
    });
    const newestAge = new Gauge({
      name: 'baton_signing_key_newest_age_seconds',
      help: 'Age of the newest signing key of a tenant and algorithm (usually the published next key).',
      labelNames: ['tenant', 'alg'],
      registers,
      aggregator: 'first',
      collect: readKeys,
    });
    const currentAge = new Gauge({
      name: 'baton_signing_key_current_age_seconds',
      help: 'Time since the current signing key of a tenant and algorithm started signing.',
      labelNames: ['tenant', 'alg'],
      registers,
      aggregator: 'first',
      collect: readKeys,
    });
  }

  /** One answered token request. `result` is `ok`, an OAuth error code (bounded by {@link errorLabel}) or {@link RATE_LIMITED}. */
  tokenRequest(tenant: string, grant: string, client: string, result: string, seconds: number): void {
    this.#tokenRequests.labels(tenant, grant, client, result).inc();
    this.#tokenDuration.labels(grant).observe(seconds);
  }

  /** One exchange's audit event (the metrics subscribe to the audit feed). */
  exchange(event: ExchangeAuditEvent): void {
    // `caller` was authenticated and `api` resolved from the directory: both registered.
    this.#exchanges.labels(event.tenant, event.form, event.decision, RULES.has(event.rule) ? event.rule : 'other', event.caller, event.api ?? 'none').inc();
  }

  signIn(tenant: string, step: SignInStep, result: SignInResult): void {
    this.#signIns.labels(tenant, step, result).inc();
  }

  /** Times `work` (a JWS operation already handed to the thread pool) and counts it in flight meanwhile. */
  jws<T>(operation: 'sign' | 'verify', alg: JwsAlg, work: Promise<T>): Promise<T> {
    const started = performance.now();
    const inFlight = this.#jwsInFlight;
    inFlight[operation]++;
    const series = this.#jws.labels(operation, alg);
    const settled = () => {
      inFlight[operation]--;
      series.observe((performance.now() - started) / 1000);
    };
    // Not an async function: one reaction on `work`, no extra promise and await step per signature.
    return work.then(
      (value) => {
        settled();
        return value;
      },
      (error: unknown) => {
        settled();
        throw error;
      },
    );
  }

  /** A finished store call. */
  storeCall(operation: string, ok: boolean, seconds: number): void {
    this.#store.labels(operation, ok ? 'ok' : 'error').observe(seconds);
  }
}

/**
 * `store` with every call timed into `metrics` (`baton_store_call_duration_seconds`), whatever
 * the engine, through the one store wrapper (store/observed.ts). The wrapper only observes:
 * results, rejections and `this` are the engine's own.
 */
export function instrumentStore<S extends Store>(store: S, metrics: ServerMetrics): S {
  return observeStore(store, (operation, call) => {
    const started = performance.now();
    return call().then(
      (result) => {
        metrics.storeCall(operation, true, (performance.now() - started) / 1000);
        return result;
      },
      (error: unknown) => {
        metrics.storeCall(operation, false, (performance.now() - started) / 1000);
        throw error;
      },
    );
  });
}

/** What the listener serves: a registry, or the aggregate of a cluster's workers. */
export interface MetricsText {
  readonly contentType: string;
  metrics(): Promise<string>;
}

/**
 * `serve --workers N`, in a worker: answer the primary's requests for this worker's metrics
 * (prom-client's cluster protocol over the IPC channel) from `registry`.
 */
export function shareWithPrimary(registry: Registry): void {
  AggregatorRegistry.setRegistries([registry]);
  // Constructing one installs the worker's IPC listener (prom-client does it once per process).
  new AggregatorRegistry();
}

/**
 * `serve --workers N`, in the primary: the workers' metrics summed (counters, histograms, the
 * per-process gauges) or taken from one worker (the signing-key gauges, which read the shared store).
 */
export function clusterMetrics(): MetricsText {
  const aggregator = new AggregatorRegistry();
  return { contentType: aggregator.contentType, metrics: () => aggregator.clusterMetrics() };
}

/** The metrics listener of a running server. */
export interface MetricsListener {
  /** `http://127.0.0.1:PORT/metrics`. */
  url: string;
  close(): Promise<void>;
}

/**
 * `GET /metrics` (and `HEAD`) on a listener of its own, in Prometheus' text format; every other
 * path is 404 and every other method 405. Separate from the public port so the service's
 * internals are never answered to the internet, whatever a proxy forwards.
 */
export async function listenForMetrics(registry: MetricsText, options: { host?: string | undefined; port: number; warn(message: string): void }): Promise<MetricsListener> {
  const server: Server = createServer((request, response) => {
    const path = (request.url ?? '').split('?')[0];
    if (path !== '/metrics') {
      response.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('Not found: the metrics are at /metrics.\n');
      return;
    }
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      response.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' }).end('Method not allowed.\n');
      return;
    }
    registry.metrics().then(
      (text) => {
        response.writeHead(200, { 'content-type': registry.contentType, 'cache-control': 'no-store' });
        response.end(request.method === 'HEAD' ? undefined : text);
      },
      (error: unknown) => {
        // A collector that failed (the store is down): the detail goes to the operator's log only.
        options.warn(`metrics collection failed: ${(error as Error).message}`);
        response.writeHead(503, { 'content-type': 'text/plain; charset=utf-8' }).end('Metrics unavailable: a collector failed (see the service log).\n');
      },
    );
  });
  server.requestTimeout = 10_000;
  server.headersTimeout = 10_000;
  server.keepAliveTimeout = 65_000;
  const host = options.host ?? '127.0.0.1';
  await new Promise<void>((resolveListen, rejectListen) => {
    server.once('error', rejectListen);
    server.listen(options.port, host, () => {
      server.off('error', rejectListen);
      resolveListen();
    });
  });
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}/metrics`,
    close: () =>
      new Promise<void>((resolveClose) => {
        server.close(() => resolveClose());
        server.closeAllConnections();
      }),
  };
}

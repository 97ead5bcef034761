/**
 * The On-Behalf-Of client: trades the token this API received for one addressed to the next API.
 *
 * - Requests in Microsoft's form (`grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`,
 *   `requested_token_use=on_behalf_of`, `assertion`, `scope`) or RFC 8693's (`token-exchange`,
 *   `subject_token`…), authenticated with a client secret or `private_key_jwt` (RFC 7523).
 * - Tokens cached per (token endpoint, client, SHA-256 of the assertion, sorted scopes, claims) until
 *   a margin before `exp` (5 min, or half the lifetime of short-lived tokens), in a pluggable
 *   `TokenCacheStore` (bounded LRU by default; `redis.ts` for many replicas).
 * - Concurrent identical requests share one call to the token service.
 * - 5xx, 429 and network failures are retried with backoff, honouring `Retry-After`, bounded.
 * - Each token request carries a `client-request-id` (MSAL's correlation header, the same across
 *   retries) and, inside a request served through an adapter, its W3C `traceparent`/`tracestate`,
 *   so the token service's logs and audit events line up with the API's.
 * - The token service's error JSON becomes a typed error (`ConsentRequiredError`,
 *   `InteractionRequiredError` with its claims, `InvalidGrantError`).
 * - `appToken()` (client credentials) refuses to run inside a user's request unless told
 *   `{ asApplication: true, reason }`: the confused deputy is a bug.
 *
 * @example
 * const obo = createOboClient({ authority, clientId: 'tasks-api', credential: { clientSecret } });
 * const { accessToken } = await obo.onBehalfOf(req.auth, ['api://docs/Docs.Read']);
 */
import { performance } from 'node:perf_hooks';
import { createDpopProver, sha256b64u, type DpopProver, type JwsAlg } from '@baton/core';
import type { JsonWebKey, KeyObject } from 'node:crypto';
import { checkMetrics, errorCodeLabel, type ResourceMetrics, type TokenKind } from './metrics.ts';
import { MemoryTokenCacheStore, type CachedToken, type TokenCacheStore } from './cache.ts';
import { clientAuthentication } from './client-auth.ts';
import { currentContext } from './context.ts';
import { discover, normaliseAuthority } from './discovery.ts';
import { ConfusedDeputyError, OboError } from './errors.ts';
import { checkUrl, resolveFetch, type CaOption, type FetchLike } from './http.ts';
import { LoadOnce } from './load-once.ts';
import { consoleLogger, type Logger } from './logger.ts';
import type { Principal } from './principal.ts';
import { inSpan } from './tracing.ts';
import { TokenRequester, type TokenResponse } from './token-request.ts';
import type { ClientCredential } from './client-auth.ts';
import { revocationKeysOf, type Signals } from './signals.ts';

export type { ClientCredential } from './client-auth.ts';
export { consoleLogger, type Logger } from './logger.ts';
export { retryAfterSeconds } from './token-request.ts';

export const GRANT_JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
export const GRANT_TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
export const TOKEN_TYPE_ACCESS_TOKEN = 'urn:ietf:params:oauth:token-type:access_token';

export interface OboClientOptions {
  /** This API's client id. */
  clientId: string;
  credential: ClientCredential;
  /** The token endpoint, or `authority` to discover it. */
  tokenEndpoint?: string;
  authority?: string;
  /** `microsoft` (default): jwt-bearer + `requested_token_use=on_behalf_of`; `rfc8693`: token exchange. */
  form?: 'microsoft' | 'rfc8693';
  fetch?: FetchLike;
  ca?: CaOption;
  /** Milliseconds per attempt. Default 10 000. */
  timeout?: number;
  /** Default: a `MemoryTokenCacheStore` of `cacheSize` entries. */
  cache?: TokenCacheStore;
  /** Default 10 000. */
  cacheSize?: number;
  /** Seconds before `exp` at which a cached token is renewed. Default 300 (half the lifetime when shorter). */
  refreshMargin?: number;
  retry?: { retries?: number; baseDelayMs?: number; maxDelayMs?: number };
  /** Epoch milliseconds; for tests. */
  clock?: () => number;
  logger?: Logger;
  /** The application's metrics (metrics.ts): cache lookups, token requests and their duration. */
  metrics?: ResourceMetrics;
  /**
   * This API's DPoP key (RFC 9449; docs/dpop.md): a private `KeyObject` or JWK (EC P-256, RSA, Ed25519).
   * Every token request carries a proof made with it (retried once with the service's nonce when
   * asked), the tokens come back bound to it (`tokenType: 'DPoP'`), and `createDownstream` presents
   * them with a proof per call. Tokens are cached per key.
   */
  dpop?: { key: KeyObject | JsonWebKey; alg?: JwsAlg };
  /**
   * Continuous access evaluation (signals.ts): when a user or session is revoked, the tokens this
   * client acquired on behalf of it are dropped from the cache (memory and Redis).
   */
  signals?: Pick<Signals, 'onRevocation'>;
}

export interface OboRequest {
  /** The access token this API received (`principal.token`). */
  assertion: string;
  /** Scopes of one downstream API (`api://docs/Docs.Read`). */
  scopes: readonly string[];
  /** A claims request (JSON) to satisfy, e.g. from a downstream API's claims challenge. */
  claims?: string;
  /** Skip the cache lookup (the result is still cached). */
  forceRefresh?: boolean;
  /** RFC 8693 form only: `audience` / `resource` parameters. */
  audience?: string;
  resource?: string;
}

export interface AcquiredToken extends CachedToken {
  fromCache: boolean;
}

export interface AppTokenOptions {
  /** Required inside a user's request: the app acts as itself, knowingly. */
  asApplication?: boolean;
  /** Why the application's own authority is needed here; logged. */
  reason?: string;
  forceRefresh?: boolean;
}

export interface OboClient {
  readonly clientId: string;
  /** The DPoP prover of this API's key, when `dpop` was given (`createDownstream` signs its proofs with it). */
  readonly dpop?: DpopProver | undefined;
  /** OBO (or RFC 8693) exchange of `request.assertion`. */
  acquire(request: OboRequest): Promise<AcquiredToken>;
  /** `acquire` for a verified caller. */
  onBehalfOf(principal: Principal, scopes: readonly string[], options?: { claims?: string; forceRefresh?: boolean }): Promise<AcquiredToken>;
  /** Client credentials: this application acting as itself. Refused inside a user's request unless `{ asApplication: true, reason }`. */
  appToken(scopes: readonly string[], options?: AppTokenOptions): Promise<AcquiredToken>;
  /** Closes the cache store if it holds connections. */
  close(): Promise<void>;
}

/** Sorted, de-duplicated scopes; TypeError for none or a malformed one. */
export function normaliseScopes(scopes: readonly string[], where: string): string[] {
  if (!Array.isArray(scopes) || scopes.length === 0) throw new TypeError(`${where}: scopes must be a non-empty array`);
  for (const s of scopes) {
    if (typeof s !== 'string' || s === '' || /\s/.test(s)) throw new TypeError(`${where}: each scope must be a non-empty string without spaces`);
  }
  return [...new Set(scopes)].sort();
}

/**
 * The cache key of a token request. Composed of every input that changes the token, hashed so the
 * assertion never appears in it (and so it fits any store's key limits).
 */
export function tokenCacheKey(parts: {
  kind: 'obo' | 'app';
  tokenEndpoint: string;
  clientId: string;
  scopes: readonly string[];
  assertion?: string | undefined;
  claims?: string | undefined;
  audience?: string | undefined;
  resource?: string | undefined;
  /** The DPoP key the token is bound to (its thumbprint): a token bound to one key is useless to another. */
  jkt?: string | undefined;
}): string {
  const material = JSON.stringify([
    parts.kind,
    parts.tokenEndpoint,
    parts.clientId,
    parts.assertion === undefined ? null : sha256b64u(parts.assertion),
    [...new Set(parts.scopes)].sort(),
    parts.claims ?? null,
    parts.audience ?? null,
    parts.resource ?? null,
    ...(parts.jkt === undefined ? [] : [parts.jkt]),
  ]);
  return `${parts.kind}:${sha256b64u(material)}`;
}

const WHERE = 'createOboClient';

function readRetry(retry: OboClientOptions['retry']): { retries: number; baseDelayMs: number; maxDelayMs: number } {
  const retries = retry?.retries ?? 2;
  const baseDelayMs = retry?.baseDelayMs ?? 200;
  const maxDelayMs = retry?.maxDelayMs ?? 5000;
  if (!Number.isInteger(retries) || retries < 0 || retries > 10) throw new TypeError(`${WHERE}: retry.retries must be an integer from 0 to 10`);
  if (!(baseDelayMs >= 0) || !(maxDelayMs >= 0)) throw new TypeError(`${WHERE}: retry delays must be non-negative`);
  return { retries, baseDelayMs, maxDelayMs };
}

/** The token endpoint: configured, or discovered from the authority on first need. */
function tokenEndpointSource(options: OboClientOptions, fetchFn: FetchLike, timeout: number): LoadOnce<string> {
  if (options.tokenEndpoint !== undefined) {
    if (options.authority !== undefined) throw new TypeError(`${WHERE}: give tokenEndpoint or authority, not both`);
    const endpoint = checkUrl(options.tokenEndpoint, `${WHERE}: tokenEndpoint`);
    return new LoadOnce(async () => endpoint, endpoint);
  }
  const authority = normaliseAuthority(options.authority, `${WHERE}: authority`);
  return new LoadOnce(async () => {
    let tokenEndpoint: string | undefined;
    try {
      ({ tokenEndpoint } = await discover(fetchFn, authority, timeout));
    } catch (error) {
      throw new OboError(0, { error: 'temporarily_unavailable', error_description: `the token service cannot be reached (${(error as Error).message})` }, { cause: error });
    }
    if (!tokenEndpoint) throw new OboError(0, { error: 'server_error', error_description: 'the discovery document has no token_endpoint' });
    return tokenEndpoint;
  });
}

/**
 * One OBO client: options checked once, tokens cached per request and renewed a margin before
 * they expire, one call to the token service per key at a time.
 */
class TokenClient {
  readonly clientId: string;
  readonly #form: 'microsoft' | 'rfc8693';
  readonly #refreshMargin: number;
  readonly #clock: () => number;
  readonly #logger: Logger;
  readonly #cache: TokenCacheStore;
  readonly #requester: TokenRequester;
  readonly #tokenEndpoint: LoadOnce<string>;
  readonly #inflight = new Map<string, Promise<AcquiredToken>>();
  readonly #metrics: ResourceMetrics | undefined;
  readonly dpop: DpopProver | undefined;
  /** With signals: the cache keys of the tokens acquired for each user/session revocation key. */
  readonly #derived: Map<string, Set<string>> | undefined;
  readonly #maxDerived: number;
  readonly #stopPurging: (() => void) | undefined;

  constructor(options: OboClientOptions) {
    if (options === null || typeof options !== 'object') throw new TypeError(`${WHERE}: options are required`);
    const { clientId } = options;
    if (typeof clientId !== 'string' || clientId === '') throw new TypeError(`${WHERE}: clientId is required`);
    this.clientId = clientId;
    this.#form = options.form ?? 'microsoft';
    if (this.#form !== 'microsoft' && this.#form !== 'rfc8693') throw new TypeError(`${WHERE}: form must be 'microsoft' or 'rfc8693'`);
    const fetchFn = resolveFetch(options, WHERE);
    const timeout = options.timeout ?? 10_000;
    if (!Number.isFinite(timeout) || timeout <= 0) throw new TypeError(`${WHERE}: timeout must be a positive number of milliseconds`);
    this.#refreshMargin = options.refreshMargin ?? 300;
    if (!Number.isFinite(this.#refreshMargin) || this.#refreshMargin < 0) throw new TypeError(`${WHERE}: refreshMargin must be a non-negative number of seconds`);
    const retry = readRetry(options.retry);
    this.#clock = options.clock ?? Date.now;
    this.#logger = options.logger ?? consoleLogger;
    this.#metrics = checkMetrics(options.metrics, WHERE);
    this.#cache = options.cache ?? new MemoryTokenCacheStore({ maxEntries: options.cacheSize ?? 10_000, clock: this.#clock });
    // Client authentication, checked now.
    const authentication = clientAuthentication(options.credential, clientId, this.#clock, WHERE);
    this.#tokenEndpoint = tokenEndpointSource(options, fetchFn, timeout);
    this.dpop = readDpopKey(options.dpop);
    this.#requester = new TokenRequester({ clientId, authentication, fetch: fetchFn, timeout, ...retry, clock: this.#clock, logger: this.#logger, dpop: this.dpop });
    this.#maxDerived = (options.cacheSize ?? 10_000) * 4;
    if (options.signals !== undefined) {
      if (typeof options.signals?.onRevocation !== 'function') throw new TypeError(`${WHERE}: signals must come from createSignals()`);
      this.#derived = new Map();
      this.#stopPurging = options.signals.onRevocation((keys) => this.#purge(keys));
    }
  }

  /** Remembers that `cacheKey` holds a token derived from `assertion` (its user, session, tenant). */
  #derivedFrom(assertion: string, cacheKey: string): void {
    const derived = this.#derived;
    if (derived === undefined) return;
    let claims: Record<string, unknown>;
    try {
      claims = JSON.parse(Buffer.from(assertion.split('.')[1] ?? '', 'base64url').toString('utf8')) as Record<string, unknown>;
    } catch {
      return;
    }
    if (claims === null || typeof claims !== 'object') return;
    for (const key of revocationKeysOf(claims)) {
      let keys = derived.get(key);
      if (keys === undefined) {
        // Bounded: the oldest user's index leaves first (its tokens then expire on their own).
        if (derived.size >= this.#maxDerived) derived.delete(derived.keys().next().value as string);
        derived.set(key, (keys = new Set()));
      }
      keys.add(cacheKey);
    }
  }

  /** Drops every cached token derived from a revoked user or session. */
  #purge(keys: readonly string[]): void {
    const derived = this.#derived;
    if (derived === undefined) return;
    for (const key of keys) {
      const cacheKeys = derived.get(key);
      if (cacheKeys === undefined) continue;
      derived.delete(key);
      for (const cacheKey of cacheKeys) {
        this.#cache.delete(cacheKey).catch((error: Error) => this.#logger.warn('obo: could not drop a revoked token from the cache', { err: error.message }));
      }
    }
  }

  async acquire(request: OboRequest): Promise<AcquiredToken> {
    const scopes = this.#checkRequest(request);
    const url = await this.#tokenEndpoint.get();
    const { clientId } = this;
    const key = tokenCacheKey({ kind: 'obo', tokenEndpoint: url, clientId, scopes, assertion: request.assertion, claims: request.claims, audience: request.audience, resource: request.resource, jkt: this.dpop?.jkt });
    const grant = this.#form === 'microsoft' ? 'on_behalf_of' : 'token_exchange';
    this.#derivedFrom(request.assertion, key);
    return this.#cached(key, request.forceRefresh, grant, scopes, () => this.#requester.post(url, this.#exchangeParams(request, scopes), grant));
  }

  async onBehalfOf(principal: Principal, scopes: readonly string[], options: { claims?: string; forceRefresh?: boolean } = {}): Promise<AcquiredToken> {
    if (principal === null || typeof principal !== 'object' || typeof principal.token !== 'string') throw new TypeError('onBehalfOf: a verified Principal is required');
    if (principal.appOnly) {
      // DESIGN rule 3: only a user's (delegated) token can be exchanged; fail here, not at the token service.
      throw new OboError(0, { error: 'invalid_grant', error_description: 'an app-only token cannot be exchanged on behalf of a user' });
    }
    return this.acquire({
      assertion: principal.token,
      scopes,
      ...(options.claims !== undefined ? { claims: options.claims } : {}),
      ...(options.forceRefresh ? { forceRefresh: true } : {}),
    });
  }

  async appToken(scopes: readonly string[], options: AppTokenOptions = {}): Promise<AcquiredToken> {
    const normalised = normaliseScopes(scopes, 'appToken');
    this.#refuseConfusedDeputy(normalised, options);
    const url = await this.#tokenEndpoint.get();
    const key = tokenCacheKey({ kind: 'app', tokenEndpoint: url, clientId: this.clientId, scopes: normalised, jkt: this.dpop?.jkt });
    return this.#cached(key, options.forceRefresh, 'client_credentials', normalised, () => this.#requester.post(url, { grant_type: 'client_credentials', scope: normalised.join(' ') }, 'client_credentials'));
  }

  async close(): Promise<void> {
    this.#stopPurging?.();
    await this.#cache.close?.();
  }

  /** The request's scopes, normalised; TypeError for a malformed request. */
  #checkRequest(request: OboRequest): string[] {
    if (request === null || typeof request !== 'object') throw new TypeError('acquire: a request is required');
    if (typeof request.assertion !== 'string' || request.assertion === '') throw new TypeError('acquire: assertion must be the access token this API received');
    const scopes = normaliseScopes(request.scopes, 'acquire');
    if (request.claims !== undefined && typeof request.claims !== 'string') throw new TypeError('acquire: claims must be a JSON string');
    if (this.#form === 'microsoft' && (request.audience !== undefined || request.resource !== undefined)) {
      throw new TypeError("acquire: audience and resource are RFC 8693 parameters (form: 'rfc8693'); Microsoft's form names the API in its scopes");
    }
    return scopes;
  }

  /** The token request's parameters, in Microsoft's form or RFC 8693's. */
  #exchangeParams(request: OboRequest, scopes: readonly string[]): Record<string, string> {
    const params: Record<string, string> =
      this.#form === 'microsoft'
        ? { grant_type: GRANT_JWT_BEARER, requested_token_use: 'on_behalf_of', assertion: request.assertion, scope: scopes.join(' ') }
        : {
            grant_type: GRANT_TOKEN_EXCHANGE,
            subject_token: request.assertion,
            subject_token_type: TOKEN_TYPE_ACCESS_TOKEN,
            requested_token_type: TOKEN_TYPE_ACCESS_TOKEN,
            scope: scopes.join(' '),
            ...(request.audience ? { audience: request.audience } : {}),
            ...(request.resource ? { resource: request.resource } : {}),
          };
    if (request.claims) params.claims = request.claims;
    return params;
  }

  /** Inside a caller's request, the application acts as itself only when told so, with a reason (logged). */
  #refuseConfusedDeputy(scopes: readonly string[], options: AppTokenOptions): void {
    const ctx = currentContext();
    if (ctx === undefined) return;
    const reason = typeof options.reason === 'string' ? options.reason.trim() : '';
    if (options.asApplication !== true || reason === '') {
      throw new ConfusedDeputyError(
        'appToken() was called while serving a request for a caller: acting with the application\'s own permissions here lets the caller borrow them (confused deputy). ' +
          "Use the caller's token (onBehalfOf / downstream), or pass { asApplication: true, reason: '…' } if this is intended.",
      );
    }
    this.#logger.warn('app-only token requested while serving a caller', {
      clientId: this.clientId,
      scopes,
      reason: reason.slice(0, 200),
      callerClientId: ctx.principal.clientId,
      callerAppOnly: ctx.principal.appOnly,
    });
  }

  /**
   * A cached token, or the one `fetchToken` gets (shared by every concurrent caller of `key`), cached.
   * One `baton.obo` span (tracing.ts): grant, scopes, and whether the cache answered (`hit`), the
   * token service was asked (`miss`) or an identical request in flight was joined (`join`); the same
   * lookup counted in the application's metrics when it keeps them.
   */
  #cached(key: string, forceRefresh: boolean | undefined, grant: string, scopes: readonly string[], fetchToken: () => Promise<TokenResponse>): Promise<AcquiredToken> {
    const attributes = { 'baton.obo.grant': grant, 'baton.client_id': this.clientId, 'baton.obo.scopes': [...scopes], 'baton.obo.force_refresh': forceRefresh === true };
    const kind: TokenKind = grant === 'client_credentials' ? 'app' : 'obo';
    return inSpan('baton.obo', { attributes }, async (span) => {
      if (!forceRefresh) {
        const hit = await this.#cache.get(key);
        if (hit !== undefined && hit.expiresAt * 1000 > this.#clock()) {
          span.setAttribute('baton.obo.cache', 'hit');
          this.#metrics?.tokenCache(kind, 'hit');
          return { ...hit, fromCache: true };
        }
      }
      let pending = this.#inflight.get(key);
      const lookup = pending === undefined ? 'miss' : 'join';
      span.setAttribute('baton.obo.cache', lookup);
      this.#metrics?.tokenCache(kind, lookup);
      if (pending === undefined) {
        pending = this.#fetchAndCache(kind, key, fetchToken).finally(() => this.#inflight.delete(key));
        this.#inflight.set(key, pending);
      }
      return pending;
    });
  }

  /** The token service's answer, timed and counted by result when the application keeps metrics. */
  async #request(kind: TokenKind, fetchToken: () => Promise<TokenResponse>): Promise<TokenResponse> {
    const metrics = this.#metrics;
    if (metrics === undefined) return fetchToken();
    const started = performance.now();
    try {
      const response = await fetchToken();
      metrics.tokenRequest(kind, 'ok', (performance.now() - started) / 1000);
      return response;
    } catch (error) {
      metrics.tokenRequest(kind, errorCodeLabel(error instanceof OboError ? error.error : undefined), (performance.now() - started) / 1000);
      throw error;
    }
  }

  async #fetchAndCache(kind: TokenKind, key: string, fetchToken: () => Promise<TokenResponse>): Promise<AcquiredToken> {
    const response = await this.#request(kind, fetchToken);
    const now = this.#clock();
    const lifetime = response.expires_in;
    const margin = Math.min(this.#refreshMargin, lifetime / 2);
    const token: CachedToken = {
      accessToken: response.access_token,
      tokenType: response.token_type,
      expiresAt: Math.floor(now / 1000) + lifetime,
      ...(response.scope ? { scopes: response.scope.split(' ').filter(Boolean) } : {}),
    };
    const ttlMs = (lifetime - margin) * 1000;
    if (ttlMs > 0) await this.#cache.set(key, token, ttlMs);
    return { ...token, fromCache: false };
  }
}

function readDpopKey(dpop: OboClientOptions['dpop']): DpopProver | undefined {
  if (dpop === undefined) return undefined;
  if (dpop === null || typeof dpop !== 'object' || dpop.key === undefined) throw new TypeError(`${WHERE}: dpop.key must be a private KeyObject or JWK`);
  try {
    return createDpopProver(dpop.key, dpop.alg);
  } catch (error) {
    throw new TypeError(`${WHERE}: dpop.key: ${(error as Error).message}`);
  }
}

export function createOboClient(options: OboClientOptions): OboClient {
  const client = new TokenClient(options);
  // Methods that need no `this`, as before: `const { onBehalfOf } = obo` keeps working.
  return {
    clientId: client.clientId,
    dpop: client.dpop,
    acquire: (request) => client.acquire(request),
    onBehalfOf: (principal, scopes, opts) => client.onBehalfOf(principal, scopes, opts),
    appToken: (scopes, opts) => client.appToken(scopes, opts),
    close: () => client.close(),
  };
}

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
import { createPrivateKey, randomUUID, type KeyObject } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { createSigner, decodeJws, sha256b64u, type SigningAlg, type Signer } from '@baton/core';
import { MemoryTokenCacheStore, type CachedToken, type TokenCacheStore } from './cache.ts';
import { currentContext } from './context.ts';
import { discover, normaliseAuthority } from './discovery.ts';
import { ConfusedDeputyError, OboError, oboErrorFrom, type TokenErrorBody } from './errors.ts';
import { checkUrl, readJsonObject, resolveFetch, type CaOption, type FetchLike } from './http.ts';
import type { Principal } from './principal.ts';

export const GRANT_JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
export const GRANT_TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
export const TOKEN_TYPE_ACCESS_TOKEN = 'urn:ietf:params:oauth:token-type:access_token';
const CLIENT_ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

export type ClientCredential =
  | { clientSecret: string; method?: 'client_secret_basic' | 'client_secret_post' }
  | { privateKey: KeyObject | string; keyId: string; algorithm?: SigningAlg };

export interface Logger {
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
}

/** Writes one JSON line to stderr per event. */
export const consoleLogger: Logger = {
  info: (message, fields) => console.info(JSON.stringify({ level: 'info', msg: message, ...fields })),
  warn: (message, fields) => console.warn(JSON.stringify({ level: 'warn', msg: message, ...fields })),
};

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
  /** OBO (or RFC 8693) exchange of `request.assertion`. */
  acquire(request: OboRequest): Promise<AcquiredToken>;
  /** `acquire` for a verified caller. */
  onBehalfOf(principal: Principal, scopes: readonly string[], options?: { claims?: string; forceRefresh?: boolean }): Promise<AcquiredToken>;
  /** Client credentials: this application acting as itself. Refused inside a user's request unless `{ asApplication: true, reason }`. */
  appToken(scopes: readonly string[], options?: AppTokenOptions): Promise<AcquiredToken>;
  /** Closes the cache store if it holds connections. */
  close(): Promise<void>;
}

interface TokenResponse {
  access_token: string;
  token_type: string;
  expires_in: number;
  scope?: string;
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
  ]);
  return `${parts.kind}:${sha256b64u(material)}`;
}

/** Seconds to wait per `Retry-After` (delta-seconds or HTTP-date), or `undefined`. */
export function retryAfterSeconds(value: string | null, nowMs: number): number | undefined {
  if (value === null) return undefined;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v);
  const date = Date.parse(v);
  return Number.isNaN(date) ? undefined : Math.max(0, Math.ceil((date - nowMs) / 1000));
}

function formEncode(value: string): string {
  // RFC 6749 §2.3.1 / Appendix B: application/x-www-form-urlencoded before Basic encoding.
  return encodeURIComponent(value).replace(/%20/g, '+');
}

export function createOboClient(options: OboClientOptions): OboClient {
  const where = 'createOboClient';
  if (options === null || typeof options !== 'object') throw new TypeError(`${where}: options are required`);
  const { clientId } = options;
  if (typeof clientId !== 'string' || clientId === '') throw new TypeError(`${where}: clientId is required`);
  const form = options.form ?? 'microsoft';
  if (form !== 'microsoft' && form !== 'rfc8693') throw new TypeError(`${where}: form must be 'microsoft' or 'rfc8693'`);
  const fetchFn = resolveFetch(options, where);
  const timeout = options.timeout ?? 10_000;
  if (!Number.isFinite(timeout) || timeout <= 0) throw new TypeError(`${where}: timeout must be a positive number of milliseconds`);
  const refreshMargin = options.refreshMargin ?? 300;
  if (!Number.isFinite(refreshMargin) || refreshMargin < 0) throw new TypeError(`${where}: refreshMargin must be a non-negative number of seconds`);
  const retries = options.retry?.retries ?? 2;
  const baseDelayMs = options.retry?.baseDelayMs ?? 200;
  const maxDelayMs = options.retry?.maxDelayMs ?? 5000;
  if (!Number.isInteger(retries) || retries < 0 || retries > 10) throw new TypeError(`${where}: retry.retries must be an integer from 0 to 10`);
  if (!(baseDelayMs >= 0) || !(maxDelayMs >= 0)) throw new TypeError(`${where}: retry delays must be non-negative`);
  const clock = options.clock ?? Date.now;
  const logger = options.logger ?? consoleLogger;
  const cache: TokenCacheStore = options.cache ?? new MemoryTokenCacheStore({ maxEntries: options.cacheSize ?? 10_000, clock });

  // Client authentication, checked now.
  const credential = options.credential;
  if (credential === null || typeof credential !== 'object') throw new TypeError(`${where}: credential is required`);
  let secret: { value: string; method: 'client_secret_basic' | 'client_secret_post' } | undefined;
  let signer: Signer | undefined;
  if ('clientSecret' in credential) {
    if (typeof credential.clientSecret !== 'string' || credential.clientSecret === '') throw new TypeError(`${where}: credential.clientSecret must be a non-empty string`);
    const method = credential.method ?? 'client_secret_basic';
    if (method !== 'client_secret_basic' && method !== 'client_secret_post') throw new TypeError(`${where}: credential.method must be client_secret_basic or client_secret_post`);
    secret = { value: credential.clientSecret, method };
  } else if ('privateKey' in credential) {
    const key = typeof credential.privateKey === 'string' ? createPrivateKey(credential.privateKey) : credential.privateKey;
    if (key.type !== 'private') throw new TypeError(`${where}: credential.privateKey must be a private key`);
    if (typeof credential.keyId !== 'string' || credential.keyId === '') throw new TypeError(`${where}: credential.keyId is required`);
    const alg = credential.algorithm ?? (key.asymmetricKeyType === 'ec' ? 'ES256' : 'PS256');
    signer = createSigner(key, credential.keyId, alg); // TypeError if the key does not fit the algorithm
  } else {
    throw new TypeError(`${where}: credential needs clientSecret, or privateKey and keyId`);
  }

  let endpoint: string | undefined;
  let discovering: Promise<string> | undefined;
  let authority: string | undefined;
  if (options.tokenEndpoint !== undefined) {
    if (options.authority !== undefined) throw new TypeError(`${where}: give tokenEndpoint or authority, not both`);
    endpoint = checkUrl(options.tokenEndpoint, `${where}: tokenEndpoint`);
  } else {
    authority = normaliseAuthority(options.authority, `${where}: authority`);
  }
  const tokenEndpoint = (): Promise<string> => {
    if (endpoint !== undefined) return Promise.resolve(endpoint);
    discovering ??= discover(fetchFn, authority as string, timeout).then(
      (d) => {
        discovering = undefined;
        if (!d.tokenEndpoint) throw new OboError(0, { error: 'server_error', error_description: 'the discovery document has no token_endpoint' });
        endpoint = d.tokenEndpoint;
        return endpoint;
      },
      (error: unknown) => {
        discovering = undefined;
        throw new OboError(0, { error: 'temporarily_unavailable', error_description: `the token service cannot be reached (${(error as Error).message})` }, { cause: error });
      },
    );
    return discovering;
  };

  const inflight = new Map<string, Promise<AcquiredToken>>();

  function authenticate(body: URLSearchParams, headers: Record<string, string>, audience: string): void {
    if (secret?.method === 'client_secret_basic') {
      headers.authorization = `Basic ${Buffer.from(`${formEncode(clientId)}:${formEncode(secret.value)}`).toString('base64')}`;
      return;
    }
    body.set('client_id', clientId);
    if (secret) {
      body.set('client_secret', secret.value);
      return;
    }
    // RFC 7523 §3: iss = sub = client, aud = the token endpoint, short-lived, unique jti.
    const now = Math.floor(clock() / 1000);
    const assertion = (signer as Signer).sign({ iss: clientId, sub: clientId, aud: audience, iat: now, nbf: now, exp: now + 120, jti: randomUUID() });
    body.set('client_assertion_type', CLIENT_ASSERTION_TYPE);
    body.set('client_assertion', assertion);
  }

  function backoff(attempt: number): number {
    const ceiling = Math.min(maxDelayMs, baseDelayMs * 2 ** attempt);
    return ceiling / 2 + Math.random() * (ceiling / 2);
  }

  async function post(params: Record<string, string>, what: string): Promise<TokenResponse> {
    const url = await tokenEndpoint();
    // Correlation with the token service's logs and audit events: MSAL's `client-request-id` (one
    // per token request, kept across retries) and the W3C trace of the request being served, if any.
    const clientRequestId = randomUUID();
    const trace = currentContext();
    for (let attempt = 0; ; attempt++) {
      const body = new URLSearchParams(params);
      const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json', 'client-request-id': clientRequestId };
      if (trace?.traceparent) {
        headers.traceparent = trace.traceparent;
        if (trace.tracestate) headers.tracestate = trace.tracestate;
      }
      authenticate(body, headers, url);
      let res: Response;
      try {
        res = await fetchFn(url, { method: 'POST', headers, body, redirect: 'manual', signal: AbortSignal.timeout(timeout) });
      } catch (error) {
        if (attempt < retries) {
          logger.warn('token request failed, retrying', { clientId, grant: what, clientRequestId, attempt: attempt + 1, cause: (error as Error)?.name });
          await sleep(backoff(attempt));
          continue;
        }
        throw new OboError(0, { error: 'temporarily_unavailable', error_description: 'the token service could not be reached' }, { cause: error });
      }
      if (res.status === 429 || res.status >= 500) {
        const wait = retryAfterSeconds(res.headers.get('retry-after'), clock());
        const delay = wait === undefined ? backoff(attempt) : wait * 1000;
        const parsed = await readJsonObject(res, 64 * 1024).catch(() => undefined);
        if (attempt < retries && delay <= maxDelayMs) {
          logger.warn('token service busy, retrying', { clientId, grant: what, clientRequestId, status: res.status, attempt: attempt + 1, delayMs: Math.round(delay) });
          await sleep(delay);
          continue;
        }
        const error = typeof parsed?.error === 'string' ? parsed.error : res.status === 429 ? 'temporarily_unavailable' : 'server_error';
        throw new OboError(res.status, { ...(parsed as Partial<TokenErrorBody> | undefined), error, error_description: typeof parsed?.error_description === 'string' ? parsed.error_description : `the token service answered HTTP ${res.status}` });
      }
      let json: Record<string, unknown>;
      try {
        json = await readJsonObject(res, 256 * 1024);
      } catch {
        throw new OboError(res.status, { error: 'server_error', error_description: `the token service answered HTTP ${res.status} without a JSON object` });
      }
      if (res.status !== 200) {
        if (typeof json.error !== 'string') throw new OboError(res.status, { error: 'server_error', error_description: `the token service answered HTTP ${res.status}` });
        throw oboErrorFrom(res.status, json as unknown as TokenErrorBody);
      }
      if (typeof json.access_token !== 'string' || json.access_token === '') {
        throw new OboError(res.status, { error: 'server_error', error_description: 'the token response has no access_token' });
      }
      if (typeof json.token_type !== 'string' || json.token_type.toLowerCase() !== 'bearer') {
        throw new OboError(res.status, { error: 'server_error', error_description: 'the token response is not a Bearer token' });
      }
      let expiresIn = typeof json.expires_in === 'number' ? json.expires_in : typeof json.expires_in === 'string' ? Number(json.expires_in) : NaN;
      if (!Number.isFinite(expiresIn) || expiresIn <= 0) {
        // RFC 6749 §5.1 makes expires_in optional: read exp from a JWT access token, else assume a minute.
        try {
          const exp = decodeJws(json.access_token).payload.exp;
          expiresIn = typeof exp === 'number' ? exp - Math.floor(clock() / 1000) : 60;
        } catch {
          expiresIn = 60;
        }
      }
      return { access_token: json.access_token, token_type: json.token_type, expires_in: expiresIn, ...(typeof json.scope === 'string' ? { scope: json.scope } : {}) };
    }
  }

  async function cached(key: string, forceRefresh: boolean | undefined, fetchToken: () => Promise<TokenResponse>): Promise<AcquiredToken> {
    if (!forceRefresh) {
      const hit = await cache.get(key);
      if (hit !== undefined && hit.expiresAt * 1000 > clock()) return { ...hit, fromCache: true };
    }
    let pending = inflight.get(key);
    if (pending === undefined) {
      pending = (async () => {
        const response = await fetchToken();
        const now = clock();
        const lifetime = response.expires_in;
        const margin = Math.min(refreshMargin, lifetime / 2);
        const token: CachedToken = {
          accessToken: response.access_token,
          tokenType: 'Bearer',
          expiresAt: Math.floor(now / 1000) + lifetime,
          ...(response.scope ? { scopes: response.scope.split(' ').filter(Boolean) } : {}),
        };
        const ttlMs = (lifetime - margin) * 1000;
        if (ttlMs > 0) await cache.set(key, token, ttlMs);
        return { ...token, fromCache: false };
      })().finally(() => inflight.delete(key));
      inflight.set(key, pending);
    }
    return pending;
  }

  async function acquire(request: OboRequest): Promise<AcquiredToken> {
    if (request === null || typeof request !== 'object') throw new TypeError('acquire: a request is required');
    if (typeof request.assertion !== 'string' || request.assertion === '') throw new TypeError('acquire: assertion must be the access token this API received');
    const scopes = normaliseScopes(request.scopes, 'acquire');
    if (request.claims !== undefined && typeof request.claims !== 'string') throw new TypeError('acquire: claims must be a JSON string');
    if (form === 'microsoft' && (request.audience !== undefined || request.resource !== undefined)) {
      throw new TypeError("acquire: audience and resource are RFC 8693 parameters (form: 'rfc8693'); Microsoft's form names the API in its scopes");
    }
    const url = await tokenEndpoint();
    const key = tokenCacheKey({ kind: 'obo', tokenEndpoint: url, clientId, scopes, assertion: request.assertion, claims: request.claims, audience: request.audience, resource: request.resource });
    return cached(key, request.forceRefresh, () => {
      const params: Record<string, string> =
        form === 'microsoft'
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
      return post(params, form === 'microsoft' ? 'on_behalf_of' : 'token_exchange');
    });
  }

  return {
    clientId,
    acquire,
    async onBehalfOf(principal, scopes, opts = {}) {
      if (principal === null || typeof principal !== 'object' || typeof principal.token !== 'string') throw new TypeError('onBehalfOf: a verified Principal is required');
      if (principal.appOnly) {
        // DESIGN rule 3: only a user's (delegated) token can be exchanged; fail here, not at the token service.
        throw new OboError(0, { error: 'invalid_grant', error_description: 'an app-only token cannot be exchanged on behalf of a user' });
      }
      return acquire({ assertion: principal.token, scopes, ...(opts.claims !== undefined ? { claims: opts.claims } : {}), ...(opts.forceRefresh ? { forceRefresh: true } : {}) });
    },
    async appToken(scopes, opts = {}) {
      const normalised = normaliseScopes(scopes, 'appToken');
      const ctx = currentContext();
      if (ctx !== undefined) {
        const reason = typeof opts.reason === 'string' ? opts.reason.trim() : '';
        if (opts.asApplication !== true || reason === '') {
          throw new ConfusedDeputyError(
            'appToken() was called while serving a request for a caller: acting with the application\'s own permissions here lets the caller borrow them (confused deputy). ' +
              "Use the caller's token (onBehalfOf / downstream), or pass { asApplication: true, reason: '…' } if this is intended.",
          );
        }
        logger.warn('app-only token requested while serving a caller', {
          clientId,
          scopes: normalised,
          reason: reason.slice(0, 200),
          callerClientId: ctx.principal.clientId,
          callerAppOnly: ctx.principal.appOnly,
        });
      }
      const url = await tokenEndpoint();
      const key = tokenCacheKey({ kind: 'app', tokenEndpoint: url, clientId, scopes: normalised });
      return cached(key, opts.forceRefresh, () => post({ grant_type: 'client_credentials', scope: normalised.join(' ') }, 'client_credentials'));
    },
    async close() {
      await cache.close?.();
    },
  };
}

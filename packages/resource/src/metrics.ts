/**
 * What the SDK reports about its work, for the application's own metrics: guard results, JWKS
 * fetches, OBO cache lookups, token requests, downstream calls. An interface of plain callbacks,
 * so the SDK itself depends on no metrics library; `@baton/resource/prometheus` implements it with
 * prom-client in the application's registry (`registerBatonMetrics(registry)`), and anything else
 * (OpenTelemetry metrics, StatsD) can implement it the same way.
 *
 * Every value the SDK passes is from a bounded set: a guard reason code, an OAuth error code of
 * core's catalogue (else `other`), the downstream API as configured. Never a token, a user or a
 * URL path.
 *
 * @example
 * import { Registry } from 'prom-client';
 * import { registerBatonMetrics } from '@baton/resource/prometheus';
 * const registry = new Registry();
 * const metrics = registerBatonMetrics(registry);
 * const guard = createGuard({ authority, audience: 'api://tasks', metrics });
 * const obo = createOboClient({ clientId: 'tasks-api', credential, authority, metrics });
 * const docs = createDownstream({ obo, scopes: ['api://docs/Docs.Read'], baseUrl, metrics });
 */
import { OAUTH_ERROR_CODES } from '@baton/core';

/** The guard's answer: `ok`, or the refusal's `GuardErrorReason` (`ERR_JWT_EXPIRED`, `ERR_SCOPE_INSUFFICIENT`…); `error` for anything unexpected. */
export type GuardResult = string;

/** What the OBO client's cache did for one token: served it, missed, or joined a request already in flight. */
export type CacheLookup = 'hit' | 'miss' | 'join';

/** The token request kinds: On-Behalf-Of (either wire form) or the application's own token. */
export type TokenKind = 'obo' | 'app';

/**
 * A downstream call's outcome: the response status class (`2xx` … `5xx`), `claims_challenge` (a
 * step-up the caller must satisfy), `unavailable` (no answer), `token_error` (no token to call with),
 * `aborted` (the caller's own signal).
 */
export type DownstreamOutcome = '1xx' | '2xx' | '3xx' | '4xx' | '5xx' | 'claims_challenge' | 'unavailable' | 'token_error' | 'aborted';

export interface ResourceMetrics {
  /** One `verify`, `authorize` or `check` of the guard, by result. */
  guard(result: GuardResult): void;
  /** One fetch of the issuer's JWKS (discovery included), its result and duration. */
  jwksFetch(result: 'ok' | 'error', seconds: number): void;
  /** One cache lookup of the OBO client. */
  tokenCache(kind: TokenKind, lookup: CacheLookup): void;
  /** One token request to the token service (retries included), `ok` or its OAuth error code, and its duration. */
  tokenRequest(kind: TokenKind, result: string, seconds: number): void;
  /** One downstream call (`api`: the downstream API's resource, `api://docs`), its outcome and duration. */
  downstream(api: string, outcome: DownstreamOutcome, seconds: number): void;
}

const ERROR_CODES: ReadonlySet<string> = new Set(OAUTH_ERROR_CODES);

/** An OAuth error code as a metric value: one of core's codes, else `other`. */
export function errorCodeLabel(code: unknown): string {
  return typeof code === 'string' && ERROR_CODES.has(code) ? code : 'other';
}

/** A response status as its class. */
export function statusClass(status: number): DownstreamOutcome {
  return status < 200 ? '1xx' : status < 300 ? '2xx' : status < 400 ? '3xx' : status < 500 ? '4xx' : '5xx';
}

/** Checks a `metrics` option when the component is built (programmer mistakes throw `TypeError` there). */
export function checkMetrics(metrics: unknown, where: string): ResourceMetrics | undefined {
  if (metrics === undefined) return undefined;
  const m = metrics as Partial<ResourceMetrics> | null;
  if (m === null || typeof m !== 'object' || (['guard', 'jwksFetch', 'tokenCache', 'tokenRequest', 'downstream'] as const).some((k) => typeof m[k] !== 'function')) {
    throw new TypeError(`${where}: metrics must implement ResourceMetrics (registerBatonMetrics(registry) from @baton/resource/prometheus makes one)`);
  }
  return m as ResourceMetrics;
}

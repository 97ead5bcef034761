/**
 * The guard: validates the bearer token an API receives and decides whether the caller may do
 * what it asks.
 *
 * Verification is composed of pure steps from `@baton/core` (jose's shape, `node:crypto` speed):
 * parse the header → decode the JWS → check the algorithm against the allow-list and `typ` →
 * find the key in the issuer's JWKS by `kid` → verify the signature → validate the claims
 * (`iss`, `aud`, `exp`/`nbf`/`iat` with skew, `tid`) → read the `Principal`.
 * A verified token is remembered (bounded LRU keyed by its SHA-256, until `exp` minus the skew), so a
 * repeated token costs a hash and a map lookup.
 *
 * @example
 * const guard = createGuard({ authority: 'https://login.example/contoso/v2.0', audience: 'api://tasks' });
 * const principal = await guard.verify(req.headers.authorization);
 * guard.authorize(principal, { scopes: { any: ['Tasks.Read'] } });
 */
import {
  checkDpopProof,
  checkJwsHeader,
  decodeJws,
  DPOP_ALGS,
  DPOP_FUTURE_SECONDS,
  DPOP_MAX_AGE_SECONDS,
  DpopNonces,
  DpopProofError,
  singleDpopHeader,
  JwsFormatError,
  JwtError,
  SUPPORTED_JWS_ALGS,
  sha256b64u,
  validateClaims,
  verifyJwsSignature,
  type DpopAlg,
  type JwsAlg,
  type JwsHeaderPolicy,
} from '@baton/core';
import { looksLikeBareToken, MAX_AUTHORIZATION_LENGTH, presentedToken, type AuthorizationInput, type ChallengeContext, type TokenScheme } from './bearer.ts';
import { MemoryDpopReplayCache, type DpopMode, type DpopReplayCache, type DpopRequestInput, type GuardDpopOptions } from './dpop.ts';
import { ClaimsChallengeError, claimsChallenge, GuardError, insufficientUserAuthentication, type GuardErrorReason } from './errors.ts';
import { discover, normaliseAuthority } from './discovery.ts';
import { checkUrl, resolveFetch, type CaOption, type FetchLike } from './http.ts';
import { JwksUnavailableError, RemoteJwks } from './jwks.ts';
import { LoadOnce } from './load-once.ts';
import { Lru } from './lru.ts';
import { checkMetrics, type ResourceMetrics } from './metrics.ts';
import { principalFrom, type Principal } from './principal.ts';
import { failSpan, inSpan, type Span } from './tracing.ts';
import { checkRequirement, describe, nonEmptyStrings, satisfies, type AnyAll, type Requirement } from './requirement.ts';
import type { Signals } from './signals.ts';

export { checkRequirement, type AnyAll, type Requirement } from './requirement.ts';

/** Asymmetric algorithms only: `none` and HMAC (`HS*`) are never accepted, whatever the token says. */
export const DEFAULT_ALGORITHMS: readonly JwsAlg[] = ['ES256', 'RS256', 'PS256'];

export interface GuardOptions {
  /**
   * The issuer's authority; `{authority}/.well-known/openid-configuration` gives `issuer` and
   * `jwks_uri` (OpenID Connect Discovery 1.0 §4). The discovered `issuer` must equal the authority.
   */
  authority?: string;
  /** With `jwksUri`, instead of `authority`. */
  issuer?: string;
  jwksUri?: string;
  /** What this API answers to in `aud`: its client id, its identifier URI, or both. */
  audience: string | readonly string[];
  /** Accepted `tid` values; absent = any tenant of the issuer. */
  tenants?: readonly string[];
  /**
   * Accepted JWS algorithms. Default `['ES256', 'RS256', 'PS256']`. The algorithm is checked against
   * this list and the key's type before any verification, so `alg: none` and HS256-keyed-with-the-
   * public-key (algorithm confusion) have nowhere to go.
   */
  algorithms?: readonly JwsAlg[];
  /** Seconds of clock skew tolerated on `exp`, `nbf`, `iat`. Default 60. */
  clockTolerance?: number;
  /**
   * RFC 9068 §2.1 explicit typing: the header must say `typ: at+jwt` (default true), which keeps ID
   * tokens and other JWTs from the same issuer out. With `false`, `typ` may also be absent or `JWT`.
   */
  requireTyp?: boolean;
  /** `realm` of the challenges. Default: the first audience. */
  realm?: string;
  /** RFC 9728 §5.1: this API's protected resource metadata URL, advertised in 401 challenges. */
  resourceMetadata?: string;
  /** A fetch for discovery and JWKS (proxy, instrumentation). Exclusive with `ca`. */
  fetch?: FetchLike;
  /** CA certificates (PEM) to trust for discovery and JWKS, e.g. the `baton serve --tls-dev` CA. */
  ca?: CaOption;
  /** JWKS cache timings, in milliseconds. */
  jwks?: { timeout?: number; cooldown?: number; maxAge?: number };
  /** Verified tokens remembered. Default 10 000; 0 turns the cache off. */
  cacheSize?: number;
  /** Epoch milliseconds; for tests. */
  clock?: () => number;
  /** Told about failures of discovery and JWKS fetches (never given a token). Default: silent. */
  onError?: (error: Error) => void;
  /**
   * The application's metrics (metrics.ts): each `verify`/`authorize`/`check` by result, each JWKS
   * fetch. `registerBatonMetrics(registry)` from `@baton/resource/prometheus` makes one.
   */
  metrics?: ResourceMetrics;
  /**
   * DPoP (RFC 9449; docs/dpop.md): `Authorization: DPoP <token>` with a `DPoP` proof is checked
   * (`ath`, `cnf.jkt`, `htm`, `htu`, `iat`, single use, nonces); a DPoP-bound token presented as
   * Bearer is always refused. `mode: 'required'` refuses bearer tokens (routes may override).
   */
  dpop?: GuardDpopOptions;
  /**
   * Continuous access evaluation (signals.ts, `createSignals`): a token issued before its user's or
   * session's revocation is refused with the Entra CAE claims challenge (`401 insufficient_claims`,
   * `claims` asking for `nbf` after the revocation), cached verification or not.
   */
  signals?: Pick<Signals, 'revokedAt'>;
}

export interface Guard {
  /**
   * Verifies the token in an `Authorization` header value (or the raw token). Pass every value of a
   * repeated header as an array (Node: `req.headersDistinct.authorization`) so duplicates are caught.
   * `request` (method, absolute URL, `DPoP` headers) is what a DPoP proof is checked against; the
   * adapters pass it. `dpop` overrides the guard's DPoP mode for this call.
   * @throws GuardError
   */
  verify(authorization: AuthorizationInput, request?: DpopRequestInput, dpop?: DpopMode): Promise<Principal>;
  /** Checks a requirement; throws a `GuardError` (403 `insufficient_scope`, 401 step-up) if unmet. */
  authorize(principal: Principal, requirement?: Requirement): void;
  /** `verify` then `authorize` (the requirement's `dpop` overriding the guard's mode). */
  check(authorization: AuthorizationInput, requirement?: Requirement, request?: DpopRequestInput): Promise<Principal>;
  /** Fetches discovery and keys now instead of at the first request; rejects if they cannot be fetched. */
  ready(): Promise<void>;
  /** A claims challenge carrying this guard's `realm` conventions and the issuer's `authorization_uri`. */
  claimsChallenge(claims: string | Record<string, unknown>): ClaimsChallengeError;
  readonly realm: string;
  readonly audiences: readonly string[];
  /** The issuer, once known (after `ready()` or the first verification when using `authority`). */
  readonly issuer: string | undefined;
}

/** The issuer this guard trusts, configured or discovered. */
interface Issuer {
  issuer: string;
  /** Entra multi-tenant issuers (`…/{tenantid}/v2.0`): substituted with the token's `tid`. */
  issuerTemplate: boolean;
  jwks: RemoteJwks;
  authorizationEndpoint: string | undefined;
}

interface CacheEntry {
  principal: Principal;
  kid: string | undefined;
}

type Decoded = ReturnType<typeof decodeJws>;

const ASYMMETRIC = new Set<string>(SUPPORTED_JWS_ALGS);
/** checkJwsHeader's refusals in the guard's words (the wording predates the policy's move to core). */
const HEADER_MESSAGES: Partial<Record<string, string>> = {
  ERR_JOSE_ALG_NOT_ALLOWED: 'The token is signed with an algorithm this API does not accept.',
  ERR_JOSE_CRIT_UNSUPPORTED: 'The token uses critical header extensions this API does not support.',
  ERR_JWT_TYP_INVALID: "The token is not an access token (its typ is not 'at+jwt').",
  ERR_JOSE_KEY_REFERENCE: 'The token names its own verification key (jku, x5u or jwk); this API never takes keys from a token.',
  ERR_JWS_INVALID: 'The token header has a malformed kid.',
};
const WHERE = 'createGuard';

function capitalise(message: string): string {
  const m = message.charAt(0).toUpperCase() + message.slice(1);
  return m.endsWith('.') ? m : `${m}.`;
}

function readAudiences(audience: GuardOptions['audience']): string[] {
  const audiences = typeof audience === 'string' ? (audience ? [audience] : []) : audience;
  return nonEmptyStrings(audiences, `${WHERE}: audience`);
}

function readAlgorithms(algorithms: GuardOptions['algorithms']): Set<string> {
  if (algorithms !== undefined && (!Array.isArray(algorithms) || algorithms.length === 0)) {
    throw new TypeError(`${WHERE}: algorithms must be a non-empty array`);
  }
  const list = [...(algorithms ?? DEFAULT_ALGORITHMS)];
  for (const alg of list) {
    if (!ASYMMETRIC.has(alg)) {
      throw new TypeError(`${WHERE}: algorithm ${JSON.stringify(alg)} is not accepted (asymmetric JWS algorithms only; never 'none' or HMAC)`);
    }
  }
  return new Set<string>(list);
}

function readClockTolerance(clockTolerance: number): number {
  if (typeof clockTolerance !== 'number' || !Number.isFinite(clockTolerance) || clockTolerance < 0 || clockTolerance > 600) {
    throw new TypeError(`${WHERE}: clockTolerance must be a number of seconds between 0 and 600`);
  }
  return clockTolerance;
}

function readJwksTimings(timings: NonNullable<GuardOptions['jwks']>): NonNullable<GuardOptions['jwks']> {
  for (const name of ['timeout', 'cooldown', 'maxAge'] as const) {
    const v = timings[name];
    if (v !== undefined && (typeof v !== 'number' || !Number.isFinite(v) || v < 0)) throw new TypeError(`${WHERE}: jwks.${name} must be a non-negative number of milliseconds`);
  }
  return timings;
}

/**
 * One guard: its options read and checked once, the issuer resolved on first need, verified
 * tokens remembered. `verify` is the hot path: a remembered token costs a hash, a map lookup and
 * a check that its key is still published, with no await and no allocation beyond its promise.
 */
class TokenGuard {
  readonly realm: string;
  readonly audiences: readonly string[];
  readonly #audiences: string[];
  readonly #tenants: string[] | undefined;
  readonly #headerPolicy: JwsHeaderPolicy;
  readonly #clockTolerance: number;
  readonly #requireTyp: boolean;
  readonly #clock: () => number;
  readonly #fetch: FetchLike;
  readonly #timeout: number;
  readonly #jwksTimings: NonNullable<GuardOptions['jwks']>;
  readonly #onError: ((error: Error) => void) | undefined;
  readonly #metrics: ResourceMetrics | undefined;
  readonly #resourceMetadata: string | undefined;
  readonly #challenge: ChallengeContext;
  readonly #cache: Lru<CacheEntry>;
  readonly #issuer: LoadOnce<Issuer>;
  readonly #dpop: { mode: DpopMode; algorithms: readonly DpopAlg[]; replay: DpopReplayCache; nonces: DpopNonces | undefined; origin: string | undefined };
  readonly #signals: Pick<Signals, 'revokedAt'> | undefined;

  constructor(options: GuardOptions) {
    if (options === null || typeof options !== 'object') throw new TypeError(`${WHERE}: options are required`);
    this.#audiences = readAudiences(options.audience);
    this.#tenants = options.tenants === undefined ? undefined : nonEmptyStrings(options.tenants, `${WHERE}: tenants`);
    const algorithms = readAlgorithms(options.algorithms);
    this.#clockTolerance = readClockTolerance(options.clockTolerance ?? 60);
    this.#requireTyp = options.requireTyp ?? true;
    if (typeof this.#requireTyp !== 'boolean') throw new TypeError(`${WHERE}: requireTyp must be a boolean`);
    // The one JWS header policy (core's checkJwsHeader), with this guard's algorithms and typ rule.
    this.#headerPolicy = {
      what: 'token',
      algorithms: [...algorithms] as JwsAlg[],
      typ: this.#requireTyp ? ['at+jwt'] : [null, 'at+jwt', 'jwt'],
      requireKid: false,
    };
    const cacheSize = options.cacheSize ?? 10_000;
    if (!Number.isInteger(cacheSize) || cacheSize < 0) throw new TypeError(`${WHERE}: cacheSize must be a non-negative integer`);
    this.#clock = options.clock ?? Date.now;
    if (typeof this.#clock !== 'function') throw new TypeError(`${WHERE}: clock must be a function`);
    this.#jwksTimings = readJwksTimings(options.jwks ?? {});
    this.#timeout = this.#jwksTimings.timeout ?? 5000;
    this.#fetch = resolveFetch(options, WHERE);
    this.#onError = options.onError;
    if (this.#onError !== undefined && typeof this.#onError !== 'function') throw new TypeError(`${WHERE}: onError must be a function`);
    this.#metrics = checkMetrics(options.metrics, WHERE);
    this.realm = options.realm ?? (this.#audiences[0] as string);
    if (typeof this.realm !== 'string') throw new TypeError(`${WHERE}: realm must be a string`);
    this.#resourceMetadata = options.resourceMetadata === undefined ? undefined : checkUrl(options.resourceMetadata, `${WHERE}: resourceMetadata`);
    this.#challenge = { realm: this.realm, resourceMetadata: this.#resourceMetadata };
    this.#issuer = this.#issuerSource(options);
    this.#cache = new Lru<CacheEntry>(cacheSize);
    this.audiences = Object.freeze(this.#audiences);
    this.#dpop = readDpopOptions(options.dpop, this.#clock);
    this.#signals = options.signals;
    if (this.#signals !== undefined && typeof this.#signals?.revokedAt !== 'function') throw new TypeError(`${WHERE}: signals must come from createSignals()`);
  }

  /** The application's metrics, when given. */
  get metrics(): ResourceMetrics | undefined {
    return this.#metrics;
  }

  /** The issuer, once known (after `ready()` or the first verification when using `authority`). */
  get issuer(): string | undefined {
    return this.#issuer.value?.issuer;
  }

  async verify(authorization: AuthorizationInput, request?: DpopRequestInput, dpop: DpopMode = this.#dpop.mode): Promise<Principal> {
    let scheme: TokenScheme = 'Bearer';
    let token: string;
    if (typeof authorization === 'string' && looksLikeBareToken(authorization)) {
      token = authorization;
    } else {
      try {
        ({ scheme, token } = presentedToken(authorization, this.#challenge));
      } catch (error) {
        // RFC 9449 §7.1: a route that takes only DPoP challenges with the DPoP scheme.
        if (dpop === 'required' && error instanceof GuardError && error.reason === 'ERR_BEARER_MISSING') {
          throw new GuardError(undefined, 'ERR_BEARER_MISSING', 'The request has no DPoP-bound token.', { ...this.#challenge, scheme: 'DPoP', params: [['algs', this.#dpop.algorithms.join(' ')]] });
        }
        throw error;
      }
    }
    const cacheKey = sha256b64u(token);
    const hit = this.#cache.get(cacheKey, this.#clock());
    // A cached verification stands only while its key is still published (a withdrawn key revokes it).
    const issuer = this.#issuer.value;
    const principal = this.#notRevoked(hit !== undefined && issuer !== undefined && issuer.jwks.has(hit.kid) ? hit.principal : await this.#verifyUncached(token, cacheKey));
    // A bearer token on a route that allows it (the common case) costs nothing more.
    if (scheme === 'Bearer' && dpop === 'allowed' && principal.claims.cnf === undefined) return principal;
    return this.#checkDpop(principal, scheme, token, request, dpop);
  }

  /** The principal, unless a security event revoked its user or session after its token was issued. */
  #notRevoked(principal: Principal): Principal {
    const edge = this.#signals?.revokedAt(principal.claims);
    if (edge === undefined) return principal;
    const authorizationUri = this.#issuer.value?.authorizationEndpoint;
    throw claimsChallenge(
      { access_token: { nbf: { essential: true, value: String(edge) } } },
      { realm: this.realm, ...(authorizationUri ? { authorizationUri } : {}), description: 'The token was issued before its user or session was revoked: sign in again.' },
    );
  }

  // — DPoP (RFC 9449 §7) —

  /**
   * The token's binding and the request's proof: a bound token only with the DPoP scheme and a
   * proof of its key (made for this method and URL, fresh, unused, carrying our nonce when we ask
   * for one, `ath` the token's hash); an unbound token never with the DPoP scheme, and not at all
   * on a route that requires DPoP.
   */
  async #checkDpop(principal: Principal, scheme: TokenScheme, token: string, request: DpopRequestInput | undefined, mode: DpopMode): Promise<Principal> {
    const jkt = boundKey(principal.claims);
    if (scheme === 'Bearer') {
      if (jkt !== undefined) throw this.#dpopError('invalid_token', 'ERR_DPOP_BOUND_AS_BEARER', 'The token is DPoP-bound: present it as "Authorization: DPoP <token>" with a DPoP proof of its key.');
      if (mode === 'required') throw this.#dpopError('invalid_token', 'ERR_DPOP_REQUIRED', 'This endpoint accepts only DPoP-bound tokens (RFC 9449): get a token with a DPoP proof and present it with one.');
      return principal;
    }
    if (jkt === undefined) throw this.#dpopError('invalid_token', 'ERR_DPOP_NOT_BOUND', 'The token is not DPoP-bound (no cnf.jkt): present it with the Bearer scheme.');
    if (request === undefined) throw this.#dpopError('invalid_dpop_proof', 'ERR_DPOP_PROOF_INVALID', 'This API cannot check DPoP proofs here (the guard was not given the request).');
    const now = Math.floor(this.#clock() / 1000);
    let proof;
    try {
      const header = singleDpopHeader(request.dpop ?? undefined);
      if (header === undefined) throw new DpopProofError('missing', 'The request has no DPoP proof: send a DPoP header made with the key the token is bound to.');
      proof = checkDpopProof(header, { method: request.method, url: this.#publicUrl(request.url) }, { now, algorithms: this.#dpop.algorithms, accessToken: token });
    } catch (error) {
      if (error instanceof DpopProofError) throw this.#dpopError('invalid_dpop_proof', 'ERR_DPOP_PROOF_INVALID', error.message);
      throw error;
    }
    if (proof.jkt !== jkt) throw this.#dpopError('invalid_dpop_proof', 'ERR_DPOP_KEY_MISMATCH', 'The DPoP proof is made with another key than the one the token is bound to.');
    const nonces = this.#dpop.nonces;
    if (nonces !== undefined && !nonces.accepts(this.realm, proof.nonce, now)) {
      throw this.#dpopError('use_dpop_nonce', 'ERR_DPOP_NONCE_REQUIRED', 'This API requires a server nonce in each DPoP proof: repeat the request with the nonce of the DPoP-Nonce header.', nonces.current(this.realm, now));
    }
    const fresh = await this.#dpop.replay.useOnce(`${jkt}:${proof.jti}`, (DPOP_MAX_AGE_SECONDS + DPOP_FUTURE_SECONDS) * 1000);
    if (!fresh) throw this.#dpopError('invalid_dpop_proof', 'ERR_DPOP_PROOF_REPLAYED', 'The DPoP proof was already used: make a fresh proof for each request.');
    return principal;
  }

  #dpopError(error: 'invalid_token' | 'invalid_dpop_proof' | 'use_dpop_nonce', reason: GuardErrorReason, description: string, dpopNonce?: string): GuardError {
    return new GuardError(error, reason, description, { ...this.#challenge, scheme: 'DPoP', params: [['algs', this.#dpop.algorithms.join(' ')]], dpopNonce });
  }

  /** The URL the client addressed: the request's, under the configured public origin when there is one. */
  #publicUrl(url: string): string {
    const origin = this.#dpop.origin;
    if (origin === undefined) return url;
    try {
      const parsed = new URL(url);
      return `${origin}${parsed.pathname}${parsed.search}`;
    } catch {
      return url;
    }
  }

  authorize(principal: Principal, requirement: Requirement = {}): void {
    checkRequirement(requirement);
    if (principal.appOnly) {
      this.#authorizeApplication(principal, requirement);
      return;
    }
    this.#authorizeUser(principal, requirement);
    this.#checkAuthentication(principal, requirement);
  }

  check(authorization: AuthorizationInput, requirement?: Requirement, request?: DpopRequestInput): Promise<Principal> {
    // One span per check (tracing.ts): the result, and for a refusal its error code and reason.
    return inSpan('baton.guard', { attributes: { 'baton.guard.audience': this.audiences[0] as string } }, async (span) => {
      const principal = await this.verify(authorization, request, requirement?.dpop ?? this.#dpop.mode);
      this.authorize(principal, requirement);
      if (span.isRecording()) {
        span.setAttributes({ 'baton.guard.result': 'allow', 'baton.guard.app_only': principal.appOnly });
        if (principal.tenantId !== undefined) span.setAttribute('baton.tenant', principal.tenantId);
        if (principal.clientId !== undefined) span.setAttribute('baton.client_id', principal.clientId);
      }
      return principal;
    }, refusedCheck);
  }

  async ready(): Promise<void> {
    const issuer = await this.#issuer.get();
    await issuer.jwks.reload();
  }

  claimsChallenge(claims: string | Record<string, unknown>): ClaimsChallengeError {
    const authorizationUri = this.#issuer.value?.authorizationEndpoint;
    return claimsChallenge(claims, { realm: '', ...(authorizationUri ? { authorizationUri } : {}) });
  }

  // — the issuer —

  #issuerSource(options: GuardOptions): LoadOnce<Issuer> {
    if (options.authority !== undefined) {
      if (options.issuer !== undefined || options.jwksUri !== undefined) throw new TypeError(`${WHERE}: give either authority, or issuer and jwksUri`);
      const authority = normaliseAuthority(options.authority, `${WHERE}: authority`);
      return new LoadOnce(() => this.#discover(authority));
    }
    if (typeof options.issuer !== 'string' || options.issuer === '') throw new TypeError(`${WHERE}: give authority, or issuer and jwksUri`);
    const jwksUri = checkUrl(options.jwksUri, `${WHERE}: jwksUri`);
    const configured = { issuer: options.issuer, issuerTemplate: options.issuer.includes('{tenantid}'), jwks: this.#jwks(jwksUri), authorizationEndpoint: undefined };
    return new LoadOnce(async () => configured, configured);
  }

  async #discover(authority: string): Promise<Issuer> {
    try {
      const d = await discover(this.#fetch, authority, this.#timeout);
      return { issuer: d.issuer, issuerTemplate: d.issuerTemplate, jwks: this.#jwks(d.jwksUri), authorizationEndpoint: d.authorizationEndpoint };
    } catch (error) {
      const err = error instanceof Error ? error : new Error(String(error));
      this.#onError?.(err);
      throw new GuardError('temporarily_unavailable', 'ERR_JWKS_UNAVAILABLE', 'The token issuer cannot be reached to verify the token; try again later.', {
        cause: err,
      });
    }
  }

  #jwks(uri: string): RemoteJwks {
    const { cooldown, maxAge } = this.#jwksTimings;
    const metrics = this.#metrics;
    const onFetch = metrics === undefined ? undefined : (result: 'ok' | 'error', seconds: number) => metrics.jwksFetch(result, seconds);
    return new RemoteJwks(uri, { fetch: this.#fetch, timeout: this.#timeout, cooldown, maxAge, clock: this.#clock, onError: this.#onError, onFetch });
  }

  // — verification, step by step —

  async #verifyUncached(token: string, cacheKey: string): Promise<Principal> {
    const decoded = this.#decode(token);
    const { alg, kid } = this.#checkHeader(decoded.header);
    // The common path — issuer known, key set fresh and holding the key — stays synchronous.
    const issuer = this.#issuer.value ?? (await this.#issuer.get());
    let keys = issuer.jwks.cachedCandidates(kid, alg);
    if (keys === undefined) keys = await this.#fetchCandidates(issuer, kid, alg);
    this.#checkSignature(decoded, keys, alg);
    const nowMs = this.#clock();
    const principal = this.#validate(decoded.payload, token, issuer, nowMs);
    // Remembered until exp minus the tolerated skew: never beyond what a fresh verification accepts.
    const until = ((decoded.payload.exp as number) - this.#clockTolerance) * 1000;
    if (until > nowMs) this.#cache.set(cacheKey, { principal, kid }, until);
    return principal;
  }

  #invalid(reason: GuardErrorReason, description: string, cause?: unknown): GuardError {
    return new GuardError('invalid_token', reason, description, { ...this.#challenge, cause });
  }

  #decode(token: string): Decoded {
    try {
      return decodeJws(token, MAX_AUTHORIZATION_LENGTH);
    } catch (error) {
      if (error instanceof JwsFormatError) throw this.#invalid('ERR_JWS_INVALID', 'The token is not a well-formed signed JWT.');
      throw error;
    }
  }

  /**
   * The one JWS header policy (core's checkJwsHeader), before any key is looked at: `crit` refused
   * (RFC 7515 §4.1.11), the algorithm allow-list, `typ`, no `jku`/`x5u`/`jwk`, a well-formed `kid`.
   */
  #checkHeader(header: Decoded['header']): { alg: JwsAlg; kid: string | undefined } {
    try {
      const { alg, kid } = checkJwsHeader(header, this.#headerPolicy);
      return { alg, kid };
    } catch (error) {
      if (!(error instanceof JwtError)) throw error;
      throw this.#invalid(error.code, HEADER_MESSAGES[error.code] ?? 'The token header is not acceptable.');
    }
  }

  async #fetchCandidates(issuer: Issuer, kid: string | undefined, alg: JwsAlg) {
    try {
      return await issuer.jwks.candidates(kid, alg);
    } catch (error) {
      if (error instanceof JwksUnavailableError) {
        throw new GuardError('temporarily_unavailable', 'ERR_JWKS_UNAVAILABLE', "The token issuer's keys cannot be fetched to verify the token; try again later.", {
          cause: error,
        });
      }
      throw error;
    }
  }

  #checkSignature(decoded: Decoded, keys: Parameters<typeof verifyJwsSignature>[1][], alg: JwsAlg): void {
    if (keys.length === 0) throw this.#invalid('ERR_JWKS_NO_MATCHING_KEY', 'The token is signed with a key this API does not know.');
    if (!keys.some((key) => verifyJwsSignature(decoded, key, alg))) {
      throw this.#invalid('ERR_JWS_SIGNATURE_VERIFICATION_FAILED', 'The token signature is invalid.');
    }
  }

  /** The claims (core's `validateClaims`), then the principal they describe. */
  #validate(payload: Record<string, unknown>, token: string, issuer: Issuer, nowMs: number): Principal {
    try {
      validateClaims(payload, {
        issuer: this.#expectedIssuer(payload, issuer),
        audience: this.#audiences,
        now: Math.floor(nowMs / 1000),
        clockTolerance: this.#clockTolerance,
        ...(this.#tenants ? { tenants: this.#tenants } : {}),
        required: ['sub'],
      });
      return principalFrom(payload, token);
    } catch (error) {
      if (error instanceof JwtError) throw this.#invalid(error.code, capitalise(error.message));
      throw error;
    }
  }

  /** The issuer the token must name; for an Entra multi-tenant template, the one of its `tid`. */
  #expectedIssuer(payload: Record<string, unknown>, issuer: Issuer): string {
    if (!issuer.issuerTemplate) return issuer.issuer;
    if (typeof payload.tid !== 'string' || !/^[A-Za-z0-9._-]+$/.test(payload.tid)) {
      throw new JwtError('ERR_JWT_ISSUER_INVALID', 'the token was issued by an issuer this API does not trust', 'iss');
    }
    return issuer.issuer.replace('{tenantid}', payload.tid);
  }

  // — authorization —

  /** App-only tokens: only where the route allows them, and with its application permissions. */
  #authorizeApplication(principal: Principal, requirement: Requirement): void {
    if (!requirement.allowAppOnly) {
      throw new GuardError('insufficient_scope', 'ERR_APP_ONLY_REFUSED', 'This endpoint acts for a signed-in user; an app-only token is not accepted.', {
        ...this.#challenge,
        scope: requirement.scopes ? describe(requirement.scopes) : undefined,
      });
    }
    // Application permissions: app roles (Entra, Baton), or the granted `scope` of an RFC 9068
    // client-credentials token (issuers without app roles, e.g. oidc-provider).
    if (!satisfies(principal.scopes.length === 0 ? principal.roles : [...principal.roles, ...principal.scopes], requirement.roles)) {
      throw new GuardError('insufficient_scope', 'ERR_ROLE_INSUFFICIENT', `The application lacks an app role this endpoint requires (${describe(requirement.roles as AnyAll)}).`, this.#challenge);
    }
  }

  /** Delegated tokens: the route must be for users, and the user's scopes and app roles suffice. */
  #authorizeUser(principal: Principal, requirement: Requirement): void {
    if (requirement.roles !== undefined && requirement.scopes === undefined && requirement.userRoles === undefined) {
      throw new GuardError('insufficient_scope', 'ERR_DELEGATED_REFUSED', 'This endpoint is for applications acting as themselves; a delegated token is not accepted.', this.#challenge);
    }
    if (!satisfies(principal.scopes, requirement.scopes)) {
      const scope = describe(requirement.scopes as AnyAll);
      const kind = requirement.scopes?.all ? 'every scope of' : 'one of the scopes';
      throw new GuardError('insufficient_scope', 'ERR_SCOPE_INSUFFICIENT', `The token lacks ${kind}: ${scope}.`, { ...this.#challenge, scope });
    }
    if (!satisfies(principal.roles, requirement.userRoles)) {
      throw new GuardError('insufficient_scope', 'ERR_ROLE_INSUFFICIENT', `The user lacks an app role this endpoint requires (${describe(requirement.userRoles as AnyAll)}).`, this.#challenge);
    }
  }

  /** RFC 9470 step-up: the sign-in's `acr` and age. */
  #checkAuthentication(principal: Principal, requirement: Requirement): void {
    const acrOk = requirement.acrValues === undefined || (typeof principal.claims.acr === 'string' && requirement.acrValues.includes(principal.claims.acr));
    const authTime = principal.claims.auth_time;
    const ageOk =
      requirement.maxAge === undefined ||
      (typeof authTime === 'number' && Math.floor(this.#clock() / 1000) - authTime <= requirement.maxAge + this.#clockTolerance);
    if (acrOk && ageOk) return;
    throw insufficientUserAuthentication({
      ...(acrOk ? {} : { acrValues: requirement.acrValues as readonly string[] }),
      ...(ageOk ? {} : { maxAge: requirement.maxAge as number }),
      realm: this.realm,
      ...(this.#resourceMetadata ? { resourceMetadata: this.#resourceMetadata } : {}),
    });
  }
}

/** The `cnf.jkt` of a DPoP-bound token, or undefined. */
function boundKey(claims: Record<string, unknown>): string | undefined {
  const cnf = claims.cnf;
  if (cnf === null || typeof cnf !== 'object') return undefined;
  const jkt = (cnf as { jkt?: unknown }).jkt;
  return typeof jkt === 'string' ? jkt : undefined;
}

function readDpopOptions(options: GuardDpopOptions | undefined, clock: () => number) {
  const o = options ?? {};
  if (o === null || typeof o !== 'object') throw new TypeError(`${WHERE}: dpop must be an object`);
  const mode = o.mode ?? 'allowed';
  if (mode !== 'required' && mode !== 'allowed') throw new TypeError(`${WHERE}: dpop.mode must be 'required' or 'allowed'`);
  const algorithms = o.algorithms ?? DPOP_ALGS;
  if (!Array.isArray(algorithms) || algorithms.length === 0 || algorithms.some((alg) => !DPOP_ALGS.includes(alg))) {
    throw new TypeError(`${WHERE}: dpop.algorithms must be a non-empty list of ${DPOP_ALGS.join(', ')}`);
  }
  if (o.replay !== undefined && (o.replay === null || typeof o.replay.useOnce !== 'function')) throw new TypeError(`${WHERE}: dpop.replay must have useOnce(key, ttlMs)`);
  let nonces: DpopNonces | undefined;
  if (o.nonce !== undefined) {
    if (!(o.nonce.secret instanceof Uint8Array) || o.nonce.secret.length < 32) throw new TypeError(`${WHERE}: dpop.nonce.secret must be at least 32 bytes`);
    nonces = new DpopNonces(Buffer.from(o.nonce.secret), o.nonce.periodSeconds ?? 300);
  }
  const origin = o.origin === undefined ? undefined : new URL(checkUrl(o.origin, `${WHERE}: dpop.origin`)).origin;
  return { mode, algorithms, replay: o.replay ?? new MemoryDpopReplayCache({ clock }), nonces, origin };
}

/** A refused check is the guard working (a 4xx answer): result and reason, not an ERROR; a 503 or a bug is one. */
function refusedCheck(span: Span, error: unknown): void {
  if (!span.isRecording()) return;
  if (error instanceof GuardError && error.status < 500) {
    span.setAttributes({ 'baton.guard.result': 'refuse', 'baton.guard.reason': error.reason, 'error.type': error.error ?? 'no_credentials', 'http.response.status_code': error.status });
    return;
  }
  failSpan(span, error);
}

/** The guard's result as a metric value: `ok`, the refusal's reason code, or `error` (a bug, not a refusal). */
function guardResultOf(error: unknown): string {
  return error instanceof GuardError ? error.reason : 'error';
}

/** Validates the options and returns a guard. Nothing is fetched until the first `verify` or `ready()`. */
export function createGuard(options: GuardOptions): Guard {
  const guard = new TokenGuard(options);
  const metrics = guard.metrics;
  if (metrics !== undefined) {
    // Each call counted once by its result (an adapter calls `check`: one count per request).
    const counted = <T>(work: Promise<T>): Promise<T> =>
      work.then(
        (value) => {
          metrics.guard('ok');
          return value;
        },
        (error: unknown) => {
          metrics.guard(guardResultOf(error));
          throw error;
        },
      );
    return guardObject(guard, {
      verify: (authorization, request, dpop) => counted(guard.verify(authorization, request, dpop)),
      authorize(principal, requirement) {
        try {
          guard.authorize(principal, requirement);
        } catch (error) {
          metrics.guard(guardResultOf(error));
          throw error;
        }
        metrics.guard('ok');
      },
      check: (authorization, requirement, request) => counted(guard.check(authorization, requirement, request)),
    });
  }
  return guardObject(guard, {
    verify: (authorization, request, dpop) => guard.verify(authorization, request, dpop),
    authorize: (principal, requirement) => guard.authorize(principal, requirement),
    check: (authorization, requirement, request) => guard.check(authorization, requirement, request),
  });
}

function guardObject(guard: TokenGuard, calls: Pick<Guard, 'verify' | 'authorize' | 'check'>): Guard {
  // Methods that need no `this`, as before: `const { check } = guard` keeps working.
  return {
    ...calls,
    ready: () => guard.ready(),
    claimsChallenge: (claims) => guard.claimsChallenge(claims),
    realm: guard.realm,
    audiences: guard.audiences,
    get issuer() {
      return guard.issuer;
    },
  };
}

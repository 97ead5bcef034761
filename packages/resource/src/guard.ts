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
  decodeJws,
  isAccessTokenTyp,
  JwsFormatError,
  JwtError,
  SUPPORTED_JWS_ALGS,
  sha256b64u,
  validateClaims,
  verifyJwsSignature,
  type JwsAlg,
} from '@baton/core';
import { bearerToken, looksLikeBareToken, MAX_AUTHORIZATION_LENGTH, type AuthorizationInput, type ChallengeContext } from './bearer.ts';
import { ClaimsChallengeError, claimsChallenge, GuardError, insufficientUserAuthentication, type GuardErrorReason } from './errors.ts';
import { discover as discoverIssuer, normaliseAuthority } from './discovery.ts';
import { checkUrl, resolveFetch, type CaOption, type FetchLike } from './http.ts';
import { JwksUnavailableError, RemoteJwks } from './jwks.ts';
import { Lru } from './lru.ts';
import { principalFrom, type Principal } from './principal.ts';

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
}

/** A `{ any, all }` requirement: at least one of `any`, every one of `all`. */
export interface AnyAll {
  any?: readonly string[];
  all?: readonly string[];
}

export interface Requirement {
  /** Delegated scopes (`scp`) a user's token must carry. */
  scopes?: AnyAll;
  /**
   * Application permissions an app-only token must carry: its app roles (`roles`, Entra and Baton)
   * or, from RFC 9068 issuers that have no app roles, its granted `scope`. Needs `allowAppOnly: true`.
   * A route with `roles` and no `scopes`/`userRoles` is for applications only.
   */
  roles?: AnyAll;
  /** App roles a *user* must hold (delegated tokens' `roles`). */
  userRoles?: AnyAll;
  /**
   * Accept app-only (client credentials) tokens. Default false: a route that acts for a user must
   * not be reachable by an application acting as itself. Needs `roles`: any application of the
   * tenant can obtain a token for this API without any permission, so an app role is what tells
   * the applications you meant from the others.
   */
  allowAppOnly?: boolean;
  /** RFC 9470: the token's `acr` must be one of these (delegated tokens). */
  acrValues?: readonly string[];
  /** RFC 9470: the user must have authenticated within this many seconds (`auth_time`). */
  maxAge?: number;
}

export interface Guard {
  /**
   * Verifies the token in an `Authorization` header value (or the raw token). Pass every value of a
   * repeated header as an array (Node: `req.headersDistinct.authorization`) so duplicates are caught.
   * @throws GuardError
   */
  verify(authorization: AuthorizationInput): Promise<Principal>;
  /** Checks a requirement; throws a `GuardError` (403 `insufficient_scope`, 401 step-up) if unmet. */
  authorize(principal: Principal, requirement?: Requirement): void;
  /** `verify` then `authorize`. */
  check(authorization: AuthorizationInput, requirement?: Requirement): Promise<Principal>;
  /** Fetches discovery and keys now instead of at the first request; rejects if they cannot be fetched. */
  ready(): Promise<void>;
  /** A claims challenge carrying this guard's `realm` conventions and the issuer's `authorization_uri`. */
  claimsChallenge(claims: string | Record<string, unknown>): ClaimsChallengeError;
  readonly realm: string;
  readonly audiences: readonly string[];
  /** The issuer, once known (after `ready()` or the first verification when using `authority`). */
  readonly issuer: string | undefined;
}

interface Resolved {
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

const ASYMMETRIC = new Set<string>(SUPPORTED_JWS_ALGS);
const PLAIN_TYPS = /^(application\/)?jwt$/i;

function nonEmptyStrings(value: unknown, where: string): string[] {
  if (!Array.isArray(value) || value.length === 0 || value.some((v) => typeof v !== 'string' || v === '')) {
    throw new TypeError(`${where} must be a non-empty array of non-empty strings`);
  }
  return [...(value as string[])];
}

function checkAnyAll(value: AnyAll | undefined, where: string): void {
  if (value === undefined) return;
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new TypeError(`${where} must be { any?: string[], all?: string[] }`);
  if (value.any === undefined && value.all === undefined) throw new TypeError(`${where} needs 'any' or 'all'`);
  if (value.any !== undefined) nonEmptyStrings(value.any, `${where}.any`);
  if (value.all !== undefined) nonEmptyStrings(value.all, `${where}.all`);
}

const validated = new WeakSet<Requirement>();

/**
 * Checks a requirement once (TypeError for programmer mistakes). Adapters call this when the route
 * is built, so a bad requirement fails at start, not at the first request.
 */
export function checkRequirement(requirement: Requirement, where = 'requirement'): Requirement {
  if (validated.has(requirement)) return requirement;
  if (requirement === null || typeof requirement !== 'object') throw new TypeError(`${where} must be an object`);
  checkAnyAll(requirement.scopes, `${where}.scopes`);
  checkAnyAll(requirement.roles, `${where}.roles`);
  checkAnyAll(requirement.userRoles, `${where}.userRoles`);
  if (requirement.allowAppOnly !== undefined && typeof requirement.allowAppOnly !== 'boolean') throw new TypeError(`${where}.allowAppOnly must be a boolean`);
  if (requirement.roles !== undefined && requirement.allowAppOnly !== true) {
    throw new TypeError(`${where}.roles are application permissions, checked on app-only tokens: set allowAppOnly: true (use userRoles for the app roles of users)`);
  }
  if (requirement.allowAppOnly === true && requirement.roles === undefined) {
    throw new TypeError(`${where}.allowAppOnly needs roles: any application can get a token for this API without a permission, an app role says which ones may call`);
  }
  if (requirement.acrValues !== undefined) nonEmptyStrings(requirement.acrValues, `${where}.acrValues`);
  if (requirement.maxAge !== undefined && (!Number.isInteger(requirement.maxAge) || requirement.maxAge < 0)) {
    throw new TypeError(`${where}.maxAge must be a non-negative integer (seconds)`);
  }
  validated.add(requirement);
  return requirement;
}

function satisfies(held: readonly string[], need: AnyAll | undefined): boolean {
  if (need === undefined) return true;
  if (need.all && !need.all.every((s) => held.includes(s))) return false;
  if (need.any && !need.any.some((s) => held.includes(s))) return false;
  return true;
}

function describe(need: AnyAll): string {
  return [...(need.all ?? []), ...(need.any ?? [])].join(' ');
}

function capitalise(message: string): string {
  const m = message.charAt(0).toUpperCase() + message.slice(1);
  return m.endsWith('.') ? m : `${m}.`;
}

/** Validates the options and returns a guard. Nothing is fetched until the first `verify` or `ready()`. */
export function createGuard(options: GuardOptions): Guard {
  if (options === null || typeof options !== 'object') throw new TypeError('createGuard: options are required');
  const where = 'createGuard';
  const audiences = typeof options.audience === 'string' ? (options.audience ? [options.audience] : []) : options.audience;
  const audienceList = nonEmptyStrings(audiences, `${where}: audience`);
  const tenants = options.tenants === undefined ? undefined : nonEmptyStrings(options.tenants, `${where}: tenants`);

  if (options.algorithms !== undefined && (!Array.isArray(options.algorithms) || options.algorithms.length === 0)) {
    throw new TypeError(`${where}: algorithms must be a non-empty array`);
  }
  const algorithms = [...(options.algorithms ?? DEFAULT_ALGORITHMS)];
  for (const alg of algorithms) {
    if (!ASYMMETRIC.has(alg)) {
      throw new TypeError(`${where}: algorithm ${JSON.stringify(alg)} is not accepted (asymmetric JWS algorithms only; never 'none' or HMAC)`);
    }
  }
  const allowedAlgs = new Set<string>(algorithms);

  const clockTolerance = options.clockTolerance ?? 60;
  if (typeof clockTolerance !== 'number' || !Number.isFinite(clockTolerance) || clockTolerance < 0 || clockTolerance > 600) {
    throw new TypeError(`${where}: clockTolerance must be a number of seconds between 0 and 600`);
  }
  const requireTyp = options.requireTyp ?? true;
  if (typeof requireTyp !== 'boolean') throw new TypeError(`${where}: requireTyp must be a boolean`);
  const cacheSize = options.cacheSize ?? 10_000;
  if (!Number.isInteger(cacheSize) || cacheSize < 0) throw new TypeError(`${where}: cacheSize must be a non-negative integer`);
  const clock = options.clock ?? Date.now;
  if (typeof clock !== 'function') throw new TypeError(`${where}: clock must be a function`);
  const jwksTimings = options.jwks ?? {};
  for (const name of ['timeout', 'cooldown', 'maxAge'] as const) {
    const v = jwksTimings[name];
    if (v !== undefined && (typeof v !== 'number' || !Number.isFinite(v) || v < 0)) throw new TypeError(`${where}: jwks.${name} must be a non-negative number of milliseconds`);
  }
  const timeout = jwksTimings.timeout ?? 5000;
  const fetchFn = resolveFetch(options, where);
  const onError = options.onError;
  if (onError !== undefined && typeof onError !== 'function') throw new TypeError(`${where}: onError must be a function`);
  const realm = options.realm ?? (audienceList[0] as string);
  if (typeof realm !== 'string') throw new TypeError(`${where}: realm must be a string`);
  const resourceMetadata = options.resourceMetadata === undefined ? undefined : checkUrl(options.resourceMetadata, `${where}: resourceMetadata`);
  const ctx: ChallengeContext = { realm, resourceMetadata };

  const newJwks = (uri: string) =>
    new RemoteJwks(uri, { fetch: fetchFn, timeout, cooldown: jwksTimings.cooldown, maxAge: jwksTimings.maxAge, clock, onError });

  let resolved: Resolved | undefined;
  let discovering: Promise<Resolved> | undefined;
  let discover: () => Promise<Resolved>;

  if (options.authority !== undefined) {
    if (options.issuer !== undefined || options.jwksUri !== undefined) throw new TypeError(`${where}: give either authority, or issuer and jwksUri`);
    const authority = normaliseAuthority(options.authority, `${where}: authority`);
    discover = async () => {
      const d = await discoverIssuer(fetchFn, authority, timeout);
      return { issuer: d.issuer, issuerTemplate: d.issuerTemplate, jwks: newJwks(d.jwksUri), authorizationEndpoint: d.authorizationEndpoint };
    };
  } else {
    if (typeof options.issuer !== 'string' || options.issuer === '') throw new TypeError(`${where}: give authority, or issuer and jwksUri`);
    const jwksUri = checkUrl(options.jwksUri, `${where}: jwksUri`);
    resolved = { issuer: options.issuer, issuerTemplate: options.issuer.includes('{tenantid}'), jwks: newJwks(jwksUri), authorizationEndpoint: undefined };
    discover = async () => resolved as Resolved;
  }

  const resolve = (): Promise<Resolved> => {
    if (resolved) return Promise.resolve(resolved);
    discovering ??= discover().then(
      (r) => {
        resolved = r;
        discovering = undefined;
        return r;
      },
      (error: unknown) => {
        discovering = undefined;
        const err = error instanceof Error ? error : new Error(String(error));
        onError?.(err);
        throw new GuardError('temporarily_unavailable', 'ERR_JWKS_UNAVAILABLE', 'The token issuer cannot be reached to verify the token; try again later.', {
          cause: err,
        });
      },
    );
    return discovering;
  };

  const cache = new Lru<CacheEntry>(cacheSize);

  const invalid = (reason: GuardErrorReason, description: string, cause?: unknown) =>
    new GuardError('invalid_token', reason, description, { ...ctx, cause });

  async function candidatesOf(r: Resolved, kid: string | undefined, alg: JwsAlg) {
    try {
      return await r.jwks.candidates(kid, alg);
    } catch (error) {
      if (error instanceof JwksUnavailableError) {
        throw new GuardError('temporarily_unavailable', 'ERR_JWKS_UNAVAILABLE', "The token issuer's keys cannot be fetched to verify the token; try again later.", {
          cause: error,
        });
      }
      throw error;
    }
  }

  async function verifySlow(token: string, cacheKey: string): Promise<Principal> {
    let decoded;
    try {
      decoded = decodeJws(token, MAX_AUTHORIZATION_LENGTH);
    } catch (error) {
      if (error instanceof JwsFormatError) throw invalid('ERR_JWS_INVALID', 'The token is not a well-formed signed JWT.');
      throw error;
    }
    const { header, payload } = decoded;
    if (!allowedAlgs.has(header.alg)) throw invalid('ERR_JOSE_ALG_NOT_ALLOWED', 'The token is signed with an algorithm this API does not accept.');
    const alg = header.alg as JwsAlg;
    // RFC 7515 §4.1.11: extensions named in `crit` must be understood; this verifier understands none.
    if (header.crit !== undefined) throw invalid('ERR_JOSE_CRIT_UNSUPPORTED', 'The token uses critical header extensions this API does not support.');
    if (requireTyp ? !isAccessTokenTyp(header.typ) : !(header.typ === undefined || isAccessTokenTyp(header.typ) || (typeof header.typ === 'string' && PLAIN_TYPS.test(header.typ)))) {
      throw invalid('ERR_JWT_TYP_INVALID', requireTyp ? "The token is not an access token (its typ is not 'at+jwt')." : 'The token is not an access token (typ).');
    }
    if (header.kid !== undefined && typeof header.kid !== 'string') throw invalid('ERR_JWS_INVALID', 'The token header has a malformed kid.');
    const kid = header.kid as string | undefined;

    // The common path — issuer known, key set fresh and holding the key — stays synchronous.
    const r = resolved ?? (await resolve());
    let keys = r.jwks.cachedCandidates(kid, alg);
    if (keys === undefined) keys = await candidatesOf(r, kid, alg);
    if (keys.length === 0) throw invalid('ERR_JWKS_NO_MATCHING_KEY', 'The token is signed with a key this API does not know.');
    if (!keys.some((key) => verifyJwsSignature(decoded, key, alg))) {
      throw invalid('ERR_JWS_SIGNATURE_VERIFICATION_FAILED', 'The token signature is invalid.');
    }

    const nowMs = clock();
    let principal: Principal;
    try {
      let issuer = r.issuer;
      if (r.issuerTemplate) {
        if (typeof payload.tid !== 'string' || !/^[A-Za-z0-9._-]+$/.test(payload.tid)) {
          throw new JwtError('ERR_JWT_ISSUER_INVALID', 'the token was issued by an issuer this API does not trust', 'iss');
        }
        issuer = r.issuer.replace('{tenantid}', payload.tid);
      }
      validateClaims(payload, { issuer, audience: audienceList, now: Math.floor(nowMs / 1000), clockTolerance, ...(tenants ? { tenants } : {}), required: ['sub'] });
      principal = principalFrom(payload, token);
    } catch (error) {
      if (error instanceof JwtError) throw invalid(error.code, capitalise(error.message));
      throw error;
    }

    // Remembered until exp minus the tolerated skew: never beyond what a fresh verification accepts.
    const until = ((payload.exp as number) - clockTolerance) * 1000;
    if (until > nowMs) cache.set(cacheKey, { principal, kid }, until);
    return principal;
  }

  async function verify(authorization: AuthorizationInput): Promise<Principal> {
    const token = typeof authorization === 'string' && looksLikeBareToken(authorization) ? authorization : bearerToken(authorization, ctx);
    const cacheKey = sha256b64u(token);
    const hit = cache.get(cacheKey, clock());
    // A cached verification stands only while its key is still published (a withdrawn key revokes it).
    if (hit !== undefined && resolved !== undefined && resolved.jwks.has(hit.kid)) return hit.principal;
    return verifySlow(token, cacheKey);
  }

  function authorize(principal: Principal, requirement: Requirement = {}): void {
    checkRequirement(requirement);
    if (principal.appOnly) {
      if (!requirement.allowAppOnly) {
        throw new GuardError('insufficient_scope', 'ERR_APP_ONLY_REFUSED', 'This endpoint acts for a signed-in user; an app-only token is not accepted.', {
          ...ctx,
          scope: requirement.scopes ? describe(requirement.scopes) : undefined,
        });
      }
      // Application permissions: app roles (Entra, Baton), or the granted `scope` of an RFC 9068
      // client-credentials token (issuers without app roles, e.g. oidc-provider).
      if (!satisfies(principal.scopes.length === 0 ? principal.roles : [...principal.roles, ...principal.scopes], requirement.roles)) {
        throw new GuardError('insufficient_scope', 'ERR_ROLE_INSUFFICIENT', `The application lacks an app role this endpoint requires (${describe(requirement.roles as AnyAll)}).`, ctx);
      }
      return;
    }
    if (requirement.roles !== undefined && requirement.scopes === undefined && requirement.userRoles === undefined) {
      throw new GuardError('insufficient_scope', 'ERR_DELEGATED_REFUSED', 'This endpoint is for applications acting as themselves; a delegated token is not accepted.', ctx);
    }
    if (!satisfies(principal.scopes, requirement.scopes)) {
      const scope = describe(requirement.scopes as AnyAll);
      const kind = requirement.scopes?.all ? 'every scope of' : 'one of the scopes';
      throw new GuardError('insufficient_scope', 'ERR_SCOPE_INSUFFICIENT', `The token lacks ${kind}: ${scope}.`, { ...ctx, scope });
    }
    if (!satisfies(principal.roles, requirement.userRoles)) {
      throw new GuardError('insufficient_scope', 'ERR_ROLE_INSUFFICIENT', `The user lacks an app role this endpoint requires (${describe(requirement.userRoles as AnyAll)}).`, ctx);
    }
    const acrOk = requirement.acrValues === undefined || (typeof principal.claims.acr === 'string' && requirement.acrValues.includes(principal.claims.acr));
    const authTime = principal.claims.auth_time;
    const ageOk =
      requirement.maxAge === undefined ||
      (typeof authTime === 'number' && Math.floor(clock() / 1000) - authTime <= requirement.maxAge + clockTolerance);
    if (!acrOk || !ageOk) {
      throw insufficientUserAuthentication({
        ...(acrOk ? {} : { acrValues: requirement.acrValues as readonly string[] }),
        ...(ageOk ? {} : { maxAge: requirement.maxAge as number }),
        realm,
        ...(resourceMetadata ? { resourceMetadata } : {}),
      });
    }
  }

  return {
    verify,
    authorize,
    async check(authorization, requirement) {
      const principal = await verify(authorization);
      authorize(principal, requirement);
      return principal;
    },
    async ready() {
      const r = await resolve();
      await r.jwks.reload();
    },
    claimsChallenge(claims) {
      const authorizationUri = resolved?.authorizationEndpoint;
      return claimsChallenge(claims, { realm: '', ...(authorizationUri ? { authorizationUri } : {}) });
    },
    realm,
    audiences: Object.freeze(audienceList),
    get issuer() {
      return resolved?.issuer;
    },
  };
}

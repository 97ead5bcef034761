/**
 * The errors an API meets when it uses the resource SDK.
 *
 * Two families:
 * - `GuardError` (and its `ClaimsChallengeError`): what the API answers to *its* caller. Each carries
 *   the HTTP status, the RFC 6750 §3 `error` code and the `WWW-Authenticate` value, so an adapter
 *   renders it without knowing why it happened.
 * - `OboError` and its subclasses: what the token service answered when this API asked it for a
 *   downstream token (RFC 6749 §5.2 JSON, with Entra's `error_codes`/`suberror`/`claims`).
 *
 * No message, description or field of these errors ever carries a token or a secret.
 */
import { defaultStatus, Entra, type JwtErrorCode, type OAuthErrorCode } from '@baton/core';
import { authChallenge, encodeClaimsChallenge } from './challenge.ts';

/**
 * RFC 6750 §3.1 codes, RFC 9470 §3 (`insufficient_user_authentication`), Entra's claims challenge
 * (`insufficient_claims`), and `temporarily_unavailable` (503) when the issuer's keys cannot be
 * fetched and none are cached: that is the API's problem, not the caller's, so not a 401.
 * All but Entra's `insufficient_claims` are codes of `@baton/core`'s catalogue, with its statuses.
 */
export type GuardErrorCode =
  | Extract<OAuthErrorCode, 'invalid_request' | 'invalid_token' | 'insufficient_scope' | 'insufficient_user_authentication' | 'temporarily_unavailable' | 'invalid_dpop_proof' | 'use_dpop_nonce'>
  | 'insufficient_claims';

/**
 * Stable, switchable reasons (jose-style): every `JwtErrorCode` of `@baton/core` (a token that
 * failed verification), `ERR_BEARER_*` from parsing the `Authorization` header, and the guard's own.
 */
export type GuardErrorReason =
  | JwtErrorCode
  | 'ERR_BEARER_MISSING'
  | 'ERR_BEARER_MALFORMED'
  | 'ERR_BEARER_DUPLICATE'
  | 'ERR_BEARER_TOO_LARGE'
  | 'ERR_SCOPE_INSUFFICIENT'
  | 'ERR_ROLE_INSUFFICIENT'
  | 'ERR_APP_ONLY_REFUSED'
  | 'ERR_DELEGATED_REFUSED'
  | 'ERR_STEP_UP_REQUIRED'
  | 'ERR_CLAIMS_REQUIRED'
  // DPoP (RFC 9449): the proof, its binding, the route's policy.
  | 'ERR_DPOP_PROOF_INVALID'
  | 'ERR_DPOP_PROOF_REPLAYED'
  | 'ERR_DPOP_KEY_MISMATCH'
  | 'ERR_DPOP_NONCE_REQUIRED'
  | 'ERR_DPOP_BOUND_AS_BEARER'
  | 'ERR_DPOP_NOT_BOUND'
  | 'ERR_DPOP_REQUIRED';

/**
 * A claims challenge is a 401 (Entra), and so are DPoP proof and nonce refusals at a resource
 * (RFC 9449 §7.1, §9; the token endpoint answers them 400); the other codes answer with core's status.
 */
function statusOf(error: GuardErrorCode): number {
  return error === 'insufficient_claims' || error === 'invalid_dpop_proof' || error === 'use_dpop_nonce' ? 401 : defaultStatus(error);
}

export interface GuardErrorOptions {
  /** `realm` of the challenge. */
  realm?: string | undefined;
  /** Space-separated scopes the caller lacks (RFC 6750 §3 `scope`), for `insufficient_scope`. */
  scope?: string | undefined;
  /** RFC 9728 §5.1: URL of this API's protected resource metadata, advertised in 401 challenges. */
  resourceMetadata?: string | undefined;
  /** Extra challenge parameters, in order (`acr_values`, `max_age`, `claims`, `authorization_uri`, `resource_metadata`). */
  params?: ReadonlyArray<readonly [string, string]>;
  status?: number;
  cause?: unknown;
  /** The challenge's scheme: `DPoP` (RFC 9449 §7.1) for refusals about DPoP. Default `Bearer`. */
  scheme?: 'Bearer' | 'DPoP' | undefined;
  /** A server nonce the client must put in its next DPoP proof (`DPoP-Nonce` response header). */
  dpopNonce?: string | undefined;
}

/**
 * A request this API refuses. `status`, `wwwAuthenticate` and `toJSON()` are the whole response.
 *
 * `error` is `undefined` when the request carried no credentials at all: RFC 6750 §3.1 says the
 * answer then SHOULD NOT include an error code, only the challenge (`Bearer realm="…"`).
 */
export class GuardError extends Error {
  override name = 'GuardError';
  readonly status: number;
  readonly error: GuardErrorCode | undefined;
  readonly reason: GuardErrorReason;
  /** Public; safe to show the caller. Never contains the token. */
  readonly description: string;
  readonly scope: string | undefined;
  /** The `WWW-Authenticate` header value, or `undefined` for a 503. */
  readonly wwwAuthenticate: string | undefined;
  /** The `DPoP-Nonce` to send (RFC 9449 §9), if any. */
  readonly dpopNonce: string | undefined;

  constructor(error: GuardErrorCode | undefined, reason: GuardErrorReason, description: string, options: GuardErrorOptions = {}) {
    super(error ? `${error}: ${description}` : description, options.cause === undefined ? undefined : { cause: options.cause });
    this.error = error;
    this.reason = reason;
    this.description = description;
    this.scope = options.scope;
    this.status = options.status ?? (error ? statusOf(error) : 401);
    this.dpopNonce = options.dpopNonce;
    const scheme = options.scheme ?? 'Bearer';
    const tail: Array<readonly [string, string]> = [...(options.params ?? [])];
    // RFC 9728 §5.1, and the MCP authorization specification's scope challenge: a 403 insufficient_scope
    // names the metadata too, so the client can find the authorization server to ask for the scope.
    if (options.resourceMetadata && (this.status === 401 || this.status === 403)) tail.push(['resource_metadata', options.resourceMetadata]);
    if (error === 'temporarily_unavailable') {
      this.wwwAuthenticate = undefined;
    } else if (error === undefined) {
      this.wwwAuthenticate = authChallenge(scheme, [['realm', options.realm ?? ''], ...tail]);
    } else {
      const params: Array<readonly [string, string]> = [];
      if (options.realm !== undefined) params.push(['realm', options.realm]);
      params.push(['error', error], ['error_description', description]);
      if (options.scope) params.push(['scope', options.scope]);
      params.push(...tail);
      this.wwwAuthenticate = authChallenge(scheme, params);
    }
  }

  /**
   * Response headers (`WWW-Authenticate`, and `Cache-Control: no-store`: a refusal is about one
   * request and must not be replayed by a cache). Fastify's and Express's default error handlers
   * apply an error's `headers` and `status`, so a GuardError thrown from a handler is already
   * answered right.
   */
  get headers(): Record<string, string> {
    const headers: Record<string, string> = this.wwwAuthenticate === undefined ? { 'cache-control': 'no-store' } : { 'www-authenticate': this.wwwAuthenticate, 'cache-control': 'no-store' };
    if (this.dpopNonce !== undefined) headers['dpop-nonce'] = this.dpopNonce;
    return headers;
  }

  /** A JSON body for developers (the header is what clients act on). `undefined` = send no body. */
  toJSON(): Record<string, string> | undefined {
    if (this.error === undefined) return undefined;
    const body: Record<string, string> = { error: this.error, error_description: this.description };
    if (this.scope) body.scope = this.scope;
    return body;
  }
}

/**
 * A claims challenge to hand back to the caller (Entra CAE / conditional access): 401 with
 * `WWW-Authenticate: Bearer realm="", error="insufficient_claims", claims="<base64 JSON>"`.
 * The client (MSAL: `WwwAuthenticateParameters.GetClaimChallengeFromResponseHeaders`) decodes
 * `claims` and signs the user in again with it.
 */
export class ClaimsChallengeError extends GuardError {
  override name = 'ClaimsChallengeError';
  /** The claims request, as JSON text (OIDC Core §5.5). */
  readonly claims: string;
  constructor(claims: string, options: { realm?: string; authorizationUri?: string; description?: string; cause?: unknown } = {}) {
    const description = options.description ?? 'Additional claims are required: sign in again with the claims in this challenge.';
    const params: Array<readonly [string, string]> = [];
    if (options.authorizationUri) params.push(['authorization_uri', options.authorizationUri]);
    params.push(['claims', encodeClaimsChallenge(claims)]);
    super('insufficient_claims', 'ERR_CLAIMS_REQUIRED', description, { realm: options.realm ?? '', params, cause: options.cause });
    this.claims = claims;
  }

  override toJSON(): Record<string, string> {
    return { error: 'insufficient_claims', error_description: this.description, claims: this.claims };
  }
}

/** Error JSON from the token service (RFC 6749 §5.2 plus Entra's members). */
export interface TokenErrorBody {
  error: string;
  error_description?: string;
  error_codes?: number[];
  suberror?: string;
  claims?: string;
  trace_id?: string;
  correlation_id?: string;
}

/** The token service refused or failed a token request made by this API. */
export class OboError extends Error {
  override name = 'OboError';
  /** HTTP status of the token service's answer (0 when it could not be reached). */
  readonly status: number;
  readonly error: string;
  readonly description: string;
  readonly errorCodes: readonly number[];
  readonly suberror: string | undefined;
  readonly traceId: string | undefined;
  readonly correlationId: string | undefined;
  constructor(status: number, body: TokenErrorBody, options: { cause?: unknown } = {}) {
    const description = typeof body.error_description === 'string' ? body.error_description : '';
    super(`${body.error}${description ? `: ${description}` : ''}`, options.cause === undefined ? undefined : { cause: options.cause });
    this.status = status;
    this.error = body.error;
    this.description = description;
    this.errorCodes = Array.isArray(body.error_codes) ? body.error_codes.filter((c): c is number => typeof c === 'number') : [];
    this.suberror = typeof body.suberror === 'string' ? body.suberror : undefined;
    this.traceId = typeof body.trace_id === 'string' ? body.trace_id : undefined;
    this.correlationId = typeof body.correlation_id === 'string' ? body.correlation_id : undefined;
  }
}

/** `invalid_grant` (assertion invalid or expired, user disabled, blocked by policy …). */
export class InvalidGrantError extends OboError {
  override name = 'InvalidGrantError';
}

/** `invalid_grant` + `suberror: consent_required` (Entra AADSTS65001): no consent for the downstream scopes. */
export class ConsentRequiredError extends InvalidGrantError {
  override name = 'ConsentRequiredError';
}

/** `interaction_required` with a claims challenge: the user must step up (Entra AADSTS50076). */
export class InteractionRequiredError extends OboError {
  override name = 'InteractionRequiredError';
  /** The claims request (JSON text) to hand back to the client, if the token service gave one. */
  readonly claims: string | undefined;
  constructor(status: number, body: TokenErrorBody, options: { cause?: unknown } = {}) {
    super(status, body, options);
    this.claims = typeof body.claims === 'string' && body.claims.length > 0 ? body.claims : undefined;
  }
}

/**
 * Code serving a user's request asked for an app-only token. Acting with the application's own
 * permissions while serving a user is the confused deputy (the user borrows the app's authority);
 * say so explicitly with `{ asApplication: true, reason }` if it really is intended.
 */
export class ConfusedDeputyError extends Error {
  override name = 'ConfusedDeputyError';
}

/**
 * Code serving a user's request tried to send on the token that request arrived with (token
 * passthrough): that token is addressed to this API, so the next API must refuse it (audience),
 * and forwarding it would let anyone holding a token for this API reach everything the user can
 * (the MCP authorization specification forbids it outright). Call the next API with a token of its
 * own, obtained On-Behalf-Of the user: `createDownstream`.
 */
export class TokenPassthroughError extends Error {
  override name = 'TokenPassthroughError';
}

/** RFC 9457 problem details, as `DownstreamUnavailableError` renders them. */
export interface ProblemDetails {
  type: string;
  title: string;
  status: number;
  detail: string;
}

/**
 * The downstream API did not answer (connection refused or reset, DNS failure, TLS failure): the
 * caller gets `502 Bad Gateway` with an RFC 9457 problem+json body from every adapter, not the
 * framework's 500 page. The downstream origin is kept on the error for the log (`origin`, and the
 * network error as `cause`), never put in the response: the client learns no internal address.
 */
export class DownstreamUnavailableError extends Error {
  override readonly name = 'DownstreamUnavailableError';
  readonly status = 502;
  /** For Fastify's error handler, should the error reach it. */
  readonly statusCode = 502;
  /** The downstream API's origin (for logs). */
  readonly origin: string;

  constructor(origin: string, options?: { cause?: unknown }) {
    super(`the downstream API at ${origin} did not answer`, options);
    this.origin = origin;
  }

  /** The response body (`application/problem+json`). */
  toProblem(): ProblemDetails {
    return { type: 'about:blank', title: 'Bad Gateway', status: 502, detail: 'An API this request depends on did not answer. Try again later.' };
  }
}

/** Maps the token service's error JSON to the typed error. */
export function oboErrorFrom(status: number, body: TokenErrorBody): OboError {
  const codes = Array.isArray(body.error_codes) ? body.error_codes : [];
  if (body.error === 'interaction_required') return new InteractionRequiredError(status, body);
  if (body.suberror === 'consent_required' || body.error === 'consent_required' || codes.includes(Entra.consentRequired)) {
    return new ConsentRequiredError(status, body);
  }
  if (body.error === 'invalid_grant') return new InvalidGrantError(status, body);
  return new OboError(status, body);
}

/**
 * A claims challenge for the caller (Entra's format), e.g. when an operation needs an
 * authentication context the token does not carry:
 *
 * @example
 * throw claimsChallenge({ access_token: { acrs: { essential: true, value: 'c1' } } });
 * // 401, WWW-Authenticate: Bearer realm="", error="insufficient_claims", claims="eyJhY2Nlc3Nf…"
 */
export function claimsChallenge(
  claims: string | Record<string, unknown>,
  options: { realm?: string; authorizationUri?: string; description?: string } = {},
): ClaimsChallengeError {
  let json: string;
  if (typeof claims === 'string') {
    let parsed: unknown;
    try {
      parsed = JSON.parse(claims);
    } catch {
      throw new TypeError('claimsChallenge: claims must be a JSON object (OIDC Core §5.5)');
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new TypeError('claimsChallenge: claims must be a JSON object (OIDC Core §5.5)');
    json = JSON.stringify(parsed); // minified, as Entra recommends
  } else if (claims !== null && typeof claims === 'object' && !Array.isArray(claims)) {
    json = JSON.stringify(claims);
  } else {
    throw new TypeError('claimsChallenge: claims must be a JSON object (OIDC Core §5.5)');
  }
  return new ClaimsChallengeError(json, options);
}

/**
 * RFC 9470 step-up: 401 `insufficient_user_authentication` with `acr_values` and/or `max_age`.
 *
 * @example
 * throw insufficientUserAuthentication({ acrValues: ['urn:baton:mfa'], maxAge: 300 });
 */
export function insufficientUserAuthentication(options: {
  acrValues?: readonly string[];
  maxAge?: number;
  description?: string;
  realm?: string;
  resourceMetadata?: string;
}): GuardError {
  const params: Array<readonly [string, string]> = [];
  if (options.acrValues !== undefined) {
    if (!Array.isArray(options.acrValues) || options.acrValues.length === 0 || options.acrValues.some((v) => typeof v !== 'string' || /\s/.test(v) || v === '')) {
      throw new TypeError('insufficientUserAuthentication: acrValues must be non-empty strings without spaces');
    }
    params.push(['acr_values', options.acrValues.join(' ')]);
  }
  if (options.maxAge !== undefined) {
    if (!Number.isInteger(options.maxAge) || options.maxAge < 0) throw new TypeError('insufficientUserAuthentication: maxAge must be a non-negative integer (seconds)');
    params.push(['max_age', String(options.maxAge)]);
  }
  if (params.length === 0) throw new TypeError('insufficientUserAuthentication: give acrValues, maxAge or both');
  const description =
    options.description ??
    (options.maxAge !== undefined && options.acrValues === undefined
      ? 'A more recent authentication is required.'
      : 'A stronger authentication is required.');
  return new GuardError('insufficient_user_authentication', 'ERR_STEP_UP_REQUIRED', description, {
    realm: options.realm,
    resourceMetadata: options.resourceMetadata,
    params,
  });
}

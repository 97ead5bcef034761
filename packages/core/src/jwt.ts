/**
 * JWT claims-set validation (RFC 7519 §4.1, RFC 9068 §4) as a pure function of
 * (payload, options, now). Signature checking is `jws.ts`; this file knows nothing of keys.
 */

/**
 * Every `JwtError` code, stable and switchable (jose-style). The one list: the resource SDK's guard
 * reasons are these plus its own `ERR_BEARER_*`/authorization ones.
 */
export const JWT_ERROR_CODES = [
  'ERR_JWS_INVALID',
  'ERR_JWS_SIGNATURE_VERIFICATION_FAILED',
  'ERR_JWKS_NO_MATCHING_KEY',
  /** The issuer's keys cannot be fetched and none are cached. */
  'ERR_JWKS_UNAVAILABLE',
  'ERR_JOSE_ALG_NOT_ALLOWED',
  /** RFC 7515 §4.1.11: a `crit` header names an extension the verifier does not understand. */
  'ERR_JOSE_CRIT_UNSUPPORTED',
  /** RFC 8725 §3.10: the header names its own key (`jku`, `x5u`, `jwk`); keys never come from a token. */
  'ERR_JOSE_KEY_REFERENCE',
  'ERR_JWT_TYP_INVALID',
  'ERR_JWT_EXPIRED',
  'ERR_JWT_NOT_YET_VALID',
  'ERR_JWT_ISSUER_INVALID',
  'ERR_JWT_AUDIENCE_INVALID',
  'ERR_JWT_TENANT_INVALID',
  'ERR_JWT_CLAIM_INVALID',
  'ERR_JWT_CLAIM_MISSING',
  'ERR_JWT_REVOKED',
] as const;
export type JwtErrorCode = (typeof JWT_ERROR_CODES)[number];

/** A token failed validation. The message is safe to show: it never contains the token. */
export class JwtError extends Error {
  override name = 'JwtError';
  readonly code: JwtErrorCode;
  readonly claim: string | undefined;
  constructor(code: JwtErrorCode, message: string, claim?: string) {
    super(message);
    this.code = code;
    this.claim = claim;
  }
}

export interface ClaimsOptions {
  /** Accepted issuers (exact match). */
  issuer: string | readonly string[];
  /** Accepted audiences: the token's `aud` (string or array) must contain one. */
  audience: string | readonly string[];
  /** Epoch seconds. */
  now: number;
  /** Seconds of clock skew tolerated on `exp`, `nbf`, `iat`. Default 60. */
  clockTolerance?: number;
  /** Accepted `tid` values; absent = any. */
  tenants?: readonly string[];
  /** Claims that must be present. `exp` is always required. */
  required?: readonly string[];
}

/** The lifetime part of {@link ClaimsOptions}: what {@link validateLifetime} needs. */
export interface LifetimeOptions {
  /** Epoch seconds. */
  now: number;
  /** Seconds of clock skew tolerated on `exp`, `nbf`, `iat`. Default 60. */
  clockTolerance?: number;
  /** Claims that must be present. `exp` is always required. */
  required?: readonly string[];
}

/**
 * The claims set's lifetime (RFC 7519 §4.1.4–6): the required claims present, `exp`/`nbf`/`iat`
 * numeric, not expired, not before `nbf`, not issued in the future, with `clockTolerance`. The
 * one place these checks live: {@link validateClaims} runs it first, and the On-Behalf-Of rules
 * judge the assertion's lifetime with it. Throws `JwtError` (`claim` names the claim).
 */
export function validateLifetime(payload: Record<string, unknown>, options: LifetimeOptions): void {
  const skew = options.clockTolerance ?? 60;
  const { now } = options;

  if (payload.exp === undefined) throw missing('exp');
  if (options.required !== undefined) for (const name of options.required) if (payload[name] === undefined) throw missing(name);
  numericIfPresent(payload, 'exp');
  numericIfPresent(payload, 'nbf');
  numericIfPresent(payload, 'iat');
  if ((payload.exp as number) <= now - skew) throw new JwtError('ERR_JWT_EXPIRED', 'the token has expired', 'exp');
  if (typeof payload.nbf === 'number' && payload.nbf > now + skew) {
    throw new JwtError('ERR_JWT_NOT_YET_VALID', 'the token is not valid yet (nbf)', 'nbf');
  }
  if (typeof payload.iat === 'number' && payload.iat > now + skew) {
    throw new JwtError('ERR_JWT_NOT_YET_VALID', 'the token was issued in the future (iat)', 'iat');
  }
}

function missing(name: string): JwtError {
  return new JwtError('ERR_JWT_CLAIM_MISSING', `the token has no '${name}' claim`, name);
}

function numericIfPresent(payload: Record<string, unknown>, name: 'exp' | 'nbf' | 'iat'): void {
  const value = payload[name];
  if (value !== undefined && (typeof value !== 'number' || !Number.isFinite(value))) {
    throw new JwtError('ERR_JWT_CLAIM_INVALID', `the '${name}' claim must be a number`, name);
  }
}

/**
 * The claims set of a JWT (RFC 7519 §4.1, RFC 9068 §4) as a pure function of (payload, options):
 * {@link validateLifetime}, then `iss`, `aud` and, when given, `tid`. Throws `JwtError`.
 */
export function validateClaims(payload: Record<string, unknown>, options: ClaimsOptions): void {
  validateLifetime(payload, options);

  const issuers = typeof options.issuer === 'string' ? [options.issuer] : options.issuer;
  if (typeof payload.iss !== 'string' || !issuers.includes(payload.iss)) {
    throw new JwtError('ERR_JWT_ISSUER_INVALID', 'the token was issued by an issuer this API does not trust', 'iss');
  }

  const audiences = typeof options.audience === 'string' ? [options.audience] : options.audience;
  const aud = payload.aud;
  const tokenAudiences = typeof aud === 'string' ? [aud] : Array.isArray(aud) ? aud : [];
  if (!tokenAudiences.some((a) => typeof a === 'string' && audiences.includes(a))) {
    throw new JwtError('ERR_JWT_AUDIENCE_INVALID', 'the token is addressed to another audience', 'aud');
  }

  if (options.tenants && (typeof payload.tid !== 'string' || !options.tenants.includes(payload.tid))) {
    throw new JwtError('ERR_JWT_TENANT_INVALID', 'the token was issued for a tenant this API does not accept', 'tid');
  }
}

/** RFC 9068 §2.1: `typ` is `at+jwt` (the `application/` prefix may be present). */
export function isAccessTokenTyp(typ: unknown): boolean {
  return typeof typ === 'string' && /^(application\/)?at\+jwt$/i.test(typ);
}

/** `scp` as a list (space-separated string per Entra / RFC 9068 `scope`). */
export function scopesOf(payload: Record<string, unknown>): string[] {
  const raw = typeof payload.scp === 'string' ? payload.scp : typeof payload.scope === 'string' ? payload.scope : '';
  return raw.split(' ').filter(Boolean);
}

export function rolesOf(payload: Record<string, unknown>): string[] {
  return Array.isArray(payload.roles) ? payload.roles.filter((r): r is string => typeof r === 'string') : [];
}

/**
 * Reading the bearer token from `Authorization` (RFC 6750 §2.1). Only the header method is
 * supported (no form body, no query string: RFC 6750 §2.3 tokens end up in logs).
 */
import { GuardError } from './errors.ts';

/** What every challenge of one API carries. */
export interface ChallengeContext {
  realm?: string | undefined;
  resourceMetadata?: string | undefined;
}

/** Longest `Authorization` value looked at; anything longer is refused before it is parsed. */
export const MAX_AUTHORIZATION_LENGTH = 16 * 1024;

// RFC 6750 §2.1: credentials = "Bearer" 1*SP b64token; b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
const BEARER = /^Bearer +([A-Za-z0-9\-._~+/]+=*)$/i;
// RFC 9449 §7.1: the DPoP scheme carries the same token68 syntax.
const DPOP = /^DPoP +([A-Za-z0-9\-._~+/]+=*)$/i;

/** The scheme a token was presented with. */
export type TokenScheme = 'Bearer' | 'DPoP';

/** What `guard.verify` accepts: one header value, every value of a repeated header, or nothing. */
export type AuthorizationInput = string | readonly string[] | null | undefined;

/**
 * The token from an `Authorization` header.
 *
 * - nothing → 401 without an error code (RFC 6750 §3.1);
 * - more than one header (or values joined with a comma by a proxy or by Fetch's `Headers`) → 400;
 * - longer than 16 KiB → 400 without looking further;
 * - another scheme, no token, a token with spaces → 400 `invalid_request`.
 */
export function bearerToken(input: AuthorizationInput, ctx: ChallengeContext): string {
  const presented = presentedToken(input, ctx);
  if (presented.scheme === 'DPoP') return malformed('The Authorization header must use the Bearer scheme.', ctx);
  return presented.token;
}

/**
 * The token from an `Authorization` header and its scheme: `Bearer` (RFC 6750) or `DPoP`
 * (RFC 9449 §7.1); the same refusals as {@link bearerToken} otherwise.
 */
export function presentedToken(input: AuthorizationInput, ctx: ChallengeContext): { scheme: TokenScheme; token: string } {
  let value: string | undefined;
  if (Array.isArray(input)) {
    const values = input as readonly string[];
    // Found by fuzzing: an array holding a non-string crashed on `.trim()`; it is the same programmer error as a non-string.
    if (values.some((v) => typeof v !== 'string')) throw new TypeError('the Authorization input must be a string or an array of strings');
    const total = values.reduce((sum, v) => sum + (typeof v === 'string' ? v.length : 0), 0);
    if (total > MAX_AUTHORIZATION_LENGTH) throw tooLarge(ctx);
    if (values.length > 1) throw duplicate(ctx);
    value = values[0];
  } else if (typeof input === 'string') {
    value = input;
  } else if (input !== null && input !== undefined) {
    throw new TypeError('the Authorization input must be a string or an array of strings');
  }
  if (value === undefined || value.trim() === '') {
    throw new GuardError(undefined, 'ERR_BEARER_MISSING', 'The request has no bearer token.', ctx);
  }
  if (value.length > MAX_AUTHORIZATION_LENGTH) throw tooLarge(ctx);
  const trimmed = value.trim();
  const m = BEARER.exec(trimmed);
  if (m) return { scheme: 'Bearer', token: m[1] as string };
  const d = DPOP.exec(trimmed);
  if (d) return { scheme: 'DPoP', token: d[1] as string };
  if (/^(Bearer|DPoP)\s*[^,]*,\s*(Bearer|Basic|DPoP)\b/i.test(trimmed)) throw duplicate(ctx);
  const scheme = /^(\S+)/.exec(trimmed)?.[1] ?? '';
  const description = /^(bearer|dpop)$/i.test(scheme)
    ? `The Authorization header must be "${/^dpop$/i.test(scheme) ? 'DPoP' : 'Bearer'} <token>" with exactly one token.`
    : 'The Authorization header must use the Bearer (or DPoP) scheme.';
  return malformed(description, ctx);
}

function malformed(description: string, ctx: ChallengeContext): never {
  throw new GuardError('invalid_request', 'ERR_BEARER_MALFORMED', description, ctx);
}

function duplicate(ctx: ChallengeContext): GuardError {
  return new GuardError('invalid_request', 'ERR_BEARER_DUPLICATE', 'The request has more than one Authorization header.', ctx);
}

function tooLarge(ctx: ChallengeContext): GuardError {
  return new GuardError('invalid_request', 'ERR_BEARER_TOO_LARGE', `The Authorization header is longer than ${MAX_AUTHORIZATION_LENGTH} bytes.`, ctx);
}

/**
 * Whether `input` is a bare token rather than a header value: one compact JWS, three dot-separated
 * segments, no whitespace. `"Basic x"`, `"Bearer"`, `"Bearer a b"` are header values.
 */
export function looksLikeBareToken(input: string): boolean {
  if (input.length > MAX_AUTHORIZATION_LENGTH) return false;
  if (/\s/.test(input)) return false;
  let dots = 0;
  for (let i = 0; i < input.length; i++) if (input.charCodeAt(i) === 46) dots++;
  return dots === 2;
}

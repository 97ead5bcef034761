/**
 * The one verifier of tokens this service issued, with the tenant's published keys (current, next,
 * or retired within its grace period), by `kid`, with the algorithm OUR key record was made for —
 * never the token's word for it: `alg: none`, HMAC keyed with a public key and every other
 * algorithm-confusion trick fail the comparison with the header.
 *
 * Two steps, shared by every caller:
 *
 *   readOwnToken      decode (bounded), core's JWS header policy  (no key, no I/O)
 *   checkOwnSignature `kid`, the tenant's key for it, the signature
 *
 * They return a {@link OwnTokenFailure} rather than throw, so each caller words the refusal for its
 * audience: {@link verifyOwnToken} (UserInfo, introspection, `id_token_hint` at logout) adds core's
 * claims validation and throws `JwtError`; the exchange (grants/run-exchange.ts) answers the OAuth
 * error of its dialect and leaves the claims to core's exchange rules.
 */
import { ACCESS_TOKEN_HEADER, ID_TOKEN_HEADER, JwtError, checkJwsHeader, decodeJws, validateClaims, verifyJwsSignatureAsync, type DecodedJws, type JwtErrorCode } from '@baton/core';
import { issuerOf, type ServerContext } from '../context.ts';
import { isTenantId } from '../tenants.ts';

/** Why a token is not one of ours (each with what a description may show; never the token). */
export type OwnTokenFailure =
  | { failure: 'too-long'; length: number }
  | { failure: 'malformed'; message: string }
  | { failure: 'typ'; typ: unknown }
  | { failure: 'crit' }
  /** Another refusal of core's JWS header policy (`alg`, `jku`/`x5u`/`jwk`, a malformed `kid`). */
  | { failure: 'header'; code: JwtErrorCode; message: string }
  | { failure: 'no-kid' }
  | { failure: 'unknown-key'; kid: string }
  | { failure: 'signature'; kid: string; alg: string; headerAlg: unknown };

export function isOwnTokenFailure(value: DecodedJws | OwnTokenFailure | undefined): value is OwnTokenFailure {
  return value !== undefined && 'failure' in value;
}

const CRIT: OwnTokenFailure = Object.freeze({ failure: 'crit' });
const NO_KID: OwnTokenFailure = Object.freeze({ failure: 'no-kid' });

/**
 * Decodes `token` and checks its header: `typ` (`at+jwt` for access tokens, RFC 9068 §4; `JWT` or
 * none for ID tokens) and no `crit` (RFC 7515 §4.1.11: a critical extension we do not understand
 * makes the token invalid; ours carry none). `maxChars` bounds the work done on attacker input.
 */
export function readOwnToken(token: string, typ: 'at+jwt' | 'JWT', maxChars?: number): DecodedJws | OwnTokenFailure {
  if (maxChars !== undefined && token.length > maxChars) return { failure: 'too-long', length: token.length };
  let decoded: DecodedJws;
  try {
    decoded = decodeJws(token, maxChars);
  } catch (error) {
    return { failure: 'malformed', message: (error as Error).message };
  }
  const header = decoded.header;
  // The one JWS header policy (core's checkJwsHeader): crit, the algorithms this service signs
  // with, typ per use, no key named by the token, a kid.
  try {
    checkJwsHeader(header, typ === 'at+jwt' ? ACCESS_TOKEN_HEADER : ID_TOKEN_HEADER);
  } catch (error) {
    if (!(error instanceof JwtError)) throw error;
    if (error.code === 'ERR_JOSE_CRIT_UNSUPPORTED') return CRIT;
    if (error.code === 'ERR_JWT_TYP_INVALID') return { failure: 'typ', typ: header.typ };
    if (error.code === 'ERR_JWS_INVALID' && header.kid === undefined) return NO_KID;
    return { failure: 'header', code: error.code, message: error.message };
  }
  return decoded;
}

/** Whether one of `tenantId`'s published keys (by `kid`, with its own algorithm) signed `decoded`; `undefined` when it did. */
export async function checkOwnSignature(ctx: ServerContext, tenantId: string, decoded: DecodedJws): Promise<OwnTokenFailure | undefined> {
  const kid = decoded.header.kid;
  if (typeof kid !== 'string' || kid === '') return NO_KID;
  const key = await ctx.keyring.publicKey(tenantId, kid);
  if (key === undefined) return { failure: 'unknown-key', kid };
  const verifying = verifyJwsSignatureAsync(decoded, key.key, key.alg);
  if (!(await (ctx.metrics ? ctx.metrics.jws('verify', key.alg, verifying) : verifying))) return { failure: 'signature', kid, alg: key.alg, headerAlg: decoded.header.alg };
  return undefined;
}

/** A token this service issued, verified, and the tenant that issued it. */
export interface OwnToken {
  tenantId: string;
  payload: Record<string, unknown>;
}

export interface VerifyOptions {
  /** `at+jwt` for access tokens, `JWT` for ID tokens. */
  typ: 'at+jwt' | 'JWT';
  audience?: string | readonly string[] | undefined;
  /** Only this tenant's tokens. */
  tenantId?: string | undefined;
  /** Accept an expired token (an `id_token_hint` may be expired, OIDC RP-Initiated Logout §2). */
  allowExpired?: boolean | undefined;
}

/**
 * Verifies a token this service issued to be presented back to it (UserInfo, introspection,
 * `id_token_hint`): the two steps above, the issuing tenant read from `iss`, then core's
 * `validateClaims`. Throws `JwtError` (safe to show: it never contains the token).
 */
export async function verifyOwnToken(ctx: ServerContext, token: string, options: VerifyOptions): Promise<OwnToken> {
  const decoded = readOwnToken(token, options.typ);
  if (isOwnTokenFailure(decoded)) throw jwtError(decoded, options.typ);
  const payload = decoded.payload;
  const iss = typeof payload.iss === 'string' ? payload.iss : '';
  const prefix = `${ctx.baseUrl}/`;
  const tenantId = iss.startsWith(prefix) && iss.endsWith('/v2.0') ? iss.slice(prefix.length, -'/v2.0'.length) : '';
  if (!isTenantId(tenantId) || (options.tenantId !== undefined && tenantId !== options.tenantId)) {
    throw new JwtError('ERR_JWT_ISSUER_INVALID', 'the token was not issued by this token service', 'iss');
  }
  const failure = await checkOwnSignature(ctx, tenantId, decoded);
  if (failure !== undefined) throw jwtError(failure, options.typ);
  const now = ctx.now();
  // No audience given: any (the caller checks it, e.g. an id_token_hint names the client it was for).
  const audience = options.audience ?? (typeof payload.aud === 'string' ? payload.aud : []);
  validateClaims(payload, {
    issuer: issuerOf(ctx, tenantId),
    audience: typeof audience === 'string' ? audience : [...audience],
    now: options.allowExpired ? Math.min(now, typeof payload.exp === 'number' ? payload.exp : now) : now,
    required: ['iat'],
  });
  return { tenantId, payload };
}

function jwtError(failure: OwnTokenFailure, typ: 'at+jwt' | 'JWT'): JwtError {
  switch (failure.failure) {
    case 'too-long':
    case 'malformed':
      return new JwtError('ERR_JWS_INVALID', `the token is malformed (${failure.failure === 'malformed' ? failure.message : 'too long'})`);
    case 'typ':
      return new JwtError('ERR_JWT_TYP_INVALID', `the token is not of type ${typ}`);
    case 'crit':
      return new JwtError('ERR_JOSE_CRIT_UNSUPPORTED', `the token has a 'crit' header: this service issues no such tokens`);
    case 'header':
      return new JwtError(failure.code, failure.message);
    case 'no-kid':
    case 'unknown-key':
      return new JwtError('ERR_JWKS_NO_MATCHING_KEY', 'no key of the issuer matches the token (kid)');
    case 'signature':
      return new JwtError('ERR_JWS_SIGNATURE_VERIFICATION_FAILED', 'the token signature is invalid');
  }
}

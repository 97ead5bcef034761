/**
 * Verifies tokens this service issued (access tokens at UserInfo and introspection, ID tokens as
 * `id_token_hint` at logout) with the tenant's published keys, by `kid`, with the algorithm the
 * key was made for (never the token's word for it).
 */
import { JwtError, decodeJws, validateClaims, verifyJwsSignatureAsync, JwsFormatError, isAccessTokenTyp, type DecodedJws } from '@baton/core';
import { issuerOf, type ServerContext } from '../context.ts';

export interface VerifiedToken {
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

/** Verifies a token; throws `JwtError` (safe to show: it never contains the token). */
export async function verifyOwnToken(ctx: ServerContext, token: string, options: VerifyOptions): Promise<VerifiedToken> {
  let decoded: DecodedJws;
  try {
    decoded = decodeJws(token);
  } catch (error) {
    throw new JwtError('ERR_JWS_INVALID', `the token is malformed (${(error as JwsFormatError).message})`);
  }
  const { header, payload } = decoded;
  const typOk = options.typ === 'at+jwt' ? isAccessTokenTyp(header.typ) : header.typ === undefined || /^(application\/)?jwt$/i.test(String(header.typ));
  if (!typOk) throw new JwtError('ERR_JWT_TYP_INVALID', `the token is not of type ${options.typ}`);
  const iss = typeof payload.iss === 'string' ? payload.iss : '';
  const prefix = `${ctx.baseUrl}/`;
  const tenantId = iss.startsWith(prefix) && iss.endsWith('/v2.0') ? iss.slice(prefix.length, -'/v2.0'.length) : '';
  if (!/^[a-z0-9][a-z0-9-]{0,63}$/.test(tenantId) || (options.tenantId !== undefined && tenantId !== options.tenantId)) {
    throw new JwtError('ERR_JWT_ISSUER_INVALID', 'the token was not issued by this token service', 'iss');
  }
  const kid = typeof header.kid === 'string' ? header.kid : undefined;
  const key = kid === undefined ? undefined : await ctx.keyring.publicKey(tenantId, kid);
  if (key === undefined) throw new JwtError('ERR_JWKS_NO_MATCHING_KEY', 'no key of the issuer matches the token (kid)');
  if (!(await verifyJwsSignatureAsync(decoded, key.key, key.alg))) throw new JwtError('ERR_JWS_SIGNATURE_VERIFICATION_FAILED', 'the token signature is invalid');
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

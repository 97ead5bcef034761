/**
 * ID token claims (OpenID Connect Core §2, §3.1.3.6) in Entra's v2 dialect, so MSAL builds its
 * account from them (`oid`, `tid`, `preferred_username`) and generic OIDC clients validate them.
 *
 * - `aud` is the client; `sub` is pairwise per client (OIDC Core §8.1): two applications cannot
 *   correlate the user by `sub`. UserInfo returns the same `sub` for the same client.
 * - `at_hash` (§3.1.3.6): the left half of the hash of the access token, with the hash of the ID
 *   token's signing algorithm.
 * - `auth_time`, `amr`, `acr`, `sid` describe the sign-in; `nonce` echoes the request.
 */
import { createHash, randomUUID } from 'node:crypto';
import { pairwiseSubject, utiFromJti, type IdGenerator, type PairwiseSecret, type SignInFacts } from './claims.ts';
import type { OidcScope } from './scopes.ts';
import type { SigningAlg, Tenant } from './types.ts';

/** ID tokens live one hour (Entra's default). */
export const ID_TOKEN_LIFETIME_SECONDS = 3600;

export type IdTokenClaims = {
  iss: string;
  aud: string;
  sub: string;
  oid: string;
  tid: string;
  iat: number;
  nbf: number;
  exp: number;
  auth_time?: number;
  amr: string[];
  acr?: string;
  sid?: string;
  nonce?: string;
  at_hash?: string;
  preferred_username?: string;
  name?: string;
  email?: string;
  uti: string;
  ver: '2.0';
};

export interface IdTokenInput {
  issuer: string;
  tenant: Tenant;
  clientId: string;
  user: { oid: string; username: string; displayName: string; email?: string | undefined };
  /** OIDC scopes granted: `profile` adds `name`/`preferred_username`, `email` adds `email`. */
  scopes: readonly OidcScope[];
  nonce?: string | undefined;
  auth: SignInFacts;
  /** The access token issued with the ID token, for `at_hash`. */
  accessToken?: string | undefined;
  /** The algorithm the ID token will be signed with (picks the `at_hash` hash). */
  alg: SigningAlg;
  pairwiseSecret: PairwiseSecret;
  now: number;
  /** Never past the end of the sign-in session. */
  notAfter?: number | undefined;
  newId?: IdGenerator | undefined;
}

/**
 * `at_hash` / `c_hash`: base64url of the left-most half of the hash of the ASCII token (OIDC Core §3.1.3.6).
 *
 * @example
 * halfHash(accessToken, 'ES256'); // 22 characters for SHA-256
 */
export function halfHash(token: string, alg: SigningAlg): string {
  const digest = createHash(`sha${alg.slice(2)}`).update(token, 'ascii').digest();
  return digest.subarray(0, digest.length / 2).toString('base64url');
}

/**
 * Claims of an ID token; sign them with `typ: JWT` and the tenant's key for `alg`.
 *
 * @example
 * const claims = buildIdTokenClaims({ issuer, tenant, clientId: 'tasks-web', user, scopes: ['openid', 'profile'],
 *   nonce, auth: { amr: ['pwd'], acr: '1', authTime, sid }, accessToken, alg: 'ES256', pairwiseSecret, now });
 */
export function buildIdTokenClaims(input: IdTokenInput): IdTokenClaims {
  const { user, auth, now } = input;
  const exp = input.notAfter !== undefined && input.notAfter > now ? Math.min(now + ID_TOKEN_LIFETIME_SECONDS, input.notAfter) : now + ID_TOKEN_LIFETIME_SECONDS;
  const claims: IdTokenClaims = {
    iss: input.issuer,
    aud: input.clientId,
    sub: pairwiseSubject(input.pairwiseSecret, input.tenant.tid, user.oid, input.clientId),
    oid: user.oid,
    tid: input.tenant.tid,
    iat: now,
    nbf: now,
    exp,
    amr: [...auth.amr],
    uti: utiFromJti((input.newId ?? randomUUID)()),
    ver: '2.0',
  };
  if (auth.authTime !== undefined) claims.auth_time = auth.authTime;
  if (auth.acr !== undefined) claims.acr = auth.acr;
  if (auth.sid !== undefined) claims.sid = auth.sid;
  if (input.nonce !== undefined) claims.nonce = input.nonce;
  if (input.accessToken !== undefined) claims.at_hash = halfHash(input.accessToken, input.alg);
  if (input.scopes.includes('profile')) {
    claims.preferred_username = user.username;
    claims.name = user.displayName;
  }
  if (input.scopes.includes('email') && user.email !== undefined) claims.email = user.email;
  return claims;
}

/**
 * MSAL's `client_info`: base64url JSON `{uid, utid}` (the user's object id and tenant id), from
 * which MSAL builds the account's home id `uid.utid`.
 *
 * @example
 * clientInfo(user.oid, tenant.tid); // 'eyJ1aWQiOi…'
 */
export function clientInfo(oid: string, tid: string): string {
  return Buffer.from(JSON.stringify({ uid: oid, utid: tid })).toString('base64url');
}

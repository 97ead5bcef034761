/**
 * Refresh tokens: opaque, 256 random bits, stored by SHA-256 (kind `refresh`) — a high-entropy
 * secret needs no slow hash. Every use rotates: the presented token is consumed atomically and a
 * new one of the same family is issued. Presenting a consumed token again is reuse (RFC 9700
 * §4.14.2): the whole family is revoked, so whichever of the thief and the user comes second is
 * stopped, and the other must sign in again.
 *
 * A refresh token is bound to the client it was issued to, carries the sign-in facts (`amr`,
 * `acr`, `auth_time`, `sid`) unchanged, never outlives its sign-in session, and dies with it.
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import type { ActorClaim, OidcScope, SignInFacts, TenantDirectory, User } from '@baton/core';
import type { ServerContext } from '../context.ts';
import type { EphemeralRecord } from '../store/types.ts';
import { sessionBySid } from '../session.ts';

/** Sliding lifetime of a refresh token (each rotation starts a new one), bounded by the session. */
export const REFRESH_TOKEN_LIFETIME_SECONDS = 14 * 24 * 3600;

export interface RefreshTokenPayload {
  oid: string;
  clientId: string;
  /** The API (client id) of the original grant; absent when it named only OIDC scopes. */
  resource?: string | undefined;
  scopes: string[];
  oidcScopes: OidcScope[];
  auth: { amr: string[]; acr?: string | undefined; authTime?: number | undefined; sid?: string | undefined };
  /** End of the session (epoch seconds), when the token came from one. */
  notAfter?: number | undefined;
  /** RFC 8693 actor chain of an exchanged grant: tokens renewed with this refresh token keep it. */
  act?: ActorClaim | undefined;
  /** RFC 9449 §5: the DPoP key a public client's refresh token is bound to; each use must prove it. */
  jkt?: string | undefined;
}

export type RefreshTokenRecord = EphemeralRecord<RefreshTokenPayload>;

export function refreshTokenId(token: string): string {
  return createHash('sha256').update(token).digest('base64url');
}

/** Whether a string can be one of our refresh tokens (cheap check before any store access). */
export function looksLikeRefreshToken(token: string): boolean {
  return /^[A-Za-z0-9_-]{43}$/.test(token);
}

export interface IssueRefreshTokenRequest {
  directory: TenantDirectory;
  user: User;
  /** The client the token is bound to. */
  clientId: string;
  /** The API's client id (undefined for an OIDC-only grant). */
  resource?: string | undefined;
  /** Scope values on `resource`. */
  scopes: readonly string[];
  oidcScopes?: readonly OidcScope[] | undefined;
  auth: SignInFacts;
  /** The session (`sid`) behind the grant; the token never outlives it. */
  sid?: string | undefined;
  /** Continue a family (rotation, or the family of the code that issued it); new family when absent. */
  familyId?: string | undefined;
  /** The `act` claim of the tokens this grant issues (OBO / token exchange). */
  act?: ActorClaim | undefined;
  /** The DPoP key the refresh token is bound to (public clients). */
  jkt?: string | undefined;
}

export interface IssuedRefreshToken {
  token: string;
  familyId: string;
  expiresAt: number;
}

/**
 * Issues a refresh token. Used by the authorization-code and refresh grants, and by the OBO grant
 * for `offline_access`.
 *
 * @example
 * const { token } = await issueRefreshToken(ctx, { directory, user, clientId: 'tasks-api', resource: 'docs-api',
 *   scopes: ['Docs.Read'], auth: { amr, acr, authTime, sid }, sid });
 */
export async function issueRefreshToken(ctx: ServerContext, request: IssueRefreshTokenRequest): Promise<IssuedRefreshToken> {
  const now = ctx.now();
  const tenantId = request.directory.tenant.id;
  const sid = request.sid ?? request.auth.sid;
  let notAfter: number | undefined;
  if (sid !== undefined) {
    const session = await sessionBySid(ctx, tenantId, sid);
    if (session === undefined) throw new Error('issueRefreshToken: the session behind the grant has ended; refuse the request before issuing');
    notAfter = session.expiresAt;
  }
  const expiresAt = Math.min(now + REFRESH_TOKEN_LIFETIME_SECONDS, notAfter ?? Number.MAX_SAFE_INTEGER);
  const token = randomBytes(32).toString('base64url');
  const familyId = request.familyId ?? randomUUID();
  const payload: RefreshTokenPayload = {
    oid: request.user.oid,
    clientId: request.clientId,
    resource: request.resource,
    scopes: [...request.scopes],
    oidcScopes: [...(request.oidcScopes ?? [])],
    auth: { amr: [...request.auth.amr], acr: request.auth.acr, authTime: request.auth.authTime, sid },
    notAfter,
  };
  if (request.act !== undefined) payload.act = request.act;
  if (request.jkt !== undefined) payload.jkt = request.jkt;
  await ctx.store.putEphemeral<RefreshTokenPayload>({ kind: 'refresh', id: refreshTokenId(token), tenantId, payload, familyId, expiresAt, createdAt: now });
  return { token, familyId, expiresAt };
}

/** A live (unconsumed, unrevoked, unexpired) refresh token record, for revocation and introspection. */
export async function findRefreshToken(ctx: ServerContext, tenantId: string, token: string): Promise<RefreshTokenRecord | undefined> {
  if (!looksLikeRefreshToken(token)) return undefined;
  const record = await ctx.store.getEphemeral<RefreshTokenPayload>('refresh', refreshTokenId(token), ctx.now());
  return record !== undefined && record.tenantId === tenantId ? record : undefined;
}

/**
 * Signing access tokens. Every grant that issues a token for an API comes through here, so the
 * header (`typ: at+jwt`, RFC 9068 §2.1), the key (the tenant's current key for the API's algorithm)
 * and the user's app roles are decided in one place.
 */
import {
  buildDelegatedClaims,
  userRolesOn,
  type ActorClaim,
  type Application,
  type DelegatedAccessClaims,
  type SignInFacts,
  type TenantDirectory,
  type User,
} from '@baton/core';
import { issuerOf, type ServerContext } from '../context.ts';

/** Signs `claims` for `api` with the tenant's current key for the API's algorithm. */
export async function signAccessToken(ctx: ServerContext, tenantId: string, api: Application, claims: Record<string, unknown>): Promise<string> {
  const signer = await ctx.keyring.signer(tenantId, api.signingAlg);
  const signing = signer.signAsync(claims, 'at+jwt');
  return ctx.metrics ? ctx.metrics.jws('sign', api.signingAlg, signing) : signing;
}

/** The user's app roles on an API: their assignments read from the store, judged by core's `userRolesOn`. */
export async function readUserRolesOn(ctx: ServerContext, directory: TenantDirectory, user: User, api: Application): Promise<string[]> {
  return userRolesOn(directory, api, user.oid, await ctx.store.listRoleAssignments(directory.tenant.id, 'user', user.oid));
}

export interface DelegatedTokenRequest {
  directory: TenantDirectory;
  user: User;
  /** The application the token is issued to (`azp`). */
  clientId: string;
  api: Application;
  scopes: readonly string[];
  auth: SignInFacts;
  act?: ActorClaim | undefined;
  sessionExpiresAt?: number | undefined;
  profile?: boolean | undefined;
  /** The DPoP key the token is bound to (`cnf.jkt`). */
  jkt?: string | undefined;
  /** Client capabilities the request declared (`cp1`: `xms_cc`, the tenant's CAE lifetime). */
  clientCapabilities?: readonly string[] | undefined;
}

export interface IssuedToken {
  token: string;
  claims: DelegatedAccessClaims;
  expiresIn: number;
}

/** Builds and signs a delegated access token (sign-in, refresh, `baton token issue`, OBO). */
export async function issueDelegatedToken(ctx: ServerContext, request: DelegatedTokenRequest): Promise<IssuedToken> {
  const now = ctx.now();
  const { directory, user, api } = request;
  const claims = buildDelegatedClaims({
    issuer: issuerOf(ctx, directory.tenant.id),
    tenant: directory.tenant,
    clientId: request.clientId,
    api,
    user,
    scopes: request.scopes,
    roles: await readUserRolesOn(ctx, directory, user, api),
    auth: request.auth,
    act: request.act,
    sessionExpiresAt: request.sessionExpiresAt,
    profile: request.profile ? { preferred_username: user.username, name: user.displayName } : undefined,
    pairwiseSecret: ctx.pairwiseKey,
    now,
    jkt: request.jkt,
    clientCapabilities: request.clientCapabilities,
  });
  return { token: await signAccessToken(ctx, directory.tenant.id, api, claims), claims, expiresIn: claims.exp - now };
}

/**
 * The token response of the sign-in grants (authorization code, refresh): access token, ID token
 * when `openid` was granted, refresh token when `offline_access` was, and MSAL's `client_info`.
 */
import { clientInfo, qualifiedScope, type DpopConfirmation, type ActorClaim, type Application, type OidcScope, type SignInFacts, type TenantDirectory, type User } from '@baton/core';
import type { ServerContext } from '../context.ts';
import type { TokenResponse } from '../grants/registry.ts';
import { issueDelegatedToken } from './issue.ts';
import { issueIdToken } from './id-token.ts';
import { issueRefreshToken } from './refresh.ts';
import { userinfoApi } from './userinfo-audience.ts';
import { tokenTypeOf } from '../dpop.ts';

export interface SignInGrant {
  directory: TenantDirectory;
  user: User;
  clientId: string;
  /** The API and its granted scope values; absent for an OIDC-only grant (token for UserInfo). */
  resource?: { api: Application; scopes: string[] } | undefined;
  oidcScopes: readonly OidcScope[];
  auth: SignInFacts;
  sessionExpiresAt?: number | undefined;
  nonce?: string | undefined;
  clientInfo: boolean;
  /** Family of the refresh token to issue (the code's, or the rotated token's). */
  familyId?: string | undefined;
  /**
   * What the new refresh token remembers, when it differs from this response (a rotation keeps the
   * original grant, whatever API this particular refresh asked for). Its `oidcScopes` decide
   * whether a refresh token is issued at all.
   */
  refreshGrant?: { resource?: string | undefined; scopes: readonly string[]; oidcScopes: readonly OidcScope[] } | undefined;
  /** RFC 8693 actor chain, for grants that came from an exchange. */
  act?: ActorClaim | undefined;
  /** The request's DPoP proof: the access token is bound to its key (`token_type: DPoP`). */
  dpop?: DpopConfirmation | undefined;
  /**
   * The key the new refresh token is bound to (RFC 9449 §5: a public client's refresh tokens are
   * bound to its DPoP key; a confidential client's are bound to its authentication instead).
   */
  refreshJkt?: string | undefined;
  /**
   * Redeems what the response is for: consumes the authorization code, or the refresh token being
   * rotated (atomic across instances; losing is a replay, and throws). Called once, after every
   * store write and signature of the response and with nothing written after it, so a failure on
   * the way (the store gone mid-request: a 503) leaves the presented code or token usable for the
   * client's retry. What was made before it for a response never sent dies unseen: a refresh token
   * no client holds, in a family the replay revokes.
   */
  redeem: () => Promise<void>;
  /** The client capabilities the request's `claims` declared (`cp1`: `xms_cc` and the tenant's CAE lifetime). */
  clientCapabilities?: readonly string[] | undefined;
}

export async function signInTokenResponse(ctx: ServerContext, grant: SignInGrant): Promise<TokenResponse> {
  const { directory, user, oidcScopes } = grant;
  const tenantId = directory.tenant.id;
  const api = grant.resource?.api ?? userinfoApi(ctx, tenantId);
  const scopes = grant.resource?.scopes ?? oidcScopes.filter((s) => s !== 'offline_access');
  const access = await issueDelegatedToken(ctx, {
    directory,
    user,
    clientId: grant.clientId,
    api,
    scopes: scopes.length > 0 ? scopes : ['openid'],
    auth: grant.auth,
    sessionExpiresAt: grant.sessionExpiresAt,
    profile: oidcScopes.includes('profile'),
    act: grant.act,
    jkt: grant.dpop?.jkt,
    clientCapabilities: grant.clientCapabilities,
  });
  const granted: string[] = grant.resource === undefined ? [] : grant.resource.scopes.map((value) => qualifiedScope(grant.resource!.api, value));
  const response: TokenResponse = {
    token_type: tokenTypeOf(grant.dpop),
    scope: '',
    expires_in: access.expiresIn,
    ext_expires_in: access.expiresIn,
    access_token: access.token,
  };
  const remembered = grant.refreshGrant ?? { resource: grant.resource?.api.clientId, scopes: grant.resource?.scopes ?? [], oidcScopes };
  if (remembered.oidcScopes.includes('offline_access')) {
    const refresh = await issueRefreshToken(ctx, {
      directory,
      user,
      clientId: grant.clientId,
      resource: remembered.resource,
      scopes: remembered.scopes,
      oidcScopes: remembered.oidcScopes,
      auth: grant.auth,
      sid: grant.auth.sid,
      familyId: grant.familyId,
      act: grant.act,
      jkt: grant.refreshJkt,
    });
    response.refresh_token = refresh.token;
    response.refresh_token_expires_in = refresh.expiresAt - ctx.now();
  }
  if (oidcScopes.includes('openid')) {
    response.id_token = await issueIdToken(ctx, {
      directory,
      user,
      clientId: grant.clientId,
      scopes: oidcScopes,
      nonce: grant.nonce,
      auth: grant.auth,
      accessToken: access.token,
      sessionExpiresAt: grant.sessionExpiresAt,
    });
  }
  for (const scope of oidcScopes) if (scope !== 'offline_access') granted.push(scope);
  if (response.refresh_token !== undefined) granted.push('offline_access');
  response.scope = granted.join(' ');
  if (grant.clientInfo) response.client_info = clientInfo(user.oid, directory.tenant.tid);
  await grant.redeem();
  return response;
}

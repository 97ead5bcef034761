/**
 * The audience of access tokens issued for OIDC scopes alone (`openid profile email`): the
 * UserInfo endpoint. Entra answers such a request with a Microsoft Graph token; Baton has no
 * Graph, so the token is addressed to its own UserInfo endpoint — the one place that accepts it.
 * A token for an API is never accepted at UserInfo (it is not addressed to it).
 */
import type { Application } from '@baton/core';
import type { ServerContext } from '../context.ts';

export function userinfoAudience(ctx: Pick<ServerContext, 'baseUrl'>): string {
  return `${ctx.baseUrl}/oidc/userinfo`;
}

/** A stand-in application for `buildDelegatedClaims` / `issueDelegatedToken`. */
export function userinfoApi(ctx: Pick<ServerContext, 'baseUrl'>, tenantId: string): Application {
  return {
    tenantId,
    clientId: userinfoAudience(ctx),
    servicePrincipalId: '00000000-0000-0000-0000-000000000000',
    name: 'UserInfo',
    public: false,
    redirectUris: [],
    secrets: [],
    jwks: [],
    scopes: [],
    appRoles: [],
    knownClientApplications: [],
    requiredAccess: [],
    accessTokenLifetimeSeconds: 3600,
    signingAlg: 'ES256',
  };
}

/**
 * `client_credentials` (RFC 6749 §4.4): an app-only token carrying the application permissions
 * (app roles) assigned to the client on one API. The decision is core's `decideClientCredentials`;
 * this file gathers inputs and renders the response.
 */
import { buildAppOnlyClaims, decideClientCredentials, dpopRequiredBy } from '@baton/core';
import { tokenTypeOf } from '../dpop.ts';
import { issuerOf } from '../context.ts';
import { signAccessToken } from '../tokens/issue.ts';
import type { Grant } from './registry.ts';

export const clientCredentialsGrant: Grant = {
  grantType: 'client_credentials',
  parameters: new Set(['scope']),
  confidentialOnly: true,
  async handler({ ctx, directory, client, params, dpop }) {
    const now = ctx.now();
    const decision = decideClientCredentials({ directory, client: client.app, scope: params.scope, now });
    dpopRequiredBy(decision.api, dpop, 'pass');
    const claims = buildAppOnlyClaims({
      issuer: issuerOf(ctx, directory.tenant.id),
      tenant: directory.tenant,
      client: client.app,
      api: decision.api,
      roles: decision.roles,
      now,
      jkt: dpop?.jkt,
    });
    const expiresIn = claims.exp - now;
    return {
      token_type: tokenTypeOf(dpop),
      expires_in: expiresIn,
      ext_expires_in: expiresIn,
      access_token: await signAccessToken(ctx, directory.tenant.id, decision.api, claims),
    };
  },
};

/**
 * Microsoft's On-Behalf-Of grant, exactly as `@azure/msal-node` `acquireTokenOnBehalfOf` and
 * Microsoft.Identity.Web send it:
 *
 *   grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer
 *   requested_token_use=on_behalf_of
 *   assertion=<the access token the middle tier received>
 *   scope=<scopes of ONE downstream API> [openid profile offline_access]
 *   client_info=1
 *   [claims=<a claims challenge the middle tier passes on (MSAL: acquireTokenOnBehalfOf({ claims }))>]
 *   + client authentication (secret or private_key_jwt)
 *
 * The rules are core's `decideExchange` (DESIGN "The On-Behalf-Of exchange"); the engine around it
 * is `run-exchange.ts`. This file reads the Microsoft parameters and writes the Microsoft
 * response, which MSAL caches by (assertion hash, client, `scope`, `token_type`):
 * - `token_type` is exactly `Bearer` (another spelling lands under another cache key), or `DPoP` for a bound token;
 * - `scope` holds the resource scopes exactly as requested — plus, for `.default`, the scopes it
 *   stood for — so MSAL's lookup for the same request matches the cached token;
 * - `expires_in` and `ext_expires_in` (Entra's resilience extension; Baton has no outage extension,
 *   so they are equal);
 * - `client_info` (base64url JSON `{uid, utid}`, the user's `oid` and `tid`) when `client_info=1`,
 *   from which MSAL builds the account's home id;
 * - `refresh_token` when `offline_access` was asked — which MSAL always does (`scope` still lists
 *   only the resource scopes, as Entra's does).
 */
import { clientInfo, errors, splitScopes } from '@baton/core';
import type { FormParams } from '../http/form.ts';
import type { Grant, TokenResponse } from './registry.ts';
import { readClaimsParameter, runExchange, type ExchangeGrantDialect, type ExchangeOutcome, type ExchangeParameters } from './run-exchange.ts';
import { issueRefreshToken } from '../tokens/refresh.ts';
import { tokenTypeOf } from '../dpop.ts';

export const JWT_BEARER_GRANT = 'urn:ietf:params:oauth:grant-type:jwt-bearer';

/** Microsoft's parameters: `requested_token_use=on_behalf_of`, the `assertion`, a `scope`. */
function readOnBehalfOfParameters(params: FormParams): ExchangeParameters {
  const use = params.requested_token_use;
  if (use === undefined || use === '') {
    throw errors.invalidRequest(
      "The request body must contain the 'requested_token_use' parameter: On-Behalf-Of requests send requested_token_use=on_behalf_of with grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer.",
    );
  }
  if (use !== 'on_behalf_of') {
    throw errors.invalidRequest(`'requested_token_use' must be 'on_behalf_of': the jwt-bearer grant is accepted only for On-Behalf-Of (for RFC 8693, use grant_type=urn:ietf:params:oauth:grant-type:token-exchange).`);
  }
  const assertion = params.assertion;
  if (assertion === undefined || assertion === '') {
    throw errors.invalidRequest("The request body must contain the 'assertion' parameter: the access token your API received from its client.");
  }
  const scope = params.scope;
  if (scope === undefined || scope === '') {
    throw errors.invalidRequest("The request body must contain the 'scope' parameter: scopes of one downstream API, e.g. 'api://docs/Docs.Read' or 'api://docs/.default'.");
  }
  return { assertion, scope, claims: readClaimsParameter(params) };
}

const ON_BEHALF_OF: ExchangeGrantDialect = { form: 'on_behalf_of', readParameters: readOnBehalfOfParameters };

/**
 * Not `confidentialOnly`: the exchange refuses public clients itself (core's `caller-confidential`
 * rule, same error), so the attempt is audited like every other refused exchange.
 */
export const onBehalfOfGrant: Grant = {
  grantType: JWT_BEARER_GRANT,
  parameters: new Set(['assertion', 'requested_token_use', 'scope', 'client_info', 'claims']),
  confidentialOnly: false,
  async handler(request) {
    const outcome = await runExchange(request, ON_BEHALF_OF);
    const { decision } = outcome;
    const response: TokenResponse = {
      // `Bearer`, or `DPoP` when the exchange carried a proof (RFC 9449 §5): the token is bound to the API's key.
      token_type: tokenTypeOf(request.dpop),
      scope: '',
      expires_in: decision.expiresIn,
      ext_expires_in: decision.expiresIn,
      access_token: outcome.accessToken,
    };
    if (decision.oidcScopes.includes('offline_access')) {
      // Lets the middle tier renew the downstream token while the user is away; redeeming it
      // re-checks the user, the session, consent and policy (grants/refresh-token.ts).
      const { claims } = decision;
      const auth = { amr: claims.amr, acr: claims.acr, authTime: claims.auth_time, sid: claims.sid };
      const refresh = await issueRefreshToken(request.ctx, {
        directory: request.directory,
        user: outcome.user,
        clientId: request.client.app.clientId,
        resource: decision.api.clientId,
        scopes: decision.scopes,
        oidcScopes: ['offline_access'],
        auth,
        sid: claims.sid,
        // Renewed tokens keep the chain, so a refresh can never reset it past delegation.maxDepth.
        act: claims.act,
      });
      response.refresh_token = refresh.token;
      response.refresh_token_expires_in = refresh.expiresAt - request.ctx.now();
    }
    // As Entra's OBO response: the resource scopes only (no `offline_access`, even with a refresh token).
    response.scope = responseScope(outcome);
    if (request.params.client_info === '1') response.client_info = clientInfo(decision.claims.oid, decision.claims.tid);
    return response;
  },
};

/**
 * The response's `scope`: the resource scopes as the request named them (MSAL's cache matches its
 * next request against this), then the scopes `.default` stood for.
 */
export function responseScope(outcome: Pick<ExchangeOutcome, 'decision' | 'scopeItems'>): string {
  const scopes = splitScopes(outcome.scopeItems).resource;
  if (outcome.decision.requested.isDefault || scopes.length === 0) {
    for (const granted of outcome.decision.scope.split(' ')) if (!scopes.includes(granted)) scopes.push(granted);
  }
  return scopes.join(' ');
}

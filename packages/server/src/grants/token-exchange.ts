/**
 * RFC 8693 OAuth 2.0 Token Exchange, the standard spelling of On-Behalf-Of:
 *
 *   grant_type=urn:ietf:params:oauth:grant-type:token-exchange
 *   subject_token=<the access token the middle tier received>
 *   subject_token_type=urn:ietf:params:oauth:token-type:access_token (or …:jwt)
 *   [actor_token=<the caller's own app-only token> actor_token_type=…:access_token]
 *   audience=<API client id or identifier URI> and/or resource=<identifier URI> and/or scope=…
 *   [requested_token_type=…:access_token (or …:jwt)]
 *   [claims=<a claims challenge passed on, as in Microsoft's form>]
 *   + client authentication
 *
 * Same rules and same engine as Microsoft's form (`run-exchange.ts`, core `planExchange`/`decideExchange`),
 * with RFC 8693's errors: an invalid subject or actor token is `invalid_request` (§2.2.2), an
 * audience/resource that names no API (or two) is `invalid_target`.
 *
 * Each of `audience` and `resource` may be given once: the token service issues a token for one
 * API, and the body parser refuses repeated parameters (RFC 6749 §3.2) in one place.
 */
import { errors, truncate } from '@baton/core';
import type { FormParams } from '../http/form.ts';
import type { Grant, TokenResponse } from './registry.ts';
import { tokenTypeOf } from '../dpop.ts';
import { readClaimsParameter, runExchange, type ExchangeGrantDialect, type ExchangeParameters } from './run-exchange.ts';

export const TOKEN_EXCHANGE_GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange';

/** RFC 8693 §3 token type identifiers. */
export const TOKEN_TYPE = {
  accessToken: 'urn:ietf:params:oauth:token-type:access_token',
  jwt: 'urn:ietf:params:oauth:token-type:jwt',
} as const;

/** What this service accepts as subject and actor tokens, and can issue: its own JWT access tokens. */
const ACCEPTED_TYPES: readonly string[] = [TOKEN_TYPE.accessToken, TOKEN_TYPE.jwt];

interface TokenExchangeParameters extends ExchangeParameters {
  /** RFC 8693 `issued_token_type` of the response: the `requested_token_type`, or an access token. */
  issuedType: string;
}

/** RFC 8693 §2.1's parameters. */
function readTokenExchangeParameters(params: FormParams): TokenExchangeParameters {
  const subject = params.subject_token;
  if (subject === undefined || subject === '') {
    throw errors.invalidRequest("The request body must contain the 'subject_token' parameter: the access token your API received from its client (RFC 8693 §2.1).");
  }
  checkType('subject_token_type', params.subject_token_type, true);
  const actor = params.actor_token;
  if (actor !== undefined && actor !== '') checkType('actor_token_type', params.actor_token_type, true);
  else if (params.actor_token_type !== undefined) throw errors.invalidRequest("'actor_token_type' was given without 'actor_token' (RFC 8693 §2.1: it must not be included otherwise).");
  let issuedType: string = TOKEN_TYPE.accessToken;
  const requested = params.requested_token_type;
  if (requested !== undefined && requested !== '') {
    checkType('requested_token_type', requested, false);
    issuedType = requested;
  }
  return {
    assertion: subject,
    actorToken: actor === '' ? undefined : actor,
    scope: emptyToUndefined(params.scope),
    audience: emptyToUndefined(params.audience),
    resource: emptyToUndefined(params.resource),
    claims: readClaimsParameter(params),
    issuedType,
  };
}

const TOKEN_EXCHANGE: ExchangeGrantDialect<TokenExchangeParameters> = { form: 'token_exchange', readParameters: readTokenExchangeParameters };

export const tokenExchangeGrant: Grant = {
  grantType: TOKEN_EXCHANGE_GRANT,
  parameters: new Set(['subject_token', 'subject_token_type', 'actor_token', 'actor_token_type', 'audience', 'resource', 'scope', 'requested_token_type', 'claims']),
  confidentialOnly: false,
  async handler(request) {
    const outcome = await runExchange(request, TOKEN_EXCHANGE);
    const { decision } = outcome;
    const response: TokenResponse = {
      access_token: outcome.accessToken,
      issued_token_type: outcome.params.issuedType,
      token_type: tokenTypeOf(request.dpop),
      expires_in: decision.expiresIn,
      scope: decision.scope,
    };
    return response;
  },
};

function checkType(name: string, value: string | undefined, required: boolean): void {
  if (value === undefined || value === '') {
    if (required) throw errors.invalidRequest(`The request body must contain the '${name}' parameter: '${TOKEN_TYPE.accessToken}'.`);
    return;
  }
  if (!ACCEPTED_TYPES.includes(value)) {
    throw errors.invalidRequest(
      `The ${name} '${truncate(value, 100)}' is not supported: this service exchanges and issues its own JWT access tokens ('${TOKEN_TYPE.accessToken}' or '${TOKEN_TYPE.jwt}').`,
    );
  }
}

function emptyToUndefined(value: string | undefined): string | undefined {
  return value === '' ? undefined : value;
}

/**
 * The authorization request (RFC 6749 §4.1.1, OIDC Core §3.1.2.1, RFC 7636, RFC 9470), checked
 * against one tenant's directory as a pure function.
 *
 * The order of the checks is the security property (RFC 6749 §4.1.2.1): until the client and its
 * redirect URI are known to match a registration, nothing may be sent to the redirect URI — a
 * request naming `https://evil/` must end on an error page of the token service, never with a
 * redirect. After that point every error goes back to the client at its registered URI, with the
 * `state` it sent, so the client can tell the user what happened.
 */
import { OAuthError, Entra, truncate, errors } from './errors.ts';
import type { TenantDirectory } from './directory.ts';
import type { Application } from './types.ts';
import { isS256Challenge } from './pkce.ts';
import { matchRedirectUri, MAX_REDIRECT_URI_LENGTH } from './redirect-uri.ts';
import { parseClaimsRequest, type ClaimsDemands } from './policy.ts';
import { apiName, qualifiedScope, resolveScopeParameter, resolveTarget, type OidcScope } from './scopes.ts';

export type Prompt = 'login' | 'consent' | 'select_account' | 'none';
export type ResponseMode = 'query' | 'form_post';

/** Limits on the parameters, in characters. Generous for real clients, small enough to bound work and storage. */
export const AUTHORIZE_LIMITS = {
  clientId: 128,
  /** A client_id that is an https URL (a Client ID Metadata Document). */
  clientIdUrl: 2048,
  state: 2048,
  nonce: 1024,
  loginHint: 256,
  acrValues: 1024,
  /** Any other parameter we read. */
  other: 4096,
  /** A parameter we do not read is ignored, but a huge one is still refused (no amplification through storage or logs). */
  unknown: 8192,
} as const;

/** A validated authorization request: what the interaction stores and what the code remembers. */
export interface AuthorizeRequest {
  clientId: string;
  /** Exactly as registered (and as requested: they are equal). */
  redirectUri: string;
  responseMode: ResponseMode;
  state?: string | undefined;
  nonce?: string | undefined;
  /** OIDC scopes asked for (`openid`, `profile`, `email`, `offline_access`). */
  oidcScopes: OidcScope[];
  /** The one API the request names, if any. */
  resource?: { api: string; scopes: string[]; isDefault: boolean } | undefined;
  /** S256 challenge (RFC 7636); absent only for a confidential client that chose not to use PKCE. */
  codeChallenge?: string | undefined;
  prompt: Prompt[];
  /** OIDC `max_age` in seconds. */
  maxAge?: number | undefined;
  loginHint?: string | undefined;
  /** The `claims` parameter as sent (validated). */
  claims?: string | undefined;
  /** RFC 9470 / OIDC `acr_values`, in order of preference. */
  acrValues: string[];
  /** MSAL's `client_info=1`. */
  clientInfo: boolean;
  /** RFC 9449 §10 `dpop_jkt`: the code is redeemed only with a DPoP proof of this key. */
  dpopJkt?: string | undefined;
}

export type AuthorizeParseResult =
  | { ok: true; request: AuthorizeRequest; client: Application; demands: ClaimsDemands | undefined }
  /** The client or its redirect URI is not trustworthy: show `error` on a page, never redirect. */
  | { ok: false; redirect: false; error: OAuthError }
  /** Send `error` to the client at `redirectUri` (registered), with `state` when it was sane. */
  | { ok: false; redirect: true; error: OAuthError; redirectUri: string; responseMode: ResponseMode; state: string | undefined; client: Application };

const PROMPTS: readonly Prompt[] = ['login', 'consent', 'select_account', 'none'];
const CONTROL = /[\u0000-\u001f\u007f]/;

/**
 * Checks an authorization request. `params` are the request's parameters (query or form), each
 * present at most once (duplicates are refused before this, RFC 6749 §3.1).
 *
 * @example
 * const result = parseAuthorizeRequest(directory, { client_id: 'tasks-web', redirect_uri, response_type: 'code',
 *   scope: 'openid api://tasks/Tasks.ReadWrite', code_challenge, code_challenge_method: 'S256' });
 * if (!result.ok && !result.redirect) renderErrorPage(result.error);
 */
export function parseAuthorizeRequest(directory: TenantDirectory, given: Readonly<Record<string, string>>): AuthorizeParseResult {
  // RFC 6749 §3.1: "Parameters sent without a value MUST be treated as if they were omitted."
  const params: Record<string, string> = {};
  for (const [name, value] of Object.entries(given)) if (value !== '') params[name] = value;
  // 1. The client and its redirect URI: failures here are shown, never redirected.
  const clientId = params.client_id;
  if (clientId === undefined || clientId === '') return page(errors.invalidRequest("The request must contain the 'client_id' parameter."));
  // A Client ID Metadata Document's client_id is an https URL, longer than a configured client id.
  const clientIdLimit = clientId.startsWith('https://') ? AUTHORIZE_LIMITS.clientIdUrl : AUTHORIZE_LIMITS.clientId;
  if (clientId.length > clientIdLimit || CONTROL.test(clientId)) return page(errors.invalidRequest("The 'client_id' parameter is malformed."));
  const client = directory.application(clientId);
  if (client === undefined) {
    return page(
      new OAuthError('invalid_request', {
        description: `Application with identifier '${truncate(clientId, 128)}' was not found in the directory '${directory.tenant.id}'. Check the client id and the tenant in the authority URL.`,
        entraCodes: [Entra.unknownClient],
      }),
    );
  }
  const requestedRedirect = params.redirect_uri;
  if (requestedRedirect === undefined || requestedRedirect === '') {
    return page(errors.invalidRequest("The request must contain the 'redirect_uri' parameter: the exact URI registered for the application."));
  }
  const redirectUri = requestedRedirect.length > MAX_REDIRECT_URI_LENGTH ? undefined : matchRedirectUri(requestedRedirect, client.redirectUris);
  if (redirectUri === undefined) {
    return page(
      new OAuthError('invalid_request', {
        description: `The redirect URI '${truncate(requestedRedirect, 200)}' specified in the request does not match the redirect URIs configured for the application '${client.clientId}'. Redirect URIs are compared exactly (scheme, host, port, path, query, case and trailing slash).`,
        entraCodes: [Entra.redirectUriMismatch],
      }),
    );
  }

  // 2. From here on, errors go back to the client.
  const rawState = params.state;
  const stateOk = rawState === undefined || (rawState.length <= AUTHORIZE_LIMITS.state && !CONTROL.test(rawState));
  const modeParam = params.response_mode;
  const responseMode: ResponseMode = modeParam === 'form_post' ? 'form_post' : 'query';
  const back = (error: OAuthError): AuthorizeParseResult => ({
    ok: false,
    redirect: true,
    error,
    redirectUri,
    responseMode,
    state: stateOk ? rawState : undefined,
    client,
  });

  try {
    if (!stateOk) throw errors.invalidRequest(`The 'state' parameter must be at most ${AUTHORIZE_LIMITS.state} characters without control characters.`);
    for (const [name, value] of Object.entries(params)) {
      const limit = KNOWN_LIMITS[name] ?? AUTHORIZE_LIMITS.unknown;
      if (value.length > limit) throw errors.invalidRequest(`The '${truncate(name, 40)}' parameter is longer than ${limit} characters.`);
    }
    if (params.request !== undefined || params.request_uri !== undefined) {
      throw errors.invalidRequest("Request objects ('request', 'request_uri') are not supported: send the parameters in the query or the form.");
    }
    const responseType = params.response_type;
    if (responseType === undefined || responseType === '') throw errors.invalidRequest("The request must contain the 'response_type' parameter ('code').");
    if (responseType !== 'code') {
      throw new OAuthError('unsupported_response_type', {
        description: `The response_type '${truncate(responseType, 40)}' is not supported: use the authorization code flow (response_type=code) with PKCE.`,
        entraCodes: [Entra.malformedRequest],
      });
    }
    if (modeParam !== undefined && modeParam !== 'query' && modeParam !== 'form_post') {
      throw errors.invalidRequest(`The response_mode '${truncate(modeParam, 40)}' is not supported: use 'query' or 'form_post'.`);
    }

    // RFC 8707: `resource` names the API (an MCP client sends the MCP server's canonical URI); its
    // scopes may then be bare ('Docs.Search'). A resource the tenant does not define is invalid_target.
    const target = params.resource === undefined ? undefined : resolveResourceIndicator(directory, params.resource);
    // Scopes: OIDC scopes plus the scopes of at most one API.
    const rawScope = params.scope;
    if ((rawScope === undefined || rawScope.trim() === '') && target === undefined) {
      throw errors.invalidRequest("The request must contain the 'scope' parameter, e.g. 'openid profile offline_access api://tasks/Tasks.ReadWrite'.");
    }
    // Clients (MSAL among them) separate with single spaces; tolerate repeated whitespace here as Entra does.
    const scope = resolveScopeParameter(directory, rawScope === undefined ? undefined : rawScope.trim().split(/\s+/).join(' '), { target });
    const resolved = scope.resource;
    if (resolved === undefined && !scope.oidc.includes('openid')) {
      throw errors.invalidScope("The scope parameter names neither 'openid' nor an API scope: ask for 'openid' (sign-in, ID token) and/or the scopes of one API (e.g. 'api://tasks/Tasks.ReadWrite').");
    }

    // RFC 7591 §2: a client that registered itself with a `scope` asks only for those API scopes
    // (bare, as an MCP client with `resource` names them, or qualified with the API).
    const registered = client.registration?.scope?.split(' ').filter((v) => v !== '');
    if (registered !== undefined && resolved !== undefined) {
      const unregistered = resolved.scopes.filter((v) => !registered.includes(v) && !registered.includes(qualifiedScope(resolved.api, v)));
      if (unregistered.length > 0) {
        throw errors.invalidScope(`'${truncate(client.clientId, 128)}' registered the scope '${truncate(registered.join(' '), 200)}' and may not ask for ${unregistered.map((v) => `'${truncate(v, 80)}'`).join(', ')} (RFC 7591 §2): register again, or update the registration (RFC 7592), with the scopes it needs.`);
      }
    }

    // PKCE (RFC 7636; RFC 9700 §2.1.1): S256 only; required for public clients.
    // An empty parameter counts as absent (RFC 6749 §3.1: "Parameters sent without a value MUST be treated as if they were omitted").
    const challenge = params.code_challenge === '' ? undefined : params.code_challenge;
    const method = params.code_challenge_method === '' ? undefined : params.code_challenge_method;
    if (challenge === undefined) {
      if (method !== undefined) throw errors.invalidRequest("'code_challenge_method' was sent without 'code_challenge'.");
      if (client.public) {
        throw new OAuthError('invalid_request', {
          description: `'${client.clientId}' is a public client: the request must contain an S256 'code_challenge' (PKCE, RFC 7636).`,
          entraCodes: [Entra.pkceRequired],
        });
      }
      // The MCP authorization specification requires PKCE of every client of an MCP server.
      if (resolved?.api.tokenAudience === 'identifierUri') {
        throw new OAuthError('invalid_request', {
          description: `'${apiName(resolved.api)}' is an MCP server (its tokens are addressed to its canonical URI): the request must contain an S256 'code_challenge' (PKCE, RFC 7636), whatever the client.`,
          entraCodes: [Entra.pkceRequired],
        });
      }
    } else {
      if (method === undefined || method === 'plain') {
        throw errors.invalidRequest(`The code_challenge_method '${method ?? 'plain (the default when absent)'}' is not accepted: use 'S256' (plain offers no protection when the request can be observed).`);
      }
      if (method !== 'S256') throw errors.invalidRequest(`The code_challenge_method '${truncate(method, 20)}' is not supported: use 'S256'.`);
      if (!isS256Challenge(challenge)) throw errors.invalidRequest("The 'code_challenge' must be the 43-character base64url SHA-256 of the code verifier.");
    }

    // prompt (OIDC Core §3.1.2.1): a space-separated set; `none` stands alone.
    const prompt: Prompt[] = [];
    if (params.prompt !== undefined && params.prompt !== '') {
      for (const value of params.prompt.split(' ')) {
        if (!(PROMPTS as readonly string[]).includes(value)) {
          throw errors.invalidRequest(`The prompt value '${truncate(value, 40)}' is not supported: use login, consent, select_account or none.`);
        }
        if (!prompt.includes(value as Prompt)) prompt.push(value as Prompt);
      }
      if (prompt.includes('none') && prompt.length > 1) throw errors.invalidRequest("prompt=none cannot be combined with other prompt values.");
    }

    // RFC 9449 §10: the DPoP key the code will be bound to (an RFC 7638 SHA-256 thumbprint).
    const dpopJkt = params.dpop_jkt === '' ? undefined : params.dpop_jkt;
    if (dpopJkt !== undefined && !/^[A-Za-z0-9_-]{43}$/.test(dpopJkt)) throw errors.invalidRequest("The 'dpop_jkt' must be the RFC 7638 SHA-256 thumbprint (43 base64url characters) of the client's DPoP key.");

    let maxAge: number | undefined;
    if (params.max_age !== undefined) {
      if (!/^[0-9]{1,9}$/.test(params.max_age)) throw errors.invalidRequest("'max_age' must be a non-negative number of seconds.");
      maxAge = Number(params.max_age);
    }

    let demands: ClaimsDemands | undefined;
    const claims = params.claims === '' ? undefined : params.claims;
    if (claims !== undefined) demands = parseClaimsRequest(claims);

    const acrValues: string[] = [];
    if (params.acr_values !== undefined && params.acr_values !== '') {
      if (CONTROL.test(params.acr_values)) throw errors.invalidRequest("'acr_values' contains a control character.");
      for (const value of params.acr_values.split(' ')) if (value !== '' && !acrValues.includes(value)) acrValues.push(value);
      if (acrValues.length > 10) throw errors.invalidRequest("'acr_values' names more than 10 values.");
    }

    const loginHint = params.login_hint === '' ? undefined : params.login_hint;
    if (loginHint !== undefined && CONTROL.test(loginHint)) throw errors.invalidRequest("'login_hint' contains a control character.");
    const nonce = params.nonce === '' ? undefined : params.nonce;
    if (nonce !== undefined && CONTROL.test(nonce)) throw errors.invalidRequest("'nonce' contains a control character.");

    const request: AuthorizeRequest = {
      clientId: client.clientId,
      redirectUri,
      responseMode,
      oidcScopes: scope.oidc,
      prompt,
      acrValues,
      clientInfo: params.client_info === '1',
    };
    if (rawState !== undefined) request.state = rawState;
    if (nonce !== undefined) request.nonce = nonce;
    if (resolved !== undefined) request.resource = { api: resolved.api.clientId, scopes: resolved.scopes, isDefault: resolved.isDefault };
    if (challenge !== undefined) request.codeChallenge = challenge;
    if (dpopJkt !== undefined) request.dpopJkt = dpopJkt;
    if (maxAge !== undefined) request.maxAge = maxAge;
    if (loginHint !== undefined) request.loginHint = loginHint;
    if (claims !== undefined) request.claims = claims;
    return { ok: true, request, client, demands };
  } catch (error) {
    if (error instanceof OAuthError) return back(error);
    throw error;
  }
}

const KNOWN_LIMITS: Record<string, number> = {
  client_id: AUTHORIZE_LIMITS.clientIdUrl,
  redirect_uri: MAX_REDIRECT_URI_LENGTH,
  state: AUTHORIZE_LIMITS.state,
  nonce: AUTHORIZE_LIMITS.nonce,
  login_hint: AUTHORIZE_LIMITS.loginHint,
  acr_values: AUTHORIZE_LIMITS.acrValues,
  scope: AUTHORIZE_LIMITS.other * 4,
  claims: AUTHORIZE_LIMITS.other,
  response_type: 64,
  response_mode: 64,
  code_challenge: 128,
  code_challenge_method: 32,
  dpop_jkt: 64,
  prompt: 128,
  max_age: 16,
  client_info: 8,
  resource: 2048,
};

/**
 * The API an RFC 8707 `resource` parameter names: an absolute URI without a fragment (RFC 8707
 * §2), matched exactly against the tenant's identifier URIs (the client id is accepted too, as at
 * the token endpoint). Anything else is `invalid_target`.
 */
export function resolveResourceIndicator(directory: TenantDirectory, value: string): Application {
  if (CONTROL.test(value) || !/^[a-z][a-z0-9+.-]*:/i.test(value) || value.includes('#')) {
    // A bare client id is not an absolute URI, but Baton's token endpoint has always accepted one.
    const api = directory.api(value);
    if (api !== undefined && !CONTROL.test(value) && !value.includes('#')) return api;
    throw errors.invalidTarget(`The resource '${truncate(value, 100)}' is not an absolute URI without a fragment (RFC 8707 §2): send the canonical URI of the API or MCP server.`);
  }
  return resolveTarget(directory, { resource: value }) as Application;
}

function page(error: OAuthError): AuthorizeParseResult {
  return { ok: false, redirect: false, error };
}


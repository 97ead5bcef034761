/**
 * One OAuth error hierarchy for the whole project.
 *
 * What the client sees (`error`, `description`, `entraCodes`, `suberror`, `claims`) is kept apart
 * from what only the operator sees (`detail`, `cause`). Nothing in an error may carry a token or a
 * secret: log a `jti`, a `kid`, a `client_id` or a hash instead.
 *
 * The catalogue below is the single place where an error code meets its HTTP status and the Entra
 * (AADSTS) number that MSAL and Entra-trained people recognise. Codes are never reused.
 */

/** RFC 6749 §5.2, RFC 8693 §2.2.2, OIDC Core §3.1.2.6, RFC 6750 §3.1, RFC 9470 §3. */
export type OAuthErrorCode =
  | 'invalid_request'
  | 'invalid_client'
  | 'invalid_grant'
  | 'unauthorized_client'
  | 'unsupported_grant_type'
  | 'invalid_scope'
  | 'invalid_target'
  | 'access_denied'
  | 'unsupported_response_type'
  | 'interaction_required'
  | 'login_required'
  | 'consent_required'
  | 'invalid_token'
  | 'insufficient_scope'
  | 'insufficient_user_authentication'
  | 'temporarily_unavailable'
  | 'invalid_dpop_proof'
  | 'use_dpop_nonce'
  | 'server_error';

/** Entra's `suberror` values that MSAL maps to UI hints. */
export type SubError = 'consent_required' | 'basic_action' | 'additional_action' | 'message_only' | 'bad_token';

export interface OAuthErrorOptions {
  /** Public, helps the developer fix the request. Never a token, never a secret. */
  description: string;
  /** Internal: goes to the log only. */
  detail?: string;
  /** Entra `error_codes` (AADSTS numbers without the prefix). */
  entraCodes?: readonly number[];
  suberror?: SubError;
  /** A claims challenge (a JSON string, OIDC Core §5.5 shape) for `interaction_required`. */
  claims?: string;
  /** HTTP status; defaults from the catalogue. */
  status?: number;
  cause?: unknown;
  /** Extra response headers (e.g. `WWW-Authenticate`). */
  headers?: Record<string, string>;
}

const DEFAULT_STATUS: Record<OAuthErrorCode, number> = {
  invalid_request: 400,
  invalid_client: 401,
  invalid_grant: 400,
  unauthorized_client: 400,
  unsupported_grant_type: 400,
  invalid_scope: 400,
  invalid_target: 400,
  access_denied: 403,
  unsupported_response_type: 400,
  interaction_required: 400,
  login_required: 400,
  consent_required: 400,
  invalid_token: 401,
  insufficient_scope: 403,
  insufficient_user_authentication: 401,
  temporarily_unavailable: 503,
  invalid_dpop_proof: 400,
  use_dpop_nonce: 400,
  server_error: 500,
};

/** The HTTP status an error code answers with unless told otherwise (the catalogue above). */
export function defaultStatus(error: OAuthErrorCode): number {
  return DEFAULT_STATUS[error];
}

export class OAuthError extends Error {
  readonly error: OAuthErrorCode;
  readonly status: number;
  readonly description: string;
  readonly detail: string | undefined;
  readonly entraCodes: readonly number[];
  readonly suberror: SubError | undefined;
  readonly claims: string | undefined;
  readonly headers: Record<string, string>;
  /**
   * Whether `description` may be shown to the client (oidc-provider's `expose`): client errors, and
   * `temporarily_unavailable` (503: the client should retry, RFC 6749 §4.1.2.1), whose descriptions
   * are written for the client. Any other 5xx leaves as a plain `server_error`.
   */
  get expose(): boolean {
    return this.status < 500 || this.error === 'temporarily_unavailable';
  }

  constructor(error: OAuthErrorCode, options: OAuthErrorOptions) {
    super(`${error}: ${options.description}`, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'OAuthError';
    this.error = error;
    this.status = options.status ?? DEFAULT_STATUS[error];
    this.description = options.description;
    this.detail = options.detail;
    this.entraCodes = options.entraCodes ?? [];
    this.suberror = options.suberror;
    this.claims = options.claims;
    this.headers = options.headers ?? {};
  }

  /** The RFC 6749 §5.2 JSON body, with Entra's extra members. */
  toJSON(extra: { traceId?: string; correlationId?: string; timestamp?: string; errorUri?: string } = {}): Record<string, unknown> {
    const description = this.expose ? this.description : 'The server could not complete the request.';
    const aadsts = this.entraCodes[0];
    const body: Record<string, unknown> = {
      error: this.expose ? this.error : 'server_error',
      error_description: aadsts === undefined ? description : `AADSTS${aadsts}: ${description}`,
    };
    if (this.expose && this.entraCodes.length > 0) body.error_codes = [...this.entraCodes];
    if (extra.timestamp) body.timestamp = extra.timestamp;
    if (extra.traceId) body.trace_id = extra.traceId;
    if (extra.correlationId) body.correlation_id = extra.correlationId;
    if (extra.errorUri) body.error_uri = extra.errorUri;
    if (this.expose && this.suberror) body.suberror = this.suberror;
    if (this.expose && this.claims) body.claims = this.claims;
    return body;
  }
}

/** Thrown at start for a bad configuration; never reaches a client. */
export class ConfigurationError extends Error {
  readonly issues: readonly string[];
  constructor(issues: readonly string[]) {
    super(`invalid configuration:\n  ${issues.join('\n  ')}`);
    this.name = 'ConfigurationError';
    this.issues = issues;
  }
}

/**
 * Entra AADSTS numbers used across the project (DESIGN.md, "Errors a developer will meet").
 * Keep this list the one source: docs/errors.md is written from it.
 */
export const Entra = {
  unknownClient: 700016,
  wrongClientSecret: 7000215,
  invalidClientAssertion: 700027,
  invalidScope: 70011,
  redirectUriMismatch: 50011,
  wrongCredentials: 50126,
  tooManyAttempts: 50053,
  userDisabled: 50057,
  codeExpired: 70008,
  codeRedeemed: 54005,
  pkceMismatch: 501481,
  assertionInvalid: 50013,
  assertionExpired: 500133,
  consentRequired: 65001,
  mfaRequired: 50076,
  blockedByPolicy: 53003,
  refreshTokenRevoked: 70000,
  publicClientNotAllowed: 700025,
  unsupportedGrant: 70003,
  malformedRequest: 900144,
  duplicateParameter: 90014,
  unauthorizedClient: 700016,
  noRoleAssigned: 501051,
  /** Baton's own: Entra has no delegation-depth limit. Codes 91000xx are Baton-specific. */
  chainTooDeep: 9100001,
  /** Baton's own: an API would appear twice in one delegation chain (A → B → A). */
  chainLoop: 9100002,
  /** Baton's own: an exchange to the subject token's own audience asked for more than that token allowed. */
  scopeWidening: 9100003,
  /** Baton's own (DPoP, RFC 9449): the DPoP proof is malformed, for another request, stale, replayed or does not verify. */
  dpopProofInvalid: 9100010,
  /** Baton's own: the tenant requires a server-provided DPoP nonce (use_dpop_nonce; the nonce is in the DPoP-Nonce header). */
  dpopNonceRequired: 9100011,
  /** Baton's own: a refresh token or authorization code bound to one DPoP key was presented with a proof of another (or none). */
  dpopKeyMismatch: 9100012,
  /** Baton's own: a DPoP-bound subject token exchanged without a DPoP proof (the new token is never silently unbound). */
  dpopBoundSubject: 9100013,
  /** Baton's own: the calling API's policy exchanges only DPoP-bound subject tokens (applications[].dpop.incoming). */
  dpopIncomingRequired: 9100014,
  /** Baton's own: a token for this API must be DPoP-bound (its dpop policy), and the request carries no proof. */
  dpopRequired: 9100015,
  /** Baton's own: the exchange's DPoP proof is not made with the calling API's own key (a registered thumbprint; never the subject token's key). */
  dpopNotApiKey: 9100016,
  /** Baton's own: the calling API's policy requires a DPoP proof on its exchanges (applications[].dpop.exchanged). */
  dpopExchangedRequired: 9100017,
  /** Baton's own: the token's API (its `delegation.mayAct`, the token's `may_act`) does not allow this middle tier, or not for this downstream API. */
  actorNotAllowed: 9100004,
  /** Baton's own: an RFC 8693 actor_token that is not the authenticated client's own app-only token. */
  actorTokenNotCaller: 9100005,
  sessionRevoked: 50173,
  tenantNotFound: 90002,
  invalidTarget: 500011,
  /** An app-only token offered to OBO ("not allowed to make application on-behalf-of calls"). */
  appOnlyAssertion: 7000114,
  /** The user behind a token no longer exists in the directory. */
  userNotFound: 50034,
  /** Sign-in frequency (maximum authentication age) demands a fresh sign-in. */
  signInFrequency: 70044,
  // — sign-in (authorization code, refresh, pages) —
  /** Entra's generic "the provided grant is invalid" (unknown code, code of another client). */
  invalidGrant: 70000,
  /** The redirect_uri at the token endpoint differs from the one the code was issued for. */
  codeRedirectMismatch: 500112,
  /** A public client sent an authorization request without an S256 code_challenge. */
  pkceRequired: 9002325,
  /** The refresh token is past its lifetime. */
  refreshTokenExpired: 700082,
  /**
   * `prompt=none` (or a refresh) when no user is signed in. Entra's number for it is 50058.
   */
  signInRequired: 50058,
  /** A policy or the client demands MFA and the user has no second factor enrolled. */
  mfaEnrollmentRequired: 50079,
  /** The second factor was wrong, replayed, or tried too often. */
  mfaFailed: 500121,
  /** The requested permissions need an administrator's consent. */
  adminConsentRequired: 90094,
  /** The user declined to consent (Cancel on the consent page). */
  consentDeclined: 65004,
  /** The sign-in page (interaction) expired or was not started in this browser. */
  flowExpired: 50089,
} as const;

/** Small constructors for the common cases, so call sites read as the rule they enforce. */
export const errors = {
  invalidRequest: (description: string, entra: number = Entra.malformedRequest, detail?: string) =>
    new OAuthError('invalid_request', { description, entraCodes: [entra], ...(detail ? { detail } : {}) }),
  invalidClient: (description: string, entra: number, detail?: string) =>
    new OAuthError('invalid_client', { description, entraCodes: [entra], ...(detail ? { detail } : {}) }),
  invalidGrant: (description: string, entra: number, extra: Partial<OAuthErrorOptions> = {}) =>
    new OAuthError('invalid_grant', { description, entraCodes: [entra], ...extra }),
  invalidScope: (description: string, entra: number = Entra.invalidScope) =>
    new OAuthError('invalid_scope', { description, entraCodes: [entra] }),
  invalidTarget: (description: string) => new OAuthError('invalid_target', { description, entraCodes: [Entra.invalidTarget] }),
  unauthorizedClient: (description: string, entra: number = Entra.publicClientNotAllowed) =>
    new OAuthError('unauthorized_client', { description, entraCodes: [entra] }),
  unsupportedGrantType: (grantType: string) =>
    new OAuthError('unsupported_grant_type', {
      description: `The grant type '${truncate(grantType, 80)}' is not supported by this token endpoint.`,
      entraCodes: [Entra.unsupportedGrant],
    }),
  serverError: (detail: string, cause?: unknown) =>
    new OAuthError('server_error', { description: 'The server could not complete the request.', detail, cause }),
  /** A token presented for exchange is not acceptable: not ours, not for the caller, malformed (AADSTS50013). */
  assertionInvalid: (description: string, detail?: string) =>
    new OAuthError('invalid_grant', { description, entraCodes: [Entra.assertionInvalid], ...(detail ? { detail } : {}) }),
  /** The user's sessions were revoked, or the sign-in session behind a token ended (AADSTS50173). */
  sessionRevoked: (description: string) => new OAuthError('invalid_grant', { description, entraCodes: [Entra.sessionRevoked] }),
  /**
   * A refusal of the subject or actor token of an exchange, in the request's dialect. RFC 8693
   * §2.2.2: "If either the subject_token or actor_token are invalid for any reason, or are
   * unacceptable based on policy, the invalid_request error code MUST be used"; Microsoft's
   * On-Behalf-Of form keeps `invalid_grant`. Description, Entra code, detail and suberror stay.
   */
  inExchangeDialect: (dialect: 'on_behalf_of' | 'token_exchange', error: OAuthError): OAuthError => {
    if (dialect !== 'token_exchange' || error.error === 'invalid_request') return error;
    const options: OAuthErrorOptions = { description: error.description, entraCodes: error.entraCodes, cause: error };
    if (error.detail !== undefined) options.detail = error.detail;
    if (error.suberror !== undefined) options.suberror = error.suberror;
    return new OAuthError('invalid_request', options);
  },
};

/**
 * Every `error` code this project answers with, for SDKs and tools that switch on it (the
 * resource SDK imports this list rather than keeping its own).
 */
export const OAUTH_ERROR_CODES: readonly OAuthErrorCode[] = Object.freeze(Object.keys(DEFAULT_STATUS) as OAuthErrorCode[]);

/** Truncates attacker-controlled text before it is echoed in a description. */
/**
 * The code of a thrown value for telemetry (span `error.type`): an OAuth, guard or OBO error's
 * `error`, else the error's class name — never its message, which may quote the request.
 */
export function errorCodeOf(error: unknown): string {
  if (error !== null && typeof error === 'object') {
    const code = (error as { error?: unknown }).error;
    if (typeof code === 'string') return code;
    const name = (error as { name?: unknown }).name;
    if (typeof name === 'string') return name;
  }
  return 'Error';
}

export function truncate(value: string, max: number): string {
  const clean = value.replace(/[\u0000-\u001f\u007f]/g, '?');
  return clean.length <= max ? clean : `${clean.slice(0, max)}…`;
}

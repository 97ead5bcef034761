/**
 * The On-Behalf-Of exchange (DESIGN "The On-Behalf-Of exchange"): may the calling API trade the
 * user's token it received for a new one addressed to the next API, and what does that token say?
 *
 * One pure function serves both dialects: Microsoft's `jwt-bearer` grant with
 * `requested_token_use=on_behalf_of`, and RFC 8693 token exchange. The server verifies the
 * assertion's signature and `typ` with its keys and gathers the records; everything else is
 * decided here, rule by named rule, and every decision carries the trail of rules it passed
 * through so the audit log can say which rule allowed or refused.
 */
import { OAuthError, Entra, truncate, type OAuthErrorOptions } from './errors.ts';
import type { TenantDirectory } from './directory.ts';
import { buildDelegatedClaims, type DelegatedAccessClaims, type IdGenerator, type PairwiseSecret } from './claims.ts';
import { evaluatePolicies, policyError } from './policy.ts';
import { apiName, parseScope, qualifiedScope, resolveResourceScopes, resolveTarget, splitScopes, type OidcScope } from './scopes.ts';
import type { ActorClaim, Application, AppRoleAssignment, ConsentGrant, User } from './types.ts';

/** `on_behalf_of`: Microsoft's jwt-bearer OBO request. `token_exchange`: RFC 8693. */
export type ExchangeForm = 'on_behalf_of' | 'token_exchange';

/** The rules, in the order they run. Names are stable: audit logs and dashboards key on them. */
export const EXCHANGE_RULES = [
  'caller-confidential',
  'actor-token',
  'assertion-issuer',
  'assertion-audience',
  'assertion-lifetime',
  'assertion-delegated',
  'user-exists',
  'user-enabled',
  'session-live',
  'downstream-scopes',
  'consent',
  'conditional-access',
  'delegation-depth',
  'issue',
] as const;
export type ExchangeRule = (typeof EXCHANGE_RULES)[number];

export interface RuleOutcome {
  rule: ExchangeRule;
  /** `skip`: the rule had nothing to judge (no actor token, no session bound to the token). */
  outcome: 'pass' | 'skip' | 'refuse';
}

/** The sign-in session behind the assertion (`sid`), as the server's session store knows it. */
export interface ExchangeSession {
  /** False once the session was signed out or revoked. */
  live: boolean;
  /** Epoch seconds when the session ends; the new token never outlives it. */
  expiresAt?: number | undefined;
  /** The client IP at sign-in, which IP-range policies judge. */
  ip?: string | undefined;
}

export interface ExchangeOptions {
  /** This tenant's issuer, `{base}/{tenant}/v2.0`: the assertion's `iss` and the new token's. */
  issuer: string;
  /** The token service's base URL, for the admin-consent link in `consent_required`. */
  baseUrl: string;
  /** Keys the pairwise `sub` (see `pairwiseSubject`). */
  pairwiseSecret: PairwiseSecret;
  /** Seconds of clock skew tolerated on the assertion's `exp`, `nbf`, `iat`. Default 60. */
  clockToleranceSeconds?: number | undefined;
  /**
   * Hook for multi-tenant applications: whether an issuer other than `issuer` (a tenant trusted by
   * a multi-tenant app) is accepted. Absent: only this tenant's tokens are exchanged.
   */
  trustedIssuer?: ((iss: string) => boolean) | undefined;
  /** `jti` generator (tests pass a deterministic one). */
  newId?: IdGenerator | undefined;
}

export interface ExchangeInput {
  form: ExchangeForm;
  directory: TenantDirectory;
  /** The authenticated calling application (the middle tier). */
  caller: Application;
  /** The assertion / `subject_token` payload, signature and `typ` already verified by the server. */
  assertion: Record<string, unknown>;
  /** The user the assertion's `oid` names, looked up by the server; undefined when not found. */
  user: User | undefined;
  /**
   * The session the assertion's `sid` names. Must be given whenever the assertion carries a `sid`:
   * an unknown session is refused (fail closed).
   */
  session?: ExchangeSession | undefined;
  /** The user's own consent grants for the caller (any resource; other records are ignored). */
  userConsents?: readonly ConsentGrant[] | undefined;
  /** The user's app role assignments (for `roles` in the new token; others are ignored). */
  userRoles?: readonly AppRoleAssignment[] | undefined;
  /** The raw `scope` parameter. */
  scope?: string | undefined;
  /** RFC 8693 `audience` values. */
  audience?: readonly string[] | string | undefined;
  /** RFC 8693 / RFC 8707 `resource` values. */
  resource?: readonly string[] | string | undefined;
  /** RFC 8693 `actor_token` payload, signature verified by the server. */
  actor?: Record<string, unknown> | undefined;
  /** The request's client IP (the middle tier's): recorded, never judged by IP-range policies. */
  ip?: string | undefined;
  options: ExchangeOptions;
}

export interface ExchangeAllowed {
  ok: true;
  outcome: 'allow';
  rule: 'issue';
  /** The new token's claims; sign them with `typ: at+jwt`. */
  claims: DelegatedAccessClaims;
  /** The downstream API. */
  api: Application;
  /** Granted scope values (`Docs.Read`), in the API's order. */
  scopes: string[];
  /** The response's `scope`: granted scopes qualified with the API (`api://docs/Docs.Read`). */
  scope: string;
  /** OIDC scopes the request also named (the server decides about `offline_access`). */
  oidcScopes: OidcScope[];
  /** `exp - iat`, for `expires_in`. */
  expiresIn: number;
  trail: RuleOutcome[];
}

export interface ExchangeRefused {
  ok: false;
  outcome: 'refuse';
  /** The rule that refused. */
  rule: ExchangeRule;
  /** Throw it as-is: `error`, `entraCodes`, `suberror`, `claims` are what the client must see. */
  error: OAuthError;
  /** For a conditional-access step-up: the challenge and its RFC 9470 hints. */
  challenge?: { claims: string; acrValues?: string[]; maxAge?: number };
  trail: RuleOutcome[];
}

export type Decision = ExchangeAllowed | ExchangeRefused;

/**
 * Rules that judge the subject or actor token. RFC 8693 §2.2.2: "If either the subject_token or
 * actor_token are invalid for any reason, or are unacceptable based on policy, the invalid_request
 * error code MUST be used" — so in the RFC 8693 form they answer `invalid_request` where the
 * Microsoft form answers `invalid_grant`; description and Entra code are the same.
 */
const SUBJECT_TOKEN_RULES: ReadonlySet<ExchangeRule> = new Set<ExchangeRule>([
  'actor-token',
  'assertion-issuer',
  'assertion-audience',
  'assertion-lifetime',
  'assertion-delegated',
  'user-exists',
  'user-enabled',
  'session-live',
]);

/** Longest `act` nesting read from a token; deeper is refused without walking it further. */
const MAX_ACT_NESTING = 32;

/**
 * Decides an On-Behalf-Of / RFC 8693 exchange at `now` (epoch seconds). Rules, in order, each with
 * its own error (the refusal names the rule):
 *
 * | rule | refusal |
 * |---|---|
 * | `caller-confidential` | `unauthorized_client` AADSTS700025 |
 * | `actor-token` (RFC 8693) | `invalid_request` AADSTS50013: not the caller, expired |
 * | `assertion-issuer` | `invalid_grant` AADSTS50013 |
 * | `assertion-audience` | `invalid_grant` AADSTS50013: not addressed to the caller |
 * | `assertion-lifetime` | `invalid_grant` AADSTS500133 expired; AADSTS50013 not yet valid / no `exp`, `iat` |
 * | `assertion-delegated` | `invalid_grant` AADSTS7000114: app-only token |
 * | `user-exists`, `user-enabled` | `invalid_grant` AADSTS50034, AADSTS50057 |
 * | `session-live` | `invalid_grant` AADSTS50173: sessions revoked, session ended or unknown |
 * | `downstream-scopes` | `invalid_scope` AADSTS70011, `invalid_target` AADSTS500011, `invalid_request` AADSTS900144 |
 * | `consent` | `invalid_grant` + `suberror: consent_required` AADSTS65001, admin-consent URL in the description |
 * | `conditional-access` | `interaction_required` + `claims` AADSTS50076 (MFA) / AADSTS70044 (fresh sign-in); `invalid_grant` AADSTS53003 (block, IP) |
 * | `delegation-depth` | `invalid_grant` 9100001 (Baton's own; Entra has no depth limit) |
 *
 * In the RFC 8693 form the subject/actor-token rules answer `invalid_request` (RFC 8693 §2.2.2).
 * Only `OAuthError`s become refusals; anything else thrown is a bug and propagates.
 *
 * @example
 * const decision = decideExchange({ form: 'on_behalf_of', directory, caller: tasksApi, assertion: payload,
 *   user, session, userConsents, scope: 'api://docs/Docs.Read', options: { issuer, baseUrl, pairwiseSecret } }, now);
 * log({ rule: decision.rule, outcome: decision.outcome, trail: decision.trail });
 * if (!decision.ok) throw decision.error;
 * const token = signer.sign(decision.claims, 'at+jwt');
 */
export function decideExchange(input: ExchangeInput, now: number): Decision {
  const { directory, caller, assertion, options } = input;
  const tenant = directory.tenant;
  const skew = options.clockToleranceSeconds ?? 60;
  const trail: RuleOutcome[] = [];
  let current: ExchangeRule = 'caller-confidential';
  let challenge: ExchangeRefused['challenge'];
  const record = (outcome: 'pass' | 'skip' = 'pass') => {
    trail.push({ rule: current, outcome });
  };

  try {
    // 1. Only a confidential client proves who it is; a public client could be anyone holding a token.
    current = 'caller-confidential';
    if (caller.public) {
      throw new OAuthError('unauthorized_client', {
        description: `The client '${caller.clientId}' is a public client: only a confidential client (an API authenticating with a secret or a private_key_jwt assertion) may exchange a token on behalf of a user.`,
        entraCodes: [Entra.publicClientNotAllowed],
      });
    }
    record();

    current = 'actor-token';
    record(checkActorToken(input, now, skew));

    // 2. The assertion: ours, addressed to the caller, within its lifetime.
    current = 'assertion-issuer';
    const iss = assertion.iss;
    const ownIssuer = iss === options.issuer;
    if (typeof iss !== 'string' || !(ownIssuer || options.trustedIssuer?.(iss) === true)) {
      throw assertionInvalid(
        `The assertion was issued by ${typeof iss === 'string' ? `'${truncate(iss, 120)}'` : 'no issuer'}, not by this tenant ('${options.issuer}'): a middle tier can only exchange tokens this tenant issued.`,
      );
    }
    if (ownIssuer && assertion.tid !== tenant.tid) {
      throw assertionInvalid(`The assertion's tid does not name tenant '${tenant.id}', whose issuer it carries: the token is malformed.`);
    }
    record();

    // A token addressed to someone else is a token stolen from, or leaked by, that someone (AADSTS50013).
    current = 'assertion-audience';
    const aud = assertion.aud;
    const audiences = typeof aud === 'string' ? [aud] : Array.isArray(aud) ? aud.filter((a): a is string => typeof a === 'string') : [];
    if (audiences.length !== 1 || audiences[0] !== caller.clientId) {
      const shown = audiences.length === 0 ? 'missing' : audiences.map((a) => truncate(a, 80)).join("', '");
      throw assertionInvalid(`The assertion's audience is '${shown}' but the caller is '${caller.clientId}': a middle tier may only exchange tokens addressed to itself.`);
    }
    record();

    current = 'assertion-lifetime';
    const exp = numberClaim(assertion, 'exp');
    const iat = numberClaim(assertion, 'iat');
    const nbf = assertion.nbf === undefined ? undefined : numberClaim(assertion, 'nbf');
    if (exp <= now - skew) {
      throw new OAuthError('invalid_grant', {
        description: `The assertion expired at ${isoTime(exp)}: the client must send a fresh access token (tokens are renewed shortly before they expire; never cache a user's token past exp).`,
        entraCodes: [Entra.assertionExpired],
      });
    }
    if (nbf !== undefined && nbf > now + skew) throw assertionInvalid(`The assertion is not valid before ${isoTime(nbf)} (nbf): check the clocks of the token service and the middle tier.`);
    if (iat > now + skew) throw assertionInvalid(`The assertion was issued in the future (iat ${isoTime(iat)}): check the clocks of the token service and the middle tier.`);
    record();

    // 3. Only a user's token is exchanged on behalf of that user; an app-only token has no user to act for.
    current = 'assertion-delegated';
    const scp = typeof assertion.scp === 'string' ? assertion.scp.split(' ').filter(Boolean) : [];
    if (assertion.idtyp === 'app' || scp.length === 0) {
      throw new OAuthError('invalid_grant', {
        description:
          assertion.idtyp === 'app'
            ? "The assertion is an application token (idtyp 'app'): an application token cannot be exchanged on behalf of a user. A daemon calls the downstream API with its own client credentials token instead."
            : "The assertion carries no delegated scopes (scp): only a user's access token can be exchanged; an application token cannot be exchanged on behalf of a user.",
        entraCodes: [Entra.appOnlyAssertion],
      });
    }
    const oid = assertion.oid;
    if (typeof oid !== 'string' || oid === '') throw assertionInvalid('The assertion carries scp but no oid: it does not name the user it was issued for.');
    record();

    // 4. The user, now — not as the token remembers them.
    current = 'user-exists';
    const user = input.user;
    if (user === undefined || user.oid !== oid || user.tenantId !== tenant.id) {
      throw new OAuthError('invalid_grant', {
        description: `The user the assertion was issued for no longer exists in tenant '${tenant.id}'.`,
        entraCodes: [Entra.userNotFound],
      });
    }
    record();

    current = 'user-enabled';
    if (!user.enabled) {
      throw new OAuthError('invalid_grant', {
        description: `The user's account in tenant '${tenant.id}' is disabled: an administrator must enable it before any token is issued on the user's behalf.`,
        entraCodes: [Entra.userDisabled],
      });
    }
    record();

    current = 'session-live';
    const authTime = typeof assertion.auth_time === 'number' && Number.isFinite(assertion.auth_time) ? assertion.auth_time : undefined;
    const sid = typeof assertion.sid === 'string' ? assertion.sid : undefined;
    const revokedBefore = user.revokedBefore;
    if (revokedBefore !== undefined && (iat < revokedBefore || (authTime !== undefined && authTime < revokedBefore))) {
      throw sessionRevoked("The user's sign-in sessions were revoked after this token's sign-in: the user must sign in again.");
    }
    const session = input.session;
    if (sid !== undefined && session === undefined) throw sessionRevoked('The sign-in session behind the assertion (sid) is unknown or has ended: the user must sign in again.');
    if (session !== undefined && !session.live) throw sessionRevoked('The sign-in session behind the assertion was signed out or revoked: the user must sign in again.');
    if (session?.expiresAt !== undefined && session.expiresAt <= now) throw sessionRevoked('The sign-in session behind the assertion has ended: the user must sign in again.');
    record(session === undefined && revokedBefore === undefined ? 'skip' : 'pass');

    // 5. One downstream API; `.default` means every scope the caller holds consent for.
    current = 'downstream-scopes';
    const target = resolveTarget(directory, { audience: input.audience, resource: input.resource });
    const items = parseScope(input.scope);
    const { oidc, resource } = splitScopes(items);
    const resolved = resolveResourceScopes(directory, resource, { target });
    if (resolved === undefined) {
      const example = "e.g. 'api://docs/Docs.Read' or 'api://docs/.default'";
      if (items.length === 0) {
        throw new OAuthError('invalid_request', {
          description:
            input.form === 'token_exchange'
              ? `Name the downstream API with 'audience', 'resource' or 'scope' (${example}).`
              : `The request must contain a 'scope' parameter naming scopes of one downstream API (${example}).`,
          entraCodes: [Entra.malformedRequest],
        });
      }
      throw new OAuthError('invalid_scope', {
        description: `The scope parameter names no downstream API, only OpenID Connect scopes: add scopes of the API the token is for (${example}).`,
        entraCodes: [Entra.invalidScope],
      });
    }
    const api = resolved.api;
    record();

    // 6. Consent: the admin's for everyone, or this user's own. Scopes only narrow: never more than consented.
    current = 'consent';
    const consented = consentedScopes(directory, caller, api, user, input.userConsents ?? []);
    const requested = resolved.isDefault ? api.scopes.map((s) => s.value) : resolved.scopes;
    const granted = api.scopes.map((s) => s.value).filter((value) => requested.includes(value) && consented.has(value));
    const missing = resolved.isDefault ? (granted.length === 0 ? requested : []) : requested.filter((value) => !consented.has(value));
    if (missing.length > 0 || granted.length === 0) {
      const url = adminConsentUrl(options.baseUrl, tenant.id, caller.clientId);
      const what =
        resolved.isDefault
          ? `holds no consent for any scope of API '${apiName(api)}'`
          : `has no consent for ${missing.map((v) => `'${qualifiedScope(api, v)}'`).join(', ')}`;
      throw new OAuthError('invalid_grant', {
        description: `The application '${caller.clientId}' ${what} on behalf of this user. An administrator can grant consent for every user of the tenant at ${url}; otherwise the user must consent interactively (sign in to the client app with these scopes).`,
        entraCodes: [Entra.consentRequired],
        suberror: 'consent_required',
      });
    }
    record();

    // 7. Conditional access for the downstream API, judged on the original sign-in.
    current = 'conditional-access';
    const amr = Array.isArray(assertion.amr) ? assertion.amr.filter((v): v is string => typeof v === 'string') : [];
    const acr = typeof assertion.acr === 'string' ? assertion.acr : undefined;
    const policy = evaluatePolicies({
      policies: directory.policiesFor(api.clientId),
      resource: api.clientId,
      scopes: granted,
      clientId: caller.clientId,
      userOid: user.oid,
      auth: { amr, acr, authTime, ip: session?.ip },
      // Not the request's address: at an exchange that is the middle tier's, and an "office network
      // only" policy must not pass because the API runs in the office. Unknown sign-in IP = unmet.
      now,
    });
    if (!policy.ok) {
      if (policy.claims !== undefined) {
        challenge = { claims: policy.claims };
        if (policy.acrValues !== undefined) challenge.acrValues = policy.acrValues;
        if (policy.maxAge !== undefined) challenge.maxAge = policy.maxAge;
      }
      throw policyError(policy, apiName(api));
    }
    record();

    // 8. The chain stays bounded: the caller joins `act`, newest first (RFC 8693 §4.1).
    current = 'delegation-depth';
    const previous = readActorChain(assertion.act);
    const act: ActorClaim = { sub: caller.clientId, client_id: caller.clientId };
    if (previous !== undefined) act.act = previous;
    const chain = actorNames(act);
    const maxDepth = tenant.maxDelegationDepth;
    if (chain.length > maxDepth) {
      throw new OAuthError('invalid_grant', {
        description: `This exchange would make a delegation chain of ${chain.length > MAX_ACT_NESTING ? `more than ${MAX_ACT_NESTING} APIs` : `${chain.length} APIs (${[...chain].reverse().join(' → ')})`}, more than tenant '${tenant.id}' allows (delegation.maxDepth ${maxDepth}). Call the API from an earlier hop, or ask an administrator to raise the limit.`,
        entraCodes: [Entra.chainTooDeep],
      });
    }
    record();

    current = 'issue';
    const roles = userRolesOn(directory, api, user, input.userRoles ?? []);
    const profile: { preferred_username?: string; name?: string } = {};
    if (typeof assertion.preferred_username === 'string') profile.preferred_username = assertion.preferred_username;
    if (typeof assertion.name === 'string') profile.name = assertion.name;
    const claims = buildDelegatedClaims({
      issuer: options.issuer,
      tenant,
      clientId: caller.clientId,
      api,
      user,
      scopes: granted,
      roles,
      auth: { amr, acr, authTime, sid },
      act,
      sessionExpiresAt: session?.expiresAt,
      profile,
      pairwiseSecret: options.pairwiseSecret,
      now,
      newId: options.newId,
    });
    record();
    return {
      ok: true,
      outcome: 'allow',
      rule: 'issue',
      claims,
      api,
      scopes: granted,
      scope: granted.map((value) => qualifiedScope(api, value)).join(' '),
      oidcScopes: oidc,
      expiresIn: claims.exp - claims.iat,
      trail,
    };
  } catch (error) {
    if (!(error instanceof OAuthError)) throw error;
    trail.push({ rule: current, outcome: 'refuse' });
    const refused: ExchangeRefused = { ok: false, outcome: 'refuse', rule: current, error: forForm(input.form, current, error), trail };
    if (challenge !== undefined) refused.challenge = challenge;
    return refused;
  }
}

/**
 * The admin-consent link a `consent_required` description carries: `{base}/{tenant}/adminconsent?client_id=…`.
 *
 * @example
 * adminConsentUrl('https://localhost:8443', 'contoso', 'reports-api'); // 'https://localhost:8443/contoso/adminconsent?client_id=reports-api'
 */
export function adminConsentUrl(baseUrl: string, tenantId: string, clientId: string): string {
  return `${baseUrl.replace(/\/+$/, '')}/${encodeURIComponent(tenantId)}/adminconsent?client_id=${encodeURIComponent(clientId)}`;
}

/** RFC 8693 `actor_token`: when given, it must be the authenticated caller's own app-only token. */
function checkActorToken(input: ExchangeInput, now: number, skew: number): 'pass' | 'skip' {
  const actor = input.actor;
  if (actor === undefined || input.form !== 'token_exchange') return 'skip';
  const { caller, options } = input;
  if (actor.iss !== options.issuer && !(typeof actor.iss === 'string' && options.trustedIssuer?.(actor.iss) === true)) {
    throw assertionInvalid(`The actor_token was not issued by this tenant ('${options.issuer}').`);
  }
  const clientId = typeof actor.client_id === 'string' ? actor.client_id : actor.azp;
  if (clientId !== caller.clientId || actor.sub !== caller.servicePrincipalId) {
    throw assertionInvalid(
      `The actor_token does not represent the authenticated client '${caller.clientId}': pass an app-only token the client obtained for itself, or omit actor_token (the authenticated client is the actor).`,
    );
  }
  const exp = actor.exp;
  if (typeof exp !== 'number' || !Number.isFinite(exp) || exp <= now - skew) {
    throw new OAuthError('invalid_grant', { description: 'The actor_token has expired or has no exp: obtain a fresh one.', entraCodes: [Entra.assertionExpired] });
  }
  return 'pass';
}

/** Scopes the caller may use on `api` for `user`: admin consent ∪ the user's own consent. */
function consentedScopes(directory: TenantDirectory, caller: Application, api: Application, user: User, userConsents: readonly ConsentGrant[]): Set<string> {
  const scopes = new Set(directory.tenantConsent(caller.clientId, api.clientId));
  for (const grant of userConsents) {
    if (grant.principal !== user.oid || grant.clientId !== caller.clientId || grant.resource !== api.clientId || grant.tenantId !== directory.tenant.id) continue;
    for (const value of grant.scopes) {
      // A user cannot consent to a scope that needs an administrator: such a grant is ignored.
      if (directory.scope(api.clientId, value)?.adminConsentRequired === true) continue;
      scopes.add(value);
    }
  }
  return scopes;
}

/** The user's app roles on `api` that still exist there and may be given to users. */
function userRolesOn(directory: TenantDirectory, api: Application, user: User, assignments: readonly AppRoleAssignment[]): string[] {
  const roles: string[] = [];
  for (const assignment of assignments) {
    if (assignment.principalType !== 'user' || assignment.principalId !== user.oid || assignment.resource !== api.clientId) continue;
    for (const value of assignment.roles) {
      const role = directory.appRole(api.clientId, value);
      if (role !== undefined && role.allowedMemberTypes.includes('User') && !roles.includes(value)) roles.push(value);
    }
  }
  return roles;
}

/** The incoming `act` claim, checked for shape; `undefined` when absent. */
function readActorChain(value: unknown): ActorClaim | undefined {
  if (value === undefined) return undefined;
  let node: unknown = value;
  for (let depth = 0; node !== undefined; depth++) {
    if (depth >= MAX_ACT_NESTING) break;
    if (node === null || typeof node !== 'object' || Array.isArray(node) || typeof (node as { sub?: unknown }).sub !== 'string') {
      throw assertionInvalid("The assertion's act claim is malformed: each actor must be an object with a string sub (RFC 8693 §4.1).");
    }
    node = (node as { act?: unknown }).act;
  }
  return value as ActorClaim;
}

/** The actors of a chain, newest first; stops after {@link MAX_ACT_NESTING} + 1 (enough to exceed any limit). */
function actorNames(act: ActorClaim): string[] {
  const names: string[] = [];
  for (let node: ActorClaim | undefined = act; node !== undefined && names.length <= MAX_ACT_NESTING; node = node.act) names.push(truncate(node.client_id ?? node.sub, 80));
  return names;
}

function numberClaim(payload: Record<string, unknown>, name: 'exp' | 'iat' | 'nbf'): number {
  const value = payload[name];
  if (typeof value !== 'number' || !Number.isFinite(value)) throw assertionInvalid(`The assertion has no numeric '${name}' claim.`);
  return value;
}

function assertionInvalid(description: string): OAuthError {
  return new OAuthError('invalid_grant', { description, entraCodes: [Entra.assertionInvalid] });
}

function sessionRevoked(description: string): OAuthError {
  return new OAuthError('invalid_grant', { description, entraCodes: [Entra.sessionRevoked] });
}

function isoTime(epochSeconds: number): string {
  const date = new Date(epochSeconds * 1000);
  return Number.isNaN(date.getTime()) ? String(epochSeconds) : date.toISOString();
}

/** RFC 8693 §2.2.2: subject/actor-token refusals are `invalid_request` in the RFC 8693 form. */
function forForm(form: ExchangeForm, rule: ExchangeRule, error: OAuthError): OAuthError {
  if (form !== 'token_exchange' || !SUBJECT_TOKEN_RULES.has(rule) || error.error === 'invalid_request') return error;
  const options: OAuthErrorOptions = { description: error.description, entraCodes: error.entraCodes, cause: error };
  if (error.detail !== undefined) options.detail = error.detail;
  if (error.suberror !== undefined) options.suberror = error.suberror;
  return new OAuthError('invalid_request', options);
}

/**
 * The On-Behalf-Of exchange (DESIGN "The On-Behalf-Of exchange"): may the calling API trade the
 * user's token it received for a new one addressed to the next API, and what does that token say?
 *
 * Pure rules serve both dialects: Microsoft's `jwt-bearer` grant with `requested_token_use=on_behalf_of`,
 * and RFC 8693 token exchange. The server verifies the tokens' signatures with its keys; the
 * decision runs in two phases so the server reads only what can change the outcome, without
 * knowing any rule itself:
 *
 *   planExchange(request, now)      the rules that need no store record (caller, actor token, the
 *                                   assertion's issuer, audience, lifetime, delegation) and the
 *                                   downstream API → a refusal, or the plan with the exact reads
 *   decideExchange(plan, records)   the rules that judge the records read (user, session, consent,
 *                                   roles) and the rest → the decision and the new token's claims
 *
 * Every rule is a named function below, and every decision carries the trail of rules it passed
 * through so the audit log can say which rule allowed or refused. `decideExchange(input, now)` runs
 * both phases in one call when the records are already at hand (tests, tools).
 */
import { OAuthError, Entra, errors, truncate, type SubError } from './errors.ts';
import type { TenantDirectory } from './directory.ts';
import { audienceOf, buildDelegatedClaims, mayActOf, type DelegatedAccessClaims, type IdGenerator, type PairwiseSecret } from './claims.ts';
import { ACR_MFA, AMR_MFA, evaluatePolicies, parseClaimsRequest, policyError, unmetDemands, type PolicyResult } from './policy.ts';
import { apiName, parseScope, qualifiedScope, resolveResourceScopes, resolveTarget, splitScopes, type OidcScope, type ResolvedScopes } from './scopes.ts';
import { consentedScopes } from './consent.ts';
import { JwtError, validateLifetime } from './jwt.ts';
import { predatesRevocation, userRolesOn } from './users.ts';
import type { ActorClaim, Application, AppRoleAssignment, ConsentGrant, User } from './types.ts';
import type { DpopConfirmation } from './dpop.ts';

/** `on_behalf_of`: Microsoft's jwt-bearer OBO request. `token_exchange`: RFC 8693. */
export type ExchangeDialect = 'on_behalf_of' | 'token_exchange';

/** The rules, in the order they run. Names are stable: audit logs and dashboards key on them. */
export const EXCHANGE_RULES = [
  'caller-confidential',
  'actor-token',
  'assertion-issuer',
  'assertion-audience',
  'assertion-lifetime',
  'assertion-delegated',
  'may-act',
  'dpop-bound-subject',
  'dpop-incoming',
  'dpop-exchanged',
  'dpop-api-key',
  'dpop-required',
  'user-exists',
  'user-enabled',
  'session-live',
  'downstream-scopes',
  'consent',
  'conditional-access',
  'claims-challenge',
  'scope-narrowing',
  'delegation-depth',
  'chain-loop',
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
  /**
   * Entra's `suberror` beside a step-up (`interaction_required`) refusal. MSAL reads `basic_action`
   * as "the user can resolve this by signing in interactively" (`InteractionRequiredAuthError.subError`);
   * the token service passes it. Absent: no suberror.
   */
  stepUpSuberror?: SubError | undefined;
}

/** What the request says, known before any store read: the first phase's input. */
export interface ExchangeRequest {
  form: ExchangeDialect;
  directory: TenantDirectory;
  /** The authenticated calling application (the middle tier). */
  caller: Application;
  /** The assertion / `subject_token` payload, signature and `typ` already verified by the server. */
  assertion: Record<string, unknown>;
  /** The raw `scope` parameter. */
  scope?: string | undefined;
  /** RFC 8693 `audience` values. */
  audience?: readonly string[] | string | undefined;
  /** RFC 8693 / RFC 8707 `resource` values. */
  resource?: readonly string[] | string | undefined;
  /**
   * The `claims` parameter (an OpenID Connect Core §5.5 claims request: the claims challenge a
   * downstream API returned, which the middle tier passes on, as MSAL's `acquireTokenOnBehalfOf({ claims })`
   * sends it). Judged by `claims-challenge`; the server validates its shape first.
   */
  claims?: string | undefined;
  /** RFC 8693 `actor_token` payload, signature verified by the server. */
  actor?: Record<string, unknown> | undefined;
  /** The request's client IP (the middle tier's): recorded, never judged by IP-range policies. */
  ip?: string | undefined;
  /**
   * The DPoP proof the exchange request carried (RFC 9449), already checked by the server: the
   * thumbprint of the caller's key, which the new token is bound to (`cnf.jkt`).
   */
  dpop?: DpopConfirmation | undefined;
  options: ExchangeOptions;
}

/** The store records the plan asked for ({@link ExchangeReads}), as the server read them. */
export interface ExchangeRecords {
  /** The user the assertion's `oid` names; undefined when not found (or not read). */
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
}

/** Both phases' input at once, for {@link decideExchange}`(input, now)`. */
export interface ExchangeInput extends ExchangeRequest, ExchangeRecords {}

/**
 * The store reads that can change the outcome of a planned exchange; everything else is skipped
 * (DESIGN principle 4). The server runs them in parallel and hands the results to `decideExchange`.
 */
export interface ExchangeReads {
  /** The user to read by `oid`. Undefined: none (an `oid` longer than any this service issues; user-exists refuses). */
  userOid: string | undefined;
  /** The sign-in session to read by `sid` (only a live session of this user counts). Undefined: none. */
  sid: string | undefined;
  /** The API whose user consents (this user, this caller) to read; undefined when admin consent already covers the request. */
  consentsOn: Application | undefined;
  /** Whether to read the user's app-role assignments: the API defines roles users can hold. */
  roles: boolean;
}

/** The first phase passed: what the second needs, and the reads to do in between. */
export interface ExchangePlan {
  ok: true;
  outcome: 'plan';
  reads: ExchangeReads;
  /** The downstream API, when the request names one (for the audit log). */
  api: Application | undefined;
  /** The rules judged so far. `decideExchange` continues this trail: decide a plan once. */
  trail: RuleOutcome[];
  request: ExchangeRequest;
  now: number;
  subject: SubjectFacts;
  target: Downstream;
}

/** What the verified assertion says about the user and the sign-in, read once. */
interface SubjectFacts {
  oid: string;
  iat: number;
  authTime: number | undefined;
  sid: string | undefined;
  amr: string[];
  acr: string | undefined;
}

/** The downstream API and scopes the request names, resolved once; a refusal waits for its rule. */
type Downstream = { resolved: ResolvedScopes; oidc: OidcScope[] } | { error: OAuthError };

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
  /** The resource scopes as the request named them (`isDefault` for `.default`). */
  requested: ResolvedScopes;
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
  /** The downstream API, when the request names one (for the audit log). */
  api?: Application;
  trail: RuleOutcome[];
}

export type Decision = ExchangeAllowed | ExchangeRefused;

/**
 * Rules that judge the subject or actor token. RFC 8693 §2.2.2: "If either the subject_token or
 * actor_token are invalid for any reason, or are unacceptable based on policy, the invalid_request
 * error code MUST be used" — so in the RFC 8693 form they answer `invalid_request` where the
 * Microsoft form answers `invalid_grant`; description and Entra code are the same.
 */
const SUBJECT_TOKEN_RULES: ReadonlySet<ExchangeRule> = new Set<ExchangeRule>(
  // `actor-token` through `session-live`: every rule that judges a token the request presented, or the user and sign-in behind it.
  // The DPoP rules judge the request's proof and the APIs' policies: their errors stand in both forms.
  EXCHANGE_RULES.slice(EXCHANGE_RULES.indexOf('actor-token'), EXCHANGE_RULES.indexOf('session-live') + 1).filter((rule) => !rule.startsWith('dpop-')),
);

/** Longest `act` nesting read from a token; deeper is refused without walking it further. */
const MAX_ACT_NESTING = 32;

/** The trail's entries, one frozen object per (rule, outcome): recording a rule allocates nothing. */
const OUTCOMES = Object.fromEntries(
  EXCHANGE_RULES.map((rule) => [rule, { pass: Object.freeze({ rule, outcome: 'pass' }), skip: Object.freeze({ rule, outcome: 'skip' }), refuse: Object.freeze({ rule, outcome: 'refuse' }) }]),
) as Record<ExchangeRule, Record<RuleOutcome['outcome'], RuleOutcome>>;

/**
 * The first phase of an exchange at `now` (epoch seconds): the rules that need no store record,
 * and the downstream API the request names. Returns the refusal, or the plan whose `reads` say
 * exactly which records can change the outcome.
 *
 * @example
 * const plan = planExchange({ form: 'on_behalf_of', directory, caller, assertion: payload, scope, options }, now);
 * if (!plan.ok) throw plan.error;
 * const records = await readRecords(plan.reads); // user, session, consents, roles
 * const decision = decideExchange(plan, records);
 */
export function planExchange(request: ExchangeRequest, now: number): ExchangePlan | ExchangeRefused {
  const { caller, assertion, options } = request;
  const skew = options.clockToleranceSeconds ?? 60;
  const trail: RuleOutcome[] = [];
  // Resolved first (a pure computation) so even an early refusal names the API for the audit log;
  // a refusal of the scopes themselves waits for its rule, after the user's.
  const target = resolveDownstream(request);
  const resolved = 'resolved' in target ? target.resolved : undefined;
  const api = resolved?.api;
  try {
    requireConfidentialCaller(caller);
    trail.push(OUTCOMES['caller-confidential'].pass);
    trail.push(OUTCOMES['actor-token'][actorIsCaller(request, now, skew)]);
    assertionIssuedHere(request);
    trail.push(OUTCOMES['assertion-issuer'].pass);
    assertionAddressedToCaller(request);
    trail.push(OUTCOMES['assertion-audience'].pass);
    assertionWithinLifetime(assertion, now, skew);
    trail.push(OUTCOMES['assertion-lifetime'].pass);
    const oid = assertionDelegated(assertion);
    trail.push(OUTCOMES['assertion-delegated'].pass);
    trail.push(OUTCOMES['may-act'][actorMayAct(request, resolved?.api)]);
    trail.push(OUTCOMES['dpop-bound-subject'][boundSubjectKeepsBinding(request)]);
    trail.push(OUTCOMES['dpop-incoming'][incomingBoundAsRequired(request)]);
    trail.push(OUTCOMES['dpop-exchanged'][exchangeProvedAsRequired(request)]);
    trail.push(OUTCOMES['dpop-api-key'][proofWithApiKey(request)]);
    trail.push(OUTCOMES['dpop-required'][dpopRequiredBy(api, request.dpop, 'pass')]);
    const subject = subjectFacts(assertion, oid);
    return { ok: true, outcome: 'plan', reads: readsFor(request, subject, resolved), api, trail, request, now, subject, target };
  } catch (error) {
    return refusal(request.form, trail, error, api);
  }
}

/**
 * Decides an On-Behalf-Of / RFC 8693 exchange. Two spellings:
 * - `decideExchange(plan, records)`: the second phase, after {@link planExchange} and the reads it asked for;
 * - `decideExchange(input, now)`: both phases in one call, the records given with the request.
 *
 * Rules, in order, each with its own error (the refusal names the rule):
 *
 * | rule | refusal |
 * |---|---|
 * | `caller-confidential` | `unauthorized_client` AADSTS700025 |
 * | `actor-token` (RFC 8693) | `invalid_request` AADSTS50013 (another issuer or tenant, not yet valid, no `exp`), 9100005 (not the caller's own app-only token), AADSTS500133 (expired) |
 * | `assertion-issuer` | `invalid_grant` AADSTS50013 |
 * | `assertion-audience` | `invalid_grant` AADSTS50013: not addressed to the caller (nor to an API whose `delegation.mayAct` judges who may) |
 * | `assertion-lifetime` | `invalid_grant` AADSTS500133 expired; AADSTS50013 not yet valid / no `exp`, `iat` |
 * | `assertion-delegated` | `invalid_grant` AADSTS7000114: app-only token |
 * | `may-act` | `invalid_grant` 9100004: the token's API (`delegation.mayAct`, the token's `may_act`) does not allow this middle tier, or not for this downstream API |
 * | `dpop-bound-subject` | `invalid_dpop_proof` 9100013: a DPoP-bound subject token without a proof on the exchange |
 * | `dpop-incoming` | `invalid_grant` 9100014: the caller's policy exchanges only DPoP-bound tokens |
 * | `dpop-exchanged` | `invalid_dpop_proof` 9100017: the caller's policy requires a proof on its exchanges |
 * | `dpop-api-key` | `invalid_dpop_proof` 9100016: the proof is not made with the caller's own key |
 * | `dpop-required` | `invalid_dpop_proof` 9100015: tokens for the downstream API are DPoP-bound, no proof |
 * | `user-exists`, `user-enabled` | `invalid_grant` AADSTS50034, AADSTS50057 |
 * | `session-live` | `invalid_grant` AADSTS50173: sessions revoked, session ended or unknown |
 * | `downstream-scopes` | `invalid_scope` AADSTS70011, `invalid_target` AADSTS500011 (also: one audience per token), `invalid_request` AADSTS900144 |
 * | `consent` | `invalid_grant` + `suberror: consent_required` AADSTS65001, admin-consent URL in the description |
 * | `conditional-access` | `interaction_required` + `claims` AADSTS50076 (MFA) / AADSTS70044 (fresh sign-in); `invalid_grant` AADSTS53003 (block, IP) |
 * | `claims-challenge` | `interaction_required` + `claims` AADSTS50076 (MFA, an `acrs` authentication context) / AADSTS70044 (a sign-in after `nbf`): the `claims` parameter the middle tier passed on asks for more than the sign-in gave; `invalid_request` AADSTS900144 for a malformed one |
 * | `scope-narrowing` | `invalid_scope` 9100003: an exchange to the subject token's own audience asks for more than its `scp` |
 * | `delegation-depth` | `invalid_grant` 9100001 (Baton's own; Entra has no depth limit): the stricter of the tenant's and the API's limit |
 * | `chain-loop` | `invalid_grant` 9100002: an API would appear twice in the chain (A → B → A) |
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
export function decideExchange(plan: ExchangePlan, records: ExchangeRecords): Decision;
export function decideExchange(input: ExchangeInput, now: number): Decision;
export function decideExchange(first: ExchangePlan | ExchangeInput, second: ExchangeRecords | number): Decision {
  if (typeof second === 'number') {
    const plan = planExchange(first as ExchangeInput, second);
    return plan.ok ? finish(plan, first as ExchangeInput) : plan;
  }
  return finish(first as ExchangePlan, second);
}

/** The second phase: the rules that judge the records, then the new token's claims. */
function finish(plan: ExchangePlan, records: ExchangeRecords): Decision {
  const { request, now, subject, target, trail } = plan;
  const { directory, caller, assertion, options } = request;
  const session = records.session;
  try {
    const user = userExists(directory, records.user, subject.oid);
    trail.push(OUTCOMES['user-exists'].pass);
    userEnabled(directory, user);
    trail.push(OUTCOMES['user-enabled'].pass);
    trail.push(OUTCOMES['session-live'][sessionLive(user, subject, session, now)]);
    const { resolved, oidc } = downstreamScopes(target);
    trail.push(OUTCOMES['downstream-scopes'].pass);
    const consented = consentCovers(request, resolved, user, records.userConsents ?? []);
    trail.push(OUTCOMES.consent.pass);
    const api = resolved.api;
    // Narrowed before conditional access so policies judge the scopes that will be granted; the
    // rule's own refusal is recorded in its place, after conditional access.
    const narrowing = scopesNarrow(request, resolved, consented);
    const granted = narrowing.granted ?? consented;
    const policy = conditionalAccess(request, api, granted, subject, session, now);
    if (!policy.ok) {
      const refused = refusal(request.form, trail, policyError(policy, apiName(api), options.stepUpSuberror), api);
      if (policy.claims !== undefined) {
        refused.challenge = { claims: policy.claims };
        if (policy.acrValues !== undefined) refused.challenge.acrValues = policy.acrValues;
        if (policy.maxAge !== undefined) refused.challenge.maxAge = policy.maxAge;
      }
      return refused;
    }
    trail.push(OUTCOMES['conditional-access'].pass);
    const challenged = claimsChallenge(request, api, subject);
    if (challenged !== undefined) {
      const refused = refusal(request.form, trail, challenged.error, api);
      refused.challenge = challenged.challenge;
      return refused;
    }
    trail.push(OUTCOMES['claims-challenge'][request.claims === undefined ? 'skip' : 'pass']);
    if (narrowing.error !== undefined) throw narrowing.error;
    trail.push(OUTCOMES['scope-narrowing'].pass);
    const previous = readActorChain(assertion.act);
    const act = chainWithinDepth(directory, namedActor(request), api, previous);
    trail.push(OUTCOMES['delegation-depth'].pass);
    chainWithoutLoop(caller, api, previous, assertion.aud);
    trail.push(OUTCOMES['chain-loop'].pass);
    const claims = buildDelegatedClaims({
      issuer: options.issuer,
      tenant: directory.tenant,
      clientId: caller.clientId,
      api,
      user,
      scopes: granted,
      roles: userRolesOn(directory, api, user.oid, records.userRoles ?? []),
      auth: { amr: subject.amr, acr: subject.acr, authTime: subject.authTime, sid: subject.sid },
      act,
      sessionExpiresAt: session?.expiresAt,
      profile: profileOf(assertion),
      pairwiseSecret: options.pairwiseSecret,
      now,
      newId: options.newId,
      jkt: request.dpop?.jkt,
    });
    trail.push(OUTCOMES.issue.pass);
    return {
      ok: true,
      outcome: 'allow',
      rule: 'issue',
      claims,
      api,
      scopes: granted,
      scope: granted.map((value) => qualifiedScope(api, value)).join(' '),
      requested: resolved,
      oidcScopes: oidc,
      expiresIn: claims.exp - claims.iat,
      trail,
    };
  } catch (error) {
    return refusal(request.form, trail, error, plan.api);
  }
}

/**
 * The refusal by the rule being judged: rules run in {@link EXCHANGE_RULES} order and each passed
 * one is on the trail, so the trail's length names it. Only an `OAuthError` is a refusal.
 */
function refusal(form: ExchangeDialect, trail: RuleOutcome[], error: unknown, api: Application | undefined): ExchangeRefused {
  if (!(error instanceof OAuthError)) throw error;
  const rule = EXCHANGE_RULES[trail.length] as ExchangeRule;
  trail.push(OUTCOMES[rule].refuse);
  const refused: ExchangeRefused = { ok: false, outcome: 'refuse', rule, error: forForm(form, rule, error), trail };
  if (api !== undefined) refused.api = api;
  return refused;
}

// ——— the rules, in order ———

/**
 * `caller-confidential`: only a confidential client proves who it is; a public client could be
 * anyone holding the user's token. The server applies it before it does any work for the request.
 */
export function requireConfidentialCaller(caller: Application): void {
  if (caller.public) {
    throw errors.unauthorizedClient(
      `The client '${caller.clientId}' is a public client: only a confidential client (an API authenticating with a secret or a private_key_jwt assertion) may exchange a token on behalf of a user.`,
    );
  }
}

/**
 * `actor-token` (RFC 8693 §2.1): when given, the actor token must be the authenticated caller's own
 * app-only token from this tenant — its signature was checked by the server with the tenant's keys;
 * here: issued by this tenant (`iss`, and `tid` for this tenant's issuer), an application token
 * (`idtyp: app`) whose `azp`/`client_id` is the caller and `sub` the caller's service principal,
 * within its lifetime. The new token's `act` then names that actor ({@link namedActor}).
 */
function actorIsCaller(request: ExchangeRequest, now: number, skew: number): 'pass' | 'skip' {
  const actor = request.actor;
  if (actor === undefined || request.form !== 'token_exchange') return 'skip';
  const { caller, options, directory } = request;
  if (actor.iss !== options.issuer && !(typeof actor.iss === 'string' && options.trustedIssuer?.(actor.iss) === true)) {
    throw errors.assertionInvalid(
      `The actor_token was issued by ${typeof actor.iss === 'string' ? `'${truncate(actor.iss, 120)}'` : 'no issuer'}, not by this tenant ('${options.issuer}') (rule actor-token).`,
    );
  }
  if (actor.iss === options.issuer && actor.tid !== directory.tenant.tid) {
    throw errors.assertionInvalid(`The actor_token's tid does not name tenant '${directory.tenant.id}', whose issuer it carries: the token is malformed (rule actor-token).`);
  }
  if (actor.idtyp !== 'app') {
    throw errors.invalidGrant(
      `The actor_token is not an application token (idtyp 'app'): pass the app-only token '${caller.clientId}' obtained for itself with client credentials, or omit actor_token (rule actor-token).`,
      Entra.actorTokenNotCaller,
    );
  }
  const clientId = typeof actor.client_id === 'string' ? actor.client_id : actor.azp;
  if (clientId !== caller.clientId || actor.sub !== caller.servicePrincipalId) {
    throw errors.invalidGrant(
      `The actor_token does not represent the authenticated client '${caller.clientId}' (its client_id is ${typeof clientId === 'string' ? `'${truncate(clientId, 80)}'` : 'missing'}): pass an app-only token the client obtained for itself, or omit actor_token (the authenticated client is the actor) (rule actor-token).`,
      Entra.actorTokenNotCaller,
    );
  }
  try {
    validateLifetime(actor, { now, clockTolerance: skew, required: REQUIRE_IAT });
  } catch (error) {
    if (!(error instanceof JwtError)) throw error;
    if (error.code === 'ERR_JWT_EXPIRED') throw errors.invalidGrant(`The actor_token expired at ${isoTime(actor.exp as number)}: obtain a fresh one (rule actor-token).`, Entra.assertionExpired);
    throw errors.assertionInvalid(
      error.code === 'ERR_JWT_NOT_YET_VALID'
        ? `The actor_token is not valid yet (${error.claim ?? 'nbf'} in the future): check the clocks of the token service and the caller (rule actor-token).`
        : `The actor_token has no numeric '${error.claim ?? 'exp'}' claim (rule actor-token).`,
    );
  }
  return 'pass';
}

/** The `cnf.jkt` of a DPoP-bound token (RFC 9449 §6.1), or undefined for an unbound one. */
export function boundKeyOf(token: Record<string, unknown>): string | undefined {
  const cnf = token.cnf;
  if (cnf === null || typeof cnf !== 'object') return undefined;
  const jkt = (cnf as { jkt?: unknown }).jkt;
  return typeof jkt === 'string' ? jkt : undefined;
}

/**
 * `dpop-bound-subject`: a DPoP-bound subject token is exchanged only with a DPoP proof, and the new
 * token is bound to the proof's key. Never silently unbound (the anti-example is Keycloak issue
 * #50963, where an exchange turned a sender-constrained token into a bearer one).
 */
function boundSubjectKeepsBinding({ assertion, dpop, caller }: ExchangeRequest): 'pass' | 'skip' {
  if (boundKeyOf(assertion) === undefined) return 'skip';
  if (dpop === undefined) {
    throw dpopError(
      'invalid_dpop_proof',
      `The token being exchanged is DPoP-bound (cnf.jkt), and this exchange request carries no DPoP proof: '${caller.clientId}' must send a DPoP header made with its own key, and the new token is bound to that key (rule dpop-bound-subject). A bound token is never exchanged for an unbound one.`,
      Entra.dpopBoundSubject,
    );
  }
  return 'pass';
}

/** `dpop-incoming`: an API whose policy says `dpop.incoming: required` exchanges only DPoP-bound tokens. */
function incomingBoundAsRequired({ assertion, caller }: ExchangeRequest): 'pass' | 'skip' {
  if (caller.dpop?.incoming !== true) return 'skip';
  if (boundKeyOf(assertion) === undefined) {
    throw dpopError(
      'invalid_grant',
      `API '${caller.clientId}' accepts only DPoP-bound tokens (its dpop.incoming policy), and the token being exchanged is a bearer token (no cnf.jkt) (rule dpop-incoming). Its client must get a DPoP-bound token.`,
      Entra.dpopIncomingRequired,
    );
  }
  return 'pass';
}

/** `dpop-exchanged`: an API whose policy says `dpop.exchanged: required` sends a DPoP proof with each exchange. */
function exchangeProvedAsRequired({ dpop, caller }: ExchangeRequest): 'pass' | 'skip' {
  if (caller.dpop?.exchanged !== true) return 'skip';
  if (dpop === undefined) {
    throw dpopError(
      'invalid_dpop_proof',
      `API '${caller.clientId}' must send a DPoP proof with each exchange (its dpop.exchanged policy): the tokens it gets are bound to its own key (rule dpop-exchanged).`,
      Entra.dpopExchangedRequired,
    );
  }
  return 'pass';
}

/**
 * `dpop-api-key`: the exchange's proof is made with the calling API's own key — one of its
 * registered thumbprints (`dpop.keys`) when it registered any, and never the key the subject token
 * is bound to (that key is its client's: each hop is bound to the key of the API that holds it).
 */
function proofWithApiKey({ assertion, dpop, caller }: ExchangeRequest): 'pass' | 'skip' {
  if (dpop === undefined) return 'skip';
  const keys = caller.dpop?.keys ?? [];
  if (keys.length > 0 && !keys.includes(dpop.jkt)) {
    throw dpopError(
      'invalid_dpop_proof',
      `The exchange's DPoP proof is made with a key API '${caller.clientId}' has not registered (jkt '${truncate(dpop.jkt, 64)}'; its dpop.keys name ${keys.length}) (rule dpop-api-key).`,
      Entra.dpopNotApiKey,
    );
  }
  if (dpop.jkt === boundKeyOf(assertion)) {
    throw dpopError(
      'invalid_dpop_proof',
      `The exchange's DPoP proof is made with the key the token being exchanged is bound to, which is its client's: '${caller.clientId}' must prove possession of its own key (rule dpop-api-key).`,
      Entra.dpopNotApiKey,
    );
  }
  return keys.length > 0 ? 'pass' : 'skip';
}

/**
 * `dpop-required` (every grant): a token for an API whose policy says `dpop.incoming: required`
 * is issued only DPoP-bound, so a request without a proof is refused. Returns `skip` when the API
 * has no such policy (or none is named yet), else `onPass`.
 */
export function dpopRequiredBy(api: Application | undefined, dpop: DpopConfirmation | undefined, onPass: 'pass'): 'pass' | 'skip' {
  if (api?.dpop?.incoming !== true) return 'skip';
  if (dpop === undefined) {
    throw dpopError(
      'invalid_dpop_proof',
      `Tokens for API '${apiName(api)}' are DPoP-bound (its dpop.incoming policy): send a DPoP proof (RFC 9449) with this token request (rule dpop-required).`,
      Entra.dpopRequired,
    );
  }
  return onPass;
}

function dpopError(error: 'invalid_dpop_proof' | 'invalid_grant', description: string, entra: number): OAuthError {
  return new OAuthError(error, { description, entraCodes: [entra] });
}

/**
 * The actor the new token's `act` names for this hop: with an RFC 8693 `actor_token` (validated by
 * `actor-token`), that token's `sub`, `iss` and `client_id`; otherwise the authenticated caller by
 * its client id.
 */
function namedActor({ actor, form, caller }: ExchangeRequest): ActorClaim {
  if (actor === undefined || form !== 'token_exchange') return { sub: caller.clientId, client_id: caller.clientId };
  return { sub: actor.sub as string, iss: actor.iss as string, client_id: caller.clientId };
}

/**
 * `may-act` (RFC 8693 §4.4): who may act for the user with a token addressed to an API is that API's
 * to say. When the token's API registers `delegation.mayAct`, the caller must be named there (the
 * API itself too), and, when its entry names downstream APIs, the exchange must be for one of them.
 * When the token carries a `may_act` claim (what the registration said when it was issued), the
 * caller must be named there as well: the stricter of the two. A DPoP-bound token (`cnf`) is
 * exchanged only by the API it is addressed to, whatever `mayAct` says. Skips when neither says
 * anything. `downstream` is the API the request names, when it names one (a request that names
 * none is refused by `downstream-scopes`).
 */
function actorMayAct({ assertion, caller, directory }: ExchangeRequest, downstream: Application | undefined): 'pass' | 'skip' {
  const aud = assertion.aud as string; // one string: assertion-audience passed
  const tokenApi = audienceOwner(directory, aud);
  const registered = tokenApi?.mayAct;
  const claimed = assertion.may_act === undefined ? undefined : mayActOf(assertion.may_act);
  if (registered === undefined && claimed === undefined) return 'skip';
  const shownApi = tokenApi === undefined ? `'${truncate(aud, 80)}'` : `'${apiName(tokenApi)}'`;
  const refuse = (why: string) =>
    errors.invalidGrant(`${why} (rule may-act). The API a user's token is addressed to says which middle tiers may exchange it, and for which downstream APIs (its delegation.mayAct).`, Entra.actorNotAllowed);
  if (claimed === null) throw refuse(`The token's may_act claim is malformed: it must be an object, or an array of objects, each with a string sub (RFC 8693 §4.4)`);
  if ((tokenApi?.clientId ?? aud) !== caller.clientId && assertion.cnf !== undefined) {
    throw refuse(`The token being exchanged is addressed to API ${shownApi} and bound to a key (cnf): a sender-constrained token is exchanged only by the API it is addressed to, not by '${caller.clientId}'`);
  }
  if (registered !== undefined) {
    const entry = registered.find((e) => e.clientId === caller.clientId);
    if (entry === undefined) {
      throw refuse(`API ${shownApi} allows ${registered.map((e) => `'${e.clientId}'`).join(', ')} to exchange the tokens addressed to it: '${caller.clientId}' may not act for the user with them`);
    }
    if (entry.downstream !== undefined && downstream !== undefined && !entry.downstream.includes(downstream.clientId)) {
      throw refuse(
        `API ${shownApi} allows '${caller.clientId}' to exchange the tokens addressed to it only for ${entry.downstream.map((id) => `'${nameOf(directory, id)}'`).join(', ')}, not for '${apiName(downstream)}'`,
      );
    }
  }
  if (claimed !== undefined && !claimed.some((party) => (party.client_id ?? party.sub) === caller.clientId)) {
    throw refuse(`The token's may_act claim names ${claimed.map((p) => `'${truncate(p.client_id ?? p.sub, 80)}'`).join(', ')}, not '${caller.clientId}': it may not act for the user with this token`);
  }
  return 'pass';
}


/** An API by its identifier URI when the directory knows it, else the client id given. */
function nameOf(directory: TenantDirectory, clientId: string): string {
  const app = directory.application(clientId);
  return app === undefined ? clientId : apiName(app);
}

/** `assertion-issuer`: a token this tenant issued (or one a multi-tenant hook trusts). */
function assertionIssuedHere({ assertion, options, directory }: ExchangeRequest): void {
  const iss = assertion.iss;
  const ownIssuer = iss === options.issuer;
  if (typeof iss !== 'string' || !(ownIssuer || options.trustedIssuer?.(iss) === true)) {
    throw errors.assertionInvalid(
      `The assertion was issued by ${typeof iss === 'string' ? `'${truncate(iss, 120)}'` : 'no issuer'}, not by this tenant ('${options.issuer}'): a middle tier can only exchange tokens this tenant issued.`,
    );
  }
  if (ownIssuer && assertion.tid !== directory.tenant.tid) {
    throw errors.assertionInvalid(`The assertion's tid does not name tenant '${directory.tenant.id}', whose issuer it carries: the token is malformed.`);
  }
}

/**
 * `assertion-audience`: a token addressed to someone else is a token stolen from, or leaked by, that
 * someone (AADSTS50013) — unless that someone is an API whose registration names who may exchange
 * its tokens (`delegation.mayAct`): then the `may-act` rule judges the caller.
 */
/** The application a token's `aud` names: an API's client id, or an MCP server's canonical URI ({@link audienceOf}). */
function audienceOwner(directory: TenantDirectory, aud: string): Application | undefined {
  const byClientId = directory.application(aud);
  if (byClientId !== undefined && audienceOf(byClientId) === aud) return byClientId;
  const byUri = directory.apiByIdentifierUri(aud);
  return byUri !== undefined && audienceOf(byUri) === aud ? byUri : undefined;
}

function assertionAddressedToCaller({ assertion, caller, directory }: ExchangeRequest): void {
  const aud = assertion.aud;
  const audiences = typeof aud === 'string' ? [aud] : Array.isArray(aud) ? aud.filter((a): a is string => typeof a === 'string') : [];
  const expected = audienceOf(caller);
  if (audiences.length === 1 && audiences[0] !== expected && audienceOwner(directory, audiences[0]!)?.mayAct !== undefined) return;
  if (audiences.length !== 1 || audiences[0] !== expected) {
    const shown = audiences.length === 0 ? 'missing' : audiences.map((a) => truncate(a, 80)).join("', '");
    const named = expected === caller.clientId ? `'${caller.clientId}'` : `'${caller.clientId}' (audience '${truncate(expected, 120)}')`;
    throw errors.assertionInvalid(`The assertion's audience is '${shown}' but the caller is ${named}: a middle tier may only exchange tokens addressed to itself.`);
  }
}

/**
 * `assertion-lifetime`: core's one claims-set validation (`validateLifetime`: `exp` and `iat`
 * present and numeric, not expired, not before `nbf`, not issued in the future, with `skew`), its
 * refusals worded for the middle tier.
 */
function assertionWithinLifetime(assertion: Record<string, unknown>, now: number, skew: number): void {
  try {
    validateLifetime(assertion, { now, clockTolerance: skew, required: REQUIRE_IAT });
  } catch (error) {
    if (!(error instanceof JwtError)) throw error;
    switch (error.code) {
      case 'ERR_JWT_EXPIRED':
        throw errors.invalidGrant(
          `The assertion expired at ${isoTime(assertion.exp as number)}: the client must send a fresh access token (tokens are renewed shortly before they expire; never cache a user's token past exp).`,
          Entra.assertionExpired,
        );
      case 'ERR_JWT_NOT_YET_VALID':
        throw error.claim === 'nbf'
          ? errors.assertionInvalid(`The assertion is not valid before ${isoTime(assertion.nbf as number)} (nbf): check the clocks of the token service and the middle tier.`)
          : errors.assertionInvalid(`The assertion was issued in the future (iat ${isoTime(assertion.iat as number)}): check the clocks of the token service and the middle tier.`);
      default:
        throw errors.assertionInvalid(`The assertion has no numeric '${error.claim ?? 'exp'}' claim.`);
    }
  }
}
const REQUIRE_IAT: readonly string[] = ['iat'];

/** `assertion-delegated`: only a user's token is exchanged on behalf of that user; returns the user's `oid`. */
function assertionDelegated(assertion: Record<string, unknown>): string {
  const scp = assertion.scp;
  // Delegated = at least one scope in `scp` (space-separated, RFC 9068 / Entra).
  if (assertion.idtyp === 'app' || typeof scp !== 'string' || !/[^ ]/.test(scp)) {
    throw errors.invalidGrant(
      assertion.idtyp === 'app'
        ? "The assertion is an application token (idtyp 'app'): an application token cannot be exchanged on behalf of a user. A daemon calls the downstream API with its own client credentials token instead."
        : "The assertion carries no delegated scopes (scp): only a user's access token can be exchanged; an application token cannot be exchanged on behalf of a user.",
      Entra.appOnlyAssertion,
    );
  }
  const oid = assertion.oid;
  if (typeof oid !== 'string' || oid === '') throw errors.assertionInvalid('The assertion carries scp but no oid: it does not name the user it was issued for.');
  return oid;
}

/** `user-exists`: the user, now — not as the token remembers them. */
function userExists(directory: TenantDirectory, user: User | undefined, oid: string): User {
  if (user === undefined || user.oid !== oid || user.tenantId !== directory.tenant.id) {
    throw errors.invalidGrant(`The user the assertion was issued for no longer exists in tenant '${directory.tenant.id}'.`, Entra.userNotFound);
  }
  return user;
}

/** `user-enabled`. */
function userEnabled(directory: TenantDirectory, user: User): void {
  if (!user.enabled) {
    throw errors.invalidGrant(
      `The user's account in tenant '${directory.tenant.id}' is disabled: an administrator must enable it before any token is issued on the user's behalf.`,
      Entra.userDisabled,
    );
  }
}

/** `session-live`: the user's sessions not revoked since the sign-in; the session behind `sid` live. */
function sessionLive(user: User, subject: SubjectFacts, session: ExchangeSession | undefined, now: number): 'pass' | 'skip' {
  if (predatesRevocation(user, subject.iat) || predatesRevocation(user, subject.authTime)) {
    throw errors.sessionRevoked("The user's sign-in sessions were revoked after this token's sign-in: the user must sign in again.");
  }
  if (subject.sid !== undefined && session === undefined) throw errors.sessionRevoked('The sign-in session behind the assertion (sid) is unknown or has ended: the user must sign in again.');
  if (session !== undefined && !session.live) throw errors.sessionRevoked('The sign-in session behind the assertion was signed out or revoked: the user must sign in again.');
  if (session?.expiresAt !== undefined && session.expiresAt <= now) throw errors.sessionRevoked('The sign-in session behind the assertion has ended: the user must sign in again.');
  return session === undefined && user.revokedBefore === undefined ? 'skip' : 'pass';
}

/** `downstream-scopes`: one downstream API; resolved by the plan, refused here, after the user's rules. */
function downstreamScopes(target: Downstream): { resolved: ResolvedScopes; oidc: OidcScope[] } {
  if ('error' in target) throw target.error;
  return target;
}

/** The scope/audience/resource parameters resolved to one API, or the refusal `downstream-scopes` will give. */
function resolveDownstream(request: ExchangeRequest): Downstream {
  try {
    const { directory } = request;
    oneAudience(request);
    const target = resolveTarget(directory, { audience: request.audience, resource: request.resource });
    const items = parseScope(request.scope);
    const { oidc, resource } = splitScopes(items);
    const resolved = resolveResourceScopes(directory, resource, { target });
    if (resolved !== undefined) return { resolved, oidc };
    const example = "e.g. 'api://docs/Docs.Read' or 'api://docs/.default'";
    if (items.length === 0) {
      return {
        error: errors.invalidRequest(
          request.form === 'token_exchange'
            ? `Name the downstream API with 'audience', 'resource' or 'scope' (${example}).`
            : `The request must contain a 'scope' parameter naming scopes of one downstream API (${example}).`,
        ),
      };
    }
    return { error: errors.invalidScope(`The scope parameter names no downstream API, only OpenID Connect scopes: add scopes of the API the token is for (${example}).`) };
  } catch (error) {
    if (!(error instanceof OAuthError)) throw error;
    return { error };
  }
}

/**
 * One audience per token (RFC 8693 §2.2.2, judged under `downstream-scopes`): at most one
 * `audience` and one `resource` value; naming two APIs between them is refused by `resolveTarget`.
 * Over HTTP the form parser already refuses a repeated parameter (RFC 6749 §3.2); this holds for
 * every other caller of core.
 */
function oneAudience(request: ExchangeRequest): void {
  for (const [name, raw] of [['audience', request.audience], ['resource', request.resource]] as const) {
    if (typeof raw !== 'string' && raw !== undefined && raw.length > 1) {
      throw errors.invalidTarget(`The request names ${raw.length} '${name}' values: one audience per token (a token exchange issues a token for one API; exchange once per API).`);
    }
  }
}

/**
 * `consent`: the admin's for everyone, or this user's own. Scopes only narrow: never more than
 * consented. Returns the granted scope values, in the API's order.
 */
function consentCovers(request: ExchangeRequest, resolved: ResolvedScopes, user: User, userConsents: readonly ConsentGrant[]): string[] {
  const { directory, caller, options } = request;
  const api = resolved.api;
  const consented = consentedScopes(directory, caller.clientId, api.clientId, user.oid, userConsents);
  const requested = resolved.isDefault ? api.scopes.map((s) => s.value) : resolved.scopes;
  const granted = api.scopes.map((s) => s.value).filter((value) => requested.includes(value) && consented.has(value));
  const missing = resolved.isDefault ? (granted.length === 0 ? requested : []) : requested.filter((value) => !consented.has(value));
  if (missing.length > 0 || granted.length === 0) {
    const url = adminConsentUrl(options.baseUrl, directory.tenant.id, caller.clientId);
    const what = resolved.isDefault
      ? `holds no consent for any scope of API '${apiName(api)}'`
      : `has no consent for ${missing.map((v) => `'${qualifiedScope(api, v)}'`).join(', ')}`;
    throw errors.invalidGrant(
      `The application '${caller.clientId}' ${what} on behalf of this user. An administrator can grant consent for every user of the tenant at ${url}; otherwise the user must consent interactively (sign in to the client app with these scopes).`,
      Entra.consentRequired,
      { suberror: 'consent_required' },
    );
  }
  return granted;
}

/** `conditional-access` for the downstream API, judged on the original sign-in. */
function conditionalAccess(request: ExchangeRequest, api: Application, granted: string[], subject: SubjectFacts, session: ExchangeSession | undefined, now: number): PolicyResult {
  const { directory, caller } = request;
  return evaluatePolicies({
    policies: directory.policiesFor(api.clientId),
    resource: api.clientId,
    scopes: granted,
    clientId: caller.clientId,
    userOid: subject.oid,
    auth: { amr: subject.amr, acr: subject.acr, authTime: subject.authTime, ip: session?.ip },
    // Not the request's address: at an exchange that is the middle tier's, and an "office network
    // only" policy must not pass because the API runs in the office. Unknown sign-in IP = unmet.
    now,
  });
}

/**
 * `claims-challenge`: a claims challenge the middle tier passes on (the `claims` parameter) is
 * applied to the original sign-in as the conditional-access path applies a policy, not dropped:
 * MFA (`amr` `mfa`, `acr` of {@link ACR_MFA}) or an Entra authentication context (`acrs`, which a
 * multi-factor sign-in satisfies — what /authorize does for it) needs an MFA sign-in; an
 * `access_token.nbf` demand needs a sign-in at or after that instant. Other members (`xms_cc`
 * client capabilities, claims asked to be included) demand nothing. Unmet: the same
 * `interaction_required` refusal, carrying the challenge as the middle tier passed it, so its
 * client sends the user to /authorize with it. A malformed parameter is `invalid_request`.
 */
function claimsChallenge(request: ExchangeRequest, api: Application, subject: SubjectFacts): { error: OAuthError; challenge: NonNullable<ExchangeRefused['challenge']> } | undefined {
  const raw = request.claims;
  if (raw === undefined) return undefined;
  const demands = parseClaimsRequest(raw);
  const unmet = unmetDemands(demands, { amr: subject.amr, authTime: subject.authTime });
  const contexts = subject.amr.includes(AMR_MFA) ? [] : demands.authContexts;
  const mfa = unmet.mfa || contexts.length > 0;
  if (!mfa && !unmet.signIn) return undefined;
  const asked: string[] = [];
  if (mfa) asked.push(`multi-factor authentication${contexts.length > 0 ? ` (authentication context ${contexts.map((c) => `'${truncate(c, 40)}'`).join(', ')})` : ''}`);
  if (unmet.signIn) asked.push(`a sign-in at or after ${isoTime(demands.signInAfter as number)}`);
  const suberror = request.options.stepUpSuberror;
  const error = new OAuthError('interaction_required', {
    description: `The claims challenge passed on with this exchange (the claims parameter) asks for ${asked.join(' and ')} for API '${apiName(api)}', which the user's sign-in behind the token being exchanged does not give (rule claims-challenge). Return the claims challenge to the client (WWW-Authenticate: Bearer error="insufficient_claims", claims="<base64url of claims>") so the user signs in again and the client retries with the new token.`,
    entraCodes: [mfa ? Entra.mfaRequired : Entra.signInFrequency],
    ...(suberror === undefined ? {} : { suberror }),
    claims: raw,
  });
  return { error, challenge: mfa ? { claims: raw, acrValues: [ACR_MFA] } : { claims: raw } };
}

/**
 * `scope-narrowing`: scopes never widen along the chain. Across APIs the incoming token's `scp` is
 * in the middle tier's vocabulary (`Tasks.ReadWrite`), not the downstream API's, so there the
 * bound is the user's consent for that pair (`consent`) and this rule skips. An exchange to the
 * subject token's own audience (RFC 8693 down-scoping: the caller trades its token for one to
 * itself) is where "never more than the token being exchanged allowed" has a meaning: the new
 * scopes must be a subset of the token's `scp`; `.default` narrows to them. Returns the narrowed
 * scopes, `{}` when the consent alone bounds them, or the refusal.
 */
function scopesNarrow(request: ExchangeRequest, resolved: ResolvedScopes, consented: string[]): { granted?: string[]; error?: OAuthError } {
  const api = resolved.api;
  if (api.clientId !== request.caller.clientId) return {};
  const allowed = new Set(String(request.assertion.scp).split(' ').filter((v) => v !== ''));
  const granted = consented.filter((value) => allowed.has(value));
  const wider = resolved.isDefault ? (granted.length === 0 ? consented : []) : consented.filter((value) => !allowed.has(value));
  if (wider.length > 0) {
    return {
      error: errors.invalidScope(
      `Scopes never widen along the chain (rule scope-narrowing): the token being exchanged allows ${[...allowed].map((v) => `'${qualifiedScope(api, truncate(v, 80))}'`).join(', ')} at '${apiName(api)}', and a token for the same API may not ask for more (${wider.map((v) => `'${qualifiedScope(api, v)}'`).join(', ')}).`,
        Entra.scopeWidening,
      ),
    };
  }
  return { granted };
}

/**
 * `chain-loop`: no API appears twice in a chain — the presented token's `act` actors, its audience
 * when a middle tier other than it exchanges it (`may-act`), the caller, then the downstream API (A → B → A is refused). An exchange to the caller's own audience
 * (RFC 8693 down-scoping, judged by `scope-narrowing`) stays at the same hop, so consecutive
 * repeats count once.
 */
function chainWithoutLoop(caller: Application, api: Application, previous: ActorClaim | undefined, aud: unknown): void {
  const names = previous === undefined ? [] : actorNames(previous).reverse();
  // A token exchanged by a middle tier its API allows (may-act): that API was a hop too.
  if (typeof aud === 'string' && aud !== caller.clientId) names.push(truncate(aud, 80));
  names.push(caller.clientId, api.clientId);
  const hops = names.filter((name, i) => i === 0 || name !== names[i - 1]);
  const seen = new Set<string>();
  for (const name of hops) {
    if (seen.has(name)) {
      throw errors.invalidGrant(
        `This exchange would make the delegation chain ${hops.join(' → ')}, in which API '${name}' appears twice: loops are refused (rule chain-loop). An API may call another API on the user's behalf, but never back into the chain it is part of.`,
        Entra.chainLoop,
      );
    }
    seen.add(name);
  }
}

/**
 * `delegation-depth`: the caller (or the actor its `actor_token` names) joins `act`, newest first (RFC 8693 §4.1), and the chain stays
 * within the stricter of the tenant's limit and the downstream API's own (`delegation.maxDepth`).
 */
function chainWithinDepth(directory: TenantDirectory, current: ActorClaim, api: Application, previous: ActorClaim | undefined): ActorClaim {
  const act: ActorClaim = { ...current };
  if (previous !== undefined) act.act = previous;
  const chain = actorNames(act);
  const tenant = directory.tenant;
  const apiLimit = api.maxDelegationDepth;
  const byApi = apiLimit !== undefined && apiLimit < tenant.maxDelegationDepth;
  const maxDepth = byApi ? apiLimit : tenant.maxDelegationDepth;
  if (chain.length > maxDepth) {
    const whose = byApi ? `API '${apiName(api)}'` : `tenant '${tenant.id}'`;
    throw errors.invalidGrant(
      `This exchange would make a delegation chain of ${chain.length > MAX_ACT_NESTING ? `more than ${MAX_ACT_NESTING} APIs` : `${chain.length} APIs (${[...chain].reverse().join(' → ')})`}, more than ${whose} allows (delegation.maxDepth ${maxDepth}). Call the API from an earlier hop, or ask an administrator to raise the limit.`,
      Entra.chainTooDeep,
    );
  }
  return act;
}

// ——— what the plan reads, and what it knows ———

/**
 * The reads that can change the outcome: the user (always; an `oid` longer than any issued is
 * not looked up), the session only when the token names a `sid`, the user's own consents only when
 * admin consent does not already cover every scope asked for (for `.default`: every scope the API
 * defines), the user's app roles only when the API defines roles users can be assigned.
 */
function readsFor(request: ExchangeRequest, subject: SubjectFacts, resolved: ResolvedScopes | undefined): ExchangeReads {
  const sid = subject.sid;
  const api = resolved?.api;
  return {
    userOid: subject.oid.length <= 64 ? subject.oid : undefined,
    sid: sid !== undefined && sid !== '' && sid.length <= 256 ? sid : undefined,
    consentsOn: resolved !== undefined && !coveredByAdminConsent(request.directory, request.caller, resolved) ? api : undefined,
    roles: api !== undefined && api.appRoles.some((role) => role.allowedMemberTypes.includes('User')),
  };
}

/** Whether admin consent alone grants everything the request could get. */
function coveredByAdminConsent(directory: TenantDirectory, caller: Application, resolved: ResolvedScopes): boolean {
  const consented = directory.tenantConsent(caller.clientId, resolved.api.clientId);
  if (consented.length === 0) return false;
  const wanted = resolved.isDefault ? resolved.api.scopes.map((s) => s.value) : resolved.scopes;
  return wanted.every((value) => consented.includes(value));
}

/** The sign-in facts of a delegated assertion whose lifetime claims were validated. */
function subjectFacts(assertion: Record<string, unknown>, oid: string): SubjectFacts {
  const authTime = assertion.auth_time;
  return {
    oid,
    iat: assertion.iat as number,
    authTime: typeof authTime === 'number' && Number.isFinite(authTime) ? authTime : undefined,
    sid: typeof assertion.sid === 'string' ? assertion.sid : undefined,
    amr: Array.isArray(assertion.amr) ? assertion.amr.filter((v): v is string => typeof v === 'string') : [],
    acr: typeof assertion.acr === 'string' ? assertion.acr : undefined,
  };
}

/** The profile claims the assertion carries on to the new token. */
function profileOf(assertion: Record<string, unknown>): { preferred_username?: string; name?: string } {
  const profile: { preferred_username?: string; name?: string } = {};
  if (typeof assertion.preferred_username === 'string') profile.preferred_username = assertion.preferred_username;
  if (typeof assertion.name === 'string') profile.name = assertion.name;
  return profile;
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

/** The incoming `act` claim, checked for shape; `undefined` when absent. */
function readActorChain(value: unknown): ActorClaim | undefined {
  if (value === undefined) return undefined;
  let node: unknown = value;
  for (let depth = 0; node !== undefined; depth++) {
    if (depth >= MAX_ACT_NESTING) break;
    if (node === null || typeof node !== 'object' || Array.isArray(node) || typeof (node as { sub?: unknown }).sub !== 'string') {
      throw errors.assertionInvalid("The assertion's act claim is malformed: each actor must be an object with a string sub (RFC 8693 §4.1).");
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

function isoTime(epochSeconds: number): string {
  const date = new Date(epochSeconds * 1000);
  return Number.isNaN(date.getTime()) ? String(epochSeconds) : date.toISOString();
}

/** RFC 8693 §2.2.2: subject/actor-token refusals are `invalid_request` in the RFC 8693 form. */
function forForm(form: ExchangeDialect, rule: ExchangeRule, error: OAuthError): OAuthError {
  return SUBJECT_TOKEN_RULES.has(rule) ? errors.inExchangeDialect(form, error) : error;
}

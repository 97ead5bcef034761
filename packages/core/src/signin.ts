/**
 * The sign-in decision: given an authorization request and what the browser already proved (its
 * SSO session, or the steps done in this interaction), which step comes next — pick an account,
 * enter a password, enter a second factor, consent — or is the code ready?
 *
 * One pure function of (request, authentication, user, consent plan, policies, now), so every
 * branch is tested without a browser. `prompt=none` turns any step that needs the user into the
 * OIDC error the client expects (`login_required`, `interaction_required`, `consent_required`).
 */
import { OAuthError, Entra } from './errors.ts';
import type { AuthorizeRequest } from './authorize-request.ts';
import type { ConsentPlan } from './consent.ts';
import { ACR_MFA, AMR_MFA, evaluatePolicies, type ClaimsDemands } from './policy.ts';
import type { Policy, User } from './types.ts';
import { predatesRevocation } from './users.ts';

/** `acr` of a password-only sign-in (Entra's value for a normal sign-in). */
export const ACR_PASSWORD = '1';

/** `acr` for a sign-in with these `amr` values. */
export function acrFor(amr: readonly string[]): string {
  return amr.includes(AMR_MFA) ? ACR_MFA : ACR_PASSWORD;
}

/** What the browser has proved: an SSO session, or steps done in this interaction. */
export interface Authentication {
  oid: string;
  /** Epoch seconds of the password step. */
  authTime: number;
  amr: readonly string[];
  /** The client IP at sign-in. */
  ip?: string | undefined;
  /** True when the user entered the password during this interaction (prompt=login, max_age, … are satisfied). */
  fresh: boolean;
}

export interface SignInInput {
  request: AuthorizeRequest;
  demands?: ClaimsDemands | undefined;
  auth?: Authentication | undefined;
  /** The directory record of `auth.oid`, as it is now. */
  user?: User | undefined;
  /** The account picker was answered in this interaction. */
  accountSelected: boolean;
  /** The consent page was accepted in this interaction. */
  consentAccepted: boolean;
  /** For a request naming an API: its consent plan for this user (computed after the user is known). */
  consent?: ConsentPlan | undefined;
  /** Policies that may apply to the API (`directory.policiesFor(api)`). */
  policies: readonly Policy[];
  /** The current request's address. */
  ip?: string | undefined;
  now: number;
}

export type SignInStep =
  | { step: 'select_account' }
  | { step: 'login'; reason: LoginReason }
  | { step: 'mfa'; reason: MfaReason }
  /** The user may consent (`asAdmin`: the user is an administrator and the request needs admin-only scopes). */
  | { step: 'consent'; plan: ConsentPlan; asAdmin: boolean }
  /** Only an administrator can grant what the request needs. */
  | { step: 'admin_required'; plan: ConsentPlan }
  /** Everything is satisfied: issue the code for these scope values on the API. */
  | { step: 'done'; scopes: string[] }
  /** Refuse (send to the client). */
  | { step: 'error'; error: OAuthError };

export type LoginReason = 'no_session' | 'prompt' | 'max_age' | 'claims' | 'policy' | 'login_hint' | 'user';
export type MfaReason = 'claims' | 'acr_values' | 'policy';

/**
 * Decides the next step of a sign-in.
 *
 * @example
 * const next = decideSignIn({ request, demands, auth, user, accountSelected: false, consentAccepted: false,
 *   consent: plan, policies: directory.policiesFor(api), ip, now });
 * switch (next.step) { case 'login': … case 'done': issueCode(next.scopes) }
 */
export function decideSignIn(input: SignInInput): SignInStep {
  const step = decide(input);
  if (!input.request.prompt.includes('none')) return step;
  // prompt=none (OIDC Core §3.1.2.6): never show anything; tell the client what the user must do.
  switch (step.step) {
    case 'select_account':
    case 'login':
      return error('login_required', 'prompt=none was requested but no user is signed in here (or the session does not satisfy the request): sign the user in interactively.', Entra.signInRequired);
    case 'mfa':
      return error('interaction_required', 'prompt=none was requested but the request needs multi-factor authentication: sign the user in interactively.', Entra.mfaRequired);
    case 'consent':
      return error('consent_required', 'prompt=none was requested but the user has not consented to the requested permissions: ask interactively.', Entra.consentRequired);
    case 'admin_required':
      return error('consent_required', 'prompt=none was requested but the requested permissions need an administrator\'s consent.', Entra.adminConsentRequired);
    default:
      return step;
  }
}

function decide(input: SignInInput): SignInStep {
  const { request, demands, now } = input;
  const auth = usable(input.auth, input.user);
  const user = input.user;

  // 1. The account picker comes first: it decides whose session the rest judges.
  if (request.prompt.includes('select_account') && !input.accountSelected && auth !== undefined && !auth.fresh) return { step: 'select_account' };

  // 2. A password, when there is no usable sign-in or the request wants a newer one.
  if (auth === undefined || user === undefined) return { step: 'login', reason: input.auth === undefined ? 'no_session' : 'user' };
  if (!auth.fresh) {
    if (request.prompt.includes('login')) return { step: 'login', reason: 'prompt' };
    if (request.maxAge !== undefined && now - auth.authTime > request.maxAge) return { step: 'login', reason: 'max_age' };
    if (demands?.signInAfter !== undefined && auth.authTime < demands.signInAfter) return { step: 'login', reason: 'claims' };
    if (request.loginHint !== undefined && request.loginHint.toLowerCase() !== user.username) return { step: 'login', reason: 'login_hint' };
  }

  // 3. Conditional access for the API, judged on this sign-in.
  const resource = request.resource;
  let policyMfa = false;
  if (resource !== undefined) {
    const result = evaluatePolicies({
      policies: input.policies,
      resource: resource.api,
      scopes: input.consent?.requested ?? resource.scopes,
      clientId: request.clientId,
      userOid: user.oid,
      auth: { amr: auth.amr, acr: acrFor(auth.amr), authTime: auth.authTime, ip: auth.ip },
      ip: input.ip,
      now,
    });
    if (!result.ok) {
      if (result.kind === 'block' || result.kind === 'ip') {
        return error('access_denied', `Access is blocked by the conditional access policy '${result.policy}'. An administrator of the tenant can change the policy.`, Entra.blockedByPolicy);
      }
      if (result.maxAge !== undefined && !auth.fresh && (now - auth.authTime > result.maxAge)) return { step: 'login', reason: 'policy' };
      if (result.kind === 'mfa') policyMfa = true;
    }
  }

  // 4. A second factor, when the client, the claims challenge or a policy asks for one.
  if (!auth.amr.includes(AMR_MFA)) {
    const reason: MfaReason | undefined =
      demands !== undefined && (demands.mfa || demands.authContexts.length > 0) ? 'claims'
      : request.acrValues.length > 0 && request.acrValues.every((v) => v === ACR_MFA) ? 'acr_values'
      : policyMfa ? 'policy'
      : undefined;
    if (reason !== undefined) {
      if (user.totpSecret === undefined) {
        return error('access_denied', 'The sign-in needs multi-factor authentication, but the user has no second factor registered. An administrator must register one (totpSecret) for the user.', Entra.mfaEnrollmentRequired);
      }
      return { step: 'mfa', reason };
    }
  }

  // 5. Consent for the API's scopes.
  if (resource === undefined) return { step: 'done', scopes: [] };
  const plan = input.consent;
  if (plan === undefined) throw new TypeError('decideSignIn: a request naming an API needs its consent plan');
  const isAdmin = user.directoryRoles?.includes('admin') === true;
  if (plan.adminOnly.length > 0) return isAdmin ? { step: 'consent', plan, asAdmin: true } : { step: 'admin_required', plan };
  if (plan.userConsentable.length > 0 || (request.prompt.includes('consent') && !input.consentAccepted)) return { step: 'consent', plan, asAdmin: false };
  if (plan.granted.length === 0) {
    return error('invalid_scope', `The application '${request.clientId}' has no permissions configured or consented on the requested API: '.default' asks for the permissions in its requiredAccess, and it has none there.`, Entra.invalidScope);
  }
  return { step: 'done', scopes: plan.granted };
}

/** The authentication, if it still counts for this user: enabled, not revoked since. */
function usable(auth: Authentication | undefined, user: User | undefined): Authentication | undefined {
  if (auth === undefined || user === undefined || user.oid !== auth.oid || !user.enabled) return undefined;
  if (predatesRevocation(user, auth.authTime)) return undefined;
  return auth;
}

function error(code: 'login_required' | 'interaction_required' | 'consent_required' | 'access_denied' | 'invalid_scope', description: string, entra: number): SignInStep {
  return { step: 'error', error: new OAuthError(code, { description, entraCodes: [entra] }) };
}

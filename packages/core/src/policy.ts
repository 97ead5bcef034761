/**
 * Conditional access: the tenant's policies evaluated against the original sign-in (DESIGN rule 7)
 * and the `claims` request parameter that steps a sign-in up to what a policy demands.
 *
 * The round trip this file closes:
 * 1. A grant (OBO, refresh) meets a policy the sign-in does not satisfy; `evaluatePolicies` returns
 *    a claims challenge (OIDC Core §5.5 shape, Entra dialect) and RFC 9470 hints.
 * 2. The middle tier hands the challenge to its client in `WWW-Authenticate: Bearer
 *    error="insufficient_claims", claims="<base64url>"`; MSAL and friends pass it to /authorize.
 * 3. /authorize reads it with `parseClaimsRequest` and forces MFA or a fresh sign-in.
 */
import { BlockList, isIP } from 'node:net';
import { OAuthError, Entra, type SubError, errors } from './errors.ts';
import type { Policy } from './types.ts';

/**
 * The `acr` value Baton asks for when MFA is required (RFC 9470 `acr_values`): the OpenID PAPE
 * multi-factor policy URI, understood by generic OIDC clients. The server should issue it as
 * `acr` for sign-ins that included a second factor.
 */
export const ACR_MFA = 'http://schemas.openid.net/pape/policies/2007/06/multi-factor';

/** The `amr` value (RFC 8176 §2) a multi-factor sign-in carries. */
export const AMR_MFA = 'mfa';

/** The sign-in facts a policy judges (a `types.ts` `AuthenticationContext` fits). */
export interface PolicySignIn {
  amr: readonly string[];
  acr?: string | undefined;
  /** Epoch seconds of the sign-in; unknown counts as too old. */
  authTime?: number | undefined;
  /** The client IP at sign-in, when known. */
  ip?: string | undefined;
}

export interface PolicyInput {
  policies: readonly Policy[];
  /** The API's client id. */
  resource: string;
  /** Scope values requested on (or to be granted for) the API; `.default` already expanded. */
  scopes: readonly string[];
  /** The application asking (at an exchange: the middle tier). */
  clientId: string;
  userOid: string;
  auth: PolicySignIn;
  /**
   * The address of the current request. `ipRanges` judge the sign-in address (`auth.ip`) when it
   * is known — at an exchange the request comes from the middle tier, not the user — and this one
   * otherwise (at /authorize the sign-in is happening from it). Neither known: the policy is unmet.
   */
  ip?: string | undefined;
  now: number;
}

export type PolicyKind = 'block' | 'mfa' | 'freshness' | 'ip';

export type PolicyResult =
  | { ok: true }
  | {
      ok: false;
      /** What is unmet. `mfa` when both MFA and a fresh sign-in are needed (one challenge asks for both). */
      kind: PolicyKind;
      /** The name of the (first) policy that decided. */
      policy: string;
      /** For `mfa`/`freshness`: the claims challenge, a JSON string. */
      claims?: string;
      /** For `mfa`: RFC 9470 `acr_values` the step-up must reach. */
      acrValues?: string[];
      /** For `freshness`: RFC 9470 `max_age`, the strictest maximum authentication age in seconds. */
      maxAge?: number;
    };

/**
 * Evaluates conditional access for one request. Selectors (`resources`, `scopes`, `clients`,
 * `users`) that are absent or empty match everything; `scopes` matches when any requested scope is
 * listed. Unmet requirements are reported in order of what a user could do about them:
 * `block` and `ip` (nothing: refuse) before `mfa` and `freshness` (step up: a claims challenge).
 *
 * Claims challenges (Entra's dialect, so MSAL passes them through unchanged):
 * - MFA: `{"access_token":{"amr":{"essential":true,"values":["mfa"]}}}`
 * - fresh sign-in: `{"access_token":{"nbf":{"essential":true,"value":"<now>"}},"id_token":{"auth_time":{"essential":true}}}`
 *   — Entra's continuous-access-evaluation shape: "a token issued after <now>", which only a new
 *   sign-in can give; `auth_time` asks for the instant in the ID token.
 * Both needed: the two merged into one challenge.
 *
 * @example
 * const result = evaluatePolicies({ policies: directory.policiesFor('docs-api'), resource: 'docs-api',
 *   scopes: ['Docs.Write'], clientId: 'tasks-api', userOid, auth: { amr: ['pwd'] }, now });
 * // { ok: false, kind: 'mfa', policy: 'MFA to change documents', claims: '{"access_token":…}', acrValues: [ACR_MFA] }
 */
export function evaluatePolicies(input: PolicyInput): PolicyResult {
  const matching = input.policies.filter((policy) => applies(policy, input));

  const blocked = matching.find((p) => p.require.block === true);
  if (blocked !== undefined) return { ok: false, kind: 'block', policy: blocked.name };

  const address = input.auth.ip ?? input.ip;
  const outside = matching.find((p) => p.require.ipRanges !== undefined && (address === undefined || !ipInRanges(address, p.require.ipRanges)));
  if (outside !== undefined) return { ok: false, kind: 'ip', policy: outside.name };

  const needMfa = input.auth.amr.includes(AMR_MFA) ? [] : matching.filter((p) => p.require.mfa === true);
  const authTime = input.auth.authTime;
  const stale = matching.filter((p) => {
    const maxAge = p.require.maxAuthAgeSeconds;
    return maxAge !== undefined && (authTime === undefined || input.now - authTime > maxAge);
  });
  const first = needMfa[0] ?? stale[0];
  if (first === undefined) return { ok: true };

  const accessToken: Record<string, unknown> = {};
  const challenge: Record<string, unknown> = { access_token: accessToken };
  if (needMfa.length > 0) accessToken.amr = { essential: true, values: [AMR_MFA] };
  if (stale.length > 0) {
    accessToken.nbf = { essential: true, value: String(input.now) };
    challenge.id_token = { auth_time: { essential: true } };
  }
  const result: PolicyResult = { ok: false, kind: needMfa.length > 0 ? 'mfa' : 'freshness', policy: first.name, claims: JSON.stringify(challenge) };
  if (needMfa.length > 0) result.acrValues = [ACR_MFA];
  if (stale.length > 0) result.maxAge = Math.min(...stale.map((p) => p.require.maxAuthAgeSeconds as number));
  return result;
}

function applies(policy: Policy, input: PolicyInput): boolean {
  if (policy.resources.length > 0 && !policy.resources.includes(input.resource)) return false;
  if (policy.clients !== undefined && policy.clients.length > 0 && !policy.clients.includes(input.clientId)) return false;
  if (policy.users !== undefined && policy.users.length > 0 && !policy.users.includes(input.userOid)) return false;
  if (policy.scopes !== undefined && policy.scopes.length > 0 && !input.scopes.some((s) => policy.scopes?.includes(s))) return false;
  return true;
}

/**
 * Whether `ip` (IPv4 or IPv6, an IPv6 zone ignored) lies in one of `ranges` (CIDR or bare
 * addresses). IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`) match IPv4 ranges and the reverse,
 * so a dual-stack socket's view of an IPv4 client is judged as that client. A malformed address
 * matches nothing; malformed ranges are skipped (`buildDirectory` refuses them up front).
 *
 * @example
 * ipInRanges('::ffff:10.1.2.3', ['10.0.0.0/8']); // true
 */
export function ipInRanges(ip: string, ranges: readonly string[]): boolean {
  const zone = ip.indexOf('%');
  const address = zone < 0 ? ip : ip.slice(0, zone);
  const family = isIP(address);
  if (family === 0) return false;
  const list = new BlockList();
  for (const range of ranges) {
    const cidr = parseCidr(range);
    if (cidr !== undefined) list.addSubnet(cidr.address, cidr.prefix, cidr.family);
  }
  return list.check(address, family === 4 ? 'ipv4' : 'ipv6');
}

/** `address/prefix` (or a bare address: a /32 or /128) parsed; `undefined` when malformed. */
export function parseCidr(range: string): { address: string; prefix: number; family: 'ipv4' | 'ipv6' } | undefined {
  const slash = range.indexOf('/');
  const address = slash < 0 ? range : range.slice(0, slash);
  const version = isIP(address);
  if (version === 0) return undefined;
  const max = version === 4 ? 32 : 128;
  let prefix = max;
  if (slash >= 0) {
    const digits = range.slice(slash + 1);
    if (!/^\d{1,3}$/.test(digits)) return undefined;
    prefix = Number(digits);
    if (prefix > max) return undefined;
  }
  return { address, prefix, family: version === 4 ? 'ipv4' : 'ipv6' };
}

/**
 * The OAuth error for an unmet policy at the token endpoint:
 * - `block`, `ip`: `invalid_grant` (AADSTS53003) — nothing the user can do in this request;
 * - `mfa`: `interaction_required` (AADSTS50076) with the claims challenge;
 * - `freshness`: `interaction_required` (AADSTS70044, Entra's sign-in frequency) with the challenge.
 * `apiLabel` names the API in the description (its identifier URI).
 *
 * `stepUpSuberror` is Entra's `suberror` beside an `interaction_required` (the exchange grants pass
 * `basic_action`, which MSAL surfaces as `InteractionRequiredAuthError.subError`).
 */
export function policyError(result: Exclude<PolicyResult, { ok: true }>, apiLabel: string, stepUpSuberror?: SubError): OAuthError {
  const policy = `the conditional access policy '${result.policy}'`;
  switch (result.kind) {
    case 'block':
      return errors.invalidGrant(`Access to API '${apiLabel}' is blocked by ${policy}. An administrator of the tenant can change the policy; retrying will not help.`, Entra.blockedByPolicy);
    case 'ip':
      return errors.invalidGrant(`Access to API '${apiLabel}' is blocked by ${policy}: it allows sign-ins only from the network ranges it names, and this sign-in came from outside them (or from an address the token service does not know).`, Entra.blockedByPolicy);
    case 'mfa':
      return new OAuthError('interaction_required', {
        description: `${capitalise(policy)} requires multi-factor authentication for API '${apiLabel}'${result.maxAge === undefined ? '' : ' and a recent sign-in'}. Return the claims challenge to the client (WWW-Authenticate: Bearer error="insufficient_claims", claims="<base64url of claims>") so the user signs in again and the client retries with the new token.`,
        entraCodes: [Entra.mfaRequired],
        ...(stepUpSuberror === undefined ? {} : { suberror: stepUpSuberror }),
        ...(result.claims === undefined ? {} : { claims: result.claims }),
      });
    case 'freshness':
      return new OAuthError('interaction_required', {
        description: `${capitalise(policy)} requires a sign-in within the last ${result.maxAge ?? 0} seconds for API '${apiLabel}'. Return the claims challenge to the client (WWW-Authenticate: Bearer error="insufficient_claims", claims="<base64url of claims>") so the user signs in again and the client retries with the new token.`,
        entraCodes: [Entra.signInFrequency],
        ...(stepUpSuberror === undefined ? {} : { suberror: stepUpSuberror }),
        ...(result.claims === undefined ? {} : { claims: result.claims }),
      });
  }
}

function capitalise(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

/** Limit on the `claims` request parameter, in UTF-8 bytes. */
export const MAX_CLAIMS_BYTES = 4096;

const CLAIMS_MEMBERS = ['access_token', 'id_token', 'userinfo'] as const;
export type ClaimsTarget = (typeof CLAIMS_MEMBERS)[number];

/** One requested claim (OIDC Core §5.5.1): `null` = "please include", or an object. */
export interface ClaimRequest {
  essential?: boolean;
  value?: unknown;
  values?: unknown[];
  [member: string]: unknown;
}

/** What a `claims` parameter demands of the sign-in. */
export interface ClaimsDemands {
  /** Multi-factor authentication (`amr` containing `mfa`, or `acr` of {@link ACR_MFA}). */
  mfa: boolean;
  /** A sign-in newer than `signInAfter` (Entra's `access_token.nbf` demand). */
  freshSignIn: boolean;
  /** Epoch seconds: the sign-in must have happened at or after this instant. */
  signInAfter?: number;
  /** `acr` values the client asked for (any of them satisfies it). */
  acrValues: string[];
  /** Entra authentication context ids asked for (`acrs`: `c1`…`c99`); Baton defines none yet. */
  authContexts: string[];
  /** The parsed request, members as given. */
  request: Partial<Record<ClaimsTarget, Record<string, ClaimRequest | null>>>;
}

/**
 * Validates a `claims` request parameter (OIDC Core §5.5) and tells which steps it demands.
 * Throws `invalid_request` (AADSTS900144) when it is larger than 4 KB, not a JSON object, has a
 * member other than `access_token`, `id_token`, `userinfo`, or a claim entry of the wrong shape.
 *
 * @example
 * parseClaimsRequest('{"access_token":{"amr":{"essential":true,"values":["mfa"]}}}').mfa; // true
 */
export function parseClaimsRequest(claims: string): ClaimsDemands {
  if (Buffer.byteLength(claims, 'utf8') > MAX_CLAIMS_BYTES) throw claimsError(`is larger than ${MAX_CLAIMS_BYTES} bytes`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(claims);
  } catch {
    throw claimsError('is not valid JSON');
  }
  if (!isObject(parsed)) throw claimsError('must be a JSON object');

  const request: ClaimsDemands['request'] = {};
  for (const [member, entries] of Object.entries(parsed)) {
    if (!(CLAIMS_MEMBERS as readonly string[]).includes(member)) {
      throw claimsError(`has the member '${member.slice(0, 40)}'; only ${CLAIMS_MEMBERS.join(', ')} are allowed`);
    }
    if (!isObject(entries)) throw claimsError(`member '${member}' must be an object of claim names`);
    const checked: Record<string, ClaimRequest | null> = {};
    for (const [name, entry] of Object.entries(entries)) {
      if (entry === null) {
        checked[name] = null;
        continue;
      }
      if (!isObject(entry)) throw claimsError(`entry '${member}.${name.slice(0, 40)}' must be null or an object`);
      if (entry.essential !== undefined && typeof entry.essential !== 'boolean') throw claimsError(`'${member}.${name.slice(0, 40)}.essential' must be a boolean`);
      if (entry.values !== undefined && !Array.isArray(entry.values)) throw claimsError(`'${member}.${name.slice(0, 40)}.values' must be an array`);
      checked[name] = entry as ClaimRequest;
    }
    request[member as ClaimsTarget] = checked;
  }

  const demands: ClaimsDemands = { mfa: false, freshSignIn: false, acrValues: [], authContexts: [], request };
  for (const entries of Object.values(request)) {
    const amr = entries.amr;
    if (amr && requested(amr).includes(AMR_MFA)) demands.mfa = true;
    const acr = entries.acr;
    if (acr) {
      const values = requested(acr).filter((v): v is string => typeof v === 'string');
      for (const v of values) if (!demands.acrValues.includes(v)) demands.acrValues.push(v);
      // Any listed value satisfies an `acr` request: MFA is demanded only when every one means MFA.
      if (values.length > 0 && values.every((v) => v === ACR_MFA)) demands.mfa = true;
    }
    const acrs = entries.acrs;
    if (acrs) for (const v of requested(acrs)) if (typeof v === 'string' && !demands.authContexts.includes(v)) demands.authContexts.push(v);
  }
  const nbf = request.access_token?.nbf;
  if (nbf) {
    const raw = nbf.value;
    const at = typeof raw === 'number' ? raw : typeof raw === 'string' && /^\d{1,12}$/.test(raw) ? Number(raw) : Number.NaN;
    if (!Number.isSafeInteger(at) || at < 0) throw claimsError("'access_token.nbf.value' must be epoch seconds");
    demands.freshSignIn = true;
    demands.signInAfter = at;
  }
  return demands;
}

/**
 * Which demands of a `claims` parameter the current sign-in does not meet, so /authorize knows
 * whether to ask for a second factor, a new sign-in, or nothing.
 *
 * @example
 * const unmet = unmetDemands(parseClaimsRequest(claims), { amr: session.amr, authTime: session.authTime });
 * if (unmet.signIn) … if (unmet.mfa) …
 */
export function unmetDemands(demands: ClaimsDemands, auth: PolicySignIn): { mfa: boolean; signIn: boolean } {
  return {
    mfa: demands.mfa && !auth.amr.includes(AMR_MFA),
    signIn: demands.signInAfter !== undefined && (auth.authTime === undefined || auth.authTime < demands.signInAfter),
  };
}

function requested(entry: ClaimRequest): unknown[] {
  const out: unknown[] = [];
  if (entry.value !== undefined) out.push(entry.value);
  if (Array.isArray(entry.values)) out.push(...entry.values);
  return out;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function claimsError(problem: string): OAuthError {
  return errors.invalidRequest(`The claims parameter ${problem} (OpenID Connect Core §5.5).`);
}

/**
 * The client capabilities a `claims` request declares: `access_token.xms_cc.values` (MSAL's
 * `clientCapabilities`, e.g. `{"access_token":{"xms_cc":{"values":["cp1"]}}}`), the string values
 * only, at most 16.
 *
 * @example
 * clientCapabilitiesOf(parseClaimsRequest('{"access_token":{"xms_cc":{"values":["cp1"]}}}')); // ['cp1']
 */
export function clientCapabilitiesOf(demands: ClaimsDemands | undefined): string[] {
  const entry = demands?.request.access_token?.xms_cc;
  if (entry === undefined || entry === null || !Array.isArray(entry.values)) return [];
  return [...new Set(entry.values.filter((v): v is string => typeof v === 'string' && v.length <= 64))].slice(0, 16);
}

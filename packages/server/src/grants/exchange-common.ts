/**
 * What the two exchange grants share (Microsoft's On-Behalf-Of and RFC 8693 token exchange): the
 * engine around core's pure `decideExchange`.
 *
 *   callerConfidential → parse → verifyTenantToken (assertion, actor token) → gatherInputs
 *   → decideExchange → sign → audit
 *
 * The cost of an allowed exchange (DESIGN principle 4): one signature verification (two with an
 * RFC 8693 actor token), one signature, the user read, and — only when they can change the
 * outcome — the session read (the token names a `sid`), the user's own consents (admin consent
 * does not already cover the request) and the user's app roles (the API defines roles users can
 * hold). The directory and the public keys come from in-memory caches; the reads run in parallel.
 */
import { performance } from 'node:perf_hooks';
import {
  OAuthError,
  Entra,
  decideExchange,
  decodeJws,
  isAccessTokenTyp,
  parseScope,
  resolveResourceScopes,
  resolveTarget,
  splitScopes,
  truncate,
  verifyJwsSignatureAsync,
  type Application,
  type AppRoleAssignment,
  type ConsentGrant,
  type ExchangeAllowed,
  type ExchangeForm,
  type ExchangeSession,
  type ResolvedScopes,
  type TenantDirectory,
  type User,
} from '@baton/core';
import { issuerOf, type ServerContext } from '../context.ts';
import { auditLogOf, validTraceparent, type AuditEventInput } from '../audit.ts';
import { signAccessToken } from '../tokens/issue.ts';
import { sessionBySid } from '../session.ts';
import type { TokenRequest } from './registry.ts';

/**
 * The largest assertion accepted, in characters (= bytes: a compact JWS is ASCII). Baton's own
 * access tokens are well under 2 KiB even with a deep `act` chain; the bound keeps JSON parsing
 * and hashing of attacker-supplied input small.
 */
export const MAX_ASSERTION_CHARS = 16 * 1024;

/** The parameter a token arrived in, for error messages. */
export type TokenParameter = 'assertion' | 'subject_token' | 'actor_token';

export interface VerifiedToken {
  payload: Record<string, unknown>;
  /** `jti` (or `uti`) of the token, for the audit log. */
  id: string | undefined;
}

/**
 * A refusal of a token the request carried. RFC 8693 §2.2.2: in the token-exchange form an invalid
 * subject or actor token is `invalid_request`; Microsoft's form says `invalid_grant`. The Entra
 * code (AADSTS50013, "assertion invalid") is the same in both.
 */
function tokenInvalid(form: ExchangeForm, description: string, detail?: string): OAuthError {
  return new OAuthError(form === 'token_exchange' ? 'invalid_request' : 'invalid_grant', {
    description,
    entraCodes: [Entra.assertionInvalid],
    ...(detail === undefined ? {} : { detail }),
  });
}

/**
 * Verifies that `token` is an access token signed by one of this tenant's published keys (current,
 * next, or retired within its grace period). The algorithm comes from OUR key record, never from
 * the token: `alg: none`, HMAC keyed with a public key and every other algorithm-confusion trick
 * fail the comparison with the header. The claims are NOT judged here: that is `decideExchange`.
 *
 * Refuses (AADSTS50013): larger than {@link MAX_ASSERTION_CHARS}, not a compact JWS, `typ` other
 * than `at+jwt` (an ID token or a client assertion is not a token to exchange), a `crit` header,
 * no `kid`, a `kid` this tenant does not publish (another tenant's key, a key retired past its
 * grace), a signature that does not verify.
 */
export async function verifyTenantToken(ctx: ServerContext, tenantId: string, token: string, parameter: TokenParameter, form: ExchangeForm): Promise<VerifiedToken> {
  if (token.length > MAX_ASSERTION_CHARS) {
    throw tokenInvalid(form, `The ${parameter} is ${token.length} characters long; tokens this service issues are far smaller, and at most ${MAX_ASSERTION_CHARS} characters are accepted. Send the access token the client presented, unchanged.`);
  }
  let decoded;
  try {
    decoded = decodeJws(token, MAX_ASSERTION_CHARS);
  } catch (error) {
    throw tokenInvalid(form, `The ${parameter} is not a signed JWT (${(error as Error).message}): send the access token the client presented, unchanged.`);
  }
  const { header, payload } = decoded;
  if (!isAccessTokenTyp(header.typ)) {
    throw tokenInvalid(
      form,
      `The ${parameter} is not an access token (its JWT header says typ '${truncate(String(header.typ ?? 'none'), 40)}', not 'at+jwt'): an ID token or any other JWT cannot be exchanged. Send the access token the client presented to your API.`,
    );
  }
  // RFC 7515 §4.1.11: a critical extension we do not understand makes the token invalid; ours carry none.
  if (header.crit !== undefined) throw tokenInvalid(form, `The ${parameter} has a 'crit' header: this service issues no such tokens.`);
  const kid = header.kid;
  if (typeof kid !== 'string' || kid === '') throw tokenInvalid(form, `The ${parameter} has no 'kid' header: it was not issued by this service.`);
  const key = await ctx.keyring.publicKey(tenantId, kid);
  if (key === undefined) {
    throw tokenInvalid(
      form,
      `The ${parameter} is signed with a key tenant '${tenantId}' does not publish (kid '${truncate(kid, 64)}'): it was issued by another tenant or service, or with a key retired past its grace period. Only tokens this tenant issued can be exchanged; the client must get a fresh token.`,
    );
  }
  if (!(await verifyJwsSignatureAsync(decoded, key.key, key.alg))) {
    throw tokenInvalid(form, `The ${parameter}'s signature is invalid (expected ${key.alg} with key '${truncate(kid, 64)}'): the token was altered or forged.`, `kid=${truncate(kid, 64)} alg=${truncate(String(header.alg), 16)}`);
  }
  return { payload, id: tokenId(payload) };
}

function tokenId(payload: Record<string, unknown>): string | undefined {
  const id = typeof payload.jti === 'string' ? payload.jti : typeof payload.uti === 'string' ? payload.uti : undefined;
  return id === undefined ? undefined : truncate(id, 64);
}

/** What the grant read from its parameters, before anything is verified. */
export interface ExchangeParameters {
  /** The raw assertion / `subject_token`. */
  assertion: string;
  /** The raw RFC 8693 `actor_token`. */
  actorToken?: string | undefined;
  scope?: string | undefined;
  audience?: string | undefined;
  resource?: string | undefined;
}

/** An allowed exchange, signed. */
export interface ExchangeOutcome {
  decision: ExchangeAllowed;
  accessToken: string;
  user: User;
  /** The items of the `scope` parameter, deduplicated, as given. */
  scopeItems: string[];
  /** The resource scopes as resolved before the decision (for the response's `scope`). */
  resolved: ResolvedScopes;
}

/**
 * Runs one exchange end to end and records its audit event, allowed or refused. Returns the signed
 * token; throws the `OAuthError` to answer otherwise (the shell renders it).
 *
 * `parse` reads and checks the grant's own parameters; it runs inside the audited section, so a
 * malformed request is audited too (rule `request`).
 */
export async function runExchange(request: TokenRequest, form: ExchangeForm, parse: () => ExchangeParameters): Promise<ExchangeOutcome> {
  const { ctx, directory, client } = request;
  const started = performance.now();
  const caller = client.app;
  const tenant = directory.tenant;
  const event: AuditEventInput = {
    form,
    tenant: tenant.id,
    tid: tenant.tid,
    caller: caller.clientId,
    scopesRequested: [],
    scopesGranted: [],
    chain: [caller.clientId],
    decision: 'refuse',
    rule: 'caller-confidential',
    correlationId: request.correlationId,
    traceparent: validTraceparent(request.traceparent),
    ip: request.ip,
  };
  const audit = auditLogOf(ctx);
  const finish = () => {
    event.durationMs = Math.round((performance.now() - started) * 1000) / 1000;
    audit.record(event);
  };

  try {
    // 1. A public client could be anyone holding the user's token: refused before any work is done for it.
    if (client.method === 'none' || caller.public) {
      throw new OAuthError('unauthorized_client', {
        description: `The client '${caller.clientId}' is a public client: only a confidential client (an API authenticating with a secret or a private_key_jwt assertion) may exchange a token on behalf of a user.`,
        entraCodes: [Entra.publicClientNotAllowed],
      });
    }

    event.rule = 'request';
    const params = parse();
    const scopeItems = params.scope === undefined ? [] : safeScopeItems(params.scope);
    event.scopesRequested = scopeItems;

    // 2. Our signature on the assertion (and on the actor token), with this tenant's keys.
    event.rule = 'assertion-signature';
    const subject = await verifyTenantToken(ctx, tenant.id, params.assertion, form === 'token_exchange' ? 'subject_token' : 'assertion', form);
    event.subjectTokenId = subject.id;
    const payload = subject.payload;
    // An app-only token's `oid` is a service principal, not a user.
    if (typeof payload.oid === 'string' && typeof payload.scp === 'string' && payload.idtyp !== 'app') event.user = truncate(payload.oid, 64);
    event.chain = [caller.clientId, ...actorChain(payload.act)];
    const actor = params.actorToken === undefined ? undefined : (await verifyTenantToken(ctx, tenant.id, params.actorToken, 'actor_token', form)).payload;

    // 3. The records the decision needs, read only when they can change it.
    const now = ctx.now();
    const issuer = issuerOf(ctx, tenant.id);
    const pre = preResolve(directory, params);
    if (pre !== undefined) event.api = pre.api.clientId;
    const inputs = await gatherInputs(ctx, directory, caller, payload, issuer, pre);

    // 4. The decision (core, pure).
    const decision = decideExchange(
      {
        form,
        directory,
        caller,
        assertion: payload,
        user: inputs.user,
        session: inputs.session,
        userConsents: inputs.userConsents,
        userRoles: inputs.userRoles,
        scope: params.scope,
        audience: params.audience,
        resource: params.resource,
        actor,
        ip: request.ip,
        options: { issuer, baseUrl: ctx.baseUrl, pairwiseSecret: ctx.pairwiseKey },
      },
      now,
    );
    event.rule = decision.rule;
    if (!decision.ok) throw withSuberror(decision.error);

    // 5. Sign. `decision.api` is the API `pre` resolved (the same parameters, the same directory).
    const accessToken = await signAccessToken(ctx, tenant.id, decision.api, decision.claims);
    event.decision = 'allow';
    event.api = decision.api.clientId;
    event.scopesGranted = decision.scopes;
    event.chain = actorChain(decision.claims.act);
    event.issuedTokenId = decision.claims.jti;
    finish();
    // `user` is defined: the decision passed user-exists. `pre` resolved the same parameters against
    // the same directory, so it is defined too; the fallback only keeps the types honest.
    const resolved = pre ?? { api: decision.api, scopes: decision.scopes, isDefault: false };
    return { decision, accessToken, user: inputs.user as User, scopeItems, resolved };
  } catch (error) {
    if (error instanceof OAuthError) {
      event.decision = 'refuse';
      event.error = error.error;
      event.entraCode = error.entraCodes[0];
      event.suberror = error.suberror;
      event.description = error.description;
    } else {
      event.decision = 'error';
      event.rule = 'server';
    }
    finish();
    throw error;
  }
}

/**
 * A step-up (`interaction_required`) carries Entra's `suberror: basic_action` — "the user can
 * resolve this by signing in interactively" — beside the claims challenge, as MSAL's
 * `InteractionRequiredAuthError.subError` documents it. (Candidate for core's `policyError`, so
 * the refresh grant answers the same.)
 */
function withSuberror(error: OAuthError): OAuthError {
  if (error.error !== 'interaction_required' || error.suberror !== undefined) return error;
  return new OAuthError('interaction_required', {
    description: error.description,
    entraCodes: error.entraCodes,
    suberror: 'basic_action',
    ...(error.claims === undefined ? {} : { claims: error.claims }),
    ...(error.detail === undefined ? {} : { detail: error.detail }),
    status: error.status,
    headers: error.headers,
    cause: error.cause,
  });
}

/** The `scope` items for the audit event; a malformed parameter is refused later by the rules. */
function safeScopeItems(scope: string): string[] {
  try {
    return parseScope(scope);
  } catch {
    return [truncate(scope, 200)];
  }
}

/**
 * The downstream API and scopes the request names, resolved ahead of the decision so the server
 * knows which user-consent rows and role assignments could matter. `undefined` when the request is
 * malformed: the decision then refuses it with the precise error, and nothing is read for it.
 */
function preResolve(directory: TenantDirectory, params: ExchangeParameters): ResolvedScopes | undefined {
  try {
    const target = resolveTarget(directory, { audience: params.audience, resource: params.resource });
    const { resource } = splitScopes(parseScope(params.scope));
    return resolveResourceScopes(directory, resource, { target });
  } catch {
    return undefined;
  }
}

interface GatheredInputs {
  user: User | undefined;
  session: ExchangeSession | undefined;
  userConsents: ConsentGrant[];
  userRoles: AppRoleAssignment[];
}

const NOTHING: GatheredInputs = { user: undefined, session: undefined, userConsents: [], userRoles: [] };

/**
 * Reads what the decision needs from the store, in parallel, skipping every read whose result
 * cannot change the outcome:
 * - nothing at all when the token is not one this caller could exchange (another issuer or
 *   audience, app-only): the decision refuses it before it looks at the user;
 * - the session only when the token names a `sid`;
 * - the user's own consents only when the tenant-wide (admin) consent does not already cover
 *   every scope asked for (for `.default`: every scope the API defines);
 * - the user's app roles only when the API defines roles users can be assigned.
 */
async function gatherInputs(
  ctx: ServerContext,
  directory: TenantDirectory,
  caller: Application,
  payload: Record<string, unknown>,
  issuer: string,
  pre: ResolvedScopes | undefined,
): Promise<GatheredInputs> {
  const oid = payload.oid;
  const aud = payload.aud;
  const delegated = typeof payload.scp === 'string' && payload.scp.trim() !== '' && payload.idtyp !== 'app';
  const addressed = aud === caller.clientId || (Array.isArray(aud) && aud.length === 1 && aud[0] === caller.clientId);
  if (typeof oid !== 'string' || oid === '' || oid.length > 64 || payload.iss !== issuer || !addressed || !delegated) return NOTHING;

  const tenantId = directory.tenant.id;
  const sid = typeof payload.sid === 'string' && payload.sid !== '' && payload.sid.length <= 256 ? payload.sid : undefined;
  const api = pre?.api;
  const consentNeeded = api !== undefined && !coveredByAdminConsent(directory, caller, pre as ResolvedScopes);
  const rolesNeeded = api !== undefined && api.appRoles.some((role) => role.allowedMemberTypes.includes('User'));

  const [user, session, userConsents, userRoles] = await Promise.all([
    ctx.store.getUserById(tenantId, oid),
    sid === undefined ? undefined : readSession(ctx, tenantId, sid, oid),
    consentNeeded ? ctx.store.listConsents({ tenantId, clientId: caller.clientId, resource: api.clientId, principal: oid }) : [],
    rolesNeeded ? ctx.store.listRoleAssignments(tenantId, 'user', oid) : [],
  ]);
  return { user, session, userConsents, userRoles };
}

/** Whether admin consent alone grants everything the request could get. */
function coveredByAdminConsent(directory: TenantDirectory, caller: Application, resolved: ResolvedScopes): boolean {
  const consented = directory.tenantConsent(caller.clientId, resolved.api.clientId);
  if (consented.length === 0) return false;
  const wanted = resolved.isDefault ? resolved.api.scopes.map((s) => s.value) : resolved.scopes;
  return wanted.every((value) => consented.includes(value));
}

/**
 * The sign-in session the token's `sid` names (session.ts). Only live sessions are found (unexpired,
 * not signed out or revoked), so one that is not found has ended: the decision refuses (fail
 * closed). A session of another user is treated as not found: a `sid` is not a secret.
 */
async function readSession(ctx: ServerContext, tenantId: string, sid: string, oid: string): Promise<ExchangeSession | undefined> {
  const session = await sessionBySid(ctx, tenantId, sid);
  if (session === undefined || session.oid !== oid) return undefined;
  return { live: true, expiresAt: session.expiresAt, ip: session.ip };
}

/** Client ids of an `act` chain, newest first; bounded, tolerant of a malformed claim (audit only). */
export function actorChain(act: unknown): string[] {
  const names: string[] = [];
  let node = act;
  while (node !== null && typeof node === 'object' && names.length < 16) {
    const { sub, client_id: clientId, act: next } = node as { sub?: unknown; client_id?: unknown; act?: unknown };
    const name = typeof clientId === 'string' ? clientId : typeof sub === 'string' ? sub : undefined;
    if (name === undefined) break;
    names.push(truncate(name, 80));
    node = next;
  }
  return names;
}

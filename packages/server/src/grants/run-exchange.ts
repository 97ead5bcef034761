/**
 * What the two exchange grants share (Microsoft's On-Behalf-Of and RFC 8693 token exchange): one
 * exchange run end to end around core's pure two-phase decision, as a straight line —
 *
 *   requireConfidentialCaller → dialect.readParameters → verify (readPresentedToken + checkOwnSignature:
 *   assertion, actor token)
 *   → planExchange → readRecords (what the plan asks for) → decideExchange → sign → audit
 *
 * The grant files (on-behalf-of.ts, token-exchange.ts) are the two dialects: which parameters they
 * read and how they write the response. No rule lives here: core decides, this file does the I/O.
 *
 * The cost of an allowed exchange (DESIGN principle 4): one signature verification (two with an
 * RFC 8693 actor token), one signature, the user read, and — only when the plan says they can
 * change the outcome — the session read (the token names a `sid`), the user's own consents (admin
 * consent does not already cover the request) and the user's app roles (the API defines roles
 * users can hold). The directory and the public keys come from in-memory caches; the reads run in
 * parallel.
 */
import { performance } from 'node:perf_hooks';
import {
  OAuthError,
  decideExchange,
  errors,
  parseClaimsRequest,
  parseScope,
  planExchange,
  requireConfidentialCaller,
  truncate,
  type Application,
  type ExchangeAllowed,
  type ExchangeDialect,
  type ExchangeReads,
  type DecodedJws,
  type ExchangeRecords,
  type User,
} from '@baton/core';
import { issuerOf, type ServerContext } from '../context.ts';
import { auditLogOf, traceIdsOf, validTraceparent, type AuditEventInput } from '../audit.ts';
import { SpanKind, SpanStatusCode, inSpan, type Span } from '../observe/tracing.ts';
import { signAccessToken } from '../tokens/issue.ts';
import { exchangeSession } from '../session.ts';
import { checkOwnSignature, isOwnTokenFailure, readOwnToken, type OwnTokenFailure } from '../tokens/verify.ts';
import type { FormParams } from '../http/form.ts';
import type { TokenRequest } from './registry.ts';

/**
 * The largest assertion accepted, in characters (= bytes: a compact JWS is ASCII). Baton's own
 * access tokens are well under 2 KiB even with a deep `act` chain; the bound keeps JSON parsing
 * and hashing of attacker-supplied input small.
 */
export const MAX_ASSERTION_CHARS = 16 * 1024;

/** The parameter a token arrived in, for error messages. */
export type TokenParameter = 'assertion' | 'subject_token' | 'actor_token';

/**
 * The first step of verifying a token the request presented (tokens/verify.ts, the server's one
 * own-token verifier): bounded size, compact JWS, `typ: at+jwt`, no `crit`. The caller then checks
 * the signature with this tenant's keys (`checkOwnSignature`) — awaited once per token, directly
 * in `runExchange`. The claims are NOT judged here: that is core's exchange rules.
 *
 * Refuses (AADSTS50013; `invalid_request` in the RFC 8693 form, §2.2.2): larger than
 * {@link MAX_ASSERTION_CHARS}, not a compact JWS, `typ` other than `at+jwt` (an ID token or a client
 * assertion is not a token to exchange), a `crit` header; and, at the signature step, no `kid`, a
 * `kid` this tenant does not publish (another tenant's key, a key retired past its grace), a
 * signature that does not verify.
 */
function readPresentedToken(form: ExchangeDialect, parameter: TokenParameter, tenantId: string, token: string): DecodedJws {
  const decoded = readOwnToken(token, 'at+jwt', MAX_ASSERTION_CHARS);
  if (isOwnTokenFailure(decoded)) throw refusedToken(form, parameter, tenantId, decoded);
  return decoded;
}

/** The refusal of a presented token, worded for the middle tier's developer, in the request's dialect. */
function refusedToken(form: ExchangeDialect, parameter: TokenParameter, tenantId: string, failure: OwnTokenFailure): OAuthError {
  let description: string;
  let detail: string | undefined;
  switch (failure.failure) {
    case 'too-long':
      description = `The ${parameter} is ${failure.length} characters long; tokens this service issues are far smaller, and at most ${MAX_ASSERTION_CHARS} characters are accepted. Send the access token the client presented, unchanged.`;
      break;
    case 'malformed':
      description = `The ${parameter} is not a signed JWT (${failure.message}): send the access token the client presented, unchanged.`;
      break;
    case 'typ':
      description = `The ${parameter} is not an access token (its JWT header says typ '${truncate(String(failure.typ ?? 'none'), 40)}', not 'at+jwt'): an ID token or any other JWT cannot be exchanged. Send the access token the client presented to your API.`;
      break;
    case 'crit':
      description = `The ${parameter} has a 'crit' header: this service issues no such tokens.`;
      break;
    case 'header':
      description = `The ${parameter}'s header is refused (${failure.message}): it was not issued by this service.`;
      break;
    case 'no-kid':
      description = `The ${parameter} has no 'kid' header: it was not issued by this service.`;
      break;
    case 'unknown-key':
      description = `The ${parameter} is signed with a key tenant '${tenantId}' does not publish (kid '${truncate(failure.kid, 64)}'): it was issued by another tenant or service, or with a key retired past its grace period. Only tokens this tenant issued can be exchanged; the client must get a fresh token.`;
      break;
    case 'signature':
      description = `The ${parameter}'s signature is invalid (expected ${failure.alg} with key '${truncate(failure.kid, 64)}'): the token was altered or forged.`;
      detail = `kid=${truncate(failure.kid, 64)} alg=${truncate(String(failure.headerAlg), 16)}`;
      break;
  }
  return errors.inExchangeDialect(form, errors.assertionInvalid(description, detail));
}

function tokenId(payload: Record<string, unknown>): string | undefined {
  const id = typeof payload.jti === 'string' ? payload.jti : typeof payload.uti === 'string' ? payload.uti : undefined;
  return id === undefined ? undefined : truncate(id, 64);
}

/** What a dialect read from its parameters, before anything is verified. */
export interface ExchangeParameters {
  /** The raw assertion / `subject_token`. */
  assertion: string;
  /** The raw RFC 8693 `actor_token`. */
  actorToken?: string | undefined;
  scope?: string | undefined;
  audience?: string | undefined;
  resource?: string | undefined;
  /** The `claims` parameter, its shape checked ({@link readClaimsParameter}). */
  claims?: string | undefined;
}

/**
 * The `claims` parameter of an exchange (OpenID Connect Core §5.5: a claims challenge the middle
 * tier passes on), checked for shape so a malformed one is the `request` rule's `invalid_request`
 * (AADSTS900144, the description naming what is wrong), never a 500; undefined when absent or empty.
 */
export function readClaimsParameter(params: FormParams): string | undefined {
  const claims = params.claims;
  if (claims === undefined || claims === '') return undefined;
  parseClaimsRequest(claims);
  return claims;
}

/**
 * One spelling of the exchange: Microsoft's On-Behalf-Of or RFC 8693. `readParameters` checks the
 * dialect's own parameters and throws the `OAuthError` for a malformed request; it runs as the
 * engine's `request` step, so a malformed request is audited like every other refusal.
 */
export interface ExchangeGrantDialect<P extends ExchangeParameters = ExchangeParameters> {
  form: ExchangeDialect;
  readParameters(params: FormParams): P;
}

/** An allowed exchange, signed. */
export interface ExchangeOutcome<P extends ExchangeParameters = ExchangeParameters> {
  decision: ExchangeAllowed;
  accessToken: string;
  user: User;
  /** What the dialect read from the request. */
  params: P;
  /** The items of the `scope` parameter, deduplicated, as given. */
  scopeItems: string[];
}

/**
 * Runs one exchange end to end and records its audit event, allowed or refused. Returns the signed
 * token; throws the `OAuthError` to answer otherwise (the shell renders it).
 */
export function runExchange<P extends ExchangeParameters>(request: TokenRequest, dialect: ExchangeGrantDialect<P>): Promise<ExchangeOutcome<P>> {
  // The decision's span: its rule, decision and API as attributes; a refusal is an ERROR naming the rule.
  // A refusal's status is set by recordDecision (the rule), not by the thrown error.
  return inSpan('baton.exchange', { 'baton.exchange.form': dialect.form }, (span) => exchange(request, dialect, span), SpanKind.INTERNAL, () => {});
}

async function exchange<P extends ExchangeParameters>(request: TokenRequest, dialect: ExchangeGrantDialect<P>, span: Span): Promise<ExchangeOutcome<P>> {
  const { ctx, directory, client } = request;
  const started = performance.now();
  const caller = client.app;
  const tenant = directory.tenant;
  const form = dialect.form;
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
    ...traceIdsOf(span, request.traceparent),
    ip: request.ip,
  };
  const audit = auditLogOf(ctx);
  const finish = () => {
    event.durationMs = Math.round((performance.now() - started) * 1000) / 1000;
    recordDecision(span, event);
    audit.record(event);
  };

  try {
    // 1. A public client could be anyone holding the user's token: refused before any work is done for it.
    requireConfidentialCaller(caller);

    event.rule = 'request';
    const params = dialect.readParameters(request.params);
    const scopeItems = params.scope === undefined ? [] : safeScopeItems(params.scope);
    event.scopesRequested = scopeItems;

    // 2. Verify: our signature on the assertion (and on the actor token), with this tenant's keys.
    event.rule = 'assertion-signature';
    const parameter = form === 'token_exchange' ? 'subject_token' : 'assertion';
    const subject = readPresentedToken(form, parameter, tenant.id, params.assertion);
    const subjectFailure = await checkOwnSignature(ctx, tenant.id, subject);
    if (subjectFailure !== undefined) throw refusedToken(form, parameter, tenant.id, subjectFailure);
    const payload = subject.payload;
    event.subjectTokenId = tokenId(payload);
    // An app-only token's `oid` is a service principal, not a user.
    if (typeof payload.oid === 'string' && typeof payload.scp === 'string' && payload.idtyp !== 'app') event.user = truncate(payload.oid, 64);
    event.chain = [caller.clientId, ...actorChain(payload.act)];
    let actor: Record<string, unknown> | undefined;
    if (params.actorToken !== undefined) {
      const actorToken = readPresentedToken(form, 'actor_token', tenant.id, params.actorToken);
      const actorFailure = await checkOwnSignature(ctx, tenant.id, actorToken);
      if (actorFailure !== undefined) throw refusedToken(form, 'actor_token', tenant.id, actorFailure);
      actor = actorToken.payload;
    }

    // 3. Plan (core, pure): the rules that need no record, and which records can change the outcome.
    const plan = planExchange(
      {
        form,
        directory,
        caller,
        assertion: payload,
        scope: params.scope,
        audience: params.audience,
        resource: params.resource,
        actor,
        claims: params.claims,
        ip: request.ip,
        dpop: request.dpop,
        options: { issuer: issuerOf(ctx, tenant.id), baseUrl: ctx.baseUrl, pairwiseSecret: ctx.pairwiseKey, stepUpSuberror: 'basic_action' },
      },
      ctx.now(),
    );
    if (plan.api !== undefined) event.api = plan.api.clientId;
    if (!plan.ok) {
      event.rule = plan.rule;
      throw plan.error;
    }

    // 4. Read exactly those records; 5. decide (core, pure).
    const records = await readRecords(ctx, tenant.id, caller, plan.reads);
    const decision = decideExchange(plan, records);
    event.rule = decision.rule;
    if (!decision.ok) throw decision.error;

    // 6. Sign, 7. audit.
    const accessToken = await signAccessToken(ctx, tenant.id, decision.api, decision.claims);
    event.decision = 'allow';
    event.api = decision.api.clientId;
    event.scopesGranted = decision.scopes;
    event.chain = actorChain(decision.claims.act);
    event.issuedTokenId = decision.claims.jti;
    finish();
    // `user` is defined: the decision passed user-exists.
    return { decision, accessToken, user: records.user as User, params, scopeItems };
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

/** The decision on the exchange's span: attributes from the audit event (no token, only ids and names). */
function recordDecision(span: Span, event: AuditEventInput): void {
  if (!span.isRecording()) return;
  span.setAttributes({
    'baton.tenant': event.tenant,
    'baton.client_id': event.caller,
    'baton.exchange.decision': event.decision,
    'baton.exchange.rule': event.rule,
    'baton.exchange.scopes_granted': event.scopesGranted,
    'baton.exchange.chain': event.chain,
  });
  if (event.api !== undefined) span.setAttribute('baton.exchange.api', event.api);
  if (event.decision === 'allow') return;
  const code = event.error ?? 'server_error';
  span.setAttribute('error.type', code);
  if (event.suberror !== undefined) span.setAttribute('baton.oauth.suberror', event.suberror);
  span.setStatus({ code: SpanStatusCode.ERROR, message: `${code}: ${event.decision === 'error' ? 'failed' : 'refused'} by rule ${event.rule}` });
}

/** The `scope` items for the audit event; a malformed parameter is refused later by the rules. */
function safeScopeItems(scope: string): string[] {
  try {
    return parseScope(scope);
  } catch {
    return [truncate(scope, 200)];
  }
}

/** No user to look up (the `oid` is longer than any this service issues): nothing else matters either. */
const NO_RECORDS: ExchangeRecords = { user: undefined, session: undefined, userConsents: [], userRoles: [] };

/** The records the plan asked for, read in parallel; a read the plan skipped is an empty answer. */
async function readRecords(ctx: ServerContext, tenantId: string, caller: Application, reads: ExchangeReads): Promise<ExchangeRecords> {
  const oid = reads.userOid;
  if (oid === undefined) return NO_RECORDS;
  const api = reads.consentsOn;
  const [user, session, userConsents, userRoles] = await Promise.all([
    ctx.store.getUserById(tenantId, oid),
    reads.sid === undefined ? undefined : exchangeSession(ctx, tenantId, reads.sid, oid),
    api === undefined ? [] : ctx.store.listConsents({ tenantId, clientId: caller.clientId, resource: api.clientId, principal: oid }),
    reads.roles ? ctx.store.listRoleAssignments(tenantId, 'user', oid) : [],
  ]);
  return { user, session, userConsents, userRoles };
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

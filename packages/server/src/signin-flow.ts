/**
 * The sign-in flow behind `/authorize` and its interaction pages: what the browser already proved
 * (SSO session, steps done in this interaction) and what the request needs (prompt, max_age,
 * claims, acr_values, conditional access, consent) go to core's `decideSignIn`; its answer is a
 * page (in an interaction bound to this browser), an error for the client, or the authorization
 * code. Shared by endpoints/authorize.ts (the first step) and endpoints/interaction.ts (the
 * following ones), so neither endpoint imports the other.
 */
import {
  adminConsentUrl,
  clientInfo,
  parseClaimsRequest,
  planConsent,
  qualifiedScope,
  apiName,
  decideSignIn,
  OAuthError,
  Entra,
  type Application,
  type AuthorizeRequest,
  type Authentication,
  type ClaimsDemands,
  type ConsentGrant,
  type ConsentPlan,
  type SignInStep,
  type TenantDirectory,
  type User,
} from '@baton/core';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { issuerOf, type ServerContext } from './context.ts';
import { sessionFromCookie, type Session } from './session.ts';
import { finishInteraction, interactionPath, startInteraction, type Interaction } from './interaction-records.ts';
import { issueCode } from './tokens/code.ts';
import { formTargets, sendErrorToClient, sendToClient } from './http/browser.ts';
import { sendPage, type Page } from './pages/layout.ts';
import { selectAccountPage, signInPage, type PageError } from './pages/signin.ts';
import { mfaPage } from './pages/mfa.ts';
import { adminRequiredPage, consentPage, type PermissionView } from './pages/consent.ts';

/** Everything a step of the flow needs. */
export interface Flow {
  ctx: ServerContext;
  request: FastifyRequest;
  reply: FastifyReply;
  directory: TenantDirectory;
  client: Application;
  authorize: AuthorizeRequest;
  demands: ClaimsDemands | undefined;
  interaction?: Interaction | undefined;
}

/** What the browser has, and what comes next. */
export interface Evaluation {
  step: SignInStep;
  session: Session | undefined;
  user: User | undefined;
  api: Application | undefined;
  plan: ConsentPlan | undefined;
  userConsents: ConsentGrant[];
}

/** The claims demands of a stored request (validated when the request arrived). */
export function demandsOf(authorize: AuthorizeRequest): ClaimsDemands | undefined {
  return authorize.claims === undefined ? undefined : parseClaimsRequest(authorize.claims);
}

/** Computes the next step for the browser of `flow`. */
export async function evaluate(flow: Flow): Promise<Evaluation> {
  const { ctx, request, directory, client, authorize } = flow;
  const tenantId = directory.tenant.id;
  const session = await sessionFromCookie(ctx, request, tenantId);
  const state = flow.interaction?.payload;
  let auth: Authentication | undefined;
  let user: User | undefined;
  if (session !== undefined) {
    const fresh = state?.sid === session.sid;
    if (!(state?.forceLogin === true && !fresh)) {
      auth = { oid: session.oid, authTime: session.authTime, amr: session.amr, ip: session.ip, fresh };
      user = await ctx.store.getUserById(tenantId, session.oid);
    }
  }
  let api: Application | undefined;
  let plan: ConsentPlan | undefined;
  let userConsents: ConsentGrant[] = [];
  if (authorize.resource !== undefined) {
    api = directory.application(authorize.resource.api);
    if (api === undefined) throw new OAuthError('invalid_request', { description: 'The API of this request no longer exists. Start the sign-in again.', entraCodes: [Entra.flowExpired] });
    if (user !== undefined) {
      userConsents = await ctx.store.listConsents({ tenantId, principal: user.oid });
      plan = planConsent({ directory, client, api, scopes: authorize.resource.scopes, isDefault: authorize.resource.isDefault, userOid: user.oid, userConsents });
    }
  }
  const step = decideSignIn({
    request: authorize,
    demands: flow.demands,
    auth,
    user,
    accountSelected: state?.accountSelected ?? false,
    consentAccepted: state?.consentAccepted ?? false,
    consent: plan,
    policies: api === undefined ? [] : directory.policiesFor(api.clientId),
    ip: request.ip,
    now: ctx.now(),
  });
  return { step, session, user, api, plan, userConsents };
}

/** Runs the flow one step: a page, an error for the client, or the code. */
export async function advance(flow: Flow): Promise<FastifyReply> {
  const { ctx, reply, directory, authorize } = flow;
  const evaluation = await evaluate(flow);
  const { step } = evaluation;
  const brand = directory.tenant.name;
  if (step.step === 'error') {
    if (flow.interaction !== undefined) await finishInteraction(ctx, reply, flow.interaction);
    ctx.log.info({ client_id: authorize.clientId, error: step.error.error, entra: step.error.entraCodes[0] }, 'sign-in refused');
    return sendErrorToClient(reply, authorize, step.error, issuerOf(ctx, directory.tenant.id), brand);
  }
  if (step.step === 'done') return complete(flow, evaluation.session as Session, step.scopes);
  if (flow.interaction === undefined) {
    const interaction = await startInteraction(ctx, reply, directory.tenant.id, { kind: 'authorize', request: authorize });
    return reply.code(302).header('cache-control', 'no-store').header('location', interactionPath(directory.tenant.id, interaction.id)).send();
  }
  return sendPage(reply, renderStep(flow, evaluation));
}

/** Issues the code and sends it to the client. */
async function complete(flow: Flow, session: Session, scopes: string[]): Promise<FastifyReply> {
  const { ctx, reply, directory, authorize } = flow;
  const tenantId = directory.tenant.id;
  const code = await issueCode(ctx, tenantId, {
    clientId: authorize.clientId,
    redirectUri: authorize.redirectUri,
    codeChallenge: authorize.codeChallenge,
    ...(authorize.dpopJkt !== undefined ? { dpopJkt: authorize.dpopJkt } : {}),
    oid: session.oid,
    resource: authorize.resource === undefined ? undefined : { api: authorize.resource.api, scopes },
    oidcScopes: authorize.oidcScopes,
    nonce: authorize.nonce,
    auth: { amr: session.amr, acr: session.acr, authTime: session.authTime, sid: session.sid },
  });
  if (flow.interaction !== undefined) await finishInteraction(ctx, reply, flow.interaction);
  ctx.log.info({ client_id: authorize.clientId, sid: session.sid, amr: session.amr }, 'authorization code issued');
  const params: Record<string, string> = { code, iss: issuerOf(ctx, tenantId) };
  if (authorize.clientInfo) params.client_info = clientInfo(session.oid, directory.tenant.tid);
  return sendToClient(reply, authorize, params, directory.tenant.name, flow.request.method === 'POST' ? 303 : 302);
}

/** Renders the page of a step that needs the user, with an optional form error. */
export function renderStep(flow: Flow, evaluation: Evaluation, error?: PageError, status?: number): Page {
  const { directory, client, authorize } = flow;
  const interaction = flow.interaction as Interaction;
  const path = interactionPath(directory.tenant.id, interaction.id);
  const csrf = interaction.payload.csrf;
  const brand = directory.tenant.name;
  const targets = formTargets(authorize.redirectUri);
  const { step, user } = evaluation;
  switch (step.step) {
    case 'select_account':
      return selectAccountPage({ brand, appName: client.name, action: `${path}/select`, csrf, account: { displayName: user?.displayName ?? '', username: user?.username ?? '' }, formTargets: targets });
    case 'mfa':
      return mfaPage({
        brand,
        appName: client.name,
        username: user?.username ?? '',
        why: mfaWhy(directory, client.name, evaluation.api, step.reason, user),
        action: `${path}/mfa`,
        csrf,
        error,
        formTargets: targets,
        ...(status ? { status } : {}),
      });
    case 'consent':
      return consentPage({
        brand,
        app: {
          name: client.name,
          clientId: client.clientId,
          unverified: client.registration === undefined ? undefined : { source: client.clientId, dynamic: client.registration.kind === 'dynamic', logoUri: client.registration.logoUri, clientUri: client.registration.clientUri },
        },
        api: evaluation.api === undefined ? undefined : { name: evaluation.api.name, identifier: apiName(evaluation.api) },
        permissions: permissionViews(flow, evaluation, step.asAdmin),
        combined: combinedViews(directory, step.plan, step.asAdmin),
        username: user?.username ?? '',
        action: `${path}/consent`,
        csrf,
        asAdmin: step.asAdmin,
        adminRequired: step.asAdmin && step.plan.adminOnly.length > 0,
        formTargets: targets,
      });
    case 'admin_required':
      return adminRequiredPage({
        brand,
        appName: client.name,
        permissions: permissionViews(flow, evaluation, true).filter((p) => p.adminOnly),
        adminConsentUrl: adminConsentUrl(flow.ctx.baseUrl, directory.tenant.id, client.clientId),
        action: `${path}/consent`,
        csrf,
        formTargets: targets,
      });
    case 'login':
    default:
      return signInPage({
        brand,
        appName: client.name,
        action: `${path}/login`,
        csrf,
        username: interaction.payload.username ?? authorize.loginHint,
        error,
        formTargets: targets,
        ...(status ? { status } : {}),
      });
  }
}

/**
 * Why the second factor is asked for, in the user's words: the tenant's policy and the API it
 * protects. A claims challenge (step-up) names no policy, so the APIs the requested one calls on
 * the user's behalf (its `requiredAccess`, followed down the chain) are searched for a policy that
 * requires MFA; when none is found the sentence stays general. Names only what the tenant's
 * administrator configured (policy and application names), never a claim or a token.
 */
export function mfaWhy(directory: TenantDirectory, appName: string, api: Application | undefined, reason: 'claims' | 'acr_values' | 'policy', user: User | undefined): string {
  const brand = directory.tenant.name;
  if (reason === 'acr_values') return `${appName} asks for a sign-in with a second factor.`;
  const requiresMfa = (candidate: Application) =>
    directory.policiesFor(candidate.clientId).filter((p) => p.require.mfa === true && (p.users === undefined || p.users.length === 0 || (user !== undefined && p.users.includes(user.oid))));
  if (api !== undefined && reason === 'policy') {
    const policy = requiresMfa(api)[0];
    if (policy !== undefined) return `${brand}'s policy “${policy.name}” requires a second factor to use ${api.name}.`;
  }
  if (api !== undefined && reason === 'claims') {
    // Breadth-first down the chain of APIs `api` calls on the user's behalf.
    const seen = new Set<string>([api.clientId]);
    let level: Application[] = [api];
    for (let depth = 0; depth < 8 && level.length > 0; depth++) {
      const next: Application[] = [];
      for (const caller of level) {
        for (const access of caller.requiredAccess) {
          const downstream = directory.api(access.resource);
          if (downstream === undefined || seen.has(downstream.clientId)) continue;
          seen.add(downstream.clientId);
          const policy = requiresMfa(downstream)[0];
          if (policy !== undefined) return `${api.name} is asking ${downstream.name} for you, and ${brand}'s policy “${policy.name}” requires a second factor there.`;
          next.push(downstream);
        }
      }
      level = next;
    }
    return `${appName} needs a stronger sign-in: a service it uses for you requires a second factor.`;
  }
  return `${brand} requires a second factor to continue to ${appName}.`;
}

const OIDC_DESCRIPTIONS: Record<string, string> = {
  openid: 'Sign you in',
  profile: 'View your basic profile (name and username)',
  email: 'View your email address',
  offline_access: 'Maintain access to data you have given it access to',
};

function permissionViews(flow: Flow, evaluation: Evaluation, markAdmin: boolean): PermissionView[] {
  const views: PermissionView[] = [];
  const api = evaluation.api;
  const plan = evaluation.plan;
  if (api !== undefined && plan !== undefined) {
    for (const value of plan.requested) {
      const definition = flow.directory.scope(api.clientId, value);
      views.push({ description: definition?.description ?? value, scope: qualifiedScope(api, value), adminOnly: markAdmin && definition?.adminConsentRequired === true });
    }
  }
  for (const scope of flow.authorize.oidcScopes) views.push({ description: OIDC_DESCRIPTIONS[scope] ?? scope, scope });
  return views;
}

function combinedViews(directory: TenantDirectory, plan: ConsentPlan, asAdmin: boolean): Array<{ apiName: string; permissions: PermissionView[] }> {
  return plan.combined
    .map((combined) => {
      const api = directory.application(combined.clientId);
      const downstream = directory.application(combined.resource);
      const values = asAdmin ? [...combined.scopes, ...combined.adminOnly] : combined.scopes;
      return {
        apiName: api?.name ?? combined.clientId,
        permissions: values.map((value) => {
          const definition = directory.scope(combined.resource, value);
          return {
            description: `${definition?.description ?? value}${downstream === undefined ? '' : ` (${downstream.name})`}`,
            scope: downstream === undefined ? value : qualifiedScope(downstream, value),
            adminOnly: definition?.adminConsentRequired === true,
          };
        }),
      };
    })
    .filter((view) => view.permissions.length > 0);
}

/**
 * The sign-in pages of one interaction (`/{tenant}/oauth2/v2.0/interaction/{id}`): GET renders
 * the current step; each form POSTs to its own path, is checked (browser binding, CSRF), does one
 * thing, and answers 303 to the GET (post/redirect/get), which shows the next step or ends the
 * flow at the client.
 *
 * Password guessing: every failure counts against the account and the client IP
 * (throttle.ts), unknown usernames cost the same scrypt work as known ones, and the answer is the
 * same (AADSTS50126) until the limit, then AADSTS50053 — for real and made-up accounts alike.
 */
import { OAuthError, Entra, consentRecords, type TenantDirectory, errors } from '@baton/core';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { issuerOf, type ServerContext } from '../context.ts';
import { formBody, type FormParams } from '../http/form.ts';
import { resolveTenant } from '../tenants.ts';
import { checkCsrf, finishInteraction, interactionPath, loadInteraction, saveInteraction, type Interaction } from '../interaction-records.ts';
import { createSession, elevateSession, sessionFromCookie } from '../session.ts';
import { isLocked, recordFailure } from '../throttle.ts';
import { verifyAgainstDummy, verifyPassword } from '../crypto/passwords.ts';
import { verifyTotp } from '../crypto/totp.ts';
import { advance, demandsOf, evaluate, renderStep, type Flow } from '../signin-flow.ts';
import { advanceAdminConsent, answerAdminConsent } from '../admin-consent-flow.ts';
import { formTargets, htmlRoute, sendErrorToClient, setBrand } from '../http/browser.ts';
import { sendPage } from '../pages/layout.ts';
import { signInPage, type PageError } from '../pages/signin.ts';

type InteractionRequest = FastifyRequest<{ Params: { tenant: string; id: string } }>;

export const MESSAGES = {
  wrongCredentials: "Your account or password is incorrect. If you don't remember your password, ask your administrator to reset it.",
  locked: 'Your account is temporarily locked to prevent unauthorized use. Try again later.',
  disabled: 'Your account has been disabled. Contact your administrator.',
  missing: 'Enter your username and password.',
  wrongCode: 'That code is not valid, or it was already used. Wait for the next code and try again.',
} as const;

interface Loaded {
  directory: TenantDirectory;
  interaction: Interaction;
  /** For `authorize` interactions. */
  flow?: Flow;
}

async function load(ctx: ServerContext, request: InteractionRequest, reply: FastifyReply): Promise<Loaded> {
  const directory = await resolveTenant(ctx, request.params.tenant);
  setBrand(request, directory.tenant.name);
  const interaction = await loadInteraction(ctx, request, directory.tenant.id, request.params.id);
  const { payload } = interaction;
  if (payload.kind !== 'authorize') return { directory, interaction };
  const authorize = payload.request;
  const client = authorize === undefined ? undefined : directory.application(authorize.clientId);
  if (authorize === undefined || client === undefined) {
    throw new OAuthError('invalid_request', { description: 'The application of this sign-in no longer exists. Start the sign-in again.', entraCodes: [Entra.flowExpired] });
  }
  return { directory, interaction, flow: { ctx, request, reply, directory, client, authorize, demands: demandsOf(authorize), interaction } };
}

/** A form POST of the interaction: the interaction loaded, its non-empty form read, its CSRF token checked. */
async function loadForm(ctx: ServerContext, request: InteractionRequest, reply: FastifyReply): Promise<Loaded & { params: FormParams }> {
  const loaded = await load(ctx, request, reply);
  const params = formBody(request);
  if (Object.keys(params).length === 0) throw errors.invalidRequest('The form was empty.');
  checkCsrf(loaded.interaction, params);
  return { ...loaded, params };
}

function backToPage(reply: FastifyReply, interaction: Interaction): FastifyReply {
  return reply.code(303).header('cache-control', 'no-store').header('location', interactionPath(interaction.tenantId, interaction.id)).send();
}

/** GET: the current step. */
function showStep(ctx: ServerContext) {
  return htmlRoute(ctx, async (request: InteractionRequest, reply) => {
    const loaded = await load(ctx, request, reply);
    if (loaded.flow === undefined) return advanceAdminConsent(ctx, request, reply, loaded.directory, loaded.interaction);
    return advance(loaded.flow);
  });
}

/** The login page again, with an error (the interaction is unchanged). */
function loginError(loaded: Loaded, reply: FastifyReply, username: string, error: PageError, status: number): FastifyReply {
  const { directory, interaction } = loaded;
  const client = loaded.flow?.client ?? directory.application(interaction.payload.adminConsent?.clientId ?? '');
  const redirect = loaded.flow?.authorize.redirectUri ?? interaction.payload.adminConsent?.redirectUri;
  return sendPage(
    reply,
    signInPage({
      brand: directory.tenant.name,
      appName: client?.name ?? directory.tenant.name,
      action: `${interactionPath(directory.tenant.id, interaction.id)}/login`,
      csrf: interaction.payload.csrf,
      username,
      error,
      status,
      formTargets: formTargets(redirect),
    }),
  );
}

/** POST login: username + password. */
function login(ctx: ServerContext) {
  return htmlRoute(ctx, async (request: InteractionRequest, reply) => {
    const loaded = await loadForm(ctx, request, reply);
    const { directory, interaction, params } = loaded;
    const typed = (params.username ?? '').trim();
    const username = typed.toLowerCase();
    const password = params.password ?? '';
    if (username === '' || password === '' || username.length > 256 || password.length > 1024) {
      return loginError(loaded, reply, typed.slice(0, 256), { message: MESSAGES.missing }, 400);
    }
    const tenantId = directory.tenant.id;
    const keys = { tenantId, account: username, ip: request.ip };
    if (await isLocked(ctx, 'password', keys)) {
      // Same work as a real check: the lockout answer must not be faster than a wrong password.
      await verifyAgainstDummy(password);
      ctx.log.warn({ tenant: tenantId }, 'sign-in refused: too many attempts');
      ctx.metrics?.signIn(tenantId, 'password', 'throttled');
      return loginError(loaded, reply, typed, { message: MESSAGES.locked, code: Entra.tooManyAttempts }, 429);
    }
    const user = await ctx.store.getUserByName(tenantId, username);
    const ok = user === undefined ? await verifyAgainstDummy(password) : await verifyPassword(password, user.passwordHash);
    if (!ok || user === undefined) {
      const locked = await recordFailure(ctx, 'password', keys);
      ctx.log.info({ tenant: tenantId, locked }, 'sign-in failed: wrong username or password');
      ctx.metrics?.signIn(tenantId, 'password', locked ? 'throttled' : 'failed');
      return locked
        ? loginError(loaded, reply, typed, { message: MESSAGES.locked, code: Entra.tooManyAttempts }, 429)
        : loginError(loaded, reply, typed, { message: MESSAGES.wrongCredentials, code: Entra.wrongCredentials }, 400);
    }
    if (!user.enabled) {
      ctx.log.info({ tenant: tenantId, oid: user.oid }, 'sign-in refused: user disabled');
      ctx.metrics?.signIn(tenantId, 'password', 'disabled');
      return loginError(loaded, reply, typed, { message: MESSAGES.disabled, code: Entra.userDisabled }, 400);
    }
    const session = await createSession(ctx, reply, tenantId, { oid: user.oid, amr: ['pwd'], ip: request.ip });
    interaction.payload.sid = session.sid;
    interaction.payload.forceLogin = false;
    interaction.payload.accountSelected = true;
    interaction.payload.username = typed;
    await saveInteraction(ctx, interaction);
    ctx.log.info({ tenant: tenantId, oid: user.oid, sid: session.sid }, 'password accepted');
    ctx.metrics?.signIn(tenantId, 'password', 'ok');
    return backToPage(reply, interaction);
  });
}

/** POST mfa: a TOTP code for the signed-in user. */
function mfa(ctx: ServerContext) {
  return htmlRoute(ctx, async (request: InteractionRequest, reply) => {
    const { directory, interaction, flow, params } = await loadForm(ctx, request, reply);
    const session = await sessionFromCookie(ctx, request, directory.tenant.id);
    if (flow === undefined || session === undefined || (interaction.payload.sid !== undefined && interaction.payload.sid !== session.sid)) {
      return backToPage(reply, interaction);
    }
    const user = await ctx.store.getUserById(directory.tenant.id, session.oid);
    if (user === undefined || !user.enabled) return backToPage(reply, interaction);
    const evaluation = await evaluate(flow);
    if (evaluation.step.step !== 'mfa') return backToPage(reply, interaction);
    const keys = { tenantId: directory.tenant.id, account: user.oid, ip: request.ip };
    if (await isLocked(ctx, 'mfa', keys)) {
      ctx.metrics?.signIn(directory.tenant.id, 'mfa', 'throttled');
      return sendPage(reply, renderStep(flow, evaluation, { message: MESSAGES.locked, code: Entra.tooManyAttempts }, 429));
    }
    const result = await verifyTotp(ctx, user, params.code ?? '');
    if (result !== 'ok') {
      const locked = await recordFailure(ctx, 'mfa', keys);
      ctx.log.info({ oid: user.oid, result, locked }, 'second factor refused');
      ctx.metrics?.signIn(directory.tenant.id, 'mfa', locked ? 'throttled' : 'failed');
      return sendPage(
        reply,
        renderStep(flow, evaluation, locked ? { message: MESSAGES.locked, code: Entra.tooManyAttempts } : { message: MESSAGES.wrongCode, code: Entra.mfaFailed }, locked ? 429 : 400),
      );
    }
    await elevateSession(ctx, session, ['mfa']);
    ctx.log.info({ oid: user.oid, sid: session.sid }, 'second factor accepted');
    ctx.metrics?.signIn(directory.tenant.id, 'mfa', 'ok');
    return backToPage(reply, interaction);
  });
}

/** POST select: the account picker's answer. */
function select(ctx: ServerContext) {
  return htmlRoute(ctx, async (request: InteractionRequest, reply) => {
    const { interaction, params } = await loadForm(ctx, request, reply);
    interaction.payload.accountSelected = true;
    if (params.account === 'other') interaction.payload.forceLogin = true;
    await saveInteraction(ctx, interaction);
    return backToPage(reply, interaction);
  });
}

/** POST consent: Accept or Cancel. */
function consent(ctx: ServerContext) {
  return htmlRoute(ctx, async (request: InteractionRequest, reply) => {
    const { directory, interaction, flow, params } = await loadForm(ctx, request, reply);
    if (flow === undefined) return answerAdminConsent(ctx, request, reply, directory, interaction, params);

    const evaluation = await evaluate(flow);
    const { step } = evaluation;
    const issuer = issuerOf(ctx, directory.tenant.id);
    if (params.decision !== 'accept' || step.step === 'admin_required') {
      await finishInteraction(ctx, reply, interaction);
      const error =
        step.step === 'admin_required'
          ? new OAuthError('access_denied', {
              description: `The application '${flow.client.clientId}' needs permissions that only an administrator can grant. An administrator can grant them at ${ctx.baseUrl}/${directory.tenant.id}/adminconsent?client_id=${encodeURIComponent(flow.client.clientId)}.`,
              entraCodes: [Entra.adminConsentRequired],
            })
          : new OAuthError('access_denied', { description: 'The user declined to consent to access the app.', entraCodes: [Entra.consentDeclined] });
      ctx.log.info({ client_id: flow.client.clientId, entra: error.entraCodes[0] }, 'consent declined');
      return sendErrorToClient(reply, flow.authorize, error, issuer, directory.tenant.name, 303);
    }
    if (step.step !== 'consent' || evaluation.user === undefined || evaluation.api === undefined) return backToPage(reply, interaction);
    const asAdmin = step.asAdmin && params.organization === '1';
    if (step.plan.adminOnly.length > 0 && !asAdmin) return backToPage(reply, interaction);
    const records = consentRecords({
      plan: step.plan,
      directory,
      clientId: flow.client.clientId,
      api: evaluation.api.clientId,
      userOid: evaluation.user.oid,
      userConsents: evaluation.userConsents,
      asAdmin,
      now: ctx.now(),
    });
    for (const record of records) await ctx.store.putConsent(record);
    interaction.payload.consentAccepted = true;
    await saveInteraction(ctx, interaction);
    ctx.log.info({ client_id: flow.client.clientId, oid: evaluation.user.oid, admin: asAdmin, grants: records.map((r) => `${r.clientId}->${r.resource}:${r.scopes.join(' ')}`) }, 'consent granted');
    return backToPage(reply, interaction);
  });
}

export function interactionRoutes(app: import('fastify').FastifyInstance, ctx: ServerContext): void {
  const base = '/:tenant/oauth2/v2.0/interaction/:id';
  app.get(base, showStep(ctx));
  app.post(`${base}/login`, login(ctx));
  app.post(`${base}/mfa`, mfa(ctx));
  app.post(`${base}/select`, select(ctx));
  app.post(`${base}/consent`, consent(ctx));
}

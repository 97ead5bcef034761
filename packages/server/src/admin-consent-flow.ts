/**
 * The admin-consent interaction's steps (sign in as an administrator, see the permissions, accept
 * or decline), shared by the interaction endpoint; the rules are core's `admin-consent.ts`.
 */
import { OAuthError, Entra, adminConsentPermissions, decideAdminConsent, predatesRevocation, qualifiedScope, type AdminConsentPermissions, type TenantDirectory, type User } from '@baton/core';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { issuerOf, type ServerContext } from './context.ts';
import type { FormParams } from './http/form.ts';
import { finishInteraction, interactionPath, type Interaction } from './interaction-records.ts';
import { sessionFromCookie } from './session.ts';
import { formTargets, sendErrorToClient, sendToClient } from './http/browser.ts';
import { sendPage } from './pages/layout.ts';
import { signInPage } from './pages/signin.ts';
import { adminConsentDonePage, consentPage, type PermissionView } from './pages/consent.ts';

function views(directory: TenantDirectory, permissions: AdminConsentPermissions): PermissionView[] {
  const out: PermissionView[] = [];
  for (const { api, scopes } of permissions.delegated) {
    for (const value of scopes) {
      const definition = directory.scope(api.clientId, value);
      out.push({ description: `${definition?.description ?? value} (${api.name}, for signed-in users)`, scope: qualifiedScope(api, value), adminOnly: definition?.adminConsentRequired === true });
    }
  }
  for (const { api, roles } of permissions.roles) {
    for (const value of roles) {
      out.push({ description: `${directory.appRole(api.clientId, value)?.description ?? value} (${api.name}, application permission)`, scope: qualifiedScope(api, value), adminOnly: true });
    }
  }
  return out;
}

/**
 * The user this interaction may act for, or undefined when they must sign in (again): the session
 * cookie names a live session (the one this interaction signed in, once it asked for another
 * account), of a user who still exists, is enabled, and whose sessions were not revoked since.
 * The GET (show the permissions) and the POST (grant them) both ask this.
 */
async function signedInUser(ctx: ServerContext, request: FastifyRequest, directory: TenantDirectory, interaction: Interaction): Promise<User | undefined> {
  const session = await sessionFromCookie(ctx, request, directory.tenant.id);
  if (session === undefined || (interaction.payload.forceLogin && interaction.payload.sid !== session.sid)) return undefined;
  const user = await ctx.store.getUserById(directory.tenant.id, session.oid);
  return user === undefined || !user.enabled || predatesRevocation(user, session.authTime) ? undefined : user;
}

/** GET of an admin-consent interaction: sign in, check the role, show the permissions. */
export async function advanceAdminConsent(ctx: ServerContext, request: FastifyRequest, reply: FastifyReply, directory: TenantDirectory, interaction: Interaction): Promise<FastifyReply> {
  const request_ = interaction.payload.adminConsent!;
  const client = directory.application(request_.clientId);
  if (client === undefined) throw new OAuthError('invalid_request', { description: 'The application no longer exists.', entraCodes: [Entra.flowExpired] });
  const path = interactionPath(directory.tenant.id, interaction.id);
  const targets = formTargets(request_.redirectUri);
  const user = await signedInUser(ctx, request, directory, interaction);
  if (user === undefined) {
    return sendPage(reply, signInPage({ brand: directory.tenant.name, appName: `${client.name} (admin consent)`, action: `${path}/login`, csrf: interaction.payload.csrf, username: interaction.payload.username, formTargets: targets }));
  }
  if (user.directoryRoles?.includes('admin') !== true) {
    // Let the next attempt sign in as someone else.
    interaction.payload.forceLogin = true;
    await ctx.store.putEphemeral(interaction);
    throw new OAuthError('access_denied', {
      status: 403,
      description: `Granting '${client.name}' access for the whole organization needs an administrator, and ${user.username} is not one. Sign in with an administrator account, or ask an administrator to open this link.`,
      entraCodes: [Entra.adminConsentRequired],
    });
  }
  const permissions = adminConsentPermissions(directory, client, request_.resource);
  return sendPage(
    reply,
    consentPage({
      brand: directory.tenant.name,
      app: { name: client.name, clientId: client.clientId },
      api: undefined,
      permissions: views(directory, permissions),
      combined: [],
      username: user.username,
      action: `${path}/consent`,
      csrf: interaction.payload.csrf,
      asAdmin: false,
      adminRequired: false,
      organization: true,
      formTargets: targets,
    }),
  );
}

/** POST consent of an admin-consent interaction: the administrator's answer, written as core's `decideAdminConsent` says. */
export async function answerAdminConsent(
  ctx: ServerContext,
  request: FastifyRequest,
  reply: FastifyReply,
  directory: TenantDirectory,
  interaction: Interaction,
  params: FormParams,
): Promise<FastifyReply> {
  const request_ = interaction.payload.adminConsent!;
  const client = directory.application(request_.clientId);
  const user = await signedInUser(ctx, request, directory, interaction);
  const back = () => reply.code(303).header('location', interactionPath(directory.tenant.id, interaction.id)).send();
  if (client === undefined || user === undefined || user.directoryRoles?.includes('admin') !== true) return back();
  const target = request_.redirectUri === undefined ? undefined : { redirectUri: request_.redirectUri, responseMode: 'query' as const, state: request_.state };
  const issuer = issuerOf(ctx, directory.tenant.id);
  if (params.decision !== 'accept') {
    await finishInteraction(ctx, reply, interaction);
    const error = new OAuthError('access_denied', { description: 'The administrator declined to consent to access the app.', entraCodes: [Entra.consentDeclined] });
    if (target === undefined) throw error;
    return sendErrorToClient(reply, target, error, issuer, directory.tenant.name, 303);
  }
  const grant = decideAdminConsent(directory, client, adminConsentPermissions(directory, client, request_.resource), ctx.now());
  for (const consent of grant.consents) await ctx.store.putConsent(consent);
  for (const assignment of grant.roleAssignments) await ctx.store.putRoleAssignment(assignment);
  await finishInteraction(ctx, reply, interaction);
  ctx.log.info({ client_id: client.clientId, admin: user.oid }, 'admin consent granted');
  if (target === undefined) return sendPage(reply, adminConsentDonePage({ brand: directory.tenant.name, appName: client.name }));
  return sendToClient(reply, target, { admin_consent: 'True', tenant: directory.tenant.tid, scope: grant.scope.join(' ') }, directory.tenant.name, 303);
}


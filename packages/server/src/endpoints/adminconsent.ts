/**
 * Admin consent (Entra's `/{tenant}/adminconsent` and `/{tenant}/v2.0/adminconsent`): an
 * administrator grants an application, for every user of the tenant, the delegated permissions
 * (and, for a confidential client, the application permissions) it declares in `requiredAccess`.
 *
 * `client_id` (required), `redirect_uri` (optional; exactly one of the client's registered URIs),
 * `state`, and on the v2 path `scope` (`api://docs/.default` limits the grant to one API).
 * The answer goes to the redirect URI as Entra sends it (`admin_consent=True&tenant=<tid>&state=…`,
 * or `error=access_denied…`), or is shown on a page when no redirect URI was given.
 */
import { readAdminConsentRequest } from '@baton/core';
import type { FastifyRequest, FastifyInstance } from 'fastify';
import type { ServerContext } from '../context.ts';
import { parseForm } from '../http/form.ts';
import { resolveTenant } from '../tenants.ts';
import { interactionPath, startInteraction } from '../interaction-records.ts';
import { htmlRoute, setBrand } from '../http/browser.ts';

function adminConsentRoute(ctx: ServerContext) {
  return htmlRoute(ctx, async (request: FastifyRequest<{ Params: { tenant: string } }>, reply) => {
    const directory = await resolveTenant(ctx, request.params.tenant);
    setBrand(request, directory.tenant.name);
    const q = request.url.indexOf('?');
    const { client, redirectUri, state, resource } = readAdminConsentRequest(directory, parseForm(q < 0 ? '' : request.url.slice(q + 1)));
    const interaction = await startInteraction(ctx, reply, directory.tenant.id, { kind: 'adminconsent', adminConsent: { clientId: client.clientId, redirectUri, state, resource } });
    return reply.code(302).header('cache-control', 'no-store').header('location', interactionPath(directory.tenant.id, interaction.id)).send();
  });
}

export function adminConsentRoutes(app: FastifyInstance, ctx: ServerContext): void {
  app.get('/:tenant/adminconsent', adminConsentRoute(ctx));
  app.get('/:tenant/v2.0/adminconsent', adminConsentRoute(ctx));
}

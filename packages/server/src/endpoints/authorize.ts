/**
 * `GET/POST /{tenant}/oauth2/v2.0/authorize` (RFC 6749 §4.1.1, OIDC Core §3.1.2) and the sign-in
 * flow behind it.
 *
 * authorize: resolveTenant → readParameters (duplicates refused) → withMetadataDocumentClient (a
 * client_id that is an https URL: its Client ID Metadata Document) → parseAuthorizeRequest (client
 * and redirect URI first: a mismatch is an error page, never a redirect) → advance.
 *
 * advance: the sign-in flow (signin-flow.ts).
 */
import { parseAuthorizeRequest } from '@baton/core';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { issuerOf, type ServerContext } from '../context.ts';
import { formBody, parseForm, type FormParams } from '../http/form.ts';
import { resolveTenant } from '../tenants.ts';
import { htmlRoute, sendErrorToClient, setBrand } from '../http/browser.ts';
import { advance } from '../signin-flow.ts';
import { withMetadataDocumentClient } from '../registration/clients.ts';

/** Authorization parameters: the form body of a POST, else the query string, each at most once. */
function readParameters(request: FastifyRequest): FormParams {
  if (request.method === 'POST') return formBody(request);
  const q = request.url.indexOf('?');
  return parseForm(q < 0 ? '' : request.url.slice(q + 1));
}

/** `GET` and `POST /{tenant}/oauth2/v2.0/authorize` (OIDC Core §3.1.2.1: both methods). */
export function authorizeRoutes(app: FastifyInstance, ctx: ServerContext): void {
  const authorize = authorizeEndpoint(ctx);
  app.get('/:tenant/oauth2/v2.0/authorize', authorize);
  app.post('/:tenant/oauth2/v2.0/authorize', authorize);
}

function authorizeEndpoint(ctx: ServerContext) {
  return htmlRoute(ctx, async (request: FastifyRequest<{ Params: { tenant: string } }>, reply) => {
    const params = readParameters(request);
    // A client_id that is an https URL: its metadata document is fetched (or its cached copy used) first.
    const directory = await withMetadataDocumentClient(ctx, await resolveTenant(ctx, request.params.tenant), params.client_id, request.ip);
    setBrand(request, directory.tenant.name);
    const result = parseAuthorizeRequest(directory, params);
    if (!result.ok) {
      if (!result.redirect) throw result.error;
      ctx.log.info({ client_id: result.client.clientId, error: result.error.error, entra: result.error.entraCodes[0] }, 'authorization request refused');
      return sendErrorToClient(reply, result, result.error, issuerOf(ctx, directory.tenant.id), directory.tenant.name);
    }
    return advance({ ctx, request, reply, directory, client: result.client, authorize: result.request, demands: result.demands });
  });
}


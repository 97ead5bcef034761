/**
 * `POST /{tenant}/oauth2/v2.0/token` (RFC 6749 §3.2), as a readable list of named steps:
 * noCache → resolveTenant → supportedGrantType → authenticateClient → confidentialCheck →
 * stripGrantIrrelevantParams → callGrantHandler. Duplicate parameters were refused by the body
 * parser (http/form.ts) before any of this runs.
 */
import { errors } from '@baton/core';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { GrantLookup, ServerContext } from '../context.ts';
import { resolveTenant } from '../tenants.ts';
import { formBody, requireParam, type FormParams } from '../http/form.ts';
import { correlationId } from '../http/errors.ts';
import { authenticateClient, type AuthenticatedClient } from '../client-auth.ts';
import { TokenEndpointLimiter, type Admission } from '../limits.ts';
import { CLIENT_AUTH_PARAMETERS, isIgnoredParameter, type Grant } from '../grants/registry.ts';

function noCache(reply: FastifyReply): void {
  // RFC 6749 §5.1: token responses must not be cached.
  reply.header('cache-control', 'no-store').header('pragma', 'no-cache');
}

function supportedGrantType(grants: GrantLookup, params: FormParams): Grant {
  const grantType = requireParam(params, 'grant_type');
  const grant = grants.get(grantType);
  if (!grant) throw errors.unsupportedGrantType(grantType);
  return grant;
}

function confidentialCheck(grant: Grant, client: AuthenticatedClient): void {
  if (grant.confidentialOnly && client.method === 'none') {
    throw errors.unauthorizedClient(`'${client.app.clientId}' is a public client; the ${grant.grantType} grant needs a confidential client (a secret or a certificate).`);
  }
}

/** Unknown parameters are dropped (RFC 6749 §3.2: "MUST ignore unrecognized request parameters"). */
function stripGrantIrrelevantParams(params: FormParams, grant: Grant): FormParams {
  const kept: Record<string, string> = Object.create(null);
  for (const [name, value] of Object.entries(params)) {
    if (grant.parameters.has(name) && !CLIENT_AUTH_PARAMETERS.has(name) && !isIgnoredParameter(name)) kept[name] = value;
  }
  return kept;
}

function tokenEndpoint(ctx: ServerContext, limiter: TokenEndpointLimiter) {
  return async function token(request: FastifyRequest<{ Params: { tenant: string } }>, reply: FastifyReply) {
    noCache(reply);
    // Abuse limits (limits.ts): per IP before any work, per client once it is authenticated.
    const perIp = limiter.admitIp(request.ip);
    let perClient: Admission | undefined;
    try {
      const params = formBody(request);
      const directory = await resolveTenant(ctx, request.params.tenant);
      const grant = supportedGrantType(ctx.grants, params);
      const client = await authenticateClient(ctx, directory, params, request.headers.authorization);
      perClient = limiter.admitClient(directory.tenant.id, client.app.clientId);
      confidentialCheck(grant, client);
      const correlation = correlationId(request);
      const traceparent = request.headers.traceparent;
      const response = await grant.handler({
        ctx,
        directory,
        client,
        params: stripGrantIrrelevantParams(params, grant),
        ip: request.ip,
        traceparent: typeof traceparent === 'string' ? traceparent : undefined,
        correlationId: correlation,
      });
      return reply.header('client-request-id', correlation).type('application/json; charset=utf-8').send(response);
    } finally {
      perClient?.release();
      perIp.release();
    }
  };
}

/** The token endpoint's route; the grants it answers are the server's (`ctx.grants`). */
export function tokenRoutes(app: FastifyInstance, ctx: ServerContext): void {
  app.post('/:tenant/oauth2/v2.0/token', tokenEndpoint(ctx, new TokenEndpointLimiter(ctx.tokenEndpointLimits)));
}

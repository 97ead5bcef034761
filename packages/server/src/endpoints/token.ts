/**
 * `POST /{tenant}/oauth2/v2.0/token` (RFC 6749 §3.2), as a readable list of named steps:
 * noCache → resolveTenant → supportedGrantType → authenticateClient → confidentialCheck →
 * readTokenRequestProof (DPoP, dpop.ts) → stripGrantIrrelevantParams → callGrantHandler. Duplicate parameters were refused by the body
 * parser (http/form.ts) before any of this runs.
 */
import { errors, type TenantDirectory } from '@baton/core';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { GrantLookup, ServerContext } from '../context.ts';
import { resolveTenant } from '../tenants.ts';
import { formBody, requireParam, type FormParams } from '../http/form.ts';
import { correlationId, toOAuthError } from '../http/errors.ts';
import { SpanKind, failSpan, inRequestSpan, inSpan, inboundContext, type Span } from '../observe/tracing.ts';
import { authenticateClient, presentedClientId, type AuthenticatedClient } from '../client-auth.ts';
import { UNKNOWN, clientLabel, tokenRequestRefused, tokenRouteHooks, type TokenRequestLabels } from '../observe/metrics.ts';
import { TokenEndpointLimiter, type Admission } from '../limits.ts';
import { CLIENT_AUTH_PARAMETERS, isIgnoredParameter, type Grant } from '../grants/registry.ts';
import { readTokenRequestProof } from '../dpop.ts';

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

/**
 * The metrics' labels of a request refused after these steps: the tenant once resolved, the grant
 * once offered; the client once authenticated, or — the grant known, authentication failed — the
 * client the request named if the directory registers it (`clientLabel`: raw input never becomes
 * a label). Worked out on refusal only: an answered request's labels are its tenant, grant and client.
 */
function refusalLabels(request: FastifyRequest, params: FormParams | undefined, directory: TenantDirectory | undefined, grant: Grant | undefined, client: AuthenticatedClient | undefined): TokenRequestLabels {
  return {
    tenant: directory?.tenant.id ?? UNKNOWN,
    grant: grant?.grantType ?? UNKNOWN,
    client: client !== undefined ? client.app.clientId : grant !== undefined && params !== undefined ? clientLabel(directory, presentedClientId(params, request.headers.authorization)) : UNKNOWN,
  };
}

/** The token endpoint's span name (OTel HTTP conventions: method and route template). */
const SPAN_NAME = 'POST /{tenant}/oauth2/v2.0/token';
const SPAN_OPTIONS = { kind: SpanKind.SERVER, attributes: { 'http.request.method': 'POST', 'http.route': '/{tenant}/oauth2/v2.0/token' } };

function tokenEndpoint(ctx: ServerContext, limiter: TokenEndpointLimiter) {
  async function token(request: FastifyRequest<{ Params: { tenant: string } }>, reply: FastifyReply, span: Span) {
    noCache(reply);
    // Abuse limits (limits.ts): per IP before any work, per client once it is authenticated.
    const perIp = limiter.admitIp(request.ip);
    let perClient: Admission | undefined;
    // What the request has shown so far: the metrics' labels of a refusal (below).
    let params: FormParams | undefined;
    let directory: TenantDirectory | undefined;
    let grant: Grant | undefined;
    let client: AuthenticatedClient | undefined;
    try {
      params = formBody(request);
      directory = await resolveTenant(ctx, request.params.tenant);
      grant = supportedGrantType(ctx.grants, params);
      if (span.isRecording()) span.setAttributes({ 'baton.tenant': directory.tenant.id, 'baton.grant_type': grant.grantType });
      const inDirectory = directory;
      const form = params;
      client = await inSpan('baton.client_auth', {}, async (authSpan) => {
        const authenticated = await authenticateClient(ctx, inDirectory, form, request.headers.authorization);
        if (authSpan.isRecording()) authSpan.setAttributes({ 'baton.client_id': authenticated.app.clientId, 'baton.client_auth.method': authenticated.method });
        return authenticated;
      });
      if (span.isRecording()) span.setAttribute('baton.client_id', client.app.clientId);
      perClient = limiter.admitClient(directory.tenant.id, client.app.clientId);
      confidentialCheck(grant, client);
      // RFC 9449 §5: a DPoP proof binds what any grant issues to the client's key.
      const dpop = await readTokenRequestProof(ctx, directory, request, reply);
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
        dpop,
      });
      reply.header('client-request-id', correlation).type('application/json; charset=utf-8');
      // Counted as the answer is handed over (a refusal is counted by the route's onError hook).
      ctx.metrics?.tokenRequest(directory.tenant.id, grant.grantType, client.app.clientId, reply.statusCode < 400 ? 'ok' : 'other', reply.elapsedTime / 1000);
      return reply.send(response);
    } catch (error) {
      if (ctx.metrics) tokenRequestRefused(request, refusalLabels(request, params, directory, grant, client));
      throw error;
    } finally {
      perClient?.release();
      perIp.release();
    }
  }

  // A SERVER span per request, child of the caller's span named by `traceparent` (observe/tracing.ts).
  return function tracedToken(request: FastifyRequest<{ Params: { tenant: string } }>, reply: FastifyReply) {
    return inRequestSpan(SPAN_NAME, SPAN_OPTIONS, inboundContext(request.headers), async (span) => {
      if (!span.isRecording()) return token(request, reply, span);
      try {
        const sent = await token(request, reply, span);
        span.setAttributes({ 'http.response.status_code': reply.statusCode, 'baton.result': 'issued' });
        return sent;
      } catch (error) {
        // The answer the error handler will give (http/errors.ts); OTel marks a SERVER span
        // failed for 5xx only: a refusal is the endpoint working.
        const oauth = toOAuthError(error);
        span.setAttributes({ 'http.response.status_code': oauth.status, 'baton.result': oauth.error, 'error.type': oauth.error });
        if (oauth.status >= 500) failSpan(span, error);
        throw error;
      } finally {
        span.end();
      }
    });
  };
}

/** The token endpoint's route; the grants it answers are the server's (`ctx.grants`). */
export function tokenRoutes(app: FastifyInstance, ctx: ServerContext): void {
  const handler = tokenEndpoint(ctx, new TokenEndpointLimiter(ctx.tokenEndpointLimits));
  if (ctx.metrics === undefined) app.post('/:tenant/oauth2/v2.0/token', handler);
  else app.post('/:tenant/oauth2/v2.0/token', tokenRouteHooks(ctx.metrics, toOAuthError), handler);
}

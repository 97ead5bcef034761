/**
 * OIDC UserInfo (`GET/POST /oidc/userinfo`, OIDC Core §5.3) with an RFC 6750 bearer token.
 *
 * Accepted: an access token this service issued for the UserInfo endpoint — what a sign-in that
 * asked only for OIDC scopes (`openid profile email`) receives (tokens/userinfo-audience.ts). A
 * token for an API is refused: it is addressed to that API, and Baton never accepts a token
 * addressed to someone else. `sub` is the pairwise subject of the client the token was issued to,
 * so it equals the ID token's `sub` (OIDC Core §5.3.2).
 */
import { JwtError, pairwiseSubject, predatesRevocation, scopesOf } from '@baton/core';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ServerContext } from '../context.ts';
import { verifyOwnToken } from '../tokens/verify.ts';
import { formBody } from '../http/form.ts';
import { userinfoAudience } from '../tokens/userinfo-audience.ts';
import { sessionBySid } from '../session.ts';

function bearerError(reply: FastifyReply, status: number, error: string | undefined, description: string | undefined): FastifyReply {
  const parts = ['Bearer realm="baton"'];
  if (error !== undefined) parts.push(`error="${error}"`);
  if (description !== undefined) parts.push(`error_description="${description.replace(/["\\]/g, "'")}"`);
  reply.code(status).header('www-authenticate', parts.join(', ')).header('cache-control', 'no-store');
  return error === undefined ? reply.send() : reply.type('application/json; charset=utf-8').send({ error, error_description: description });
}

/** RFC 6750 §2.1 (header) or §2.2 (form body); both at once is invalid_request (§2). */
function bearerToken(request: FastifyRequest): { token?: string; error?: string } {
  const header = request.headers.authorization;
  const body = request.method === 'POST' ? formBody(request) : {};
  const fromBody = body.access_token;
  if (header !== undefined) {
    const match = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i.exec(header);
    if (fromBody !== undefined) return { error: 'The request carries the token both in the Authorization header and in the body.' };
    if (match === null) return { error: 'The Authorization header is not a Bearer token.' };
    return { token: match[1]! };
  }
  return fromBody === undefined ? {} : { token: fromBody };
}

export function userinfoRoutes(app: FastifyInstance, ctx: ServerContext): void {
  const handler = async (request: FastifyRequest, reply: FastifyReply) => {
    const { token, error } = bearerToken(request);
    if (error !== undefined) return bearerError(reply, 400, 'invalid_request', error);
    if (token === undefined) return bearerError(reply, 401, undefined, undefined);
    let payload: Record<string, unknown>;
    let tenantId: string;
    try {
      ({ payload, tenantId } = await verifyOwnToken(ctx, token, { typ: 'at+jwt', audience: userinfoAudience(ctx) }));
    } catch (failure) {
      if (!(failure instanceof JwtError)) throw failure;
      const description =
        failure.code === 'ERR_JWT_AUDIENCE_INVALID'
          ? "The access token is not for the UserInfo endpoint (it is addressed to an API). Request a token with only OIDC scopes ('openid profile email') to call UserInfo."
          : `The access token is invalid: ${failure.message}.`;
      return bearerError(reply, 401, 'invalid_token', description);
    }
    if (!scopesOf(payload).includes('openid')) return bearerError(reply, 403, 'insufficient_scope', "The access token does not carry the 'openid' scope.");
    const oid = typeof payload.oid === 'string' ? payload.oid : '';
    const user = await ctx.store.getUserById(tenantId, oid);
    if (user === undefined || !user.enabled) return bearerError(reply, 401, 'invalid_token', 'The user of this token no longer exists or is disabled.');
    const iat = typeof payload.iat === 'number' ? payload.iat : 0;
    if (predatesRevocation(user, iat)) return bearerError(reply, 401, 'invalid_token', "The user's sessions were revoked after this token was issued.");
    if (typeof payload.sid === 'string' && (await sessionBySid(ctx, tenantId, payload.sid)) === undefined) {
      return bearerError(reply, 401, 'invalid_token', 'The sign-in session of this token has ended (signed out).');
    }
    const directory = await ctx.directories.get(tenantId);
    if (directory === undefined) return bearerError(reply, 401, 'invalid_token', 'The tenant of this token no longer exists.');
    const scopes = scopesOf(payload);
    const clientId = typeof payload.azp === 'string' ? payload.azp : '';
    const body: Record<string, unknown> = {
      sub: pairwiseSubject(ctx.pairwiseKey, directory.tenant.tid, user.oid, clientId),
      oid: user.oid,
      tid: directory.tenant.tid,
    };
    if (scopes.includes('profile')) {
      body.name = user.displayName;
      body.preferred_username = user.username;
    }
    if (scopes.includes('email') && user.email !== undefined) body.email = user.email;
    return reply.header('cache-control', 'no-store').type('application/json; charset=utf-8').send(body);
  };
  app.get('/oidc/userinfo', handler);
  app.post('/oidc/userinfo', handler);
}

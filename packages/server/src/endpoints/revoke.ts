/**
 * Token revocation (RFC 7009) at `POST /{tenant}/oauth2/v2.0/revoke`.
 *
 * A refresh token is revoked with its whole family (§2.1: "… SHOULD also invalidate all access
 * tokens based on the same authorization grant" — here: every refresh token of that grant). The
 * client must be the one the token was issued to; otherwise, and for unknown tokens, the answer is
 * still 200 with nothing done (§2.2: an invalid token is not an error, and the answer must not
 * tell a client whether someone else's token exists). Access tokens are self-contained JWTs and
 * cannot be revoked one by one; they are short-lived, and ending the session (logout) makes
 * UserInfo, introspection and On-Behalf-Of refuse them.
 */
import { errors } from '@baton/core';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ServerContext } from '../context.ts';
import { formBody } from '../http/form.ts';
import { resolveTenant } from '../tenants.ts';
import { authenticateClient } from '../client-auth.ts';
import { findRefreshToken } from '../tokens/refresh.ts';

export function revokeRoutes(app: FastifyInstance, ctx: ServerContext): void {
  app.post('/:tenant/oauth2/v2.0/revoke', async (request: FastifyRequest<{ Params: { tenant: string } }>, reply: FastifyReply) => {
    reply.header('cache-control', 'no-store').header('pragma', 'no-cache');
    const params = formBody(request);
    const directory = await resolveTenant(ctx, request.params.tenant);
    const client = await authenticateClient(ctx, directory, params, request.headers.authorization);
    const token = params.token;
    if (token === undefined || token === '') {
      throw errors.invalidRequest("The request body must contain the 'token' parameter.");
    }
    const record = await findRefreshToken(ctx, directory.tenant.id, token);
    if (record !== undefined && record.payload.clientId === client.app.clientId && record.familyId !== undefined) {
      const revoked = await ctx.store.revokeFamily(directory.tenant.id, record.familyId, ctx.now());
      ctx.log.info({ client_id: client.app.clientId, family: record.familyId, revoked }, 'refresh token revoked (RFC 7009)');
    }
    return reply.code(200).type('application/json; charset=utf-8').send({});
  });
}

/**
 * Token introspection (RFC 7662) at `POST /{tenant}/oauth2/v2.0/introspect`, for confidential
 * clients only (§2.1: the endpoint must not be open to token scanning).
 *
 * What a caller may learn (§4: "the authorization server … MAY respond differently to different
 * protected resources"):
 * - an access token addressed to it (an API checking a token it received) or issued to it;
 * - a refresh token issued to it.
 * Anything else — unknown, expired, revoked, someone else's, a user disabled or signed out since —
 * is `{"active": false}` and nothing more.
 *
 * An active delegated token's answer carries its delegation: `act` as issued, `actors` (the same
 * chain as a list, outermost — most recent — actor first, each `{sub, client_id, iss?}`) and
 * `may_act` (RFC 8693 §4.4: who may exchange it).
 */
import { JwtError, actorsOf, audienceOf, errors, pairwiseSubject, predatesRevocation } from '@baton/core';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { issuerOf, type ServerContext } from '../context.ts';
import { formBody } from '../http/form.ts';
import { resolveTenant } from '../tenants.ts';
import { authenticateClient } from '../client-auth.ts';
import { findRefreshToken, looksLikeRefreshToken } from '../tokens/refresh.ts';
import { verifyOwnToken } from '../tokens/verify.ts';
import { sessionBySid } from '../session.ts';

const INACTIVE = { active: false } as const;

export function introspectRoutes(app: FastifyInstance, ctx: ServerContext): void {
  app.post('/:tenant/oauth2/v2.0/introspect', async (request: FastifyRequest<{ Params: { tenant: string } }>, reply: FastifyReply) => {
    reply.header('cache-control', 'no-store').header('pragma', 'no-cache').type('application/json; charset=utf-8');
    const params = formBody(request);
    const directory = await resolveTenant(ctx, request.params.tenant);
    const client = await authenticateClient(ctx, directory, params, request.headers.authorization);
    if (client.method === 'none') {
      throw errors.unauthorizedClient(`'${client.app.clientId}' is a public client; token introspection needs a confidential client (an API with a secret or a certificate).`);
    }
    const token = params.token;
    if (token === undefined || token === '') {
      throw errors.invalidRequest("The request body must contain the 'token' parameter.");
    }
    const tenantId = directory.tenant.id;
    const caller = client.app.clientId;

    const stillValid = async (oid: unknown, sid: unknown, since: number): Promise<boolean> => {
      const user = typeof oid === 'string' ? await ctx.store.getUserById(tenantId, oid) : undefined;
      if (user === undefined || !user.enabled) return false;
      if (predatesRevocation(user, since)) return false;
      return typeof sid !== 'string' || (await sessionBySid(ctx, tenantId, sid)) !== undefined;
    };

    if (looksLikeRefreshToken(token)) {
      const record = await findRefreshToken(ctx, tenantId, token);
      if (record === undefined || record.payload.clientId !== caller) return reply.send(INACTIVE);
      const { payload } = record;
      if (!(await stillValid(payload.oid, payload.auth.sid, payload.auth.authTime ?? record.createdAt))) return reply.send(INACTIVE);
      const api = payload.resource === undefined ? undefined : directory.application(payload.resource);
      const scope = [...payload.scopes.map((v) => (api?.identifierUri === undefined ? v : `${api.identifierUri}/${v}`)), ...payload.oidcScopes];
      return reply.send({
        active: true,
        token_type: 'refresh_token',
        client_id: payload.clientId,
        scope: scope.join(' '),
        sub: pairwiseSubject(ctx.pairwiseKey, directory.tenant.tid, payload.oid, payload.clientId),
        oid: payload.oid,
        tid: directory.tenant.tid,
        iss: issuerOf(ctx, tenantId),
        iat: record.createdAt,
        exp: record.expiresAt,
        // A refresh token from an exchange renews a token with this chain.
        ...(payload.act !== undefined ? { act: payload.act, actors: actorsOf(payload.act) ?? [] } : {}),
      });
    }

    let claims: Record<string, unknown>;
    try {
      ({ payload: claims } = await verifyOwnToken(ctx, token, { typ: 'at+jwt', tenantId }));
    } catch (error) {
      if (error instanceof JwtError) return reply.send(INACTIVE);
      throw error;
    }
    // The token must be addressed to the caller (its client id, or an MCP server's canonical URI) or issued to it.
    if (claims.aud !== audienceOf(client.app) && claims.azp !== caller) return reply.send(INACTIVE);
    if (claims.idtyp !== 'app' && !(await stillValid(claims.oid, claims.sid, typeof claims.iat === 'number' ? claims.iat : 0))) return reply.send(INACTIVE);
    const body: Record<string, unknown> = { active: true, token_type: 'Bearer' };
    if (typeof claims.scp === 'string') body.scope = claims.scp;
    body.client_id = claims.client_id ?? claims.azp;
    if (typeof claims.preferred_username === 'string') body.username = claims.preferred_username;
    for (const name of ['exp', 'iat', 'nbf', 'sub', 'aud', 'iss', 'jti', 'oid', 'tid', 'azp', 'roles', 'idtyp', 'amr', 'acr', 'auth_time', 'sid', 'act', 'may_act'] as const) {
      if (claims[name] !== undefined) body[name] = claims[name];
    }
    // The full chain as a list, outermost (most recent) actor first, each with sub, client_id and iss.
    if (claims.act !== undefined) body.actors = actorsOf(claims.act) ?? [];
    return reply.send(body);
  });
}

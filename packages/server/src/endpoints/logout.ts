/**
 * RP-initiated logout (`GET/POST /{tenant}/oauth2/v2.0/logout`, OpenID Connect RP-Initiated
 * Logout 1.0): ends the SSO session of this browser — the session record is revoked in the store,
 * so every refresh token of that sign-in stops working on every instance, and tokens carrying its
 * `sid` fail at UserInfo, introspection and On-Behalf-Of.
 *
 * `post_logout_redirect_uri` is followed only when it is exactly one of the redirect URIs
 * registered for the client (named by `client_id` or by the `id_token_hint`'s audience); anything
 * else is an error page, never a redirect. Without a valid `id_token_hint` for the current session
 * the user is asked to confirm (a cross-site link cannot sign anyone out), and the confirmation
 * form is CSRF-protected by a single-use token (store kind `csrf`).
 */
import { createHash, randomBytes } from 'node:crypto';
import { JwtError, OAuthError, Entra, matchRedirectUri, truncate, errors } from '@baton/core';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ServerContext } from '../context.ts';
import { formBody, parseForm, type FormParams } from '../http/form.ts';
import { resolveTenant } from '../tenants.ts';
import { endSession, sessionFromCookie } from '../session.ts';
import { sessionRevoked } from '../signals/events.ts';
import { transmitterOf } from '../signals/transmitter.ts';
import { verifyOwnToken } from '../tokens/verify.ts';
import { formTargets, htmlRoute, sendToClient, setBrand } from '../http/browser.ts';
import { sendPage } from '../pages/layout.ts';
import { logoutConfirmPage, signedOutPage } from '../pages/logout.ts';

const CONFIRM_SECONDS = 600;
const sha256 = (value: string) => createHash('sha256').update(value).digest('base64url');

function params(request: FastifyRequest): FormParams {
  if (request.method === 'POST') return formBody(request);
  const q = request.url.indexOf('?');
  return parseForm(q < 0 ? '' : request.url.slice(q + 1));
}

export function logoutRoutes(app: FastifyInstance, ctx: ServerContext): void {
  const handler = htmlRoute(ctx, async (request: FastifyRequest<{ Params: { tenant: string } }>, reply) => {
    const directory = await resolveTenant(ctx, request.params.tenant);
    const tenantId = directory.tenant.id;
    const brand = directory.tenant.name;
    setBrand(request, brand);
    const p = params(request);
    const session = await sessionFromCookie(ctx, request, tenantId);

    // Which client asked: the id_token_hint's audience, or client_id (they must agree).
    let hint: Record<string, unknown> | undefined;
    if (p.id_token_hint !== undefined && p.id_token_hint !== '') {
      try {
        hint = (await verifyOwnToken(ctx, p.id_token_hint, { typ: 'JWT', tenantId, allowExpired: true })).payload;
      } catch (error) {
        if (!(error instanceof JwtError)) throw error;
        throw errors.invalidRequest(`The id_token_hint is not a valid ID token of this tenant: ${error.message}.`);
      }
    }
    const hintClient = typeof hint?.aud === 'string' ? hint.aud : undefined;
    if (p.client_id !== undefined && hintClient !== undefined && p.client_id !== hintClient) {
      throw errors.invalidRequest("The client_id does not match the audience of the id_token_hint.");
    }
    const clientId = p.client_id ?? hintClient;
    let redirect: string | undefined;
    if (p.post_logout_redirect_uri !== undefined && p.post_logout_redirect_uri !== '') {
      const client = clientId === undefined ? undefined : directory.application(clientId);
      if (client === undefined) {
        throw errors.invalidRequest("A post_logout_redirect_uri needs the client it belongs to: send 'client_id' or 'id_token_hint'.");
      }
      redirect = matchRedirectUri(p.post_logout_redirect_uri, client.redirectUris);
      if (redirect === undefined) {
        throw new OAuthError('invalid_request', {
          description: `The post_logout_redirect_uri '${truncate(p.post_logout_redirect_uri, 200)}' is not registered for the application '${client.clientId}'.`,
          entraCodes: [Entra.redirectUriMismatch],
        });
      }
    }
    const state = p.state !== undefined && p.state.length <= 2048 ? p.state : undefined;
    const done = () => (redirect === undefined ? sendPage(reply, signedOutPage({ brand })) : sendToClient(reply, { redirectUri: redirect, responseMode: 'query', state }, {}, brand, request.method === 'POST' ? 303 : 302));

    if (session === undefined) return done();
    const hintMatches = hint !== undefined && (hint.sid === session.sid || (hint.sid === undefined && hint.oid === session.oid));
    let confirmed = hintMatches;
    if (!confirmed && request.method === 'POST' && p.csrf_token !== undefined && /^[A-Za-z0-9_-]{43}$/.test(p.csrf_token)) {
      const result = await ctx.store.consumeEphemeral<{ sid: string }>('csrf', sha256(p.csrf_token), ctx.now());
      confirmed = result.status === 'ok' && result.record.tenantId === tenantId && result.record.payload.sid === session.sid;
    }
    if (!confirmed) {
      const token = randomBytes(32).toString('base64url');
      const now = ctx.now();
      await ctx.store.putEphemeral({ kind: 'csrf', id: sha256(token), tenantId, payload: { sid: session.sid }, expiresAt: now + CONFIRM_SECONDS, createdAt: now });
      const user = await ctx.store.getUserById(tenantId, session.oid);
      const hidden: Record<string, string> = {};
      for (const name of ['post_logout_redirect_uri', 'state', 'client_id'] as const) if (p[name] !== undefined) hidden[name] = p[name]!;
      return sendPage(reply, logoutConfirmPage({ brand, username: user?.username, action: `/${tenantId}/oauth2/v2.0/logout`, csrf: token, hidden, formTargets: formTargets(redirect) }));
    }
    await endSession(ctx, reply, tenantId, session.sid);
    ctx.log.info({ tenant: tenantId, sid: session.sid, client_id: clientId }, 'signed out');
    // Every token of this sign-in, along the whole chain, carries its `sid`: receivers drop them.
    void transmitterOf(ctx).emit(tenantId, [sessionRevoked({ oid: session.oid, sid: session.sid }, ctx.now() + 1, 'user', 'The user signed out.')]);
    return done();
  });
  app.get('/:tenant/oauth2/v2.0/logout', handler);
  app.post('/:tenant/oauth2/v2.0/logout', handler);
}

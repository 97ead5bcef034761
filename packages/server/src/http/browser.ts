/**
 * How the browser-facing endpoints answer: an HTML error page (never JSON, never a stack trace),
 * or a response delivered to the client at its registered redirect URI — as a redirect with the
 * parameters in the query, or as an auto-submitting form (response_mode=form_post).
 */
import { OAuthError, cspSourceFor, type ResponseMode } from '@baton/core';
import type { FastifyReply, FastifyRequest, RouteHandlerMethod } from 'fastify';
import type { ServerContext } from '../context.ts';
import { correlationId, entraTimestamp, toOAuthError } from '../http/errors.ts';
import { errorPage } from '../pages/error.ts';
import { formPostPage } from '../pages/form-post.ts';
import { sendPage } from '../pages/layout.ts';

export const DEFAULT_BRAND = 'Baton';

/** Renders an error as a page. Unexpected errors are logged and shown as a plain server error. */
export function sendErrorPage(ctx: ServerContext, request: FastifyRequest, reply: FastifyReply, error: unknown, brand = DEFAULT_BRAND): FastifyReply {
  const oauth = toOAuthError(error);
  if (!oauth.expose) {
    ctx.log.error({ err: { message: oauth.detail ?? (error as Error)?.message, type: (error as Error)?.name }, reqId: request.id, url: request.routeOptions.url }, 'unexpected error');
  }
  // A throttled page says when to come back, as the token endpoint's 429 does.
  const retryAfter = oauth.expose ? oauth.headers['retry-after'] : undefined;
  if (retryAfter !== undefined) reply.header('retry-after', retryAfter);
  return sendPage(
    reply,
    errorPage({
      brand,
      message: oauth.expose ? oauth.description : 'The server could not complete the request. Try again in a moment.',
      code: oauth.expose ? oauth.entraCodes[0] : undefined,
      error: oauth.expose ? oauth.error : 'server_error',
      requestId: request.id,
      correlationId: correlationId(request),
      timestamp: entraTimestamp(),
      status: oauth.expose ? oauth.status : 500,
    }),
  );
}

/** The tenant's display name for a request's pages, once the tenant is known. */
const brands = new WeakMap<FastifyRequest, string>();
export function setBrand(request: FastifyRequest, brand: string): void {
  brands.set(request, brand);
}

/** Handlers made by {@link htmlRoute}: the shell's error handler renders their early failures as pages too. */
const htmlHandlers = new WeakSet<object>();

/** Whether a route handler was made by {@link htmlRoute} (the shell marks such routes when they register). */
export function isHtmlHandler(handler: unknown): boolean {
  return typeof handler === 'function' && htmlHandlers.has(handler);
}

/** Whether a request's route is browser-facing (its errors are pages, not JSON). */
export function isHtmlRoute(request: FastifyRequest): boolean {
  return (request.routeOptions.config as { html?: boolean } | undefined)?.html === true;
}

/**
 * Wraps a browser-facing handler so every failure becomes an error page — including the ones the
 * shell raises before the handler runs (a body that is not a form, too large): see
 * {@link isHtmlRoute}.
 */
export function htmlRoute<R extends FastifyRequest>(ctx: ServerContext, handler: (request: R, reply: FastifyReply) => Promise<FastifyReply>): RouteHandlerMethod {
  const route = (async (request: R, reply: FastifyReply) => {
    try {
      return await handler(request, reply);
    } catch (error) {
      return sendErrorPage(ctx, request, reply, error, brands.get(request));
    }
  }) as unknown as RouteHandlerMethod;
  htmlHandlers.add(route);
  return route;
}

export interface ClientTarget {
  /** Registered (already matched) redirect URI. */
  redirectUri: string;
  responseMode: ResponseMode;
  state?: string | undefined;
}

/** Delivers parameters to the client (RFC 6749 §4.1.2, OAuth 2.0 Form Post Response Mode). */
export function sendToClient(reply: FastifyReply, target: ClientTarget, params: Record<string, string>, brand: string, status: 302 | 303 = 302): FastifyReply {
  const all: Record<string, string> = { ...params };
  if (target.state !== undefined) all.state = target.state;
  reply.header('cache-control', 'no-store').header('pragma', 'no-cache');
  if (target.responseMode === 'form_post') {
    return sendPage(reply, formPostPage({ brand, action: target.redirectUri, params: all, formTarget: cspSourceFor(target.redirectUri) }));
  }
  const query = new URLSearchParams(all).toString();
  const separator = target.redirectUri.includes('?') ? '&' : '?';
  return reply.code(status).header('location', `${target.redirectUri}${separator}${query}`).send();
}

/** Delivers an OAuth error to the client (RFC 6749 §4.1.2.1), with RFC 9207 `iss`. */
export function sendErrorToClient(reply: FastifyReply, target: ClientTarget, error: OAuthError, issuer: string, brand: string, status: 302 | 303 = 302): FastifyReply {
  const body = error.toJSON();
  const params: Record<string, string> = {
    error: String(body.error),
    error_description: String(body.error_description),
  };
  if (error.expose && error.entraCodes.length > 0) params.error_codes = error.entraCodes.join(',');
  params.iss = issuer;
  return sendToClient(reply, target, params, brand, status);
}

/** The `form-action` sources an interaction's pages need: this origin plus the client's. */
export function formTargets(redirectUri: string | undefined): string[] {
  if (redirectUri === undefined) return [];
  const source = cspSourceFor(redirectUri);
  return source === undefined ? [] : [source];
}

/**
 * The Fastify application: body parsing, security headers, error rendering, and the routes it is
 * given. Nothing else in the server knows about Fastify's setup, and this file knows no endpoint:
 * `startServer` passes the routes (endpoints/index.ts's built-in ones plus its options').
 */
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify';
import { randomUUID } from 'node:crypto';
import type { ServerContext } from '../context.ts';
import { MAX_FORM_BYTES, parseForm } from './form.ts';
import { sendOAuthError, toOAuthError } from './errors.ts';
import { clientErrorHandler } from './client-error.ts';
import { DEFAULT_TRANSPORT_LIMITS, nodeServerOptions, type TransportLimits } from './transport.ts';
import { isHtmlHandler, isHtmlRoute, sendErrorPage } from './browser.ts';

export interface AppOptions {
  https?: { key: string; cert: string } | undefined;
  /** Connection timeouts and cap (default: http/transport.ts's defaults). */
  transport?: TransportLimits | undefined;
  /** Trust X-Forwarded-For from this proxy (off by default: the client IP feeds conditional access). */
  trustProxy?: boolean | string | undefined;
  /** The routes, in order: each adds its endpoints to the app. */
  routes: readonly RoutePlugin[];
}

/**
 * A feature's routes (the token endpoint, discovery, the sign-in pages, a third party's admin
 * endpoint…): adds them to `app`, with the server context they need.
 *
 * @example
 * const tenantsRoute: RoutePlugin = (app, ctx) => app.get('/ops/tenants', async () => (await ctx.store.listTenants()).map((t) => t.id));
 * await startServer({ dataDir, config, routes: [tenantsRoute] });
 */
export type RoutePlugin = (app: FastifyInstance, ctx: ServerContext) => void;

export function buildApp(ctx: ServerContext, options: AppOptions): FastifyInstance {
  const transport = options.transport ?? DEFAULT_TRANSPORT_LIMITS;
  const nodeOptions = nodeServerOptions(transport);
  const serverOptions: FastifyServerOptions & { http?: ReturnType<typeof nodeServerOptions> } = {
    logger: false,
    bodyLimit: MAX_FORM_BYTES,
    // Tokens may be long, but no URL needs more than this; longer ones are refused before routing.
    routerOptions: { maxParamLength: 256 },
    trustProxy: options.trustProxy ?? false,
    genReqId: () => randomUUID(),
    return503OnClosing: true,
    clientErrorHandler,
    // Slow or stuck clients (http/transport.ts): Node's parser clocks, checked every checkIntervalMs.
    keepAliveTimeout: transport.keepAliveTimeoutMs,
    requestTimeout: transport.requestTimeoutMs,
    http: nodeOptions,
  };
  const app = (options.https ? Fastify({ ...serverOptions, https: { ...nodeOptions, ...options.https } } as FastifyServerOptions) : Fastify(serverOptions)) as unknown as FastifyInstance;
  app.server.maxConnections = transport.maxConnections;

  // Form encoding is the only body any endpoint takes (RFC 6749 §3.2, RFC 7009 §2.1, RFC 7662 §2.1,
  // OIDC Core §3.1.2.1): any other content type, JSON included, is refused before routing reaches
  // a handler (http/errors.ts answers 400 invalid_request), so no handler sees an unvalidated shape.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit: MAX_FORM_BYTES }, (_request, body, done) => {
    try {
      done(null, parseForm(body as string));
    } catch (error) {
      done(error as Error, undefined);
    }
  });

  // Fastify binds handlers when it registers them; the browser-facing ones are marked here, while
  // the original function is still at hand, so the error handler can tell them apart.
  app.addHook('onRoute', (route) => {
    if (isHtmlHandler(route.handler)) route.config = { ...(route.config as object | undefined), html: true };
  });

  app.addHook('onSend', (_request, reply, payload, done) => {
    reply.header('x-content-type-options', 'nosniff');
    reply.header('referrer-policy', 'no-referrer');
    if (!reply.hasHeader('x-frame-options')) reply.header('x-frame-options', 'DENY');
    if (options.https) reply.header('strict-transport-security', 'max-age=31536000');
    done(null, payload);
  });

  app.setErrorHandler((error, request, reply) => {
    // A browser-facing route's early failure (the body is not a form, too large) is a page, like its others.
    if (isHtmlRoute(request)) return sendErrorPage(ctx, request, reply, error);
    const oauth = toOAuthError(error);
    if (!oauth.expose) {
      // Only the operator sees the detail; the client gets a plain server_error.
      ctx.log.error({ err: { message: oauth.detail, type: (error as Error).name }, reqId: request.id, url: request.routeOptions.url }, 'unexpected error');
    } else if (oauth.status >= 500) {
      ctx.log.warn({ err: { message: oauth.detail, type: (error as Error).name }, reqId: request.id, url: request.routeOptions.url }, 'store unavailable: answered 503');
    }
    return sendOAuthError(request, reply, oauth);
  });
  app.setNotFoundHandler((request, reply) => {
    return reply.code(404).type('application/json').send({ error: 'not_found', error_description: `No endpoint at ${request.method} ${request.url.split('?')[0]!.slice(0, 200)}.` });
  });

  for (const routes of options.routes) routes(app, ctx);
  return app;
}

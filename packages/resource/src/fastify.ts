/**
 * Fastify plugin and hook.
 *
 * @example
 * import { batonAuth, requireAuth } from '@baton/resource/fastify';
 * await app.register(batonAuth, { guard });
 * app.get('/tasks', { onRequest: requireAuth(guard, { scopes: { any: ['Tasks.Read'] } }) }, async (request) => ({ user: request.auth?.userId }));
 *
 * The plugin skips encapsulation (like `fastify-plugin`), so `request.auth` and the request context
 * reach every route of the app. `GuardError`s thrown by handlers (claims challenges from downstream
 * calls) carry `status` and `headers`, which Fastify's error handler applies; a downstream API that
 * does not answer is answered 502 problem+json by the plugin itself.
 */
import type { FastifyPluginCallback, FastifyReply, FastifyRequest, onRequestHookHandler, preHandlerHookHandler } from 'fastify';
import { DownstreamUnavailableError } from './errors.ts';
import { inServingContext, runWithPrincipal } from './context.ts';
import { checkRequirement, type Guard, type Requirement } from './guard.ts';
import type { Principal } from './principal.ts';
import { authorizationOf, errorResponse, MAX_PUSH_BYTES, traceOf } from './respond.ts';
import { dpopRequestOf } from './dpop.ts';
import type { Signals } from './signals.ts';

declare module 'fastify' {
  interface FastifyRequest {
    /** The verified caller, on routes protected by `requireAuth`; `null` elsewhere. */
    auth: Principal | null;
  }
  interface FastifyInstance {
    /** `requireAuth` bound to the guard given to the plugin. */
    requireAuth(requirement?: Requirement): onRequestHookHandler;
  }
}

export interface BatonAuthOptions {
  guard: Guard;
}

/** An `onRequest` hook: verifies the bearer token and checks `requirement`, before the body is read. */
export function requireAuth(guard: Guard, requirement: Requirement = {}): onRequestHookHandler {
  if (!guard || typeof guard.check !== 'function') throw new TypeError('requireAuth: a guard from createGuard() is required');
  checkRequirement(requirement, 'requireAuth');
  return function batonRequireAuth(request, reply, done) {
    inServingContext(request.raw, reply.raw, () =>
      guard.check(authorizationOf(request.raw), requirement, dpopRequestOf(request.raw)).then(
        (principal) => {
          request.auth = principal;
          runWithPrincipal(principal, () => done(), traceOf(request.raw));
        },
        (error: unknown) => {
          const r = errorResponse(error);
          if (r === undefined) return done(error as Error);
          reply.code(r.status).headers(r.headers);
          if (r.body === undefined) reply.send();
          else reply.send(r.body);
        },
      ),
    );
  };
}

/**
 * Re-enters the request context right before the handler. Parsing a body resumes from the socket's
 * events; Node 24 (AsyncContextFrame) carries the context set in `onRequest` across them, Node 22's
 * async_hooks-based AsyncLocalStorage may not.
 */
const enterContext: preHandlerHookHandler = function batonContext(request: FastifyRequest, reply, done) {
  const auth = request.auth;
  if (auth) inServingContext(request.raw, reply.raw, () => runWithPrincipal(auth, () => done(), traceOf(request.raw)));
  else done();
};

const plugin: FastifyPluginCallback<BatonAuthOptions> = (fastify, options, done) => {
  if (!options?.guard || typeof options.guard.check !== 'function') {
    done(new TypeError('batonAuth: options.guard must be a guard from createGuard()'));
    return;
  }
  const guard = options.guard;
  fastify.decorateRequest('auth', null);
  fastify.decorate('requireAuth', (requirement: Requirement = {}) => requireAuth(guard, requirement));
  fastify.addHook('preHandler', enterContext);
  // A downstream API that does not answer: 502 problem+json, like the other adapters, instead of
  // Fastify's error JSON. Routes added after the plugin get their handler wrapped here (an error
  // handler would replace the application's own).
  fastify.addHook('onRoute', (route) => {
    const handler = route.handler;
    const answer = (error: unknown, reply: FastifyReply): FastifyReply => {
      const r = error instanceof DownstreamUnavailableError && !reply.sent ? errorResponse(error) : undefined;
      if (r === undefined) throw error;
      return reply.code(r.status).headers(r.headers).send(r.body);
    };
    route.handler = function batonHandler(this: unknown, request, reply) {
      let result: unknown;
      try {
        result = handler.call(this as never, request, reply);
      } catch (error) {
        return answer(error, reply);
      }
      if (result instanceof Promise) return result.catch((error: unknown) => answer(error, reply));
      return result;
    } as typeof handler;
  });
  done();
};

/** The plugin (encapsulation skipped, as `fastify-plugin` does). */
export const batonAuth: FastifyPluginCallback<BatonAuthOptions> = Object.assign(plugin, {
  [Symbol.for('skip-override')]: true,
  [Symbol.for('fastify.display-name')]: 'baton-auth',
  [Symbol.for('plugin-meta')]: { name: 'baton-auth', fastify: '5.x' },
});

/**
 * Adds the RFC 8935 push endpoint of `signals` at `path` (POST, `application/secevent+jwt`; every
 * body read as text by a parser scoped to this plugin).
 *
 * @example
 * await app.register(signalsRoute, { signals, path: '/security-events' });
 */
export const signalsRoute: FastifyPluginCallback<{ signals: Pick<Signals, 'handlePush'>; path: string }> = (app, options, done) => {
  const { signals, path } = options;
  if (!signals || typeof signals.handlePush !== 'function') return done(new TypeError('signalsRoute: signals from createSignals() are required'));
  // Every body as text, in this plugin's scope only: the media type is judged by handlePush (RFC 8935 errors).
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'string', bodyLimit: MAX_PUSH_BYTES }, (_request, body, next) => next(null, body));
  app.post(path, async (request, reply) => {
    const answer = await signals.handlePush({
      contentType: request.headers['content-type'],
      authorization: request.headers.authorization,
      body: typeof request.body === 'string' ? request.body : '',
    });
    return reply.code(answer.status).headers(answer.headers).send(answer.body);
  });
  done();
};

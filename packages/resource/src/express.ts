/**
 * Express adapter.
 *
 * @example
 * import { requireAuth, authErrorHandler, getAuth } from '@baton/resource/express';
 * app.get('/tasks', requireAuth(guard, { scopes: { any: ['Tasks.Read'] } }), (req, res) => {
 *   res.json({ user: getAuth(req).userId });
 * });
 * app.use(authErrorHandler()); // renders claims challenges thrown by handlers (downstream calls)
 *
 * `req.auth` is set at runtime; its type comes from `getAuth(req)` or `AuthRequest` rather than a
 * global `Express.Request` augmentation, because express-oauth2-jwt-bearer already declares
 * `Request.auth` with another type and two such declarations in one program do not compile (TS2717).
 *
 * Put body parsers before `requireAuth` (the usual `app.use(express.json())` first): on Node 22,
 * whose AsyncLocalStorage rides on async_hooks, a parser running after it resumes from the socket's
 * events and the handler could lose the request context that `downstream()` and the confused-deputy
 * check rely on (Node 24's AsyncContextFrame keeps it either way).
 */
import type { ErrorRequestHandler, Request, RequestHandler } from 'express';
import { checkRequirement, type Guard, type Requirement } from './guard.ts';
import type { Principal } from './principal.ts';
import { inServingContext, runWithPrincipal } from './context.ts';
import { authorizationOf, errorResponse, PUSH_TOO_LARGE, readBody, traceOf } from './respond.ts';
import { dpopRequestOf } from './dpop.ts';
import type { Signals } from './signals.ts';

export type AuthRequest = Request & { auth: Principal };

/** Verifies the bearer token and checks `requirement`; sets `req.auth` and the request context. */
export function requireAuth(guard: Guard, requirement: Requirement = {}): RequestHandler {
  if (!guard || typeof guard.check !== 'function') throw new TypeError('requireAuth: a guard from createGuard() is required');
  checkRequirement(requirement, 'requireAuth');
  return function batonRequireAuth(req, res, next) {
    inServingContext(req, res, () =>
      // The request a DPoP proof is checked against (the path as the client sent it, before any mount point was stripped).
      guard.check(authorizationOf(req), requirement, dpopRequestOf(req, req.originalUrl)).then(
        (principal) => {
          (req as AuthRequest).auth = principal;
          runWithPrincipal(principal, () => next(), traceOf(req));
        },
        (error: unknown) => {
          const r = errorResponse(error);
          if (r === undefined) return next(error);
          res.status(r.status).set(r.headers);
          if (r.body === undefined) res.end();
          else res.send(r.body);
        },
      ),
    );
  };
}

/** The caller of a request that passed `requireAuth`. Throws if the route has no `requireAuth`. */
export function getAuth(req: Request): Principal {
  const auth = (req as Partial<AuthRequest>).auth;
  if (auth === undefined) throw new TypeError('getAuth: this route is not protected by requireAuth()');
  return auth;
}

/** Renders `GuardError`s (claims challenges from downstream calls, step-up) thrown by handlers. */
export function authErrorHandler(): ErrorRequestHandler {
  return function batonAuthErrorHandler(error, _req, res, next) {
    const r = errorResponse(error);
    if (r === undefined || res.headersSent) return next(error);
    res.status(r.status).set(r.headers);
    if (r.body === undefined) res.end();
    else res.send(r.body);
  };
}

/**
 * The RFC 8935 push endpoint of `signals` (mount it with `app.post(path, signalsEndpoint(signals))`,
 * before or without a body parser for `application/secevent+jwt`: it reads the body itself, or
 * takes the text a parser left in `req.body`).
 */
export function signalsEndpoint(signals: Pick<Signals, 'handlePush'>): RequestHandler {
  if (!signals || typeof signals.handlePush !== 'function') throw new TypeError('signalsEndpoint: signals from createSignals() are required');
  return function batonSignalsEndpoint(req, res, next) {
    const body: Promise<string | undefined> = typeof req.body === 'string' ? Promise.resolve(req.body) : readBody(req);
    body
      .then((text) => (text === undefined ? PUSH_TOO_LARGE : signals.handlePush({ contentType: req.headers['content-type'], authorization: req.headers.authorization, body: text })))
      .then((answer) => {
        res.status(answer.status).set(answer.headers);
        if (answer.body === undefined) res.end();
        else res.send(answer.body);
      }, next);
  };
}

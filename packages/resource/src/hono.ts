/**
 * Hono middleware. `c.get('auth')` is typed through the `AuthEnv` variables.
 *
 * @example
 * import { requireAuth, type AuthEnv } from '@baton/resource/hono';
 * const app = new Hono<AuthEnv>();
 * app.get('/tasks', requireAuth(guard, { scopes: { any: ['Tasks.Read'] } }), (c) => c.json({ user: c.get('auth').userId }));
 */
import type { MiddlewareHandler } from 'hono';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { inInboundContext, inServingContext, runWithPrincipal } from './context.ts';
import { checkRequirement, type Guard, type Requirement } from './guard.ts';
import type { Principal } from './principal.ts';
import { errorFetchResponse, MAX_PUSH_BYTES, PUSH_TOO_LARGE } from './respond.ts';
import type { Signals } from './signals.ts';

export type AuthVariables = { auth: Principal };
export type AuthEnv = { Variables: AuthVariables };

export { errorFetchResponse as authErrorResponse };

/**
 * Verifies the bearer token and checks `requirement`; sets `c.get('auth')` and the request context,
 * and answers `GuardError`s the handler throws (claims challenges from downstream calls).
 */
export function requireAuth(guard: Guard, requirement: Requirement = {}): MiddlewareHandler<AuthEnv> {
  if (!guard || typeof guard.check !== 'function') throw new TypeError('requireAuth: a guard from createGuard() is required');
  checkRequirement(requirement, 'requireAuth');
  return async function batonRequireAuth(c, next) {
    // On @hono/node-server the Node request is at c.env.incoming: its headersDistinct keeps repeated
    // Authorization headers apart. Elsewhere Fetch joins them with ", ", which the parser refuses too.
    const incoming = (c.env as { incoming?: IncomingMessage } | undefined)?.incoming;
    // Always a list, so a header value is never mistaken for a bare token: the scheme is required.
    const joined = c.req.raw.headers.get('authorization');
    const authorization = incoming?.headersDistinct?.authorization ?? (joined === null ? undefined : [joined]);
    const trace = { traceparent: incoming?.headersDistinct?.traceparent ?? c.req.raw.headers.get('traceparent'), tracestate: c.req.raw.headers.get('tracestate') };
    // The OpenTelemetry context of the request (on Node: with Baton's SERVER span when nothing made one).
    const outgoing = (c.env as { outgoing?: ServerResponse } | undefined)?.outgoing;
    const serve = <T>(fn: () => T): T => (incoming !== undefined && outgoing !== undefined ? inServingContext(incoming, outgoing, fn) : inInboundContext(trace, fn));
    let principal: Principal;
    try {
      // The request a DPoP proof is checked against: Fetch's Request has the absolute URL.
      const dpop = c.req.raw.headers.get('dpop');
      const request = { method: c.req.method, url: c.req.url, dpop: incoming?.headersDistinct?.dpop ?? (dpop === null ? undefined : [dpop]) };
      principal = await serve(() => guard.check(authorization, requirement, request));
    } catch (error) {
      const response = errorFetchResponse(error);
      if (response === undefined) throw error;
      return response;
    }
    c.set('auth', principal);
    await serve(() => runWithPrincipal(principal, () => next(), trace));
    if (c.error !== undefined) {
      const response = errorFetchResponse(c.error);
      if (response !== undefined) {
        c.res = undefined;
        c.res = response;
      }
    }
  };
}

/** The RFC 8935 push endpoint of `signals`: `app.post('/security-events', signalsEndpoint(signals))`. */
export function signalsEndpoint(signals: Pick<Signals, 'handlePush'>): (c: { req: { raw: Request } }) => Promise<Response> {
  if (!signals || typeof signals.handlePush !== 'function') throw new TypeError('signalsEndpoint: signals from createSignals() are required');
  return async function batonSignalsEndpoint(c) {
    const raw = c.req.raw;
    const text = await raw.text();
    const answer = Buffer.byteLength(text) > MAX_PUSH_BYTES ? PUSH_TOO_LARGE : await signals.handlePush({ contentType: raw.headers.get('content-type') ?? undefined, authorization: raw.headers.get('authorization') ?? undefined, body: text });
    return new Response(answer.body ?? null, { status: answer.status, headers: answer.headers });
  };
}

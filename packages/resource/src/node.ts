/**
 * Plain `node:http` helpers.
 *
 * @example
 * import { protect } from '@baton/resource/node';
 * http.createServer(protect(guard, { scopes: { any: ['Tasks.Read'] } }, async (req, res, principal) => {
 *   res.end(JSON.stringify({ user: principal.userId }));
 * }));
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { inServingContext, runWithPrincipal } from './context.ts';
import { checkRequirement, type Guard, type Requirement } from './guard.ts';
import type { Principal } from './principal.ts';
import { authorizationOf, PUSH_TOO_LARGE, readBody, traceOf, writeErrorResponse } from './respond.ts';
import { dpopRequestOf } from './dpop.ts';
import type { Signals } from './signals.ts';

/**
 * Verifies the request's bearer token and checks `requirement`. On refusal, writes the response
 * (401/400/403/503 with `WWW-Authenticate`) and returns `undefined`. Other errors are thrown.
 *
 * It does not set the request context (an `await` cannot carry one back to its caller): run the
 * rest of the handling inside `runWithPrincipal(principal, …)`, or use `protect()`, which does.
 */
export async function authenticate(req: IncomingMessage, res: ServerResponse, guard: Guard, requirement: Requirement = {}): Promise<Principal | undefined> {
  try {
    return await inServingContext(req, res, () => guard.check(authorizationOf(req), requirement, dpopRequestOf(req)));
  } catch (error) {
    if (writeErrorResponse(res, error)) return undefined;
    throw error;
  }
}

export type ProtectedHandler = (req: IncomingMessage, res: ServerResponse, principal: Principal) => unknown;

/**
 * A request listener: authenticates, runs `handler` inside the request context, and answers
 * `GuardError`s the handler throws (claims challenges from downstream calls). Anything else it
 * throws becomes a bare 500, never the error text.
 */
export function protect(guard: Guard, requirement: Requirement, handler: ProtectedHandler): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  if (!guard || typeof guard.check !== 'function') throw new TypeError('protect: a guard from createGuard() is required');
  checkRequirement(requirement, 'protect');
  if (typeof handler !== 'function') throw new TypeError('protect: handler must be a function');
  return async function batonProtected(req, res) {
    try {
      const principal = await authenticate(req, res, guard, requirement);
      if (principal === undefined) return;
      await inServingContext(req, res, () => runWithPrincipal(principal, () => handler(req, res, principal), traceOf(req)));
    } catch (error) {
      if (writeErrorResponse(res, error)) return;
      if (!res.headersSent) res.writeHead(500, { 'content-length': 0 }).end();
      else res.destroy();
    }
  };
}

/**
 * The RFC 8935 push endpoint of `signals`: a request listener for the path the stream's
 * `delivery.endpoint_url` names (POST, `application/secevent+jwt`; `202`, or `400 {err, description}`).
 *
 * @example
 * http.createServer((req, res) => req.url === '/security-events' ? push(req, res) : api(req, res));
 * const push = signalsEndpoint(signals);
 */
export function signalsEndpoint(signals: Pick<Signals, 'handlePush'>): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  if (!signals || typeof signals.handlePush !== 'function') throw new TypeError('signalsEndpoint: signals from createSignals() are required');
  return async function batonSignalsEndpoint(req, res) {
    if (req.method !== 'POST') {
      res.writeHead(405, { allow: 'POST', 'content-length': 0 }).end();
      return;
    }
    const body = await readBody(req);
    const answer = body === undefined ? PUSH_TOO_LARGE : await signals.handlePush({ contentType: req.headers['content-type'], authorization: req.headers.authorization, body });
    res.writeHead(answer.status, { ...answer.headers, 'content-length': answer.body === undefined ? 0 : Buffer.byteLength(answer.body) }).end(answer.body);
  };
}

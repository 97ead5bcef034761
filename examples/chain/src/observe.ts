/**
 * What each example API reports about the requests it serves, for the chain view.
 *
 * This is demo instrumentation, not part of the pattern: a real API would emit the same facts as
 * trace spans (OpenTelemetry) keyed by the W3C `traceparent` the SDK already passes along. Here
 * every API runs in the `baton dev` process, so they hand a plain object to the chain log.
 *
 * A report carries the *verified* claims of the token the API accepted (from the SDK's
 * `Principal`), never the token itself: nothing here can be replayed.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Principal } from '@baton/resource';

/** One attempt to reach the next API that never became a call (refused before anything was sent). */
export interface DownstreamRefusal {
  /** Client id of the API the call was meant for. */
  to: string;
  /** Who refused: the resource SDK in this process (confused deputy), or this API's own code. */
  by: 'sdk' | 'api';
  rule: string;
  description: string;
  /** The identity the API tried to use (`app` = its own application identity). */
  as: 'user' | 'app';
}

/** A request an API served (or refused), reported when its response is finished. */
export interface HopReport {
  /** The W3C trace id of the request (from `traceparent`); one user action = one trace. */
  traceId: string;
  /** Client id of the API that received the call. */
  api: string;
  method: string;
  path: string;
  status: number;
  startedAt: number;
  finishedAt: number;
  /** The verified claims of the caller's token, when the guard accepted it. */
  claims?: Readonly<Record<string, unknown>> | undefined;
  /** Why the API refused or failed the request, in words (the guard's description, or the API's own). */
  reason?: string | undefined;
  /** Calls to the next API refused before they were made. */
  refusals: DownstreamRefusal[];
}

export interface HopObserver {
  hop(report: HopReport): void;
}

/** What a handler adds to the report of the request it serves. */
export interface HopState {
  principal: Principal | undefined;
  reason: string | undefined;
  refusals: DownstreamRefusal[];
}

const states = new WeakMap<IncomingMessage, HopState>();

// W3C Trace Context §3.2.
const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$/;

/** The trace id of a `traceparent` value, if it is well-formed. */
export function traceIdOf(traceparent: string | string[] | undefined): string | undefined {
  const value = Array.isArray(traceparent) ? traceparent[0] : traceparent;
  const match = value === undefined ? null : TRACEPARENT.exec(value.trim());
  return match === null || /^0+$/.test(match[1] as string) ? undefined : (match[1] as string);
}

/** The `error_description` of a `WWW-Authenticate: Bearer …` header, for the report. */
function challengeDescription(header: unknown): string | undefined {
  if (typeof header !== 'string') return undefined;
  const error = /error="([^"]*)"/.exec(header)?.[1];
  const description = /error_description="((?:[^"\\]|\\.)*)"/.exec(header)?.[1];
  if (error === undefined && description === undefined) return 'No bearer token.';
  return [error, description?.replace(/\\(.)/g, '$1')].filter(Boolean).join(': ');
}

/**
 * Starts tracking one request at the Node level (works under Express, Fastify and Hono alike);
 * the report is sent once, when the response is finished or the connection closes.
 */
export function trackHop(observer: HopObserver | undefined, api: string, req: IncomingMessage, res: ServerResponse): HopState {
  const state: HopState = { principal: undefined, reason: undefined, refusals: [] };
  states.set(req, state);
  if (observer === undefined) return state;
  const startedAt = Date.now();
  const traceId = traceIdOf(req.headers.traceparent) ?? 'untraced';
  let sent = false;
  const send = () => {
    if (sent) return;
    sent = true;
    const status = res.headersSent ? res.statusCode : 499;
    const reason = state.reason ?? (status === 401 || status === 403 ? challengeDescription(res.getHeader('www-authenticate')) : undefined);
    observer.hop({
      traceId,
      api,
      method: req.method ?? 'GET',
      path: (req.url ?? '/').split('?')[0] as string,
      status,
      startedAt,
      finishedAt: Date.now(),
      claims: state.principal?.claims,
      reason,
      refusals: state.refusals,
    });
  };
  res.once('finish', send);
  res.once('close', send);
  return state;
}

/** The tracking state of a request (an empty one if it is not tracked). */
export function hopOf(req: IncomingMessage): HopState {
  let state = states.get(req);
  if (state === undefined) {
    state = { principal: undefined, reason: undefined, refusals: [] };
    states.set(req, state);
  }
  return state;
}

/**
 * The request being served, carried by `AsyncLocalStorage` from the adapter to any code the handler
 * calls: `downstream(...)` finds the user there, and `appToken()` refuses to act as the application
 * while a user is being served (the confused deputy) unless told so explicitly.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type { Principal } from './principal.ts';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Context } from '@opentelemetry/api';
import { endServerSpan, inboundContext, injectedTraceHeaders, serverSpanContext, withContext } from './tracing.ts';

export interface RequestContext {
  readonly principal: Principal;
  /** The inbound W3C `traceparent`, if well-formed, passed on to downstream calls. */
  readonly traceparent: string | undefined;
  readonly tracestate: string | undefined;
}

const storage = new AsyncLocalStorage<RequestContext>();

// W3C Trace Context §3.2: version 00, 32-hex trace id and 16-hex parent id, neither all zeros.
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/** The header if it is a valid `traceparent`, else `undefined`. */
export function validTraceparent(value: unknown): string | undefined {
  if (typeof value !== 'string') return undefined;
  const m = TRACEPARENT.exec(value.trim());
  if (!m || m[1] === 'ff' || /^0+$/.test(m[2] as string) || /^0+$/.test(m[3] as string)) return undefined;
  return value.trim();
}

/** The inbound trace headers, as an adapter reads them from the request. */
export interface InboundTrace {
  traceparent?: string | string[] | null | undefined;
  tracestate?: string | string[] | null | undefined;
}

/** The request's `traceparent` if valid, and its `tracestate` (joined, bounded) only then. */
function readInboundTrace(trace: InboundTrace): { traceparent: string | undefined; tracestate: string | undefined } {
  const first = (v: string | string[] | null | undefined) => (Array.isArray(v) ? (v.length === 1 ? v[0] : undefined) : (v ?? undefined));
  // Trace Context §3.2: more than one traceparent is invalid; tracestate may be split over headers.
  const traceparent = validTraceparent(first(trace.traceparent));
  const state = Array.isArray(trace.tracestate) ? trace.tracestate.join(',') : (trace.tracestate ?? undefined);
  const tracestate = traceparent && state ? state.slice(0, 512) : undefined;
  return { traceparent, tracestate };
}

/**
 * Runs `fn` in the OpenTelemetry context of a request with these trace headers: the active span if
 * the application's HTTP instrumentation made one, else the caller's span the `traceparent` names.
 * For runtimes without a Node request (Hono on Fetch); Node adapters use `inServingContext`.
 */
export function inInboundContext<T>(trace: InboundTrace, fn: () => T): T {
  return withContext(inboundContext(readInboundTrace(trace)), fn);
}

const serving = new WeakMap<IncomingMessage, Context>();

/**
 * Runs `fn` in the OpenTelemetry context a Node request is served in — what the adapters run the
 * guard and the handler in. The active span when the application's HTTP instrumentation made one;
 * else, with an SDK installed, a SERVER span `METHOD` child of the caller's `traceparent`, ended
 * when `res` closes (tracing.ts). The same context for every call with the same request.
 */
export function inServingContext<T>(req: IncomingMessage, res: ServerResponse, fn: () => T): T {
  let ctx = serving.get(req);
  if (ctx === undefined) {
    const started = serverSpanContext(req.method ?? 'GET', (req.url ?? '/').split('?')[0] as string, readInboundTrace({ traceparent: req.headersDistinct.traceparent, tracestate: req.headersDistinct.tracestate }));
    ctx = started.ctx;
    serving.set(req, ctx);
    const span = started.span;
    if (span !== undefined) res.once('close', () => endServerSpan(span, res.statusCode));
  }
  return withContext(ctx, fn);
}

/**
 * Runs `fn` as the handling of a request made by `principal`, in the OpenTelemetry context its trace
 * headers name. Adapters call this; so can tests and custom integrations.
 */
export function runWithPrincipal<T>(principal: Principal, fn: () => T, trace: InboundTrace = {}): T {
  const inbound = readInboundTrace(trace);
  return withContext(inboundContext(inbound), () => storage.run({ principal, ...inbound }, fn));
}

/**
 * The trace headers of an outgoing request made now: the registered OpenTelemetry propagator's (the
 * active span as the parent); without an SDK, those of `served` (the request being served, when the
 * call is made for its caller) unchanged.
 */
export function outgoingTraceHeaders(served: RequestContext | undefined): Record<string, string> {
  const headers = injectedTraceHeaders();
  if (headers.traceparent === undefined && served?.traceparent) {
    headers.traceparent = served.traceparent;
    if (served.tracestate) headers.tracestate = served.tracestate;
  }
  return headers;
}

/** The request context, inside a request handled through an adapter (or `runWithPrincipal`). */
export function currentContext(): RequestContext | undefined {
  return storage.getStore();
}

/** The caller of the request being handled, if any. */
export function currentPrincipal(): Principal | undefined {
  return storage.getStore()?.principal;
}

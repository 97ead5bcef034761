/**
 * The request being served, carried by `AsyncLocalStorage` from the adapter to any code the handler
 * calls: `downstream(...)` finds the user there, and `appToken()` refuses to act as the application
 * while a user is being served (the confused deputy) unless told so explicitly.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type { Principal } from './principal.ts';

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

/** Runs `fn` as the handling of a request made by `principal`. Adapters call this; so can tests and custom integrations. */
export function runWithPrincipal<T>(
  principal: Principal,
  fn: () => T,
  trace: { traceparent?: string | string[] | null | undefined; tracestate?: string | string[] | null | undefined } = {},
): T {
  const first = (v: string | string[] | null | undefined) => (Array.isArray(v) ? (v.length === 1 ? v[0] : undefined) : (v ?? undefined));
  // Trace Context §3.2: more than one traceparent is invalid; tracestate may be split over headers.
  const traceparent = validTraceparent(first(trace.traceparent));
  const state = Array.isArray(trace.tracestate) ? trace.tracestate.join(',') : (trace.tracestate ?? undefined);
  const tracestate = traceparent && state ? state.slice(0, 512) : undefined;
  return storage.run({ principal, traceparent, tracestate }, fn);
}

/** The request context, inside a request handled through an adapter (or `runWithPrincipal`). */
export function currentContext(): RequestContext | undefined {
  return storage.getStore();
}

/** The caller of the request being handled, if any. */
export function currentPrincipal(): Principal | undefined {
  return storage.getStore()?.principal;
}

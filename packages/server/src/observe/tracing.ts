/**
 * OpenTelemetry traces of the token service, through `@opentelemetry/api` only: the application
 * (or `node --import` of a setup file, docs/operations.md "Tracing") installs the SDK. With no SDK
 * registered every call below is the API's no-op: a non-recording span, no context switch, no
 * attribute kept. Under a request that is not sampled (or with no SDK) only the request's span is
 * started: its children (client authentication, the decision, store calls, signatures) are not
 * made at all (`recordingSpan`), so an unsampled request costs one span, not five.
 *
 * Spans (names and attributes in docs/operations.md): the token endpoint (SERVER, with the remote
 * parent taken from the request's W3C `traceparent`/`tracestate`), client authentication, the
 * exchange decision (`baton.exchange.rule`), every store call, every signature.
 *
 * Never recorded: a token, an assertion, a secret, a code, a password: attributes are client ids,
 * tenant ids, grant types, OAuth error codes, rule names, key ids and algorithms.
 */
import {
  INVALID_SPAN_CONTEXT,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  context,
  isSpanContextValid,
  propagation,
  trace,
  type Attributes,
  type Context,
  type Span,
  type SpanOptions,
} from '@opentelemetry/api';
import { errorCodeOf, type Signer } from '@baton/core';
import type { Store } from '../store/types.ts';
import { observeStore } from '../store/observed.ts';

/** The instrumentation scope's version: this package's. */
export const TRACER_VERSION = '0.1.0';

/**
 * The server's tracer. `trace.getTracer` hands out a proxy until an SDK registers a provider, so
 * taking it at load time is right even when the SDK is set up later.
 */
export const tracer = trace.getTracer('@baton/server', TRACER_VERSION);

export { SpanKind, SpanStatusCode, type Span };

/** The remote parent a request names in its `traceparent`/`tracestate` (the registered propagator's reading). */
export function inboundContext(headers: Record<string, string | string[] | undefined>): Context {
  return propagation.extract(ROOT_CONTEXT, headers);
}

/**
 * Runs `fn` in the span of a request `name`, child of `parent` (a remote parent from
 * `inboundContext`), active while `fn` runs (one context switch). When the span has no valid
 * context — no SDK registered and no `traceparent` — there is nothing to carry: `fn` runs as is.
 * `fn` ends the span.
 */
export function inRequestSpan<T>(name: string, options: SpanOptions, parent: Context, fn: (span: Span) => T): T {
  const span = tracer.startSpan(name, options, parent);
  if (!isSpanContextValid(span.spanContext())) return fn(span);
  return context.with(trace.setSpan(parent, span), fn, undefined, span);
}

/** Marks `span` failed by `error`: ERROR status and `error.type`, the error's code (core's `errorCodeOf`). */
export function failSpan(span: Span, error: unknown): void {
  if (!span.isRecording()) return;
  const type = errorCodeOf(error);
  span.setAttribute('error.type', type);
  span.setStatus({ code: SpanStatusCode.ERROR, message: type });
}

/** The span in which nothing is recorded: what `fn` gets where no child span is made. */
const NOT_RECORDING: Span = trace.wrapSpanContext(INVALID_SPAN_CONTEXT);

/**
 * The active span if it records, else undefined. A child span is made only under a recording one:
 * under an unsampled request (a ParentBased sampler never samples its children) or outside any
 * request, the child would be a non-recording span, or an orphan root trace, for nothing.
 */
export function recordingSpan(): Span | undefined {
  const active = trace.getActiveSpan();
  return active !== undefined && active.isRecording() ? active : undefined;
}

/**
 * Runs `fn` in a new active child span `name`, ended when `fn` settles; a rejection marks it failed
 * (`onError`, by default `failSpan`) and is rethrown unchanged. Under no recording span (`recordingSpan`) `fn` runs at
 * once, given the active span (its ids still name the request's trace) or a non-recording one:
 * no span, no attribute, no context switch.
 */
export function inSpan<T>(name: string, attributes: Attributes, fn: (span: Span) => Promise<T>, kind: SpanKind = SpanKind.INTERNAL, onError: (span: Span, error: unknown) => void = failSpan): Promise<T> {
  if (recordingSpan() === undefined) return fn(trace.getActiveSpan() ?? NOT_RECORDING);
  return tracer.startActiveSpan(name, { kind, attributes }, async (span) => {
    try {
      return await fn(span);
    } catch (error) {
      onError(span, error);
      throw error;
    } finally {
      span.end();
    }
  });
}

/**
 * `inSpan` for a leaf (a store call, a signature): the span is started but not made active, since
 * nothing runs under it — no context switch, the cheapest span the SDK makes. `attributes` is
 * called only when the span is made.
 */
export function inLeafSpan<T>(name: string, attributes: Attributes | (() => Attributes), fn: () => Promise<T>, kind: SpanKind = SpanKind.INTERNAL): Promise<T> {
  if (recordingSpan() === undefined) return fn();
  return leafSpan(name, typeof attributes === 'function' ? attributes() : attributes, fn, kind);
}

async function leafSpan<T>(name: string, attributes: Attributes, fn: () => Promise<T>, kind: SpanKind): Promise<T> {
  const span = tracer.startSpan(name, { kind, attributes });
  try {
    return await fn();
  } catch (error) {
    failSpan(span, error);
    throw error;
  } finally {
    span.end();
  }
}

/** `trace_id`/`span_id` of the active span, for log lines (pino's `mixin`); nothing without one. */
export function activeTraceIds(): { trace_id: string; span_id: string } | Record<string, never> {
  const span = trace.getActiveSpan();
  if (span === undefined) return {};
  const ids = span.spanContext();
  return isSpanContextValid(ids) ? { trace_id: ids.traceId, span_id: ids.spanId } : {};
}

/**
 * The store, each call made inside a traced request a CLIENT span `baton.store <method>` (OTel database conventions:
 * `db.system.name`, `db.operation.name`), through the one store wrapper (store/observed.ts); arguments are not recorded
 * (they hold ids, hashes and sealed values, not for traces).
 */
export function traceStore<S extends Store>(store: S): S {
  const system = store.engine === 'postgres' ? 'postgresql' : 'sqlite';
  const spans = new Map<string, { name: string; attributes: Attributes }>();
  return observeStore(store, (operation, call) => {
    // Only calls made for a recording request: start-up, sweeps, listeners and unsampled requests make no spans.
    if (recordingSpan() === undefined) return call();
    let span = spans.get(operation);
    if (span === undefined) {
      span = { name: `baton.store ${operation}`, attributes: { 'db.system.name': system, 'db.operation.name': operation } };
      spans.set(operation, span);
    }
    return leafSpan(span.name, span.attributes, call, SpanKind.CLIENT);
  });
}

/** The signer with each `signAsync` a span `baton.sign` (`baton.sign.alg`, `baton.sign.kid`, the JWT `typ`). */
export function traceSigner(signer: Signer): Signer {
  // The attributes by `typ` (a handful: at+jwt, JWT, id tokens'), built once each.
  const byTyp = new Map<string, Attributes>();
  const attributesOf = (typ: string): Attributes => {
    let attributes = byTyp.get(typ);
    if (attributes === undefined) {
      attributes = { 'baton.sign.alg': signer.alg, 'baton.sign.kid': signer.kid, 'baton.sign.typ': typ };
      if (byTyp.size < 16) byTyp.set(typ, attributes);
    }
    return attributes;
  };
  return {
    kid: signer.kid,
    alg: signer.alg,
    sign: (payload, typ) => signer.sign(payload, typ),
    signAsync: (payload, typ) => (recordingSpan() === undefined ? signer.signAsync(payload, typ) : leafSpan('baton.sign', attributesOf(typ ?? 'JWT'), () => signer.signAsync(payload, typ), SpanKind.INTERNAL)),
  };
}

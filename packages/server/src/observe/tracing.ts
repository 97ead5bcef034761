/**
 * OpenTelemetry traces of the token service, through `@opentelemetry/api` only: the application
 * (or `node --import` of a setup file, docs/operations.md "Tracing") installs the SDK. With no SDK
 * registered every call below is the API's no-op: a non-recording span, no context switch, no
 * attribute kept.
 *
 * Spans (names and attributes in docs/operations.md): the token endpoint (SERVER, with the remote
 * parent taken from the request's W3C `traceparent`/`tracestate`), client authentication, the
 * exchange decision (`baton.exchange.rule`), every store call, every signature.
 *
 * Never recorded: a token, an assertion, a secret, a code, a password: attributes are client ids,
 * tenant ids, grant types, OAuth error codes, rule names, key ids and algorithms.
 */
import {
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

/** Runs `fn` with `parent` as the active context. */
export function withContext<T>(parent: Context, fn: () => T): T {
  return context.with(parent, fn);
}

/** Marks `span` failed by `error`: ERROR status and `error.type`, the error's code (core's `errorCodeOf`). */
export function failSpan(span: Span, error: unknown): void {
  if (!span.isRecording()) return;
  const type = errorCodeOf(error);
  span.setAttribute('error.type', type);
  span.setStatus({ code: SpanStatusCode.ERROR, message: type });
}

/**
 * Runs `fn` in a new active child span `name`, ended when `fn` settles; a rejection marks it failed
 * (`failSpan`) and is rethrown unchanged.
 */
export function inSpan<T>(name: string, attributes: Attributes, fn: (span: Span) => Promise<T>, kind: SpanKind = SpanKind.INTERNAL): Promise<T> {
  return tracer.startActiveSpan(name, { kind, attributes }, async (span) => {
    try {
      return await fn(span);
    } catch (error) {
      failSpan(span, error);
      throw error;
    } finally {
      span.end();
    }
  });
}

/**
 * `inSpan` for a leaf (a store call, a signature): the span is started but not made active, since
 * nothing runs under it — no context switch, the cheapest span the SDK makes.
 */
export async function inLeafSpan<T>(name: string, attributes: Attributes, fn: () => Promise<T>, kind: SpanKind = SpanKind.INTERNAL): Promise<T> {
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
    // Only calls made for a traced request: start-up, sweeps and listeners make no root spans.
    if (trace.getActiveSpan() === undefined) return call();
    let span = spans.get(operation);
    if (span === undefined) {
      span = { name: `baton.store ${operation}`, attributes: { 'db.system.name': system, 'db.operation.name': operation } };
      spans.set(operation, span);
    }
    return inLeafSpan(span.name, span.attributes, call, SpanKind.CLIENT);
  });
}

/** The signer with each `signAsync` a span `baton.sign` (`baton.sign.alg`, `baton.sign.kid`, the JWT `typ`). */
export function traceSigner(signer: Signer): Signer {
  const attributes = { 'baton.sign.alg': signer.alg, 'baton.sign.kid': signer.kid };
  return {
    kid: signer.kid,
    alg: signer.alg,
    sign: (payload, typ) => signer.sign(payload, typ),
    signAsync: (payload, typ) => inLeafSpan('baton.sign', { ...attributes, 'baton.sign.typ': typ ?? 'JWT' }, () => signer.signAsync(payload, typ)),
  };
}

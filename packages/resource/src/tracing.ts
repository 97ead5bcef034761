/**
 * OpenTelemetry traces of the SDK, through `@opentelemetry/api` only: the application installs the
 * OTel SDK (a tracer provider, a context manager, the W3C propagator). Without one every call here is
 * the API's no-op, and the inbound `traceparent`/`tracestate` are still passed on by hand (context.ts).
 *
 * Spans: `baton.guard` (validate + authorize: result and reason), `baton.obo` (an exchange or app
 * token: cache hit, miss or joined in-flight request), a CLIENT span per HTTP request to the token
 * service and per downstream call (OTel HTTP client conventions), each request carrying the W3C
 * trace context of its span, so the next hop's spans are its children.
 *
 * Never recorded: a token, an assertion, a secret, a claims challenge's value beyond its presence,
 * a URL's query string.
 */
import { SpanKind, SpanStatusCode, context, propagation, trace, type Attributes, type Context, type Span } from '@opentelemetry/api';
import { errorCodeOf } from '@baton/core';

/** The instrumentation scope's version: this package's. */
export const TRACER_VERSION = '0.1.0';

/** A proxy until an SDK registers a provider: taking it at load time is right. */
export const tracer = trace.getTracer('@baton/resource', TRACER_VERSION);

export { SpanKind, SpanStatusCode, type Span };

/**
 * The context a request is served in: the active one when a span is already active (the
 * application's HTTP server instrumentation made it), else the remote parent its (validated)
 * `traceparent` names, read by the registered propagator.
 */
export function inboundContext(headers: { traceparent: string | undefined; tracestate: string | undefined }): Context {
  const active = context.active();
  if (headers.traceparent === undefined || trace.getSpan(active) !== undefined) return active;
  const carrier: Record<string, string> = { traceparent: headers.traceparent };
  if (headers.tracestate !== undefined) carrier.tracestate = headers.tracestate;
  return propagation.extract(active, carrier);
}

/**
 * The context to serve a request in, and the SERVER span Baton started for it: none when a span is
 * already active (the application's HTTP instrumentation made it: Baton's spans nest under it) or
 * when nothing records (no SDK); else a SERVER span `METHOD`, child of the caller's `traceparent`,
 * which the caller ends when the response is done (`endServerSpan`).
 */
export function serverSpanContext(method: string, path: string, headers: { traceparent: string | undefined; tracestate: string | undefined }): { ctx: Context; span: Span | undefined } {
  const active = context.active();
  if (trace.getSpan(active) !== undefined) return { ctx: active, span: undefined };
  const parent = inboundContext(headers);
  const span = tracer.startSpan(method, { kind: SpanKind.SERVER, attributes: { 'http.request.method': method, 'url.path': path } }, parent);
  if (!span.isRecording()) return { ctx: parent, span: undefined };
  return { ctx: trace.setSpan(parent, span), span };
}

/** Ends a SERVER span with the response's status (5xx: ERROR, OTel HTTP server conventions). */
export function endServerSpan(span: Span, status: number): void {
  span.setAttribute('http.response.status_code', status);
  if (status >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
  span.end();
}

/** The active context's trace headers, as the registered propagator writes them (none without an SDK). */
export function injectedTraceHeaders(): Record<string, string> {
  const carrier: Record<string, string> = {};
  propagation.inject(context.active(), carrier);
  return carrier;
}

/** Runs `fn` with `ctx` active. */
export function withContext<T>(ctx: Context, fn: () => T): T {
  return context.with(ctx, fn);
}

/** ERROR status and `error.type` for `error` (its code, never its message: that may quote input). */
export function failSpan(span: Span, error: unknown): void {
  if (!span.isRecording()) return;
  const type = errorCodeOf(error);
  span.setAttribute('error.type', type);
  span.setStatus({ code: SpanStatusCode.ERROR, message: type });
}

/** Runs `fn` in a new active span, ended when it settles; a rejection goes through `onError` (default `failSpan`). */
export function inSpan<T>(name: string, options: { kind?: SpanKind; attributes?: Attributes }, fn: (span: Span) => Promise<T>, onError: (span: Span, error: unknown) => void = failSpan): Promise<T> {
  return tracer.startActiveSpan(name, options, async (span) => {
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

/** OTel HTTP client attributes of a request to `url` (no query string: it may carry data). */
export function httpClientAttributes(method: string, url: URL): Attributes {
  const port = url.port === '' ? (url.protocol === 'https:' ? 443 : 80) : Number(url.port);
  return { 'http.request.method': method, 'server.address': url.hostname, 'server.port': port, 'url.full': `${url.origin}${url.pathname}`, 'url.scheme': url.protocol.slice(0, -1) };
}

/** A CLIENT span's answer: the status code; 4xx/5xx are failures of the call (OTel HTTP client conventions). */
export function recordHttpStatus(span: Span, status: number): void {
  if (!span.isRecording()) return;
  span.setAttribute('http.response.status_code', status);
  if (status >= 400) {
    span.setAttribute('error.type', String(status));
    span.setStatus({ code: SpanStatusCode.ERROR });
  }
}

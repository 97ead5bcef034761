/**
 * W3C Trace Context: one trace per user action, carried by `traceparent` from Tasks Web through
 * every API (the resource SDK passes it on to the next hop). The chain view groups hops by it.
 *
 * With an OpenTelemetry SDK installed (otel.ts: `OTEL_EXPORTER_OTLP_ENDPOINT`), a user action is a
 * root span and its trace is the action's: every API's and the token service's spans join it.
 */
import { randomBytes } from 'node:crypto';
import { isSpanContextValid, trace, type Attributes } from '@opentelemetry/api';

const tracer = trace.getTracer('@baton/example-chain', '0.1.0');

export interface Trace {
  traceId: string;
  /** The `traceparent` header value to send. */
  traceparent: string;
}

export function newTrace(): Trace {
  const traceId = randomBytes(16).toString('hex');
  return { traceId, traceparent: `00-${traceId}-${randomBytes(8).toString('hex')}-01` };
}

/**
 * Runs one user action (or background job) `name` as a trace (no user input in the name or
 * `attributes`: the title of a document is not for traces): with an SDK installed, a root span whose
 * trace and span ids make the `traceparent` sent to the first API; otherwise a fresh random trace.
 */
export function traceAction<T>(name: string, attributes: Attributes, run: (trace: Trace) => Promise<T>): Promise<T> {
  return tracer.startActiveSpan(name, { root: true, attributes }, async (span) => {
    try {
      const ids = span.spanContext();
      return await run(isSpanContextValid(ids) && span.isRecording() ? { traceId: ids.traceId, traceparent: `00-${ids.traceId}-${ids.spanId}-01` } : newTrace());
    } finally {
      span.end();
    }
  });
}

/** What a client tells the chain view about a user action (the ChainLog implements it). */
export interface Narrator {
  begin(traceId: string, init: { label: string; actor: string; kind?: 'delegated' | 'app-only' | 'unknown' }): void;
  note(traceId: string, text: string, tone?: 'info' | 'warn' | 'error'): void;
  finish(traceId: string): void;
}

export const silentNarrator: Narrator = { begin() {}, note() {}, finish() {} };

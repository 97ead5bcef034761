/**
 * W3C Trace Context: one trace per user action, carried by `traceparent` from Tasks Web through
 * every API (the resource SDK passes it on to the next hop). The chain view groups hops by it.
 */
import { randomBytes } from 'node:crypto';

export interface Trace {
  traceId: string;
  /** The `traceparent` header value to send. */
  traceparent: string;
}

export function newTrace(): Trace {
  const traceId = randomBytes(16).toString('hex');
  return { traceId, traceparent: `00-${traceId}-${randomBytes(8).toString('hex')}-01` };
}

/** What a client tells the chain view about a user action (the ChainLog implements it). */
export interface Narrator {
  begin(traceId: string, init: { label: string; actor: string; kind?: 'delegated' | 'app-only' | 'unknown' }): void;
  note(traceId: string, text: string, tone?: 'info' | 'warn' | 'error'): void;
  finish(traceId: string): void;
}

export const silentNarrator: Narrator = { begin() {}, note() {}, finish() {} };

/**
 * The audit trail of token exchanges (On-Behalf-Of and RFC 8693): one structured event per
 * exchange, allowed or refused, saying who asked for what on whose behalf, what was granted, the
 * delegation chain, and the rule that decided.
 *
 * Every event goes two ways:
 * - to the operator's log (pino, level info, `audit: 'token_exchange'` marks it), so it lands
 *   wherever the service's logs go;
 * - to an in-process feed: the last {@link AUDIT_BUFFER_SIZE} events in a ring buffer plus live
 *   subscribers, for the "chain view" page that shows each hop as it happens.
 *
 * An event never carries a token, a secret or a password: the tokens are named by their `jti`
 * (Baton's `uti` is derived from it), which the token service and the API logs share.
 */
import type { Logger } from 'pino';
import { isSpanContextValid, type Span } from '@opentelemetry/api';
import type { ServerContext } from './context.ts';
import { EventFeed } from './event-feed.ts';

/** How many recent events the in-process feed keeps. */
export const AUDIT_BUFFER_SIZE = 200;

/**
 * The rule that decided. Core's `ExchangeRule` names (`consent`, `conditional-access`, …) plus the
 * steps the server runs before the decision: `request` (parameters), `assertion-signature`
 * (size, format, `typ`, key, signature), and `server` (an unexpected failure, answered with 500).
 */
export type AuditRule = string;

export interface ExchangeAuditEvent {
  /** Monotonic within this process: lets a subscriber that reconnects ask for what it missed. */
  seq: number;
  /** ISO 8601 instant of the decision. */
  time: string;
  /** `on_behalf_of` (Microsoft's jwt-bearer form) or `token_exchange` (RFC 8693). */
  form: 'on_behalf_of' | 'token_exchange';
  /** Tenant path segment (`contoso`) and `tid`. */
  tenant: string;
  tid: string;
  /** The user's `oid`, once the assertion was verified and named one. */
  user?: string | undefined;
  /** The calling application (the middle tier) — authenticated. */
  caller: string;
  /** The downstream API's client id, once known. */
  api?: string | undefined;
  /** The `scope` items as the request named them (OIDC scopes included). */
  scopesRequested: string[];
  /** Scope values granted on `api`; empty when refused. */
  scopesGranted: string[];
  /**
   * The delegation chain, newest first: for an allowed exchange the new token's `act` chain (the
   * caller first); for a refused one, the caller followed by the assertion's actors.
   */
  chain: string[];
  decision: 'allow' | 'refuse' | 'error';
  rule: AuditRule;
  /** For refusals: the OAuth error, its Entra code and suberror, the public description. */
  error?: string | undefined;
  entraCode?: number | undefined;
  suberror?: string | undefined;
  description?: string | undefined;
  /** The incoming assertion / subject token, by `jti` (or `uti`) — never the token. */
  subjectTokenId?: string | undefined;
  /** The token issued, by `jti`. */
  issuedTokenId?: string | undefined;
  /** W3C Trace Context `traceparent` of the request, when well-formed. */
  traceparent?: string | undefined;
  /**
   * The trace this exchange belongs to (`trace_id` in the log line): the active span's trace when an
   * OpenTelemetry SDK is installed, else the inbound `traceparent`'s.
   */
  traceId?: string | undefined;
  /** The exchange's own span (`baton.exchange`), when an SDK records it. */
  spanId?: string | undefined;
  /** MSAL's `client-request-id` / the correlation id answered to the client. */
  correlationId: string;
  /** Remote address of the request (the middle tier's). */
  ip?: string | undefined;
  /** Milliseconds the exchange took inside the grant handler. */
  durationMs?: number | undefined;
}

export type AuditListener = (event: ExchangeAuditEvent) => void;


/** The fields a caller provides; `seq` and `time` are stamped by {@link AuditLog.record}. */
export type AuditEventInput = Omit<ExchangeAuditEvent, 'seq' | 'time'> & { time?: string };

// W3C Trace Context §3.2: version-traceid-parentid-flags, lower-case hex; all-zero ids are invalid.
const TRACEPARENT = /^[0-9a-f]{2}-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$/;

/** The `traceparent` header if it is well-formed (anything else is dropped, not logged). */
export function validTraceparent(value: string | undefined): string | undefined {
  return value !== undefined && value.length === 55 && TRACEPARENT.test(value) && !value.startsWith('ff') ? value : undefined;
}

/** `traceId`/`spanId` of an audit event: the recording span's, else the trace id of a well-formed `traceparent`. */
export function traceIdsOf(span: Span | undefined, traceparent: string | undefined): { traceId?: string; spanId?: string } {
  const ids = span?.spanContext();
  if (ids !== undefined && isSpanContextValid(ids)) return { traceId: ids.traceId, spanId: ids.spanId };
  const valid = validTraceparent(traceparent);
  return valid === undefined ? {} : { traceId: valid.slice(3, 35) };
}

/**
 * The audit feed of one running server.
 *
 * @example
 * const audit = auditLogOf(server.ctx);
 * const stop = audit.subscribe((event) => sse.write(`data: ${JSON.stringify(event)}\n\n`));
 * for (const event of audit.recent()) render(event);
 * stop();
 */
export class AuditLog extends EventFeed<ExchangeAuditEvent> {
  readonly #log: Logger;

  constructor(log: Logger, capacity = AUDIT_BUFFER_SIZE) {
    super(capacity, (error) => log.warn({ err: error.message }, 'audit subscriber failed'));
    this.#log = log;
  }

  /** Logs the event, keeps it in the ring buffer and hands it to every subscriber. */
  record(input: AuditEventInput): ExchangeAuditEvent {
    const event: ExchangeAuditEvent = { seq: this.nextSeq(), ...input, time: input.time ?? new Date().toISOString() };
    Object.freeze(event);
    this.#log.info({ audit: 'token_exchange', event }, event.decision === 'allow' ? 'token exchange allowed' : `token exchange ${event.decision === 'error' ? 'failed' : 'refused'} (${event.rule})`);
    this.publish(event);
    return event;
  }
}

/** One audit feed per running server (several servers may share a process: tests, `baton dev`). */
const feeds = new WeakMap<ServerContext, AuditLog>();

/** The audit feed of the server `ctx` belongs to, created on first use. */
export function auditLogOf(ctx: ServerContext): AuditLog {
  let feed = feeds.get(ctx);
  if (feed === undefined) {
    feed = new AuditLog(ctx.log);
    feeds.set(ctx, feed);
  }
  return feed;
}

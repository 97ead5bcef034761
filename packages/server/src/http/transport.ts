/**
 * Connection-level limits: how long a client may take to send its request, how long an idle
 * connection is kept, how many connections one instance holds. Set deliberately rather than left to
 * Node's defaults (60 s for headers, 300 s for a request, checked every 30 s), because those let a
 * slowloris client — headers or a body trickled a byte at a time — hold a connection for minutes.
 *
 * Slow or stuck clients are cut off by the parser's clocks, not by the request handlers: a
 * connection that has not delivered its headers within `headersTimeoutMs`, or its whole request
 * within `requestTimeoutMs`, is answered `408` (http/client-error.ts) and closed — including a
 * connection that never sends a byte. The clocks are checked every `checkIntervalMs`. The event loop
 * never waits for a slow client, so the others keep being answered meanwhile (tested with thousands
 * of idle and trickling connections: test/slow-clients.test.ts, `npm run faults`).
 */

export interface TransportLimits {
  /** The request line and headers must arrive within this (ms). A browser or SDK sends them in one packet. */
  headersTimeoutMs: number;
  /** The whole request, body included, must arrive within this (ms); bodies are at most 64 KiB. */
  requestTimeoutMs: number;
  /**
   * An idle keep-alive connection is closed after this (ms). Longer than the 60 s idle timeout of
   * common load balancers, so the balancer closes first and never sends on a connection Baton is
   * closing.
   */
  keepAliveTimeoutMs: number;
  /** How often the two request clocks are checked (ms); Node's default is 30 s. */
  checkIntervalMs: number;
  /**
   * Connections one instance holds at once; above it new connections are closed at once. Below the
   * process's file-descriptor limit, so the store and the logs always have descriptors left.
   */
  maxConnections: number;
}

export const DEFAULT_TRANSPORT_LIMITS: TransportLimits = {
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  keepAliveTimeoutMs: 72_000,
  checkIntervalMs: 1_000,
  maxConnections: 16_000,
};

/** The configured values (config `http`) over the defaults. */
export function resolveTransportLimits(config: Partial<TransportLimits> | undefined): TransportLimits {
  const out = { ...DEFAULT_TRANSPORT_LIMITS };
  for (const key of Object.keys(out) as (keyof TransportLimits)[]) {
    const value = config?.[key];
    if (value !== undefined) out[key] = value;
  }
  // Node refuses a headers timeout longer than the request timeout.
  if (out.headersTimeoutMs > out.requestTimeoutMs) out.requestTimeoutMs = out.headersTimeoutMs;
  return out;
}

/** Options for `http.createServer` / `https.createServer` (Fastify passes them through). */
export function nodeServerOptions(limits: TransportLimits): { headersTimeout: number; requestTimeout: number; keepAliveTimeout: number; connectionsCheckingInterval: number } {
  return {
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    connectionsCheckingInterval: limits.checkIntervalMs,
  };
}

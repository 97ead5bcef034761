/**
 * Abuse limits at the token endpoint, per client and per client IP, so one misbehaving middle tier
 * (a loop without a token cache, a retry storm) cannot starve the others. Two mechanisms, both
 * answering `429` with `Retry-After` and an OAuth error body:
 *
 * - **in flight** (on by default): at most `concurrent` requests of one client (or one IP) are being
 *   served at a time. A client that opens more is refused at once instead of queueing ahead of
 *   everyone else; a client that waits for its answers never meets the limit, however fast it is.
 *   This is what keeps a single client from taking the whole instance while others wait.
 * - **rate** (off by default): a token bucket of `burst` requests refilled at `requestsPerSecond`,
 *   for operators who want a hard ceiling per client or per IP.
 *
 * Counters live in this process (no store round-trip on the token path, DESIGN principle 4): with N
 * instances behind a load balancer a client may get up to N times the limits. The IP is the TCP
 * peer unless the server trusts a proxy (`trustProxy`); behind a proxy that is not trusted every
 * request shares the proxy's address, so raise `perIp` or configure the proxy.
 */
import { OAuthError } from '@baton/core';

export interface LimitRule {
  /** Requests of one key in flight at once; `null` = no limit. */
  concurrent: number | null;
  /** Sustained requests per second of one key; `null` = no rate limit. */
  requestsPerSecond: number | null;
  /** Bucket size for the rate limit (default: one second's worth). */
  burst?: number | undefined;
}

export interface TokenEndpointLimits {
  perClient: LimitRule;
  perIp: LimitRule;
}

/** The defaults (docs/config.md): in-flight caps well above any well-behaved client, no rate limit. */
export const DEFAULT_TOKEN_ENDPOINT_LIMITS: TokenEndpointLimits = {
  perClient: { concurrent: 64, requestsPerSecond: null },
  perIp: { concurrent: 256, requestsPerSecond: null },
};

/** The configured limits (config `limits.tokenEndpoint`) over the defaults; `null` keeps a limit off. */
export function resolveTokenEndpointLimits(config: { perClient?: Partial<LimitRule> | undefined; perIp?: Partial<LimitRule> | undefined } | undefined): TokenEndpointLimits {
  const rule = (given: Partial<LimitRule> | undefined, fallback: LimitRule): LimitRule => ({
    concurrent: given?.concurrent === undefined ? fallback.concurrent : given.concurrent,
    requestsPerSecond: given?.requestsPerSecond === undefined ? fallback.requestsPerSecond : given.requestsPerSecond,
    ...(given?.burst === undefined ? {} : { burst: given.burst }),
  });
  return { perClient: rule(config?.perClient, DEFAULT_TOKEN_ENDPOINT_LIMITS.perClient), perIp: rule(config?.perIp, DEFAULT_TOKEN_ENDPOINT_LIMITS.perIp) };
}

/** Entra's "too many requests" (TenantThrottlingError / request throttled). */
export const ENTRA_THROTTLED = 90055;

/** Buckets kept at most; the least recently touched go first (a full bucket forgotten is the same as a new one). */
const MAX_BUCKETS = 100_000;

interface Bucket {
  tokens: number;
  at: number;
}

/** One limit (in flight + rate) over many keys. */
class KeyedLimit {
  readonly #rule: LimitRule;
  readonly #inFlight = new Map<string, number>();
  readonly #buckets = new Map<string, Bucket>();
  readonly #clock: () => number;

  constructor(rule: LimitRule, clock: () => number) {
    this.#rule = rule;
    this.#clock = clock;
  }

  /** Seconds to wait when the key is over a limit (nothing taken); 0 when admitted (a slot taken). */
  enter(key: string): number {
    const { concurrent, requestsPerSecond } = this.#rule;
    const flying = this.#inFlight.get(key) ?? 0;
    if (concurrent !== null && flying >= concurrent) return 1;
    if (requestsPerSecond !== null) {
      const burst = this.#rule.burst ?? Math.max(1, Math.ceil(requestsPerSecond));
      const now = this.#clock();
      let bucket = this.#buckets.get(key);
      if (bucket === undefined) {
        if (this.#buckets.size >= MAX_BUCKETS) this.#buckets.delete(this.#buckets.keys().next().value as string);
        bucket = { tokens: burst, at: now };
      } else {
        this.#buckets.delete(key); // re-inserted below: Map order is least recently touched first
        bucket.tokens = Math.min(burst, bucket.tokens + ((now - bucket.at) / 1000) * requestsPerSecond);
        bucket.at = now;
      }
      this.#buckets.set(key, bucket);
      if (bucket.tokens < 1) return Math.max(1, Math.ceil((1 - bucket.tokens) / requestsPerSecond));
      bucket.tokens -= 1;
    }
    if (concurrent !== null) this.#inFlight.set(key, flying + 1);
    return 0;
  }

  leave(key: string): void {
    if (this.#rule.concurrent === null) return;
    const flying = (this.#inFlight.get(key) ?? 1) - 1;
    if (flying <= 0) this.#inFlight.delete(key);
    else this.#inFlight.set(key, flying);
  }

  /** Keys currently tracked (for tests: nothing leaks). */
  get size(): number {
    return this.#inFlight.size;
  }
}

/** A request admitted by a limit; `release()` once it is answered (idempotent). */
export interface Admission {
  release(): void;
}

/** The token endpoint's limits. */
export class TokenEndpointLimiter {
  readonly #client: KeyedLimit;
  readonly #ip: KeyedLimit;

  constructor(limits: TokenEndpointLimits = DEFAULT_TOKEN_ENDPOINT_LIMITS, clock: () => number = Date.now) {
    this.#client = new KeyedLimit(limits.perClient, clock);
    this.#ip = new KeyedLimit(limits.perIp, clock);
  }

  /** Admits a request from `ip` or throws the 429 OAuthError. */
  admitIp(ip: string): Admission {
    return admit(this.#ip, ip, `Too many requests from this address to the token endpoint. Retry after the time in the Retry-After header.`);
  }

  /** Admits a request of an authenticated client (`tenant`/`clientId`) or throws the 429 OAuthError. */
  admitClient(tenant: string, clientId: string): Admission {
    return admit(this.#client, `${tenant}\u0000${clientId}`, `Too many requests from the application '${clientId}' to the token endpoint: cache the tokens you receive (they are valid until 'expires_in') and retry after the time in the Retry-After header.`);
  }

  /** Keys with requests in flight (0 when idle: nothing leaks). */
  get tracked(): number {
    return this.#client.size + this.#ip.size;
  }
}

function admit(limit: KeyedLimit, key: string, description: string): Admission {
  const wait = limit.enter(key);
  if (wait > 0) {
    throw new OAuthError('temporarily_unavailable', {
      status: 429,
      description,
      entraCodes: [ENTRA_THROTTLED],
      headers: { 'retry-after': String(wait) },
    });
  }
  let released = false;
  return {
    release() {
      if (released) return;
      released = true;
      limit.leave(key);
    },
  };
}

/**
 * DPoP (RFC 9449) at an API: the guard's options, the request facts a proof is checked against,
 * and the replay cache that makes each proof single-use — in memory by default, shared across
 * replicas through Redis (`RedisDpopReplayCache` in `@baton/resource/redis`).
 *
 * The proof checks themselves are `@baton/core`'s `checkDpopProof`, the same the token service
 * runs at its token endpoint.
 */
import type { IncomingMessage } from 'node:http';
import type { DpopAlg } from '@baton/core';
import { Lru } from './lru.ts';

/** `required`: only DPoP-bound tokens with a proof; `allowed` (default): bearer tokens too, but a bound token always needs its proof. */
export type DpopMode = 'required' | 'allowed';

export interface GuardDpopOptions {
  /** Default for every route (a route's requirement may say otherwise). Default `allowed`. */
  mode?: DpopMode;
  /** Proof algorithms accepted. Default ES256, RS256, PS256, EdDSA (and its RFC 9864 name Ed25519). */
  algorithms?: readonly DpopAlg[];
  /** Where seen proofs are remembered. Default: in memory (one process). Share it across replicas: `RedisDpopReplayCache`. */
  replay?: DpopReplayCache;
  /**
   * Server nonces (RFC 9449 §9): every proof must carry a nonce this API handed out (`DPoP-Nonce`).
   * `secret` (at least 32 bytes) is shared by every replica so each accepts the others' nonces.
   */
  nonce?: { secret: Uint8Array; periodSeconds?: number };
  /**
   * This API's public origin (`https://api.example`), when it runs behind a proxy that changes the
   * scheme or host: the `htu` of a proof is compared with it plus the request's path.
   */
  origin?: string;
}

/** What a proof is checked against: the request as the client addressed it. */
export interface DpopRequestInput {
  /** `GET`, `POST`, … */
  method: string;
  /** The request's absolute URL (`https://api.example/tasks?x=1`; query and fragment are ignored). */
  url: string;
  /** Every `DPoP` header value (Node: `req.headersDistinct.dpop`). */
  dpop?: string | readonly string[] | null | undefined;
}

/** Remembers proofs (`jkt:jti`) for as long as they could be accepted. */
export interface DpopReplayCache {
  /** True the first time `key` is seen within `ttlMs`; false for a replay. */
  useOnce(key: string, ttlMs: number): Promise<boolean> | boolean;
}

/** One process's replay cache (bounded; the oldest entries go first when full). */
export class MemoryDpopReplayCache implements DpopReplayCache {
  readonly #seen: Lru<true>;
  readonly #clock: () => number;

  constructor(options: { maxEntries?: number; clock?: () => number } = {}) {
    this.#seen = new Lru<true>(options.maxEntries ?? 100_000);
    this.#clock = options.clock ?? Date.now;
  }

  useOnce(key: string, ttlMs: number): boolean {
    const now = this.#clock();
    if (this.#seen.get(key, now) !== undefined) return false;
    this.#seen.set(key, true, now + ttlMs);
    return true;
  }
}

/**
 * The request facts of a Node request: its method, its absolute URL (scheme from the socket, or the
 * configured `origin`; host from the `Host` header) and every `DPoP` header.
 */
export function dpopRequestOf(req: IncomingMessage, originalUrl?: string): DpopRequestInput {
  const encrypted = (req.socket as { encrypted?: boolean } | undefined)?.encrypted === true;
  const host = req.headers.host ?? 'localhost';
  return {
    method: req.method ?? 'GET',
    url: `${encrypted ? 'https' : 'http'}://${host}${originalUrl ?? req.url ?? '/'}`,
    dpop: req.headersDistinct?.dpop ?? (typeof req.headers.dpop === 'string' ? [req.headers.dpop] : undefined),
  };
}

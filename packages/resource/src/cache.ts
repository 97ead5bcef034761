/**
 * Where the OBO client keeps the tokens it acquired. One interface, a memory engine here and an
 * ioredis engine in `redis.ts` for many replicas. A miss is `undefined`, never an exception, and a
 * store never throws for an unavailable backend (it degrades, the client keeps working).
 */
import { Lru } from './lru.ts';

export interface CachedToken {
  accessToken: string;
  tokenType: string;
  /** Epoch seconds. */
  expiresAt: number;
  /** Scopes granted, when the token service said. */
  scopes?: string[] | undefined;
}

export interface TokenCacheStore {
  get(key: string): Promise<CachedToken | undefined>;
  /** Stores `value` for `ttlMs` milliseconds. */
  set(key: string, value: CachedToken, ttlMs: number): Promise<void>;
  delete(key: string): Promise<void>;
  /** Releases connections the store opened itself. */
  close?(): Promise<void>;
}

export interface MemoryTokenCacheOptions {
  /** Entries kept; least recently used leave first. Default 10 000. */
  maxEntries?: number;
  /** Epoch milliseconds; for tests. */
  clock?: () => number;
}

/** Bounded LRU in this process. */
export class MemoryTokenCacheStore implements TokenCacheStore {
  readonly #lru: Lru<CachedToken>;
  readonly #clock: () => number;

  constructor(options: MemoryTokenCacheOptions = {}) {
    const max = options.maxEntries ?? 10_000;
    if (!Number.isInteger(max) || max < 1) throw new TypeError('MemoryTokenCacheStore: maxEntries must be a positive integer');
    this.#lru = new Lru(max);
    this.#clock = options.clock ?? Date.now;
  }

  get size(): number {
    return this.#lru.size;
  }

  /** Synchronous lookup, for the hot path of the Redis store's first level. */
  peek(key: string): CachedToken | undefined {
    return this.#lru.get(key, this.#clock());
  }

  put(key: string, value: CachedToken, ttlMs: number): void {
    if (ttlMs > 0) this.#lru.set(key, value, this.#clock() + ttlMs);
  }

  async get(key: string): Promise<CachedToken | undefined> {
    return this.peek(key);
  }

  async set(key: string, value: CachedToken, ttlMs: number): Promise<void> {
    this.put(key, value, ttlMs);
  }

  async delete(key: string): Promise<void> {
    this.#lru.delete(key);
  }
}

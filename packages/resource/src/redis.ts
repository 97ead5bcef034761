/**
 * A `TokenCacheStore` on Redis (ioredis), so every replica of an API shares the tokens it acquired.
 *
 * - Tokens are sealed with AES-256-GCM under a key the application holds; the cache key is bound
 *   as additional authenticated data, so a sealed value cannot be moved under another key. Redis
 *   (and its backups, and whoever can `MONITOR` it) sees only ciphertext and hashed keys.
 * - An in-process LRU sits in front (a hit there costs no round trip). Tokens are immutable until
 *   they expire, so this first level needs no invalidation beyond its TTL.
 * - Redis unreachable or slow: the store works from memory alone and says so once in the log
 *   (and once more when Redis is back). It never throws for Redis's sake.
 *
 * @example
 * import { RedisTokenCacheStore } from '@baton/resource/redis';
 * const cache = new RedisTokenCacheStore({ redis: process.env.REDIS_URL, key: Buffer.from(process.env.TOKEN_CACHE_KEY, 'base64') });
 * const obo = createOboClient({ ..., cache });
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { Redis, type RedisOptions } from 'ioredis';
import { MemoryTokenCacheStore, type CachedToken, type TokenCacheStore } from './cache.ts';
import { consoleLogger, type Logger } from './obo.ts';
import { MemoryDpopReplayCache, type DpopReplayCache } from './dpop.ts';

/**
 * The ioredis client of a Redis-backed store: the application's own client (it keeps owning it), or
 * one made from a URL or ioredis options (the store closes it). A cache answers in its command
 * timeout or falls back to memory, so its own clients queue nothing while Redis is down.
 */
function redisClientOf(where: string, redis: unknown): { client: Redis; owned: boolean } {
  const own: RedisOptions = { enableOfflineQueue: false, maxRetriesPerRequest: 1, connectTimeout: 2000, lazyConnect: false };
  if (redis instanceof Redis) return { client: redis, owned: false };
  if (typeof redis === 'string') return { client: new Redis(redis, own), owned: true };
  if (redis !== null && typeof redis === 'object') return { client: new Redis({ ...own, ...(redis as RedisOptions) }), owned: true };
  throw new TypeError(`${where}: redis must be an ioredis client, a URL or ioredis options`);
}

export interface RedisTokenCacheOptions {
  /**
   * An ioredis client (yours: not closed by `close()`), or a URL / options to open one (closed by
   * `close()`; opened with a short connect timeout and no offline queue, so an outage degrades fast).
   */
  redis: Redis | string | RedisOptions;
  /** 32 bytes: the AES-256-GCM key. Keep it out of Redis. */
  key: Uint8Array;
  /** Prefix of the Redis keys. Default `baton:token:`. */
  prefix?: string;
  /** Milliseconds a Redis command may take before memory is used instead. Default 250. */
  commandTimeout?: number;
  /** Entries of the in-process first level. Default 10 000. */
  maxEntries?: number;
  logger?: Logger;
  /** Epoch milliseconds; for tests. */
  clock?: () => number;
}

const VERSION = 'v1';

/** Resolves true once `redis` is ready, false after `timeoutMs`. */
function whenReady(redis: Redis, timeoutMs: number): Promise<boolean> {
  if (redis.status === 'ready') return Promise.resolve(true);
  return new Promise<boolean>((resolve) => {
    const onReady = () => {
      clearTimeout(timer);
      resolve(true);
    };
    const timer = setTimeout(() => {
      redis.off('ready', onReady);
      resolve(false);
    }, timeoutMs);
    redis.once('ready', onReady);
  });
}

export class RedisTokenCacheStore implements TokenCacheStore {
  readonly #redis: Redis;
  readonly #owned: boolean;
  readonly #key: Buffer;
  readonly #prefix: string;
  readonly #timeout: number;
  readonly #memory: MemoryTokenCacheStore;
  readonly #logger: Logger;
  #degraded = false;

  constructor(options: RedisTokenCacheOptions) {
    const where = 'RedisTokenCacheStore';
    if (options === null || typeof options !== 'object') throw new TypeError(`${where}: options are required`);
    if (!(options.key instanceof Uint8Array) || options.key.length !== 32) throw new TypeError(`${where}: key must be 32 bytes (AES-256)`);
    this.#key = Buffer.from(options.key);
    this.#prefix = options.prefix ?? 'baton:token:';
    this.#timeout = options.commandTimeout ?? 250;
    if (!Number.isFinite(this.#timeout) || this.#timeout <= 0) throw new TypeError(`${where}: commandTimeout must be a positive number of milliseconds`);
    this.#logger = options.logger ?? consoleLogger;
    this.#memory = new MemoryTokenCacheStore({ maxEntries: options.maxEntries ?? 10_000, ...(options.clock ? { clock: options.clock } : {}) });
    ({ client: this.#redis, owned: this.#owned } = redisClientOf(where, options.redis));
    // ioredis emits 'error' on every failed reconnect; without a listener Node would throw. Logged once.
    this.#redis.on('error', (error: Error & { code?: string }) => this.#down(error));
    this.#redis.on('ready', () => {
      if (this.#degraded) {
        this.#degraded = false;
        this.#logger.info('Redis token cache available again', { prefix: this.#prefix });
      }
    });
  }

  /** Whether Redis is in use right now (false while working from memory). */
  get connected(): boolean {
    return this.#redis.status === 'ready';
  }

  /** Resolves when Redis is ready (true) or after `timeoutMs` (false). */
  async ready(timeoutMs = 2000): Promise<boolean> {
    return whenReady(this.#redis, timeoutMs);
  }

  async get(key: string): Promise<CachedToken | undefined> {
    const local = this.#memory.peek(key);
    if (local !== undefined) return local;
    const raw = await this.#command((r) => r.get(this.#prefix + key));
    if (raw === undefined || raw === null) return undefined;
    const ttl = await this.#command((r) => r.pttl(this.#prefix + key));
    const token = this.#open(raw, key);
    if (token !== undefined && typeof ttl === 'number' && ttl > 0) this.#memory.put(key, token, ttl);
    return token;
  }

  async set(key: string, value: CachedToken, ttlMs: number): Promise<void> {
    if (!(ttlMs > 0)) return;
    this.#memory.put(key, value, ttlMs);
    const sealed = this.#seal(value, key);
    await this.#command((r) => r.set(this.#prefix + key, sealed, 'PX', Math.ceil(ttlMs)));
  }

  async delete(key: string): Promise<void> {
    await this.#memory.delete(key);
    await this.#command((r) => r.del(this.#prefix + key));
  }

  async close(): Promise<void> {
    if (!this.#owned) return;
    if (this.#redis.status === 'ready') await this.#redis.quit().catch(() => this.#redis.disconnect());
    else this.#redis.disconnect();
  }

  /** Runs a command if Redis is ready; `undefined` (and memory only) otherwise. Never throws. */
  async #command<T>(run: (redis: Redis) => Promise<T>): Promise<T | undefined> {
    const status = this.#redis.status;
    if (status !== 'ready') {
      // Still connecting at start: memory, silently; lost after having been up: memory, logged once.
      if (status === 'reconnecting' || status === 'close' || status === 'end') this.#down(undefined);
      return undefined;
    }
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        run(this.#redis),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(Object.assign(new Error('Redis command timed out'), { code: 'ETIMEDOUT' })), this.#timeout);
        }),
      ]);
    } catch (error) {
      this.#down(error as Error & { code?: string });
      return undefined;
    } finally {
      clearTimeout(timer);
    }
  }

  #down(error: (Error & { code?: string }) | undefined): void {
    if (this.#degraded) return;
    this.#degraded = true;
    this.#logger.warn('Redis token cache unavailable; using memory only', {
      prefix: this.#prefix,
      status: this.#redis.status,
      ...(error ? { code: error.code ?? error.name } : {}),
    });
  }

  #seal(value: CachedToken, key: string): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.#key, iv);
    cipher.setAAD(Buffer.from(key));
    const ciphertext = Buffer.concat([cipher.update(JSON.stringify(value), 'utf8'), cipher.final()]);
    return `${VERSION}.${iv.toString('base64url')}.${cipher.getAuthTag().toString('base64url')}.${ciphertext.toString('base64url')}`;
  }

  /** `undefined` for anything that does not open under our key (another key, tampering, garbage). */
  #open(sealed: string, key: string): CachedToken | undefined {
    const parts = sealed.split('.');
    if (parts.length !== 4 || parts[0] !== VERSION) return undefined;
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.#key, Buffer.from(parts[1] as string, 'base64url'), { authTagLength: 16 });
      decipher.setAAD(Buffer.from(key));
      decipher.setAuthTag(Buffer.from(parts[2] as string, 'base64url'));
      const plain = Buffer.concat([decipher.update(Buffer.from(parts[3] as string, 'base64url')), decipher.final()]).toString('utf8');
      const value = JSON.parse(plain) as CachedToken;
      if (typeof value.accessToken !== 'string' || typeof value.expiresAt !== 'number') return undefined;
      return value;
    } catch {
      return undefined;
    }
  }
}

export interface RedisDpopReplayCacheOptions {
  /** An ioredis client (yours: not closed by `close()`), or a URL / options to open one (closed by `close()`). */
  redis: Redis | string | RedisOptions;
  /** Prefix of the Redis keys. Default `baton:dpop:`. */
  prefix?: string;
  /** Milliseconds a Redis command may take before memory is used instead. Default 250. */
  commandTimeout?: number;
  logger?: Logger;
}

/**
 * The guard's DPoP replay cache on Redis (`SET key 1 PX ttl NX`: atomic), so a proof accepted by one
 * replica of an API is refused by every other. Keys are SHA-256 hashes of `jkt:jti`.
 *
 * When Redis cannot be reached the cache works from this process's memory (a replay across
 * replicas is then not caught) and says so once in the log — an API keeps answering rather than
 * refusing every DPoP request for Redis's sake. `failClosed: true` refuses instead.
 *
 * @example
 * const guard = createGuard({ authority, audience, dpop: { replay: new RedisDpopReplayCache({ redis: process.env.REDIS_URL }) } });
 */
export class RedisDpopReplayCache implements DpopReplayCache {
  readonly #redis: Redis;
  readonly #owned: boolean;
  readonly #prefix: string;
  readonly #timeout: number;
  readonly #memory = new MemoryDpopReplayCache();
  readonly #logger: Logger;
  readonly #failClosed: boolean;
  #degraded = false;

  constructor(options: RedisDpopReplayCacheOptions & { failClosed?: boolean }) {
    const where = 'RedisDpopReplayCache';
    if (options === null || typeof options !== 'object') throw new TypeError(`${where}: options are required`);
    this.#prefix = options.prefix ?? 'baton:dpop:';
    this.#timeout = options.commandTimeout ?? 250;
    if (!Number.isFinite(this.#timeout) || this.#timeout <= 0) throw new TypeError(`${where}: commandTimeout must be a positive number of milliseconds`);
    this.#logger = options.logger ?? consoleLogger;
    this.#failClosed = options.failClosed === true;
    ({ client: this.#redis, owned: this.#owned } = redisClientOf(where, options.redis));
    this.#redis.on('error', () => this.#down());
    this.#redis.on('ready', () => {
      if (this.#degraded) {
        this.#degraded = false;
        this.#logger.info('Redis DPoP replay cache available again', { prefix: this.#prefix });
      }
    });
  }

  /** Resolves when Redis is ready (true) or after `timeoutMs` (false). */
  async ready(timeoutMs = 2000): Promise<boolean> {
    return whenReady(this.#redis, timeoutMs);
  }

  async useOnce(key: string, ttlMs: number): Promise<boolean> {
    // Memory first: a replay to the same replica costs no round trip.
    if (!this.#memory.useOnce(key, ttlMs)) return false;
    if (this.#redis.status !== 'ready') return this.#unavailable();
    let timer: NodeJS.Timeout | undefined;
    try {
      const stored = await Promise.race([
        this.#redis.set(this.#prefix + createHash('sha256').update(key).digest('base64url'), '1', 'PX', Math.ceil(ttlMs), 'NX'),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error('Redis command timed out')), this.#timeout);
        }),
      ]);
      return stored === 'OK';
    } catch {
      return this.#unavailable();
    } finally {
      clearTimeout(timer);
    }
  }

  async close(): Promise<void> {
    if (!this.#owned) return;
    if (this.#redis.status === 'ready') await this.#redis.quit().catch(() => this.#redis.disconnect());
    else this.#redis.disconnect();
  }

  #unavailable(): boolean {
    this.#down();
    return !this.#failClosed;
  }

  #down(): void {
    if (this.#degraded) return;
    this.#degraded = true;
    this.#logger.warn('Redis DPoP replay cache unavailable; replays are caught per process only', { prefix: this.#prefix, status: this.#redis.status });
  }
}

/**
 * Continuous access evaluation for an API (issue 17, docs/cae.md): the receiving side of the
 * OpenID Shared Signals Framework. Security Event Tokens (RFC 8417) arrive by push (RFC 8935,
 * `handlePush` behind a framework adapter) or by polling the transmitter (RFC 8936, `poll`); each is
 * verified (signature through the transmitter's JWKS, `typ: secevent+jwt`, issuer, audience, a
 * fresh `jti`), and the events that void tokens — CAEP `session-revoked`, `credential-change` and
 * `token-claims-change` about a user, RISC `account-disabled`/`account-purged`/`sessions-revoked` —
 * enter a bounded revocation set keyed by tenant and user (`sub` as the receiver's tokens carry it,
 * `oid`, `email`) or session (`sid`), with the event's time.
 *
 * A guard given these signals (`createGuard({ …, signals })`) refuses a token issued (`iat`) before
 * the revocation of its user or session with Entra's CAE claims challenge: `401`,
 * `WWW-Authenticate: Bearer error="insufficient_claims", claims="<base64 of
 * {"access_token":{"nbf":{"essential":true,"value":"<event time>"}}}>"`. An OBO client given them
 * (`createOboClient({ …, signals })`) drops the tokens it cached for that user or session.
 *
 * Several replicas: with `redis`, each accepted revocation is published on a channel every replica
 * hears and kept in a sorted set a replica that starts late reads first; without it, give each
 * replica its own stream.
 *
 * @example
 * const signals = createSignals({ issuer, jwksUri, audience: 'tasks-api',
 *   poll: { endpoint: stream.delivery.endpoint_url, accessToken: async () => (await obo.appToken(['api://baton-admin/.default'])).accessToken } });
 * const guard = createGuard({ authority, audience: 'api://tasks', signals });
 * await signals.start();
 */
import { checkJwsHeader, decodeJws, JwsFormatError, JwtError, verifyJwsSignature, type JwsAlg } from '@baton/core';
import type { Redis, RedisOptions } from 'ioredis';
import { checkUrl, resolveFetch, type CaOption, type FetchLike } from './http.ts';
import { JwksUnavailableError, RemoteJwks } from './jwks.ts';
import { Lru } from './lru.ts';
import { consoleLogger, type Logger } from './logger.ts';

const CAEP = 'https://schemas.openid.net/secevent/caep/event-type/';
const RISC = 'https://schemas.openid.net/secevent/risc/event-type/';

/** Events that void the tokens issued before them, for the subject they name. */
export const REVOKING_EVENTS: readonly string[] = [
  `${CAEP}session-revoked`,
  `${CAEP}credential-change`,
  `${CAEP}token-claims-change`,
  `${RISC}account-disabled`,
  `${RISC}account-purged`,
  `${RISC}sessions-revoked`,
];

const MAX_SET_LENGTH = 16 * 1024;
const SET_ALGORITHMS: readonly JwsAlg[] = ['ES256', 'RS256', 'PS256'];
const WHERE = 'createSignals';

/** RFC 8935 §2.3 error codes a receiver answers a SET it refuses with. */
export type SetErrorCode = 'invalid_request' | 'invalid_key' | 'invalid_issuer' | 'invalid_audience' | 'authentication_failed' | 'access_denied';

/** A SET refused (RFC 8935 §2.3 `err` and `description`). */
export class SetError extends Error {
  override name = 'SetError';
  readonly err: SetErrorCode;
  constructor(err: SetErrorCode, description: string) {
    super(description);
    this.err = err;
  }
  toJSON(): { err: SetErrorCode; description: string } {
    return { err: this.err, description: this.message };
  }
}

export interface ReceivedEvent {
  jti: string;
  /** The event type URI. */
  type: string;
  /** The revocation keys it voids tokens for (empty for an event that voids nothing). */
  keys: string[];
  /** Epoch seconds: tokens issued before it are refused (for a revoking event). */
  edge: number | undefined;
  via: 'push' | 'poll' | 'replica';
}

export interface SignalsOptions {
  /** The transmitter's issuer (Baton: the tenant's issuer, `{base}/{tenant}/v2.0`). */
  issuer: string;
  /** Its JWKS (Baton: the tenant's `discovery/v2.0/keys`, the keys of its tokens). */
  jwksUri: string;
  /** What this receiver answers to in a SET's `aud` (Baton: the client id the stream was created with). */
  audience: string | readonly string[];
  /** RFC 8936: poll this endpoint (the stream's `delivery.endpoint_url`) with this bearer token. */
  poll?: {
    endpoint: string;
    accessToken: () => Promise<string>;
    /** SETs per poll. Default 100. */
    maxEvents?: number;
    /** Milliseconds to wait after a failed poll (doubling up to 30 s). Default 1000. */
    retryDelay?: number;
  };
  /** RFC 8935: the `Authorization` value the transmitter sends with pushes (the stream's `authorization_header`); absent = not checked. */
  pushAuthorization?: string;
  /** Share revocations with every replica (pub/sub) and keep them for late ones (sorted set). */
  redis?: Redis | string | RedisOptions;
  /** Prefix of the Redis keys and channel. Default `baton:signals:`. */
  redisPrefix?: string;
  /** Revocations kept (the oldest leave first). Default 100 000. */
  maxEntries?: number;
  /** How long a revocation is kept, in seconds: longer than the longest token lifetime. Default 86 400. */
  retainSeconds?: number;
  /** Seconds a SET's `iat` may be in the future. Default 60. */
  clockTolerance?: number;
  fetch?: FetchLike;
  ca?: CaOption;
  /** Epoch milliseconds; for tests. */
  clock?: () => number;
  logger?: Logger;
  /** Told about every accepted event (metrics, a live view). */
  onEvent?: (event: ReceivedEvent) => void;
}

export interface Signals {
  /** Verifies one SET and applies it. @throws SetError */
  receive(set: string, via?: ReceivedEvent['via']): Promise<ReceivedEvent>;
  /** An RFC 8935 push request → its answer (`202`, or `400` with `{err, description}`); the adapters call it. */
  handlePush(request: { contentType: string | undefined; authorization: string | undefined; body: string }): Promise<{ status: number; headers: Record<string, string>; body: string | undefined }>;
  /** The revocation edge that voids a token with these claims (epoch seconds), if any. */
  revokedAt(claims: Readonly<Record<string, unknown>>): number | undefined;
  /** Calls `listener` with the keys and edge of each revocation (the OBO client drops its tokens). */
  onRevocation(listener: (keys: readonly string[], edge: number) => void): () => void;
  /** Connects Redis (catching up on what other replicas received) and starts polling. */
  start(): Promise<void>;
  close(): Promise<void>;
  /** Revocations held. */
  readonly size: number;
}

/** The revocation keys of a token (or an OBO assertion): tenant + `sub`, `oid`, `sid`, `email`. */
export function revocationKeysOf(claims: Readonly<Record<string, unknown>>): string[] {
  const tid = typeof claims.tid === 'string' ? claims.tid : '';
  const keys: string[] = [];
  for (const [kind, claim] of [['sub', 'sub'], ['oid', 'oid'], ['sid', 'sid'], ['email', 'email']] as const) {
    const value = claims[claim];
    if (typeof value === 'string' && value !== '') keys.push(`${kind}:${tid}|${kind === 'email' ? value.toLowerCase() : value}`);
  }
  return keys;
}

/** The keys a SET's subject names: its session when it has one (that session only), else its user. */
export function revocationKeysOfSubject(subject: unknown, issuer: string): string[] {
  if (subject === null || typeof subject !== 'object' || Array.isArray(subject)) return [];
  const s = subject as Record<string, any>;
  if (s.format !== 'complex') return userKeys(s, '', issuer);
  const tenant = s.tenant;
  const tid = tenant !== null && typeof tenant === 'object' && typeof tenant.id === 'string' ? tenant.id : '';
  const session = s.session;
  if (session !== null && typeof session === 'object' && typeof session.id === 'string' && session.id !== '') return [`sid:${tid}|${session.id}`];
  return userKeys(s.user, tid, issuer);
}

function userKeys(user: any, tid: string, issuer: string): string[] {
  if (user === null || typeof user !== 'object') return [];
  switch (user.format) {
    case 'iss_sub':
      return user.iss === issuer && typeof user.sub === 'string' && user.sub !== '' ? [`sub:${tid}|${user.sub}`] : [];
    case 'opaque':
      return typeof user.id === 'string' && user.id !== '' ? [`oid:${tid}|${user.id}`] : [];
    case 'email':
      return typeof user.email === 'string' && user.email !== '' ? [`email:${tid}|${user.email.toLowerCase()}`] : [];
    default:
      return [];
  }
}

/** Insertion-ordered, bounded, each key holding the latest edge; entries older than `retain` leave. */
class RevocationSet {
  readonly #edges = new Map<string, number>();
  readonly #max: number;
  readonly #retain: number;

  constructor(max: number, retainSeconds: number) {
    this.#max = max;
    this.#retain = retainSeconds;
  }

  get size(): number {
    return this.#edges.size;
  }

  /** Records `edge` for `key` (kept if later than the one held); false when it changed nothing. */
  add(key: string, edge: number, nowSeconds: number): boolean {
    if (edge <= nowSeconds - this.#retain) return false;
    const held = this.#edges.get(key);
    if (held !== undefined && held >= edge) return false;
    this.#edges.delete(key);
    this.#edges.set(key, edge);
    this.#trim(nowSeconds);
    return true;
  }

  #trim(nowSeconds: number): void {
    for (const [key, edge] of this.#edges) {
      if (this.#edges.size <= this.#max && edge > nowSeconds - this.#retain) break;
      this.#edges.delete(key);
    }
  }

  /** The latest edge among `keys`. */
  edgeOf(keys: readonly string[]): number | undefined {
    let latest: number | undefined;
    for (const key of keys) {
      const edge = this.#edges.get(key);
      if (edge !== undefined && (latest === undefined || edge > latest)) latest = edge;
    }
    return latest;
  }
}

function positiveInt(value: number | undefined, fallback: number, name: string): number {
  const v = value ?? fallback;
  if (!Number.isInteger(v) || v <= 0) throw new TypeError(`${WHERE}: ${name} must be a positive integer`);
  return v;
}

class SignalReceiver implements Signals {
  readonly #issuer: string;
  readonly #audiences: Set<string>;
  readonly #jwks: RemoteJwks;
  readonly #fetch: FetchLike;
  readonly #clock: () => number;
  readonly #tolerance: number;
  readonly #revoked: RevocationSet;
  readonly #seen: Lru<true>;
  readonly #retain: number;
  readonly #logger: Logger;
  readonly #onEvent: ((event: ReceivedEvent) => void) | undefined;
  readonly #listeners = new Set<(keys: readonly string[], edge: number) => void>();
  readonly #poll: SignalsOptions['poll'];
  readonly #pushAuthorization: string | undefined;
  readonly #redisOption: SignalsOptions['redis'];
  readonly #prefix: string;
  readonly #audienceKey: string;
  #redis: Redis | undefined;
  #subscriber: Redis | undefined;
  #ownsRedis = false;
  #polling: Promise<void> | undefined;
  #stopped = false;
  #stop = new AbortController();

  constructor(options: SignalsOptions) {
    if (options === null || typeof options !== 'object') throw new TypeError(`${WHERE}: options are required`);
    if (typeof options.issuer !== 'string' || options.issuer === '') throw new TypeError(`${WHERE}: issuer is required`);
    this.#issuer = options.issuer;
    const audiences = typeof options.audience === 'string' ? [options.audience] : options.audience;
    if (!Array.isArray(audiences) || audiences.length === 0 || audiences.some((a) => typeof a !== 'string' || a === '')) throw new TypeError(`${WHERE}: audience must be a non-empty string or array of them`);
    this.#audiences = new Set(audiences);
    this.#audienceKey = [...this.#audiences].sort().join(',');
    this.#fetch = resolveFetch(options, WHERE);
    this.#clock = options.clock ?? Date.now;
    this.#tolerance = options.clockTolerance ?? 60;
    this.#retain = positiveInt(options.retainSeconds, 86_400, 'retainSeconds');
    this.#revoked = new RevocationSet(positiveInt(options.maxEntries, 100_000, 'maxEntries'), this.#retain);
    this.#seen = new Lru<true>(positiveInt(options.maxEntries, 100_000, 'maxEntries'));
    this.#jwks = new RemoteJwks(checkUrl(options.jwksUri, `${WHERE}: jwksUri`), { fetch: this.#fetch, clock: this.#clock });
    this.#logger = options.logger ?? consoleLogger;
    this.#onEvent = options.onEvent;
    if (options.poll !== undefined) {
      checkUrl(options.poll.endpoint, `${WHERE}: poll.endpoint`);
      if (typeof options.poll.accessToken !== 'function') throw new TypeError(`${WHERE}: poll.accessToken must be a function`);
    }
    this.#poll = options.poll;
    this.#pushAuthorization = options.pushAuthorization;
    this.#redisOption = options.redis;
    this.#prefix = options.redisPrefix ?? 'baton:signals:';
  }

  get size(): number {
    return this.#revoked.size;
  }

  #now(): number {
    return Math.floor(this.#clock() / 1000);
  }

  // — verification —

  async receive(set: string, via: ReceivedEvent['via'] = 'push'): Promise<ReceivedEvent> {
    let decoded: ReturnType<typeof decodeJws>;
    try {
      decoded = decodeJws(set, MAX_SET_LENGTH);
    } catch (error) {
      if (error instanceof JwsFormatError) throw new SetError('invalid_request', 'The SET is not a well-formed signed JWT.');
      throw error;
    }
    let alg: JwsAlg;
    let kid: string | undefined;
    try {
      ({ alg, kid } = checkJwsHeader(decoded.header, { what: 'SET', algorithms: SET_ALGORITHMS, typ: ['secevent+jwt'], requireKid: false }));
    } catch (error) {
      if (error instanceof JwtError) throw new SetError('invalid_request', `The SET header is not acceptable (${error.message}).`);
      throw error;
    }
    let keys;
    try {
      keys = this.#jwks.cachedCandidates(kid, alg) ?? (await this.#jwks.candidates(kid, alg));
    } catch (error) {
      if (error instanceof JwksUnavailableError) throw new SetError('invalid_key', "The transmitter's keys cannot be fetched right now.");
      throw error;
    }
    if (!keys.some((key) => verifyJwsSignature(decoded, key, alg))) throw new SetError('invalid_key', 'The SET signature does not verify with the transmitter’s keys.');
    const claims = decoded.payload;
    if (claims.iss !== this.#issuer) throw new SetError('invalid_issuer', 'The SET is from another issuer.');
    const aud = typeof claims.aud === 'string' ? [claims.aud] : Array.isArray(claims.aud) ? claims.aud : [];
    if (!aud.some((a) => typeof a === 'string' && this.#audiences.has(a))) throw new SetError('invalid_audience', 'The SET is addressed to another receiver.');
    const now = this.#now();
    if (typeof claims.iat !== 'number' || claims.iat > now + this.#tolerance) throw new SetError('invalid_request', 'The SET has no valid iat.');
    if (typeof claims.jti !== 'string' || claims.jti === '' || claims.jti.length > 256) throw new SetError('invalid_request', 'The SET has no valid jti.');
    const events = claims.events;
    if (events === null || typeof events !== 'object' || Array.isArray(events) || Object.keys(events).length === 0) throw new SetError('invalid_request', 'The SET has no events.');
    const jti = claims.jti;
    if (this.#seen.get(jti, this.#clock()) !== undefined) throw new SetError('invalid_request', 'This SET was received before (jti).');
    this.#seen.set(jti, true, this.#clock() + this.#retain * 1000);

    const [type, event] = Object.entries(events as Record<string, unknown>)[0]!;
    const payload = (event !== null && typeof event === 'object' ? event : {}) as Record<string, unknown>;
    let keysOf: string[] = [];
    let edge: number | undefined;
    if (REVOKING_EVENTS.includes(type)) {
      keysOf = revocationKeysOfSubject(claims.sub_id ?? payload.subject, this.#issuer);
      edge = typeof payload.event_timestamp === 'number' && Number.isFinite(payload.event_timestamp) ? Math.floor(payload.event_timestamp) : claims.iat;
      if (keysOf.length > 0) {
        this.#apply(keysOf, edge);
        await this.#share(keysOf, edge);
      }
    }
    const received: ReceivedEvent = { jti, type, keys: keysOf, edge, via };
    this.#onEvent?.(received);
    return received;
  }

  /** Records a revocation and tells the listeners (the OBO client). */
  #apply(keys: readonly string[], edge: number): void {
    const now = this.#now();
    let changed = false;
    for (const key of keys) changed = this.#revoked.add(key, edge, now) || changed;
    if (!changed) return;
    for (const listener of this.#listeners) {
      try {
        listener(keys, edge);
      } catch (error) {
        this.#logger.warn('signals: a revocation listener failed', { err: (error as Error).message });
      }
    }
  }

  revokedAt(claims: Readonly<Record<string, unknown>>): number | undefined {
    if (this.#revoked.size === 0) return undefined;
    const edge = this.#revoked.edgeOf(revocationKeysOf(claims));
    if (edge === undefined) return undefined;
    const iat = claims.iat;
    // A token without iat cannot show it was issued after the revocation.
    return typeof iat !== 'number' || iat < edge ? edge : undefined;
  }

  onRevocation(listener: (keys: readonly string[], edge: number) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  // — push —

  async handlePush(request: { contentType: string | undefined; authorization: string | undefined; body: string }) {
    const headers = { 'cache-control': 'no-store', 'content-type': 'application/json' };
    const refuse = (error: SetError) => ({ status: 400, headers, body: JSON.stringify(error.toJSON()) });
    if (this.#pushAuthorization !== undefined && !sameString(request.authorization ?? '', this.#pushAuthorization)) {
      return { status: 401, headers: { ...headers, 'www-authenticate': 'Bearer' }, body: JSON.stringify({ err: 'authentication_failed', description: 'The push is not authorized.' }) };
    }
    const type = (request.contentType ?? '').split(';')[0]!.trim().toLowerCase();
    if (type !== 'application/secevent+jwt') return refuse(new SetError('invalid_request', "The body must be one SET as 'application/secevent+jwt' (RFC 8935)."));
    try {
      await this.receive(request.body.trim(), 'push');
      return { status: 202, headers: { 'cache-control': 'no-store' }, body: undefined };
    } catch (error) {
      if (error instanceof SetError) return refuse(error);
      throw error;
    }
  }

  // — poll —

  async #pollLoop(poll: NonNullable<SignalsOptions['poll']>): Promise<void> {
    let ack: string[] = [];
    let errors: Record<string, { err: string; description: string }> = {};
    let delay = poll.retryDelay ?? 1000;
    while (!this.#stopped) {
      try {
        const token = await poll.accessToken();
        const response = await this.#fetch(poll.endpoint, {
          method: 'POST',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'application/json' },
          body: JSON.stringify({ ack, ...(Object.keys(errors).length > 0 ? { setErrs: errors } : {}), maxEvents: poll.maxEvents ?? 100, returnImmediately: false }),
          signal: AbortSignal.any([this.#stop.signal, AbortSignal.timeout(60_000)]),
        });
        if (response.status !== 200) throw new Error(`poll answered ${response.status}`);
        const body = (await response.json()) as { sets?: Record<string, string>; moreAvailable?: boolean };
        ack = [];
        errors = {};
        for (const [jti, set] of Object.entries(body.sets ?? {})) {
          try {
            await this.receive(set, 'poll');
            ack.push(jti);
          } catch (error) {
            if (!(error instanceof SetError)) throw error;
            // A duplicate is acknowledged; any other refusal reported (RFC 8936 setErrs).
            if (error.message.includes('(jti)')) ack.push(jti);
            else errors[jti] = { err: error.err, description: error.message };
          }
        }
        delay = poll.retryDelay ?? 1000;
      } catch (error) {
        if (this.#stopped) return;
        this.#logger.warn('signals: polling failed; retrying', { err: (error as Error).message, delayMs: delay });
        await sleep(delay, this.#stop.signal);
        delay = Math.min(delay * 2, 30_000);
      }
    }
  }

  // — replicas (Redis) —

  get #channel(): string {
    return `${this.#prefix}${this.#issuer}|${this.#audienceKey}`;
  }

  async #share(keys: readonly string[], edge: number): Promise<void> {
    const redis = this.#redis;
    if (redis === undefined) return;
    try {
      const multi = redis.multi();
      for (const key of keys) multi.zadd(`${this.#channel}:revoked`, 'GT', edge, key);
      multi.zremrangebyscore(`${this.#channel}:revoked`, '-inf', this.#now() - this.#retain);
      multi.publish(this.#channel, JSON.stringify({ keys, edge }));
      await multi.exec();
    } catch (error) {
      this.#logger.warn('signals: could not share a revocation with the other replicas', { err: (error as Error).message });
    }
  }

  async #connectRedis(option: NonNullable<SignalsOptions['redis']>): Promise<void> {
    // Loaded here, not at import: an API without `redis` never loads ioredis.
    const { Redis } = await import('ioredis');
    const own: RedisOptions = { maxRetriesPerRequest: 2, connectTimeout: 2000 };
    if (option instanceof Redis) this.#redis = option;
    else {
      this.#redis = typeof option === 'string' ? new Redis(option, own) : new Redis({ ...own, ...option });
      this.#ownsRedis = true;
    }
    this.#redis.on('error', (error: Error) => this.#logger.warn('signals: Redis error', { err: error.message }));
    const subscriber = this.#redis.duplicate();
    this.#subscriber = subscriber;
    subscriber.on('error', (error: Error) => this.#logger.warn('signals: Redis subscriber error', { err: error.message }));
    subscriber.on('message', (_channel: string, message: string) => {
      try {
        const { keys, edge } = JSON.parse(message) as { keys: unknown; edge: unknown };
        if (Array.isArray(keys) && keys.every((k) => typeof k === 'string') && typeof edge === 'number') this.#apply(keys as string[], edge);
      } catch {
        // not ours
      }
    });
    await subscriber.subscribe(this.#channel);
    // Catch up: what other replicas received before this one listened.
    const held = await this.#redis.zrange(`${this.#channel}:revoked`, 0, -1, 'WITHSCORES');
    for (let i = 0; i + 1 < held.length; i += 2) this.#apply([held[i]!], Number(held[i + 1]));
  }

  async start(): Promise<void> {
    if (this.#redisOption !== undefined && this.#redis === undefined) await this.#connectRedis(this.#redisOption);
    if (this.#poll !== undefined) this.#polling ??= this.#pollLoop(this.#poll);
  }

  async close(): Promise<void> {
    this.#stopped = true;
    this.#stop.abort();
    await this.#polling;
    this.#subscriber?.disconnect();
    if (this.#ownsRedis) this.#redis?.disconnect();
  }
}

function sameString(a: string, b: string): boolean {
  // Length first, then every character: no early exit on the first difference.
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve();
    }, { once: true });
  });
}

/** Validates the options; nothing is fetched or connected until `start()` or the first SET. */
export function createSignals(options: SignalsOptions): Signals {
  return new SignalReceiver(options);
}

/**
 * The issuer's signing keys (RFC 7517 JWK Set), cached the way jose's `createRemoteJWKSet` does it:
 *
 * - one in-flight fetch, shared by every caller that needs it;
 * - `timeout` (5 s) on each fetch, `maxAge` (10 min) after which a fetch starts in the background
 *   while the cached keys keep serving;
 * - an unknown `kid` refetches only outside the `cooldown` (30 s) since the last attempt, so a
 *   stream of forged `kid`s cannot turn the API into a JWKS-fetching amplifier;
 * - a result is applied only if no newer one landed first;
 * - a failed fetch keeps the previous keys (served from cache while the JWKS endpoint is down).
 *
 * Keys are imported once into `node:crypto` `KeyObject`s and reused across refreshes while their
 * JWK is unchanged. The JWS header's `jku`, `x5u`, `jwk` and `x5c` are never consulted: keys come
 * from this one configured URL only.
 */
import { performance } from 'node:perf_hooks';
import type { JsonWebKey, KeyObject } from 'node:crypto';
import { importPublicJwk, keyFitsAlg, type JwsAlg } from '@baton/core';
import { readJsonObject, type FetchLike } from './http.ts';

export interface RemoteJwksOptions {
  fetch: FetchLike;
  /** Milliseconds before a fetch is abandoned. Default 5000. */
  timeout?: number | undefined;
  /** Milliseconds after a fetch during which an unknown `kid` does not trigger another. Default 30000. */
  cooldown?: number | undefined;
  /** Milliseconds after which the keys are refreshed in the background. Default 600000. */
  maxAge?: number | undefined;
  /** Epoch milliseconds. */
  clock?: (() => number) | undefined;
  /** Called when a fetch fails (the cached keys stay in use). Never given key material or tokens. */
  onError?: ((error: Error) => void) | undefined;
  /** Told about every fetch, its result and duration (the application's metrics). */
  onFetch?: ((result: 'ok' | 'error', seconds: number) => void) | undefined;
}

/** The keys cannot be fetched and none are cached. */
export class JwksUnavailableError extends Error {
  override name = 'JwksUnavailableError';
}

interface Entry {
  kid: string | undefined;
  alg: string | undefined;
  fingerprint: string;
  key: KeyObject;
}

const MAX_JWKS_BYTES = 512 * 1024;
const MAX_KEYS = 100;
const MAX_CANDIDATES = 5;

function fingerprintOf(jwk: Record<string, unknown>): string {
  const { kty, crv, x, y, n, e, kid, alg } = jwk;
  return JSON.stringify([kty, crv, x, y, n, e, kid, alg]);
}

export class RemoteJwks {
  readonly uri: string;
  readonly #fetch: FetchLike;
  readonly #timeout: number;
  readonly #cooldown: number;
  readonly #maxAge: number;
  readonly #clock: () => number;
  readonly #onError: ((error: Error) => void) | undefined;
  readonly #onFetch: ((result: 'ok' | 'error', seconds: number) => void) | undefined;

  #byKid = new Map<string, Entry[]>();
  #all: Entry[] = [];
  #loaded = false;
  #loadedAt = 0;
  #lastAttemptAt = Number.NEGATIVE_INFINITY;
  #inflight: Promise<void> | undefined;
  #seq = 0;
  #appliedSeq = 0;
  #generation = 0;
  #fetches = 0;

  constructor(uri: string, options: RemoteJwksOptions) {
    this.uri = uri;
    this.#fetch = options.fetch;
    this.#timeout = options.timeout ?? 5000;
    this.#cooldown = options.cooldown ?? 30_000;
    this.#maxAge = options.maxAge ?? 600_000;
    this.#clock = options.clock ?? Date.now;
    this.#onError = options.onError;
    this.#onFetch = options.onFetch;
  }

  /** Increments each time a new key set is applied. */
  get generation(): number {
    return this.#generation;
  }

  /** How many fetches were started (diagnostics). */
  get fetches(): number {
    return this.#fetches;
  }

  /** Whether the current key set still holds `kid` (a verified token's key has not been withdrawn). */
  has(kid: string | undefined): boolean {
    return kid === undefined ? this.#all.length > 0 : this.#byKid.has(kid);
  }

  /**
   * The keys {@link candidates} would answer, when that needs no fetch: a key set is loaded, not
   * older than `maxAge`, and holds a match. `undefined` otherwise (ask `candidates`). Lets the guard
   * verify without a trip through the microtask queue on the common path.
   */
  cachedCandidates(kid: string | undefined, alg: JwsAlg): KeyObject[] | undefined {
    if (!this.#loaded || this.#clock() - this.#loadedAt >= this.#maxAge) return undefined;
    const found = this.#match(kid, alg);
    return found.length === 0 ? undefined : found;
  }

  /**
   * Keys that may have signed a token with this `kid` (or any, when the token has none) under `alg`.
   * An empty list means no key: the caller refuses the token.
   * @throws JwksUnavailableError when nothing is cached and the fetch fails.
   */
  async candidates(kid: string | undefined, alg: JwsAlg): Promise<KeyObject[]> {
    if (!this.#loaded) {
      await this.reload();
    } else if (this.#clock() - this.#loadedAt >= this.#maxAge && this.#clock() - this.#lastAttemptAt >= this.#cooldown) {
      // Background refresh; the current keys keep serving. At most one attempt per cooldown: while
      // the endpoint is down, every request past max age would otherwise start the next fetch as
      // soon as the last one failed (a fetch storm against an issuer that is already struggling;
      // found by `npm run faults`, jwks-down).
      this.reload().catch(() => {});
    }
    let found = this.#match(kid, alg);
    if (found.length === 0 && (this.#inflight !== undefined || this.#clock() - this.#lastAttemptAt >= this.#cooldown)) {
      try {
        await this.reload();
      } catch {
        // keep serving what is cached
      }
      found = this.#match(kid, alg);
    }
    return found;
  }

  /** Starts a fetch, or joins the one in flight. Rejects only when no keys are cached. */
  reload(): Promise<void> {
    if (this.#inflight) return this.#inflight;
    const seq = ++this.#seq;
    this.#lastAttemptAt = this.#clock();
    this.#fetches++;
    // The timeout covers the whole fetch and parse, even with a fetch that ignores its signal; a
    // load that lost the race may still finish later, and the sequence check then drops its result.
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`JWKS fetch timed out after ${this.#timeout} ms`)), this.#timeout);
      timer.unref?.();
    });
    const load = this.#load(seq);
    load.catch(() => {}); // a late failure after the deadline is nobody's concern
    const started = performance.now();
    const p = Promise.race([load, deadline]).finally(() => clearTimeout(timer)).then(
      () => {
        if (this.#inflight === p) this.#inflight = undefined;
        this.#onFetch?.('ok', (performance.now() - started) / 1000);
      },
      (error: unknown) => {
        if (this.#inflight === p) this.#inflight = undefined;
        this.#onFetch?.('error', (performance.now() - started) / 1000);
        const err = error instanceof Error ? error : new Error(String(error));
        this.#onError?.(err);
        if (!this.#loaded) throw new JwksUnavailableError(`the signing keys could not be fetched: ${err.message}`, { cause: err });
      },
    );
    this.#inflight = p;
    return p;
  }

  #match(kid: string | undefined, alg: JwsAlg): KeyObject[] {
    const pool = kid === undefined ? this.#all : (this.#byKid.get(kid) ?? []);
    const out: KeyObject[] = [];
    for (const e of pool) {
      if ((e.alg === undefined || e.alg === alg) && keyFitsAlg(e.key, alg)) out.push(e.key);
      // A token without kid is tried against each fitting key: bounded, so it cannot cost more.
      if (out.length === MAX_CANDIDATES) break;
    }
    return out;
  }

  async #load(seq: number): Promise<void> {
    let res: Response;
    try {
      res = await this.#fetch(this.uri, {
        headers: { accept: 'application/json, application/jwk-set+json' },
        redirect: 'manual',
        signal: AbortSignal.timeout(this.#timeout),
      });
    } catch (error) {
      const timedOut = error instanceof Error && (error.name === 'TimeoutError' || error.name === 'AbortError');
      throw new Error(timedOut ? `JWKS fetch timed out after ${this.#timeout} ms` : `JWKS fetch failed (${(error as Error)?.message ?? 'network error'})`);
    }
    if (res.status !== 200) {
      await res.body?.cancel().catch(() => {});
      throw new Error(`JWKS endpoint answered HTTP ${res.status}`);
    }
    const body = await readJsonObject(res, MAX_JWKS_BYTES);
    if (!Array.isArray(body.keys)) throw new Error('JWKS response has no keys array');

    const previous = new Map(this.#all.map((e) => [e.fingerprint, e]));
    const entries: Entry[] = [];
    for (const raw of body.keys.slice(0, MAX_KEYS)) {
      if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) continue;
      const jwk = raw as Record<string, unknown>;
      if (jwk.kty !== 'EC' && jwk.kty !== 'RSA' && jwk.kty !== 'OKP') continue; // never 'oct'
      if (jwk.use !== undefined && jwk.use !== 'sig') continue;
      // A set that publishes private material is compromised: refuse those keys rather than strip them.
      if (['d', 'p', 'q', 'dp', 'dq', 'qi', 'k'].some((m) => m in jwk)) continue;
      if (jwk.key_ops !== undefined && !(Array.isArray(jwk.key_ops) && jwk.key_ops.includes('verify'))) continue;
      if (jwk.kid !== undefined && typeof jwk.kid !== 'string') continue;
      if (jwk.alg !== undefined && typeof jwk.alg !== 'string') continue;
      const fingerprint = fingerprintOf(jwk);
      const reused = previous.get(fingerprint);
      if (reused) {
        entries.push(reused);
        continue;
      }
      let key: KeyObject;
      try {
        // importPublicJwk refuses private members and symmetric keys.
        const members: Record<string, unknown> = {};
        for (const name of ['kty', 'crv', 'x', 'y', 'n', 'e']) if (jwk[name] !== undefined) members[name] = jwk[name];
        key = importPublicJwk(members as JsonWebKey);
      } catch {
        continue;
      }
      entries.push({ kid: jwk.kid as string | undefined, alg: jwk.alg as string | undefined, fingerprint, key });
    }

    if (seq < this.#appliedSeq) return; // a newer key set already landed: never go back
    this.#appliedSeq = seq;
    const byKid = new Map<string, Entry[]>();
    for (const e of entries) {
      if (e.kid === undefined) continue;
      const list = byKid.get(e.kid);
      if (list) list.push(e);
      else byKid.set(e.kid, [e]);
    }
    this.#all = entries;
    this.#byKid = byKid;
    this.#loaded = true;
    this.#loadedAt = this.#clock();
    this.#generation++;
  }
}

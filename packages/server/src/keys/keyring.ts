/**
 * Per-tenant signing keys over the Store.
 *
 * Each (tenant, algorithm) has one `current` key that signs, one `next` key already published in
 * the JWKS (so resource servers know it before it signs anything), and `retired` keys that stay
 * published for a grace period so tokens signed before a rotation keep verifying until they
 * expire. `kid` is the RFC 7638 thumbprint of the public key.
 *
 * Private keys are stored as PKCS#8 DER encrypted under the KEK with `${tenantId}|${kid}` as AAD.
 * They are decrypted once per key and kept as `KeyObject`s — never per token (DESIGN principle 4).
 *
 * What is published is derived from the decrypted private key, not read from the stored public
 * JWK: somebody who can write the database but does not hold the KEK cannot slip their own public
 * key into the JWKS under a legitimate `kid`.
 *
 * Several instances may share one store. Only `store.rotateSigningKey` (compare-and-set, one
 * transaction) ever makes a key current, so two instances that `ensure` or `rotate` at once
 * cannot leave two current keys; the loser re-reads. Caches are dropped on `store.onInvalidate`,
 * so a key rotated by another instance is served here too.
 */
import { createPrivateKey, createPublicKey, generateKeyPair, type JsonWebKey, type KeyObject } from 'node:crypto';
import { createSigner, jwkThumbprint, keyFitsAlg, type Signer, type SigningAlg, type SigningKeyRecord } from '@baton/core';
import type { Kek } from '../crypto/kek.ts';
import type { Store } from '../store/types.ts';
import { traceSigner } from '../observe/tracing.ts';

export interface KeyringOptions {
  /** How long a retired key stays in the JWKS (seconds). Default 7 days; keep it above the longest token lifetime. */
  retireGraceSeconds?: number;
  /** Rotate the current key automatically once it has signed for this long (seconds). Default: never. */
  rotateAfterSeconds?: number | undefined;
  /** Epoch seconds. */
  now?: () => number;
  /** Reports keys that cannot be used (wrong KEK, damaged row). Never given key material. */
  warn?: (message: string) => void;
}

export interface JsonWebKeySet {
  keys: JsonWebKey[];
}

/** A stored key, decrypted and checked. */
interface LoadedKey {
  readonly record: SigningKeyRecord;
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
  /** The published form: key members + `kid`, `alg`, `use`. */
  readonly jwk: JsonWebKey;
}

/** One tenant's keys as last read from the store. */
interface TenantKeys {
  readonly loadedAt: number;
  /** Every usable key, retired ones included (filtered by `removeAfter` at use). */
  readonly byKid: Map<string, LoadedKey>;
  readonly current: Map<SigningAlg, LoadedKey>;
  readonly signers: Map<SigningAlg, Signer>;
  jwks?: { value: JsonWebKeySet; validUntil: number };
}

const DEFAULT_RETIRE_GRACE_SECONDS = 7 * 24 * 3600;
/** An unknown `kid` makes `publicKey` re-read the store at most this often per tenant. */
const UNKNOWN_KID_RELOAD_SECONDS = 1;
const STATUS_ORDER = { current: 0, next: 1, retired: 2 } as const;

const generateKeyPairAsync = (alg: SigningAlg): Promise<{ privateKey: KeyObject; publicKey: KeyObject }> =>
  new Promise((resolve, reject) => {
    const done = (err: Error | null, publicKey: KeyObject, privateKey: KeyObject) => (err ? reject(err) : resolve({ publicKey, privateKey }));
    if (alg === 'ES256') generateKeyPair('ec', { namedCurve: 'P-256' }, done);
    else generateKeyPair('rsa', { modulusLength: 2048, publicExponent: 0x10001 }, done);
  });

/**
 * @example
 * const keyring = new Keyring(store, kek, { now });
 * await keyring.ensure('contoso', 'ES256');
 * const token = (await keyring.signer('contoso', 'ES256')).sign(claims, 'at+jwt');
 * reply.send(await keyring.jwks('contoso'));
 */
export class Keyring {
  readonly #store: Store;
  readonly #kek: Kek;
  readonly #retireGraceSeconds: number;
  readonly #rotateAfterSeconds: number | undefined;
  readonly #now: () => number;
  readonly #warn: (message: string) => void;
  readonly #tenants = new Map<string, Promise<TenantKeys>>();
  /**
   * Decrypted keys by `tenant|kid`, kept across reloads while the stored ciphertext is unchanged:
   * an invalidation costs one store read, not a decryption of every key.
   */
  readonly #decrypted = new Map<string, { encrypted: string; privateKey: KeyObject; publicKey: KeyObject; jwk: JsonWebKey }>();
  /** Signers by `tenant|kid`, for the same reason. */
  readonly #signers = new Map<string, Signer>();
  /** One rotation or creation at a time per `tenant|alg` in this instance. */
  readonly #inFlight = new Map<string, Promise<unknown>>();
  readonly #unsubscribe: () => void;

  constructor(store: Store, kek: Kek, options: KeyringOptions = {}) {
    const grace = options.retireGraceSeconds ?? DEFAULT_RETIRE_GRACE_SECONDS;
    if (!Number.isFinite(grace) || grace < 0) throw new TypeError('retireGraceSeconds must be a non-negative number');
    if (options.rotateAfterSeconds !== undefined && !(options.rotateAfterSeconds > 0)) throw new TypeError('rotateAfterSeconds must be positive');
    this.#store = store;
    this.#kek = kek;
    this.#retireGraceSeconds = grace;
    this.#rotateAfterSeconds = options.rotateAfterSeconds;
    this.#now = options.now ?? (() => Math.floor(Date.now() / 1000));
    this.#warn = options.warn ?? (() => undefined);
    this.#unsubscribe = store.onInvalidate((change) => {
      if (change.entity !== 'signingKey' && change.entity !== '*') return;
      if (change.tenantId === '*') this.#tenants.clear();
      else this.#tenants.delete(change.tenantId);
    });
  }

  /** Stops listening to the store and forgets every key. */
  close(): void {
    this.#unsubscribe();
    this.#tenants.clear();
    this.#decrypted.clear();
    this.#signers.clear();
  }

  /**
   * Makes sure the tenant has a current and a next key for `alg`. Safe to call at every start and
   * from several instances at once.
   */
  async ensure(tenantId: string, alg: SigningAlg): Promise<void> {
    await this.#exclusive(tenantId, alg, () => this.#ensure(tenantId, alg));
  }

  async #ensure(tenantId: string, alg: SigningAlg): Promise<void> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const records = await this.#records(tenantId, alg);
      const current = pickCurrent(records);
      if (current && this.#open(tenantId, current) === undefined) {
        // Fail closed and say why; never paper over it with new keys other instances cannot read.
        throw new Error(
          `the current ${alg} signing key ${current.kid} of tenant ${tenantId} does not decrypt with this key-encryption key ` +
            `(id ${this.#kek.id}): is BATON_KEK the same on every instance?`,
        );
      }
      const next = this.#pickUsableNext(tenantId, records);
      if (current && next) return;
      if (current) {
        // A spare next key is harmless (published, never promoted twice), so a race here needs no lock.
        await this.#store.putSigningKey(await this.#generate(tenantId, alg));
        this.#drop(tenantId);
        return;
      }
      if (!next) {
        // Publish a candidate first, then let the compare-and-set below decide which one becomes
        // current. Re-read before promoting: every instance picks the same (oldest) candidate.
        await this.#store.putSigningKey(await this.#generate(tenantId, alg));
        continue;
      }
      const won = await this.#store.rotateSigningKey({
        tenantId,
        alg,
        expectCurrentKid: undefined,
        promoteKid: next.kid,
        next: await this.#generate(tenantId, alg),
        now: this.#now(),
        retireGraceSeconds: this.#retireGraceSeconds,
      });
      this.#drop(tenantId);
      if (won) return;
    }
    const records = await this.#records(tenantId, alg);
    if (!pickCurrent(records)) throw new Error(`could not create a current ${alg} signing key for tenant ${tenantId}`);
  }

  /**
   * Promotes next → current, retires the old current (published for `retireGraceSeconds`) and
   * creates a new next. Returns false when another instance rotated first (this one then serves
   * that rotation's keys).
   */
  async rotate(tenantId: string, alg: SigningAlg): Promise<boolean> {
    return this.#exclusive(tenantId, alg, () => this.#rotate(tenantId, alg, undefined));
  }

  async #rotate(tenantId: string, alg: SigningAlg, onlyIfActivatedBefore: number | undefined): Promise<boolean> {
    const records = await this.#records(tenantId, alg);
    const current = pickCurrent(records);
    if (!current) {
      await this.#ensure(tenantId, alg);
      return true;
    }
    // Re-checked on fresh data: another instance may have rotated since our cache was filled.
    if (onlyIfActivatedBefore !== undefined && (current.activatedAt ?? current.createdAt) > onlyIfActivatedBefore) {
      this.#drop(tenantId);
      return false;
    }
    let promote = this.#pickUsableNext(tenantId, records);
    if (!promote) {
      promote = await this.#generate(tenantId, alg);
      await this.#store.putSigningKey(promote);
    }
    const won = await this.#store.rotateSigningKey({
      tenantId,
      alg,
      expectCurrentKid: current.kid,
      promoteKid: promote.kid,
      next: await this.#generate(tenantId, alg),
      now: this.#now(),
      retireGraceSeconds: this.#retireGraceSeconds,
    });
    this.#drop(tenantId);
    await this.#tenant(tenantId);
    return won;
  }

  /** Deletes keys whose grace period is over. Returns how many. */
  async prune(tenantId: string): Promise<number> {
    const removed = await this.#store.pruneSigningKeys(tenantId, this.#now());
    if (removed > 0) this.#drop(tenantId);
    return removed;
  }

  /**
   * The signer of the tenant's current `alg` key (created on first use; rotated first when
   * `rotateAfterSeconds` says so). Cached: no store read and no decryption per token.
   */
  async signer(tenantId: string, alg: SigningAlg): Promise<Signer> {
    let state = await this.#tenant(tenantId);
    let current = state.current.get(alg);
    if (current === undefined) {
      await this.ensure(tenantId, alg);
      state = await this.#tenant(tenantId);
      current = state.current.get(alg);
      if (current === undefined) {
        throw new Error(`tenant ${tenantId} has no usable current ${alg} signing key (was it encrypted under another key-encryption key?)`);
      }
    }
    if (this.#rotateAfterSeconds !== undefined) {
      const cutoff = this.#now() - this.#rotateAfterSeconds;
      if ((current.record.activatedAt ?? current.record.createdAt) <= cutoff) {
        await this.#exclusive(tenantId, alg, () => this.#rotate(tenantId, alg, cutoff));
        // Whoever rotated, the fresh state has the key to sign with; no second check (no loop).
        state = await this.#tenant(tenantId);
        const rotated = state.current.get(alg);
        if (rotated !== undefined) current = rotated;
      }
    }
    let signer = state.signers.get(alg);
    if (signer === undefined) {
      const id = `${tenantId}|${current.record.kid}`;
      signer = this.#signers.get(id) ?? traceSigner(createSigner(current.privateKey, current.record.kid, alg));
      this.#signers.set(id, signer);
      if (state.current.get(alg) === current) state.signers.set(alg, signer);
    }
    return signer;
  }

  /** The JWKS document: current, next and retired keys still within their grace period. */
  async jwks(tenantId: string): Promise<JsonWebKeySet> {
    const state = await this.#tenant(tenantId);
    const now = this.#now();
    if (state.jwks && now < state.jwks.validUntil) return state.jwks.value;
    const published = [...state.byKid.values()]
      .filter((k) => isPublished(k.record, now))
      .sort((a, b) => STATUS_ORDER[a.record.status] - STATUS_ORDER[b.record.status] || a.record.alg.localeCompare(b.record.alg) || (b.record.createdAt - a.record.createdAt));
    // The document changes by itself when the next retired key reaches `removeAfter`.
    const validUntil = Math.min(
      Infinity,
      ...published.filter((k) => k.record.status === 'retired').map((k) => k.record.removeAfter ?? 0),
    );
    // Shared by every caller until the keys change: frozen, so no caller can alter what others publish.
    const value: JsonWebKeySet = Object.freeze({ keys: Object.freeze(published.map((k) => Object.freeze({ ...k.jwk }))) as JsonWebKey[] });
    state.jwks = { value, validUntil };
    return value;
  }

  /**
   * A published key of this tenant by `kid`, for verifying tokens this service issued (OBO
   * assertions). Undefined for unknown, malformed or expired-from-JWKS keys.
   */
  async publicKey(tenantId: string, kid: string): Promise<{ key: KeyObject; alg: SigningAlg } | undefined> {
    if (typeof kid !== 'string' || kid.length === 0 || kid.length > 128) return undefined;
    let state = await this.#tenant(tenantId);
    let found = state.byKid.get(kid);
    if (found === undefined && this.#now() - state.loadedAt >= UNKNOWN_KID_RELOAD_SECONDS) {
      // Perhaps another instance just created it and its invalidation has not reached us yet.
      this.#drop(tenantId);
      state = await this.#tenant(tenantId);
      found = state.byKid.get(kid);
    }
    if (found === undefined || !isPublished(found.record, this.#now())) return undefined;
    return { key: found.publicKey, alg: found.record.alg };
  }

  // — internals —

  /** The next key to promote, among those this instance can decrypt: never make an unusable key current. */
  #pickUsableNext(tenantId: string, records: SigningKeyRecord[]): SigningKeyRecord | undefined {
    return pickNext(records.filter((r) => r.status === 'next' && this.#open(tenantId, r) !== undefined));
  }

  #drop(tenantId: string): void {
    this.#tenants.delete(tenantId);
  }

  async #records(tenantId: string, alg: SigningAlg): Promise<SigningKeyRecord[]> {
    return (await this.#store.listSigningKeys(tenantId)).filter((r) => r.alg === alg);
  }

  /** Serialises creation and rotation of one (tenant, alg) inside this instance. */
  async #exclusive<T>(tenantId: string, alg: SigningAlg, task: () => Promise<T>): Promise<T> {
    const id = `${tenantId}|${alg}`;
    const before = this.#inFlight.get(id) ?? Promise.resolve();
    const run = before.then(task, task);
    const settled = run.catch(() => undefined);
    this.#inFlight.set(id, settled);
    try {
      return await run;
    } finally {
      if (this.#inFlight.get(id) === settled) this.#inFlight.delete(id);
    }
  }

  #tenant(tenantId: string): Promise<TenantKeys> {
    let entry = this.#tenants.get(tenantId);
    if (entry === undefined) {
      entry = this.#load(tenantId);
      this.#tenants.set(tenantId, entry);
      const mine = entry;
      entry.catch(() => {
        if (this.#tenants.get(tenantId) === mine) this.#tenants.delete(tenantId);
      });
    }
    return entry;
  }

  async #load(tenantId: string): Promise<TenantKeys> {
    const loadedAt = this.#now();
    const records = await this.#store.listSigningKeys(tenantId);
    const byKid = new Map<string, LoadedKey>();
    const seen = new Set<string>();
    for (const record of records) {
      // Keys past their grace period are never needed again: skip the decryption.
      if (record.status === 'retired' && !isPublished(record, loadedAt)) continue;
      const loaded = this.#open(tenantId, record);
      if (loaded) {
        byKid.set(record.kid, loaded);
        seen.add(`${tenantId}|${record.kid}`);
      }
    }
    for (const id of this.#decrypted.keys()) {
      if (id.startsWith(`${tenantId}|`) && !seen.has(id)) {
        this.#decrypted.delete(id);
        this.#signers.delete(id);
      }
    }
    const current = new Map<SigningAlg, LoadedKey>();
    for (const alg of new Set(records.map((r) => r.alg))) {
      const chosen = pickCurrent(records.filter((r) => r.alg === alg));
      const loaded = chosen && byKid.get(chosen.kid);
      if (loaded) current.set(alg, loaded);
    }
    return { loadedAt, byKid, current, signers: new Map() };
  }

  /** Decrypts and checks one stored key; undefined (with a warning) when it cannot be trusted. */
  #open(tenantId: string, record: SigningKeyRecord): LoadedKey | undefined {
    const id = `${tenantId}|${record.kid}`;
    let opened = this.#decrypted.get(id);
    if (opened === undefined || opened.encrypted !== record.encryptedPrivateKey) {
      try {
        const der = this.#kek.decrypt(record.encryptedPrivateKey, id);
        const privateKey = createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
        der.fill(0);
        const publicKey = createPublicKey(privateKey);
        const members = publicKey.export({ format: 'jwk' });
        if (jwkThumbprint(members) !== record.kid) throw new Error('kid is not the thumbprint of the key');
        if (!keyFitsAlg(privateKey, record.alg)) throw new Error(`key does not fit ${record.alg}`);
        const jwk: JsonWebKey = { ...members, kid: record.kid, alg: record.alg, use: 'sig' };
        opened = { encrypted: record.encryptedPrivateKey, privateKey, publicKey, jwk };
        this.#decrypted.set(id, opened);
        this.#signers.delete(id);
      } catch (error) {
        this.#warn(`signing key ${record.kid} of tenant ${tenantId} is not usable and is skipped: ${(error as Error).message}`);
        return undefined;
      }
    }
    // The record may have changed status since the key was decrypted; the key material has not.
    const jwk: JsonWebKey = { ...opened.jwk, alg: record.alg };
    return { record, privateKey: opened.privateKey, publicKey: opened.publicKey, jwk };
  }

  /** A new key, as a `next` record. */
  async #generate(tenantId: string, alg: SigningAlg): Promise<SigningKeyRecord> {
    const { privateKey, publicKey } = await generateKeyPairAsync(alg);
    const members = publicKey.export({ format: 'jwk' });
    const kid = jwkThumbprint(members);
    const der = privateKey.export({ format: 'der', type: 'pkcs8' });
    const encryptedPrivateKey = this.#kek.encrypt(der, `${tenantId}|${kid}`);
    der.fill(0);
    return {
      tenantId,
      kid,
      alg,
      status: 'next',
      publicJwk: { ...members, kid, alg, use: 'sig' },
      encryptedPrivateKey,
      createdAt: this.#now(),
    };
  }
}

function isPublished(record: SigningKeyRecord, now: number): boolean {
  if (record.status !== 'retired') return true;
  return record.removeAfter !== undefined && record.removeAfter > now;
}

/**
 * The current key. There is one unless the store was edited by hand; if there are several,
 * every instance picks the same one (latest activated, then kid).
 */
function pickCurrent(records: SigningKeyRecord[]): SigningKeyRecord | undefined {
  return records
    .filter((r) => r.status === 'current')
    .sort((a, b) => (b.activatedAt ?? b.createdAt) - (a.activatedAt ?? a.createdAt) || compare(a.kid, b.kid))[0];
}

/** The next key to promote: the oldest candidate, so every instance promotes the same one. */
function pickNext(records: SigningKeyRecord[]): SigningKeyRecord | undefined {
  return records.filter((r) => r.status === 'next').sort((a, b) => a.createdAt - b.createdAt || compare(a.kid, b.kid))[0];
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

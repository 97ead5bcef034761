/**
 * Client secrets.
 *
 * A generated client secret carries 256 bits of entropy, so brute force against its hash is
 * hopeless and a slow hash (scrypt) would only slow down every client-credentials and OBO call —
 * the hot path (DESIGN principle 4). Instead the secret is hashed with HMAC-SHA-256 under a
 * server-side pepper (derived from the key-encryption key): a stolen database alone does not
 * even allow an offline check of a guessed secret.
 *
 * Stored form: `hmac-sha256$<base64url>`.
 */
import { createHmac, KeyObject, randomBytes, timingSafeEqual } from 'node:crypto';

const PREFIX = 'hmac-sha256$';
const MAC_BYTES = 32;
/** Client secrets longer than this are refused before hashing (no reason to MAC megabytes). */
const MAX_SECRET_LENGTH = 1024;

/**
 * The HMAC key: a Buffer, or better a secret KeyObject — node:crypto imports a Buffer key on every
 * createHmac call (measured here: ~39 µs per HMAC with a Buffer, ~4 µs with a KeyObject).
 */
export type Pepper = Buffer | KeyObject;

function validPepper(pepper: Pepper): boolean {
  if (Buffer.isBuffer(pepper)) return pepper.length >= 16;
  return pepper instanceof KeyObject && pepper.type === 'secret' && (pepper.symmetricKeySize ?? 0) >= 16;
}

function mac(secret: string, pepper: Pepper): Buffer {
  return createHmac('sha256', pepper).update(secret, 'utf8').digest();
}

/**
 * Keyed hash of a client secret for storage.
 *
 * @example
 * const pepper = kek.derive('client-secret-pepper');
 * const record = { hash: hashClientSecret(secret, pepper), hint: secretHint(secret), createdAt: now };
 */
export function hashClientSecret(secret: string, pepper: Pepper): string {
  if (typeof secret !== 'string' || secret.length === 0) throw new TypeError('client secret must be a non-empty string');
  if (secret.length > MAX_SECRET_LENGTH) throw new TypeError(`client secret must be at most ${MAX_SECRET_LENGTH} characters`);
  if (!validPepper(pepper)) throw new TypeError('pepper must be a key of at least 16 bytes');
  return PREFIX + mac(secret, pepper).toString('base64url');
}

/**
 * Constant-time check of a presented secret against a stored hash. Returns false (never throws)
 * for any malformed input: both arguments may come from an attacker or a damaged row.
 */
export function verifyClientSecret(secret: string, stored: string, pepper: Pepper): boolean {
  if (typeof secret !== 'string' || secret.length === 0 || secret.length > MAX_SECRET_LENGTH) return false;
  if (typeof stored !== 'string' || !stored.startsWith(PREFIX)) return false;
  if (!validPepper(pepper)) return false;
  const encoded = stored.slice(PREFIX.length);
  if (!/^[A-Za-z0-9_-]{43}$/.test(encoded)) return false;
  const expected = Buffer.from(encoded, 'base64url');
  if (expected.length !== MAC_BYTES) return false;
  return timingSafeEqual(mac(secret, pepper), expected);
}

/** Whether `stored` has the shape of a client secret hash (for validating imports). */
export function isClientSecretHash(stored: unknown): boolean {
  return typeof stored === 'string' && stored.startsWith(PREFIX) && /^[A-Za-z0-9_-]{43}$/.test(stored.slice(PREFIX.length));
}

/** A new client secret: 32 random bytes (256 bits), base64url (43 characters). */
export function generateClientSecret(): string {
  return randomBytes(32).toString('base64url');
}

/**
 * For secrets written into a configuration file by a person: a warning when the secret is
 * guessable, `undefined` when it looks fine. The message never contains the secret.
 */
export function secretStrengthWarning(secret: string): string | undefined {
  const advice = 'generate one with `npx baton secret new`';
  if (typeof secret !== 'string' || secret.length === 0) return `the client secret is empty; ${advice}`;
  const length = [...secret].length;
  if (length < 32) return `the client secret is shorter than 32 characters (${length}); ${advice}`;
  if (secret.length > MAX_SECRET_LENGTH) return `the client secret is longer than ${MAX_SECRET_LENGTH} characters and will be refused`;
  const distinct = new Set(secret).size;
  if (distinct < 10) return `the client secret uses only ${distinct} different characters; ${advice}`;
  if (isPeriodic(secret)) return `the client secret is a short pattern repeated; ${advice}`;
  return undefined;
}

/** True when `s` is some shorter string repeated (`abcabcabc…`), the common low-effort pattern. */
function isPeriodic(s: string): boolean {
  for (let period = 1; period <= s.length / 2; period++) {
    let repeats = true;
    for (let i = period; i < s.length; i++) {
      if (s[i] !== s[i - period]) {
        repeats = false;
        break;
      }
    }
    if (repeats) return true;
  }
  return false;
}

/** The first three characters, as Entra shows them (`tas…`), to tell secrets apart in listings. */
export function secretHint(secret: string): string {
  return [...secret].slice(0, 3).join('');
}

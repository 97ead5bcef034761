/**
 * User passwords: scrypt (RFC 7914) through `node:crypto`, stored as
 * `scrypt$N$r$p$<salt>$<hash>` with base64url salt and hash.
 *
 * Why scrypt: it is memory-hard, built into Node (no native add-on), and its parameters travel
 * with the hash, so raising the cost later only needs `needsRehash` at the next sign-in.
 *
 * Every function here treats the stored string as hostile (it comes from a database or a
 * configuration file): an unknown format or out-of-range parameters give `false`, never an
 * exception and never an expensive computation an attacker chose (a stored `N=2^30` would
 * otherwise allocate a gigabyte per sign-in attempt).
 */
import { randomBytes, scrypt as scryptCallback, timingSafeEqual, type ScryptOptions } from 'node:crypto';

/** Cost parameters of new hashes. N = 2^15, r = 8 → 32 MiB and ~50–100 ms per hash. */
const N = 2 ** 15;
const R = 8;
const P = 1;
const SALT_BYTES = 16;
const KEY_BYTES = 32;

/** Bounds accepted when verifying, so a stored string cannot choose an absurd cost. */
const MIN_LOG2_N = 10;
const MAX_LOG2_N = 17;
const MAX_R = 16;
const MAX_P = 4;

const B64URL = /^[A-Za-z0-9_-]+$/;

/**
 * scrypt needs 128·N·r bytes plus a little; Node's default `maxmem` (32 MiB) is exactly the
 * working set of N=2^15,r=8 and OpenSSL refuses it. Allow twice the largest working set we accept.
 */
function maxmemFor(n: number, r: number, p: number): number {
  return 2 * 128 * n * r * p + 1024 * 1024;
}

/**
 * scrypt runs on libuv's thread pool, which the token endpoint's signatures and verifications share
 * (4 threads unless UV_THREADPOOL_SIZE says otherwise). At most half of the pool hashes passwords at
 * a time; further hashes wait here, in order. Without the limit, a burst of sign-ins — or a
 * password spray from many addresses, which per-IP throttling does not stop — would fill every pool
 * thread with ~50–100 ms hashes and queue every token signature behind them.
 */
const POOL_THREADS = Math.max(1, Math.trunc(Number(process.env.UV_THREADPOOL_SIZE)) || 4);
export const SCRYPT_SLOTS = Math.max(1, Math.floor(POOL_THREADS / 2));
let hashing = 0;
const waiting: (() => void)[] = [];

async function acquireSlot(): Promise<void> {
  if (hashing < SCRYPT_SLOTS) {
    hashing++;
    return;
  }
  // The slot is handed over by releaseSlot: the count stays the same.
  await new Promise<void>((resolve) => waiting.push(resolve));
}

function releaseSlot(): void {
  const next = waiting.shift();
  if (next !== undefined) next();
  else hashing--;
}

/** Password hashes running and waiting (diagnostics, tests). */
export function passwordHashLoad(): { running: number; waiting: number } {
  return { running: hashing, waiting: waiting.length };
}

async function scrypt(password: Buffer, salt: Buffer, keylen: number, options: ScryptOptions): Promise<Buffer> {
  await acquireSlot();
  try {
    return await new Promise<Buffer>((resolve, reject) => {
      scryptCallback(password, salt, keylen, options, (err, key) => (err ? reject(err) : resolve(key)));
    });
  } finally {
    releaseSlot();
  }
}

/**
 * Passwords are compared as NFC-normalised UTF-8 (RFC 8265 OpaqueString), so the same password
 * typed on macOS (decomposed) and Windows (composed) matches.
 */
function passwordBytes(password: string): Buffer {
  return Buffer.from(password.normalize('NFC'), 'utf8');
}

interface ParsedHash {
  n: number;
  r: number;
  p: number;
  salt: Buffer;
  hash: Buffer;
}

function parse(stored: unknown): ParsedHash | undefined {
  if (typeof stored !== 'string' || stored.length > 512) return undefined;
  const parts = stored.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return undefined;
  const [, nText, rText, pText, saltText, hashText] = parts as [string, string, string, string, string, string];
  if (!/^[1-9][0-9]{0,9}$/.test(nText) || !/^[1-9][0-9]{0,2}$/.test(rText) || !/^[1-9][0-9]{0,2}$/.test(pText)) return undefined;
  const n = Number(nText);
  const r = Number(rText);
  const p = Number(pText);
  // N must be a power of two (RFC 7914 §2) within bounds; r and p small.
  const log2n = Math.log2(n);
  if (!Number.isInteger(log2n) || log2n < MIN_LOG2_N || log2n > MAX_LOG2_N) return undefined;
  if (r > MAX_R || p > MAX_P) return undefined;
  if (!B64URL.test(saltText) || !B64URL.test(hashText)) return undefined;
  const salt = Buffer.from(saltText, 'base64url');
  const hash = Buffer.from(hashText, 'base64url');
  if (salt.length < 16 || salt.length > 64 || hash.length < 16 || hash.length > 64) return undefined;
  return { n, r, p, salt, hash };
}

/**
 * Hashes a password for storage.
 *
 * @example
 * const stored = await hashPassword('correct horse battery staple');
 * await verifyPassword('correct horse battery staple', stored); // true
 */
export async function hashPassword(password: string): Promise<string> {
  if (typeof password !== 'string') throw new TypeError('password must be a string');
  const salt = randomBytes(SALT_BYTES);
  const hash = await scrypt(passwordBytes(password), salt, KEY_BYTES, { N, r: R, p: P, maxmem: maxmemFor(N, R, P) });
  return `scrypt$${N}$${R}$${P}$${salt.toString('base64url')}$${hash.toString('base64url')}`;
}

/**
 * Checks `password` against a stored hash in constant time. A malformed or unknown stored value
 * gives `false` (after the same work as a real check, so the failure is not faster either).
 */
export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const parsed = parse(stored);
  if (parsed === undefined || typeof password !== 'string') {
    await verifyAgainstDummy(typeof password === 'string' ? password : '');
    return false;
  }
  let derived: Buffer;
  try {
    derived = await scrypt(passwordBytes(password), parsed.salt, parsed.hash.length, {
      N: parsed.n,
      r: parsed.r,
      p: parsed.p,
      maxmem: maxmemFor(parsed.n, parsed.r, parsed.p),
    });
  } catch {
    return false;
  }
  return derived.length === parsed.hash.length && timingSafeEqual(derived, parsed.hash);
}

// A fixed hash of a random password no one knows, with the current parameters.
const DUMMY_SALT = randomBytes(SALT_BYTES);
const DUMMY_HASH = randomBytes(KEY_BYTES);

/**
 * Does the work of `verifyPassword` against a hash that matches nothing, and returns `false`.
 * Call it when the user does not exist, so "no such user" costs the same time as "wrong
 * password" (DESIGN principle 5: no hint that helps an attacker enumerate accounts).
 */
export async function verifyAgainstDummy(password: string): Promise<false> {
  try {
    const derived = await scrypt(passwordBytes(typeof password === 'string' ? password : ''), DUMMY_SALT, KEY_BYTES, {
      N,
      r: R,
      p: P,
      maxmem: maxmemFor(N, R, P),
    });
    timingSafeEqual(derived, DUMMY_HASH);
  } catch {
    // Nothing to report: the answer is false either way.
  }
  return false;
}

/**
 * Whether a stored hash should be replaced at the next successful sign-in: it is not in the
 * current format or was made with different parameters.
 */
export function needsRehash(stored: string): boolean {
  const parsed = parse(stored);
  if (parsed === undefined) return true;
  return parsed.n !== N || parsed.r !== R || parsed.p !== P || parsed.salt.length !== SALT_BYTES || parsed.hash.length !== KEY_BYTES;
}

/** Whether `stored` is a hash this module can verify (for validating configuration and imports). */
export function isPasswordHash(stored: unknown): boolean {
  return parse(stored) !== undefined;
}

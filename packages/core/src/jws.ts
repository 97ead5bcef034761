/**
 * Compact JWS (RFC 7515) signing and verification with `node:crypto` key objects.
 *
 * Why not jose here: jose verifies through WebCrypto, measured 3–6× slower on Node than
 * `crypto.sign`/`crypto.verify` with a `KeyObject` (DESIGN principle 4). jose stays a test
 * dependency so interop is proven with an independent implementation.
 *
 * The algorithm is never taken from the token: the caller names the one it accepts for the key
 * (algorithm-confusion attacks — `alg: none`, HS256 keyed with a public key — have nowhere to go).
 */
import { createHash, createPublicKey, hash, sign as cryptoSign, verify as cryptoVerify, constants, type JsonWebKey, type KeyObject } from 'node:crypto';
import type { SigningAlg } from './types.ts';
import { WeakMemo } from './memo.ts';

export type JwsAlg = SigningAlg | 'ES384' | 'RS384' | 'RS512' | 'PS384' | 'PS512' | 'EdDSA';

export interface JwsHeader {
  alg: string;
  kid?: string;
  typ?: string;
  [name: string]: unknown;
}

export interface DecodedJws {
  header: JwsHeader;
  payload: Record<string, unknown>;
  /** `base64url(header).base64url(payload)`, the bytes the signature covers. */
  signingInput: string;
  signature: Buffer;
}

export class JwsFormatError extends Error {
  override name = 'JwsFormatError';
}

const B64URL = /^[A-Za-z0-9_-]*$/;

/** Decodes without verifying. Strict: three base64url segments, JSON objects, no padding. */
export function decodeJws(token: string, maxLength = 16 * 1024): DecodedJws {
  if (typeof token !== 'string' || token.length === 0) throw new JwsFormatError('empty token');
  if (token.length > maxLength) throw new JwsFormatError(`token longer than ${maxLength} characters`);
  const first = token.indexOf('.');
  const second = first < 0 ? -1 : token.indexOf('.', first + 1);
  if (first <= 0 || second < 0 || token.indexOf('.', second + 1) !== -1) throw new JwsFormatError('not a compact JWS');
  const h = token.slice(0, first);
  const p = token.slice(first + 1, second);
  const s = token.slice(second + 1);
  for (const part of [h, p, s]) {
    if (!B64URL.test(part) || part.length % 4 === 1) throw new JwsFormatError('segment is not base64url');
  }
  const header = parseObject(h, 'header') as JwsHeader;
  if (typeof header.alg !== 'string') throw new JwsFormatError('header has no alg');
  const payload = parseObject(p, 'payload');
  return { header, payload, signingInput: token.slice(0, second), signature: Buffer.from(s, 'base64url') };
}

function parseObject(segment: string, what: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(segment, 'base64url').toString('utf8'));
  } catch {
    throw new JwsFormatError(`${what} is not JSON`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new JwsFormatError(`${what} is not a JSON object`);
  return value as Record<string, unknown>;
}

function hashFor(alg: JwsAlg): string | null {
  switch (alg) {
    case 'ES256': case 'RS256': case 'PS256': return 'sha256';
    case 'ES384': case 'RS384': case 'PS384': return 'sha384';
    case 'RS512': case 'PS512': return 'sha512';
    case 'EdDSA': return null;
  }
}

/*
 * ECDSA signatures: JWS carries r||s (RFC 7518 §3.4), OpenSSL speaks DER (ECDSA-Sig-Value). Node can
 * convert (`dsaEncoding: 'ieee-p1363'`), but passing an options object instead of the bare KeyObject
 * makes it re-read the key's slots on every call: measured here, sign 35 → 17.5 µs and verify
 * 62.5 → 45 µs with the bare key and the conversion below. This is encoding only — every signature
 * is still made and checked by OpenSSL — and test/jws-interop.test.ts checks it both ways against
 * jose over thousands of signatures (leading-zero r and s included).
 */
const EC_SIZE: Partial<Record<JwsAlg, number>> = { ES256: 32, ES384: 48 };

/** DER ECDSA-Sig-Value (from OpenSSL, trusted) → r||s. Exported for the benchmark's crypto bound. */
export function derToP1363(der: Buffer, size: number): Buffer {
  let offset = 2;
  if ((der[1] as number) & 0x80) offset += (der[1] as number) & 0x7f;
  const rLength = der[offset + 1] as number;
  let r = der.subarray(offset + 2, offset + 2 + rLength);
  offset += 2 + rLength;
  const sLength = der[offset + 1] as number;
  let s = der.subarray(offset + 2, offset + 2 + sLength);
  if (r.length > size) r = r.subarray(r.length - size);
  if (s.length > size) s = s.subarray(s.length - size);
  const out = Buffer.alloc(2 * size);
  r.copy(out, size - r.length);
  s.copy(out, 2 * size - s.length);
  return out;
}
/** The minimal DER INTEGER content of an unsigned big-endian value: `[start, length, pad]`. */
function derIntegerSpan(bytes: Buffer, from: number, to: number): [number, number, number] {
  let i = from;
  while (i < to - 1 && bytes[i] === 0) i++;
  return [i, to - i, (bytes[i] as number) & 0x80 ? 1 : 0];
}
/**
 * r||s (from a token, untrusted) → DER; a wrong length gives an empty buffer, which never verifies.
 * One allocation: this runs on every verification.
 */
export function p1363ToDer(sig: Buffer, size: number): Buffer {
  if (sig.length !== 2 * size) return Buffer.alloc(0);
  const [rStart, rLength, rPad] = derIntegerSpan(sig, 0, size);
  const [sStart, sLength, sPad] = derIntegerSpan(sig, size, 2 * size);
  const body = 4 + rPad + rLength + sPad + sLength;
  const long = body >= 0x80;
  const out = Buffer.allocUnsafe((long ? 3 : 2) + body);
  let o = 0;
  out[o++] = 0x30;
  if (long) out[o++] = 0x81;
  out[o++] = body;
  out[o++] = 0x02;
  out[o++] = rPad + rLength;
  if (rPad) out[o++] = 0;
  o += sig.copy(out, o, rStart, rStart + rLength);
  out[o++] = 0x02;
  out[o++] = sPad + sLength;
  if (sPad) out[o++] = 0;
  sig.copy(out, o, sStart, sStart + sLength);
  return out;
}

function keyOptions(alg: JwsAlg, key: KeyObject) {
  if (alg.startsWith('ES')) return key;
  // RFC 7518 §3.5: PSS salt length equals the hash output length.
  if (alg.startsWith('PS')) return { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: Number(alg.slice(2)) / 8 };
  return { key };
}

/** Whether `key` is of the type `alg` needs (an EC P-256 key for ES256, RSA for RS/PS, ...). */
export function keyFitsAlg(key: KeyObject, alg: JwsAlg): boolean {
  return fitCache.get(key, alg, () => computeKeyFitsAlg(key, alg));
}

/**
 * A key's type and size never change, but reading them (`asymmetricKeyDetails`) builds a new object
 * in C++ on every call; every verification asks, so the answer is remembered per key object.
 */
const fitCache = new WeakMemo<KeyObject, boolean>();

function computeKeyFitsAlg(key: KeyObject, alg: JwsAlg): boolean {
  const type = key.asymmetricKeyType;
  if (alg === 'EdDSA') return type === 'ed25519' || type === 'ed448';
  if (alg.startsWith('ES')) {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    return type === 'ec' && ((alg === 'ES256' && curve === 'prime256v1') || (alg === 'ES384' && curve === 'secp384r1'));
  }
  if (alg.startsWith('RS') || alg.startsWith('PS')) {
    return (type === 'rsa' || type === 'rsa-pss') && (key.asymmetricKeyDetails?.modulusLength ?? 0) >= 2048;
  }
  return false;
}

export const SUPPORTED_JWS_ALGS: readonly JwsAlg[] = ['ES256', 'ES384', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'EdDSA'];

export function isSupportedAlg(alg: unknown): alg is JwsAlg {
  return typeof alg === 'string' && (SUPPORTED_JWS_ALGS as readonly string[]).includes(alg);
}

/** Verifies `decoded` with `key` under `alg` (the algorithm the verifier accepts, not the token's). */
export function verifyJwsSignature(decoded: DecodedJws, key: KeyObject, alg: JwsAlg): boolean {
  if (decoded.header.alg !== alg || !keyFitsAlg(key, alg)) return false;
  try {
    const size = EC_SIZE[alg];
    return cryptoVerify(hashFor(alg), Buffer.from(decoded.signingInput), keyOptions(alg, key), size ? p1363ToDer(decoded.signature, size) : decoded.signature);
  } catch {
    return false;
  }
}

/**
 * {@link verifyJwsSignature} on libuv's thread pool (`crypto.verify` with a callback): the same
 * checks and the same OpenSSL call, off the event loop. A token service verifies and signs on every
 * exchange; done here, the event loop keeps parsing and writing other requests meanwhile, the
 * signatures run back to back on warm caches (measured on one pinned core over HTTPS: +15 % for
 * client_credentials, +30–50 % for On-Behalf-Of; docs/performance.md), and with more than one core
 * they run in parallel. Resolves false (never rejects) for
 * anything that does not verify.
 */
export function verifyJwsSignatureAsync(decoded: DecodedJws, key: KeyObject, alg: JwsAlg): Promise<boolean> {
  if (decoded.header.alg !== alg || !keyFitsAlg(key, alg)) return Promise.resolve(false);
  return new Promise((resolve) => {
    try {
      const size = EC_SIZE[alg];
      const signature = size ? p1363ToDer(decoded.signature, size) : decoded.signature;
      cryptoVerify(hashFor(alg), Buffer.from(decoded.signingInput), keyOptions(alg, key), signature, (error, ok) => resolve(error === null && ok === true));
    } catch {
      resolve(false);
    }
  });
}

export interface Signer {
  readonly kid: string;
  readonly alg: SigningAlg;
  /** Serialises and signs; `typ` defaults to `JWT`. */
  sign(payload: Record<string, unknown>, typ?: string): string;
  /**
   * The same, with the signature computed on libuv's thread pool (see
   * {@link verifyJwsSignatureAsync}): what a server signing per request should call.
   */
  signAsync(payload: Record<string, unknown>, typ?: string): Promise<string>;
}

/** A signer bound to one private key. Header prefixes are computed once per `typ`. */
export function createSigner(privateKey: KeyObject, kid: string, alg: SigningAlg): Signer {
  if (!keyFitsAlg(privateKey, alg)) throw new TypeError(`key ${kid} does not fit ${alg}`);
  const hash = hashFor(alg);
  const options = keyOptions(alg, privateKey);
  const size = EC_SIZE[alg];
  const headers = new Map<string, string>();
  const signingInput = (payload: Record<string, unknown>, typ: string): string => {
    let head = headers.get(typ);
    if (head === undefined) {
      head = Buffer.from(JSON.stringify({ alg, kid, typ })).toString('base64url');
      headers.set(typ, head);
    }
    return `${head}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}`;
  };
  const compact = (input: string, raw: Buffer): string => `${input}.${(size ? derToP1363(raw, size) : raw).toString('base64url')}`;
  return {
    kid,
    alg,
    sign(payload, typ = 'JWT') {
      const input = signingInput(payload, typ);
      return compact(input, cryptoSign(hash, Buffer.from(input), options));
    },
    signAsync(payload, typ = 'JWT') {
      return new Promise((resolve, reject) => {
        const input = signingInput(payload, typ);
        cryptoSign(hash, Buffer.from(input), options, (error, raw) => (error ? reject(error) : resolve(compact(input, raw))));
      });
    },
  };
}

/** Imports a public JWK into a key object; throws TypeError for private or symmetric material. */
export function importPublicJwk(jwk: JsonWebKey): KeyObject {
  if (jwk.kty === 'oct') throw new TypeError('symmetric keys are not accepted');
  if ('d' in jwk) throw new TypeError('a public JWK must not contain private members');
  return createPublicKey({ key: jwk, format: 'jwk' });
}

/** RFC 7638 JWK thumbprint (SHA-256, base64url) — used as `kid`. */
export function jwkThumbprint(jwk: JsonWebKey): string {
  let members: Record<string, unknown>;
  if (jwk.kty === 'EC') members = { crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y };
  else if (jwk.kty === 'RSA') members = { e: jwk.e, kty: jwk.kty, n: jwk.n };
  else if (jwk.kty === 'OKP') members = { crv: jwk.crv, kty: jwk.kty, x: jwk.x };
  else throw new TypeError(`unsupported kty ${String(jwk.kty)}`);
  return createHash('sha256').update(JSON.stringify(members)).digest('base64url');
}

/** SHA-256 of a string, base64url. For cache keys and for logging a token without logging it. */
export function sha256b64u(value: string): string {
  // The one-shot form: half the cost of a Hash object for inputs of a token's size (0.9 vs 1.4 µs).
  return hash('sha256', value, 'base64url');
}

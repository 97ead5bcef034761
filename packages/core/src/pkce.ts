/**
 * Proof Key for Code Exchange (RFC 7636), S256 only.
 *
 * `plain` is refused everywhere: it protects nothing against an attacker who can read the
 * authorization request (RFC 9700 §2.1.1 "PKCE … S256"), and OAuth 2.1 drops it. A request that
 * names no method means `plain` (RFC 7636 §4.3), so it is refused too rather than upgraded
 * silently: the client would compute the wrong verifier check and never learn why.
 */
import { createHash, timingSafeEqual } from 'node:crypto';

/** RFC 7636 §4.1: code-verifier = 43*128unreserved. */
const VERIFIER = /^[A-Za-z0-9\-._~]{43,128}$/;
/** BASE64URL(SHA256(verifier)): 32 bytes → 43 characters, no padding. */
const S256_CHALLENGE = /^[A-Za-z0-9_-]{43}$/;

export type PkceMethod = 'S256';

/** Whether `value` has the shape of an RFC 7636 code verifier. */
export function isCodeVerifier(value: string): boolean {
  return VERIFIER.test(value);
}

/** Whether `value` has the shape of an S256 code challenge. */
export function isS256Challenge(value: string): boolean {
  return S256_CHALLENGE.test(value);
}

/**
 * The S256 challenge of a verifier: BASE64URL(SHA256(ASCII(verifier))).
 *
 * @example
 * s256Challenge('dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk'); // 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM'
 */
export function s256Challenge(verifier: string): string {
  return createHash('sha256').update(verifier, 'ascii').digest('base64url');
}

/**
 * Whether `verifier` proves possession of the challenge sent to /authorize. Constant time in the
 * challenge comparison; a malformed verifier is simply `false`.
 *
 * @example
 * verifyPkce(verifier, request.codeChallenge); // true or false
 */
export function verifyPkce(verifier: string, challenge: string): boolean {
  if (!isCodeVerifier(verifier) || !isS256Challenge(challenge)) return false;
  const computed = Buffer.from(s256Challenge(verifier), 'ascii');
  const expected = Buffer.from(challenge, 'ascii');
  return computed.length === expected.length && timingSafeEqual(computed, expected);
}

/**
 * ES256 with `node:crypto` two ways, for the crypto bound:
 *
 * - `asCoreDoesToday`: the key wrapped in an options object, `{ key, dsaEncoding: 'ieee-p1363' }`,
 *   which is what packages/core/src/jws.ts passes to `crypto.sign`/`crypto.verify`;
 * - `fastest`: the `KeyObject` passed bare (DER signatures), converted to and from JWS's
 *   IEEE P1363 form (`r || s`, RFC 7518 §3.4) in JavaScript.
 *
 * On Node 24 the options object costs more than the conversion: Node re-parses it on every call
 * (`preparePrivateKey`/`preparePublicOrPrivateKey` → `getKeyObjectSlots`/`getSlots`, the frames
 * that stand out in the token service's profile), while a bare KeyObject takes a fast path. The
 * bound is what node:crypto can do, so it is measured the fastest way; the other is shown beside.
 */
import { sign, verify, type KeyObject } from 'node:crypto';

// The same DER <-> r||s conversion packages/core signs and verifies with: the bound is measured
// with the code the service runs.
import { derToP1363 as toP1363, p1363ToDer as toDer } from '@baton/core';

export const derToP1363 = (der: Buffer, size = 32): Buffer => toP1363(der, size);
export const p1363ToDer = (signature: Buffer, size = 32): Buffer => toDer(signature, size);

export interface Es256 {
  sign(input: Buffer): Buffer;
  verify(input: Buffer, signature: Buffer): boolean;
}

export function asCoreDoesToday(privateKey: KeyObject, publicKey: KeyObject): Es256 {
  const signKey = { key: privateKey, dsaEncoding: 'ieee-p1363' as const };
  const verifyKey = { key: publicKey, dsaEncoding: 'ieee-p1363' as const };
  return {
    sign: (input) => sign('sha256', input, signKey),
    verify: (input, signature) => verify('sha256', input, verifyKey, signature),
  };
}

export function fastest(privateKey: KeyObject, publicKey: KeyObject): Es256 {
  return {
    sign: (input) => derToP1363(sign('sha256', input, privateKey)),
    verify: (input, signature) => verify('sha256', input, publicKey, p1363ToDer(signature)),
  };
}

/** Both ways must agree on many signatures (leading zero bytes in r or s included) before any timing. */
export function selfCheck(privateKey: KeyObject, publicKey: KeyObject, rounds = 2000): void {
  const a = asCoreDoesToday(privateKey, publicKey);
  const b = fastest(privateKey, publicKey);
  for (let i = 0; i < rounds; i++) {
    const input = Buffer.from(`bench ${i}`);
    if (!b.verify(input, a.sign(input)) || !a.verify(input, b.sign(input))) throw new Error(`ES256 self-check failed at ${i}`);
    const forged = b.sign(input);
    forged[5] = (forged[5] as number) ^ 1;
    if (b.verify(input, forged)) throw new Error('ES256 self-check: a forged signature verified');
  }
}

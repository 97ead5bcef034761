/**
 * core's JWS against an independent implementation (jose, WebCrypto), both directions, over enough
 * signatures that r or s with leading zero bytes occur (about 1 in 128 signatures each), plus the
 * hostile signature shapes a verifier must refuse.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { SignJWT, jwtVerify, importJWK } from 'jose';
import { createSigner, decodeJws, verifyJwsSignature } from '../src/jws.ts';

const N = 1500;

for (const [alg, namedCurve] of [['ES256', 'P-256'], ['ES384', 'P-384']] as const) {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve });

  test(`${alg}: every core signature verifies with jose`, async () => {
    const signer = createSigner(privateKey, 'k1', alg as 'ES256');
    const key = await importJWK({ ...publicKey.export({ format: 'jwk' }), alg }, alg);
    for (let i = 0; i < N; i++) {
      const token = signer.sign({ i, jti: randomUUID() });
      const sig = Buffer.from(token.split('.')[2]!, 'base64url');
      assert.equal(sig.length, alg === 'ES256' ? 64 : 96);
      await jwtVerify(token, key);
    }
  });

  test(`${alg}: every jose signature verifies with core; tampered ones do not`, async () => {
    const key = await importJWK({ ...privateKey.export({ format: 'jwk' }), alg }, alg);
    for (let i = 0; i < N; i++) {
      const token = await new SignJWT({ i }).setProtectedHeader({ alg }).sign(key);
      const decoded = decodeJws(token);
      assert.equal(verifyJwsSignature(decoded, publicKey, alg), true, `signature ${i}`);
      if (i % 100 === 0) {
        const flipped = Buffer.from(decoded.signature);
        flipped[flipped.length - 1]! ^= 1;
        assert.equal(verifyJwsSignature({ ...decoded, signature: flipped }, publicKey, alg), false);
      }
    }
  });

  test(`${alg}: hostile signature shapes are refused, never thrown`, () => {
    const signer = createSigner(privateKey, 'k1', alg as 'ES256');
    const decoded = decodeJws(signer.sign({ a: 1 }));
    const size = alg === 'ES256' ? 32 : 48;
    const shapes = [
      Buffer.alloc(0),
      Buffer.alloc(2 * size), // r = s = 0
      Buffer.alloc(2 * size, 0xff), // r, s ≥ the group order
      Buffer.alloc(2 * size - 1, 1), // one byte short
      Buffer.alloc(2 * size + 1, 1), // one byte long
      Buffer.concat([decoded.signature, decoded.signature]),
      // The same signature in DER, as a confused verifier might accept.
      Buffer.from([0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01]),
    ];
    for (const signature of shapes) assert.equal(verifyJwsSignature({ ...decoded, signature }, publicKey, alg), false);
  });
}

/**
 * core's JWS against an independent implementation (jose, WebCrypto), both directions, over enough
 * signatures that r or s with leading zero bytes occur (about 1 in 128 signatures each), plus the
 * hostile signature shapes a verifier must refuse.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomUUID, sign as cryptoSign } from 'node:crypto';
import { SignJWT, jwtVerify, importJWK } from 'jose';
import { createSigner, decodeJws, derToP1363, keyFitsAlg, p1363ToDer, verifyJwsSignature, verifyJwsSignatureAsync } from '../src/jws.ts';

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

  test(`${alg}: signAsync and verifyJwsSignatureAsync (thread pool) agree with jose and with the sync forms`, async () => {
    const signer = createSigner(privateKey, 'k1', alg as 'ES256');
    const joseKey = await importJWK({ ...publicKey.export({ format: 'jwk' }), alg }, alg);
    const tokens = await Promise.all(Array.from({ length: 500 }, (_, i) => signer.signAsync({ i, jti: randomUUID() }, 'at+jwt')));
    for (const [i, token] of tokens.entries()) {
      const { payload, protectedHeader } = await jwtVerify(token, joseKey);
      assert.equal(payload.i, i);
      assert.deepEqual(protectedHeader, { alg, kid: 'k1', typ: 'at+jwt' });
      const decoded = decodeJws(token);
      assert.equal(await verifyJwsSignatureAsync(decoded, publicKey, alg), true);
      assert.equal(verifyJwsSignature(decoded, publicKey, alg), true);
    }
    const decoded = decodeJws(tokens[0]!);
    const flipped = Buffer.from(decoded.signature);
    flipped[3]! ^= 1;
    assert.equal(await verifyJwsSignatureAsync({ ...decoded, signature: flipped }, publicKey, alg), false);
    // The algorithm is the verifier's: a header naming another one, or a key of another type, fails before any math.
    assert.equal(await verifyJwsSignatureAsync({ ...decoded, header: { ...decoded.header, alg: 'RS256' } }, publicKey, alg), false);
    assert.equal(await verifyJwsSignatureAsync(decoded, publicKey, alg === 'ES256' ? 'ES384' : 'ES256'), false);
    for (const signature of [Buffer.alloc(0), Buffer.alloc(2 * (alg === 'ES256' ? 32 : 48), 0xff), Buffer.from([0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01])]) {
      assert.equal(await verifyJwsSignatureAsync({ ...decoded, signature }, publicKey, alg), false);
    }
  });

  test(`${alg}: p1363ToDer gives back exactly the DER OpenSSL produced (DER is canonical)`, () => {
    const size = alg === 'ES256' ? 32 : 48;
    let shortInteger = 0;
    for (let i = 0; i < N; i++) {
      const der = cryptoSign(alg === 'ES256' ? 'sha256' : 'sha384', Buffer.from(`input ${i}`), privateKey);
      const p1363 = derToP1363(der, size);
      if (p1363[0] === 0 || p1363[size] === 0) shortInteger++;
      assert.deepEqual(p1363ToDer(p1363, size), der, `signature ${i}`);
    }
    assert.ok(shortInteger > 0, 'some r or s had a leading zero byte');
  });
}

test('keyFitsAlg is remembered per key and stays correct', () => {
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey;
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey;
  for (let i = 0; i < 3; i++) {
    assert.equal(keyFitsAlg(ec, 'ES256'), true);
    assert.equal(keyFitsAlg(ec, 'ES384'), false);
    assert.equal(keyFitsAlg(ec, 'RS256'), false);
    assert.equal(keyFitsAlg(rsa, 'RS256'), true);
    assert.equal(keyFitsAlg(rsa, 'PS256'), true);
    assert.equal(keyFitsAlg(rsa, 'ES256'), false);
  }
});

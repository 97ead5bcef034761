/**
 * core's DPoP proof checker and prover (RFC 9449 §4.3): each check with its failure, htu
 * normalisation, `ath`, the stateless server nonces; proofs made by jose's SignJWT (an independent
 * implementation) are accepted.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createHash, generateKeyPairSync, randomUUID } from 'node:crypto';
import { SignJWT, calculateJwkThumbprint, exportJWK } from 'jose';
import { DpopNonces, DpopProofError, checkDpopProof, checkDpopProofAsync, createDpopProver, normaliseHtu, singleDpopHeader, type DpopFailure } from '../src/index.ts';

const NOW = 1_800_000_000;
const URL_ = 'https://login.example/contoso/oauth2/v2.0/token';
const ec = () => generateKeyPairSync('ec', { namedCurve: 'P-256' });

function fails(run: () => unknown, failure: DpopFailure, error: 'invalid_dpop_proof' | 'use_dpop_nonce' = 'invalid_dpop_proof'): void {
  assert.throws(run, (e: unknown) => e instanceof DpopProofError && e.failure === failure && e.error === error);
}

describe('checkDpopProof', () => {
  it("accepts a proof made by jose's SignJWT and names its key by jose's thumbprint", async () => {
    for (const [alg, pair] of [['ES256', ec()], ['PS256', generateKeyPairSync('rsa', { modulusLength: 2048 })], ['EdDSA', generateKeyPairSync('ed25519')]] as const) {
      const jwk = await exportJWK(pair.publicKey);
      const proof = await new SignJWT({ htm: 'POST', htu: URL_, jti: randomUUID() }).setProtectedHeader({ typ: 'dpop+jwt', alg, jwk }).setIssuedAt(NOW).sign(pair.privateKey);
      const checked = checkDpopProof(proof, { method: 'POST', url: URL_ }, { now: NOW });
      assert.equal(checked.jkt, await calculateJwkThumbprint(jwk), alg);
    }
  });

  it('ath: the SHA-256 of the access token presented with the proof', () => {
    const prover = createDpopProver(ec().privateKey);
    const proof = prover.prove('GET', 'https://api.example/tasks', { accessToken: 'token-a', now: NOW });
    assert.equal(checkDpopProof(proof, { method: 'GET', url: 'https://api.example/tasks?page=2' }, { now: NOW, accessToken: 'token-a' }).jkt, prover.jkt);
    fails(() => checkDpopProof(proof, { method: 'GET', url: 'https://api.example/tasks' }, { now: NOW, accessToken: 'token-b' }), 'ath');
    fails(() => checkDpopProof(createDpopProver(ec().privateKey).prove('GET', 'https://api.example/tasks', { now: NOW }), { method: 'GET', url: 'https://api.example/tasks' }, { now: NOW, accessToken: 'token-a' }), 'ath');
  });

  it('method, URI and time window', () => {
    const proof = createDpopProver(ec().privateKey).prove('POST', URL_, { now: NOW });
    fails(() => checkDpopProof(proof, { method: 'GET', url: URL_ }, { now: NOW }), 'htm');
    fails(() => checkDpopProof(proof, { method: 'POST', url: 'https://login.example/fabrikam/oauth2/v2.0/token' }, { now: NOW }), 'htu');
    fails(() => checkDpopProof(proof, { method: 'POST', url: URL_ }, { now: NOW + 301 }), 'iat');
    fails(() => checkDpopProof(proof, { method: 'POST', url: URL_ }, { now: NOW - 61 }), 'iat');
    assert.ok(checkDpopProof(proof, { method: 'POST', url: URL_ }, { now: NOW + 300 }));
  });

  it('refuses an RSA key under 2048 bits and an algorithm off the list', () => {
    const small = generateKeyPairSync('rsa', { modulusLength: 1024 });
    const prover = createDpopProver(generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey, 'RS256');
    const proof = prover.prove('POST', URL_, { now: NOW });
    fails(() => checkDpopProof(proof, { method: 'POST', url: URL_ }, { now: NOW, algorithms: ['ES256'] }), 'alg');
    assert.throws(() => createDpopProver(small.privateKey, 'RS256'), TypeError);
  });

  it('a key seen before is the same key only with the same members: an altered one is checked afresh', async () => {
    const pair = ec();
    const jwk = await exportJWK(pair.publicKey);
    const sign = (header: Record<string, unknown>, key = pair.privateKey) =>
      new SignJWT({ htm: 'POST', htu: URL_, jti: randomUUID() }).setProtectedHeader({ typ: 'dpop+jwt', alg: 'ES256', ...header }).setIssuedAt(NOW).sign(key);
    const jkt = await calculateJwkThumbprint(jwk);
    // Twice (the second from the cache), and with members outside RFC 7638's: the same key.
    assert.equal(checkDpopProof(await sign({ jwk }), { method: 'POST', url: URL_ }, { now: NOW }).jkt, jkt);
    assert.equal(checkDpopProof(await sign({ jwk: { ...jwk, kid: 'k1', use: 'sig' } }), { method: 'POST', url: URL_ }, { now: NOW }).jkt, jkt);
    // y changed (off the curve): not the cached key, and not a key at all.
    const y = Buffer.from(jwk.y as string, 'base64url');
    y[0] = (y[0] as number) ^ 1;
    const offCurve = await sign({ jwk: { ...jwk, y: y.toString('base64url') } });
    fails(() => checkDpopProof(offCurve, { method: 'POST', url: URL_ }, { now: NOW }), 'jwk');
    // Another key's signature under the cached key's jwk does not verify.
    const forged = await sign({ jwk }, ec().privateKey);
    fails(() => checkDpopProof(forged, { method: 'POST', url: URL_ }, { now: NOW }), 'signature');
  });

  it('checkDpopProofAsync (signature on the thread pool) answers as checkDpopProof does, refusals included', async () => {
    const prover = createDpopProver(ec().privateKey);
    const good = prover.prove('POST', URL_, { now: NOW });
    const [, payload] = good.split('.');
    const otherSignature = (createDpopProver(ec().privateKey).prove('POST', URL_, { now: NOW }).split('.')[2]) as string;
    const forged = `${good.split('.')[0]}.${payload}.${otherSignature}`;
    assert.deepEqual(await checkDpopProofAsync(good, { method: 'POST', url: URL_ }, { now: NOW }), checkDpopProof(good, { method: 'POST', url: URL_ }, { now: NOW }));
    for (const [proof, request, now, failure] of [
      [forged, { method: 'POST', url: URL_ }, NOW, 'signature'],
      [good, { method: 'GET', url: URL_ }, NOW, 'htm'],
      [good, { method: 'POST', url: URL_ }, NOW + 301, 'iat'],
      ['not-a-jws', { method: 'POST', url: URL_ }, NOW, 'malformed'],
    ] as const) {
      fails(() => checkDpopProof(proof, request, { now }), failure);
      await assert.rejects(checkDpopProofAsync(proof, request, { now }), (e: unknown) => e instanceof DpopProofError && e.failure === failure);
    }
  });

  it('exactly one DPoP header', () => {
    assert.equal(singleDpopHeader(undefined), undefined);
    assert.equal(singleDpopHeader(['a.b.c']), 'a.b.c');
    fails(() => singleDpopHeader(['a.b.c', 'd.e.f']), 'multiple');
    fails(() => singleDpopHeader('a.b.c, d.e.f'), 'multiple');
  });
});

describe('normaliseHtu (RFC 3986 §6.2.2, §6.2.3)', () => {
  it('case, default port, percent-encoding, dot segments; query and fragment dropped', () => {
    assert.equal(normaliseHtu('HTTPS://Login.Example:443/a/./b/../%7euser/%2f?x=1#y'), 'https://login.example/a/~user/%2F');
    assert.equal(normaliseHtu('http://127.0.0.1:80'), 'http://127.0.0.1/');
    assert.equal(normaliseHtu('ftp://x/'), undefined);
    assert.equal(normaliseHtu('not a url'), undefined);
  });
});

describe('DpopNonces', () => {
  it('accepts the current and the previous slot, never an older one or another scope', () => {
    const nonces = new DpopNonces(createHash('sha256').update('secret').digest(), 60);
    const nonce = nonces.current('contoso', NOW);
    assert.ok(nonces.accepts('contoso', nonce, NOW));
    assert.ok(nonces.accepts('contoso', nonce, NOW + 60));
    assert.ok(!nonces.accepts('contoso', nonce, NOW + 180));
    assert.ok(!nonces.accepts('fabrikam', nonce, NOW));
    assert.ok(!nonces.accepts('contoso', undefined, NOW));
    // Another instance with the same secret accepts it.
    assert.ok(new DpopNonces(createHash('sha256').update('secret').digest(), 60).accepts('contoso', nonce, NOW));
  });
});

describe('Ed25519 (RFC 9864)', () => {
  it("accepts a proof whose alg is the fully-specified Ed25519 (as oauth4webapi signs), never with another key type", async () => {
    const pair = generateKeyPairSync('ed25519');
    const jwk = await exportJWK(pair.publicKey);
    const proof = await new SignJWT({ htm: 'POST', htu: URL_, jti: randomUUID() }).setProtectedHeader({ typ: 'dpop+jwt', alg: 'Ed25519', jwk }).setIssuedAt(NOW).sign(pair.privateKey);
    assert.equal(checkDpopProof(proof, { method: 'POST', url: URL_ }, { now: NOW }).alg, 'Ed25519');
    // An Ed448 key is EdDSA, never Ed25519.
    const ed448 = generateKeyPairSync('ed448');
    const other = await new SignJWT({ htm: 'POST', htu: URL_, jti: randomUUID() }).setProtectedHeader({ typ: 'dpop+jwt', alg: 'Ed25519', jwk: await exportJWK(ed448.publicKey) }).setIssuedAt(NOW).sign(ed448.privateKey).catch(() => undefined);
    if (other !== undefined) fails(() => checkDpopProof(other, { method: 'POST', url: URL_ }, { now: NOW }), 'jwk');
  });
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { buildIdTokenClaims, clientInfo, halfHash, pairwiseSubject } from '../src/index.ts';
import { buildFixture, ISSUER, NOW, PAIRWISE_SECRET } from './fixtures.ts';

test('ID token claims: pairwise sub per client, nonce, at_hash, sign-in facts, profile by scope', () => {
  const fx = buildFixture();
  const alice = fx.user('alice@contoso.test');
  const base = {
    issuer: ISSUER,
    tenant: fx.tenant,
    user: alice,
    auth: { amr: ['pwd', 'mfa'], acr: 'x', authTime: NOW - 10, sid: 'sid-1' },
    alg: 'ES256' as const,
    pairwiseSecret: PAIRWISE_SECRET,
    now: NOW,
  };
  const claims = buildIdTokenClaims({ ...base, clientId: 'tasks-web', scopes: ['openid', 'profile'], nonce: 'n1', accessToken: 'header.payload.sig' });
  assert.equal(claims.aud, 'tasks-web');
  assert.equal(claims.iss, ISSUER);
  assert.equal(claims.sub, pairwiseSubject(PAIRWISE_SECRET, fx.tenant.tid, alice.oid, 'tasks-web'));
  assert.equal(claims.oid, alice.oid);
  assert.equal(claims.tid, fx.tenant.tid);
  assert.equal(claims.nonce, 'n1');
  assert.equal(claims.auth_time, NOW - 10);
  assert.deepEqual(claims.amr, ['pwd', 'mfa']);
  assert.equal(claims.sid, 'sid-1');
  assert.equal(claims.preferred_username, 'alice@contoso.test');
  assert.equal(claims.name, 'Alice Adams');
  assert.equal(claims.exp, NOW + 3600);
  assert.equal(claims.at_hash, createHash('sha256').update('header.payload.sig').digest().subarray(0, 16).toString('base64url'));

  const other = buildIdTokenClaims({ ...base, clientId: 'portal', scopes: ['openid'] });
  assert.notEqual(other.sub, claims.sub, 'two clients never see the same sub');
  assert.equal(other.preferred_username, undefined, 'no profile claims without the profile scope');
  assert.equal(other.nonce, undefined);
  assert.equal(other.at_hash, undefined);
});

test('ID token never outlives the session', () => {
  const fx = buildFixture();
  const claims = buildIdTokenClaims({
    issuer: ISSUER, tenant: fx.tenant, clientId: 'tasks-web', user: fx.user('alice@contoso.test'), scopes: ['openid'],
    auth: { amr: ['pwd'] }, alg: 'ES256', pairwiseSecret: PAIRWISE_SECRET, now: NOW, notAfter: NOW + 60,
  });
  assert.equal(claims.exp, NOW + 60);
});

test('halfHash uses the hash of the signing algorithm; client_info is base64url {uid, utid}', () => {
  assert.equal(halfHash('abc', 'ES256').length, 22);
  assert.deepEqual(JSON.parse(Buffer.from(clientInfo('o', 't'), 'base64url').toString()), { uid: 'o', utid: 't' });
});

import assert from 'node:assert/strict';
import { createHmac, createSecretKey } from 'node:crypto';
import { describe, it } from 'node:test';
import { buildAppOnlyClaims, buildDelegatedClaims, pairwiseSubject, tokenTimes, utiFromJti } from '../src/index.ts';
import { buildFixture, ISSUER, LIFETIME, NOW, PAIRWISE_SECRET, sequentialIds } from './fixtures.ts';

const fx = buildFixture();
const alice = fx.user('alice@contoso.test');
const bob = fx.user('bob@contoso.test');
const tid = fx.tenant.tid;

describe('pairwiseSubject', () => {
  it('with a KeyObject (memoised) answers exactly the HMAC, per key, also past the memo bound', () => {
    const raw = Buffer.alloc(32, 7);
    const key = createSecretKey(raw);
    const other = createSecretKey(Buffer.alloc(32, 8));
    for (let i = 0; i < 10_050; i++) {
      const oid = `00000000-0000-4000-8000-${i.toString(16).padStart(12, '0')}`;
      const expected = createHmac('sha256', raw).update(`${tid}|${oid}|docs-api`).digest('base64url');
      assert.equal(pairwiseSubject(key, tid, oid, 'docs-api'), expected);
      if (i % 1000 === 0) {
        assert.equal(pairwiseSubject(key, tid, oid, 'docs-api'), expected, 'a memo hit');
        assert.equal(pairwiseSubject(raw, tid, oid, 'docs-api'), expected, 'a Buffer key, not memoised');
        assert.notEqual(pairwiseSubject(other, tid, oid, 'docs-api'), expected, 'another key, another memo');
      }
    }
  });

  it('is stable per (user, API)', () => {
    assert.equal(pairwiseSubject(PAIRWISE_SECRET, tid, alice.oid, 'docs-api'), pairwiseSubject(PAIRWISE_SECRET, tid, alice.oid, 'docs-api'));
  });

  it('differs across APIs, users, tenants and secrets', () => {
    const base = pairwiseSubject(PAIRWISE_SECRET, tid, alice.oid, 'docs-api');
    const others = [
      pairwiseSubject(PAIRWISE_SECRET, tid, alice.oid, 'audit-api'),
      pairwiseSubject(PAIRWISE_SECRET, tid, bob.oid, 'docs-api'),
      pairwiseSubject(PAIRWISE_SECRET, 'another-tid', alice.oid, 'docs-api'),
      pairwiseSubject('another-secret', tid, alice.oid, 'docs-api'),
    ];
    assert.equal(new Set([base, ...others]).size, 5);
    assert.notEqual(base, alice.oid);
  });

  it('is base64url HMAC-SHA-256 over tid|oid|apiClientId (43 characters)', () => {
    // Known answer, computed with openssl: printf 't|o|a' | openssl dgst -sha256 -hmac k -binary | basenc --base64url
    assert.equal(pairwiseSubject('k', 't', 'o', 'a'), 'sV0FstSFGpXrbw3mSZR0E1QjsjlDRkb6GYrXoJQQguk');
  });

  it('accepts a KeyObject secret with the same result as its bytes', () => {
    const key = createSecretKey(Buffer.from(PAIRWISE_SECRET));
    assert.equal(pairwiseSubject(key, tid, alice.oid, 'docs-api'), pairwiseSubject(PAIRWISE_SECRET, tid, alice.oid, 'docs-api'));
  });
});

describe('utiFromJti', () => {
  it('encodes the 16 bytes of a UUID in 22 base64url characters', () => {
    assert.equal(utiFromJti('00000000-0000-4000-8000-000000000001'), 'AAAAAAAAQACAAAAAAAAAAQ');
    assert.match(utiFromJti('3f2504e0-4f89-41d3-9a0c-0305e82c3301'), /^[A-Za-z0-9_-]{22}$/);
  });

  it('falls back to base64url of any other identifier', () => {
    assert.equal(utiFromJti('abc'), 'YWJj');
  });
});

describe('tokenTimes', () => {
  const docs = fx.app('docs-api');
  it('is the API lifetime from now', () => {
    assert.deepEqual(tokenTimes(docs, NOW), { iat: NOW, nbf: NOW, exp: NOW + LIFETIME });
  });

  it('never goes past the session end', () => {
    assert.deepEqual(tokenTimes(docs, NOW, NOW + 120), { iat: NOW, nbf: NOW, exp: NOW + 120 });
    assert.deepEqual(tokenTimes(docs, NOW, NOW + LIFETIME + 1), { iat: NOW, nbf: NOW, exp: NOW + LIFETIME });
    assert.deepEqual(tokenTimes(docs, NOW, NOW + 1), { iat: NOW, nbf: NOW, exp: NOW + 1 });
  });

  it('throws TypeError for a session already over, a bad lifetime or a fractional now', () => {
    assert.throws(() => tokenTimes(docs, NOW, NOW), TypeError);
    assert.throws(() => tokenTimes({ ...docs, accessTokenLifetimeSeconds: 0 }, NOW), TypeError);
    assert.throws(() => tokenTimes(docs, NOW + 0.5), TypeError);
  });
});

describe('buildAppOnlyClaims', () => {
  it('issues the client\'s service principal as sub and oid, idtyp app, aud the API client id', () => {
    const indexer = fx.app('indexer');
    const claims = buildAppOnlyClaims({
      issuer: ISSUER,
      tenant: fx.tenant,
      client: indexer,
      api: fx.app('docs-api'),
      roles: ['Docs.ReadAll'],
      now: NOW,
      newId: sequentialIds(),
    });
    assert.deepEqual(claims, {
      iss: ISSUER,
      aud: 'docs-api',
      sub: indexer.servicePrincipalId,
      oid: indexer.servicePrincipalId,
      tid,
      azp: 'indexer',
      client_id: 'indexer',
      idtyp: 'app',
      roles: ['Docs.ReadAll'],
      iat: NOW,
      nbf: NOW,
      exp: NOW + LIFETIME,
      jti: '00000000-0000-4000-8000-000000000001',
      uti: 'AAAAAAAAQACAAAAAAAAAAQ',
      ver: '2.0',
    });
    assert.equal('scp' in claims, false);
  });

  it('uses a random UUID jti by default', () => {
    const a = buildAppOnlyClaims({ issuer: ISSUER, tenant: fx.tenant, client: fx.app('indexer'), api: fx.app('docs-api'), roles: ['Docs.ReadAll'], now: NOW });
    const b = buildAppOnlyClaims({ issuer: ISSUER, tenant: fx.tenant, client: fx.app('indexer'), api: fx.app('docs-api'), roles: ['Docs.ReadAll'], now: NOW });
    assert.match(a.jti, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.notEqual(a.jti, b.jti);
    assert.equal(a.uti, utiFromJti(a.jti));
  });

  it('refuses to build an app-only token without roles', () => {
    assert.throws(() => buildAppOnlyClaims({ issuer: ISSUER, tenant: fx.tenant, client: fx.app('indexer'), api: fx.app('docs-api'), roles: [], now: NOW }), TypeError);
  });
});

describe('buildDelegatedClaims', () => {
  const base = {
    issuer: ISSUER,
    tenant: fx.tenant,
    clientId: 'tasks-web',
    api: fx.app('tasks-api'),
    user: alice,
    scopes: ['Tasks.ReadWrite'],
    auth: { amr: ['pwd', 'mfa'], acr: '1', authTime: NOW - 100, sid: 'session-1' },
    pairwiseSecret: PAIRWISE_SECRET,
    now: NOW,
    newId: sequentialIds(),
  };

  it('carries the user, the client as azp and client_id, scp, the sign-in facts, a pairwise sub', () => {
    assert.deepEqual(buildDelegatedClaims(base), {
      iss: ISSUER,
      aud: 'tasks-api',
      sub: pairwiseSubject(PAIRWISE_SECRET, tid, alice.oid, 'tasks-api'),
      oid: alice.oid,
      tid,
      azp: 'tasks-web',
      client_id: 'tasks-web',
      scp: 'Tasks.ReadWrite',
      amr: ['pwd', 'mfa'],
      acr: '1',
      auth_time: NOW - 100,
      sid: 'session-1',
      iat: NOW,
      nbf: NOW,
      exp: NOW + LIFETIME,
      jti: '00000000-0000-4000-8000-000000000001',
      uti: 'AAAAAAAAQACAAAAAAAAAAQ',
      ver: '2.0',
    });
  });

  it('has a different sub at another API, the same oid', () => {
    const tasks = buildDelegatedClaims({ ...base, newId: sequentialIds() });
    const docs = buildDelegatedClaims({ ...base, api: fx.app('docs-api'), scopes: ['Docs.Read'], newId: sequentialIds() });
    assert.notEqual(tasks.sub, docs.sub);
    assert.equal(tasks.oid, docs.oid);
    assert.equal(docs.aud, 'docs-api');
  });

  it('joins several scopes with spaces and adds roles, act and profile claims when given', () => {
    const claims = buildDelegatedClaims({
      ...base,
      api: fx.app('docs-api'),
      scopes: ['Docs.Read', 'Docs.Write'],
      roles: ['Docs.Editor'],
      act: { sub: 'tasks-api', client_id: 'tasks-api' },
      profile: { preferred_username: 'alice@contoso.test', name: 'Alice Adams' },
    });
    assert.equal(claims.scp, 'Docs.Read Docs.Write');
    assert.deepEqual(claims.roles, ['Docs.Editor']);
    assert.deepEqual(claims.act, { sub: 'tasks-api', client_id: 'tasks-api' });
    assert.equal(claims.preferred_username, 'alice@contoso.test');
    assert.equal(claims.name, 'Alice Adams');
  });

  it('omits roles when empty and optional sign-in facts when unknown', () => {
    const claims = buildDelegatedClaims({ ...base, roles: [], auth: { amr: ['pwd'] } });
    for (const name of ['roles', 'acr', 'auth_time', 'sid', 'act', 'preferred_username', 'name', 'idtyp']) assert.equal(name in claims, false, name);
  });

  it('never outlives the session', () => {
    assert.equal(buildDelegatedClaims({ ...base, sessionExpiresAt: NOW + 600 }).exp, NOW + 600);
    assert.equal(buildDelegatedClaims({ ...base, sessionExpiresAt: NOW + 99_999 }).exp, NOW + LIFETIME);
  });

  it('refuses to build a delegated token without scopes', () => {
    assert.throws(() => buildDelegatedClaims({ ...base, scopes: [] }), TypeError);
  });

  it('copies arrays, so changing the input later does not change the claims', () => {
    const amr = ['pwd'];
    const claims = buildDelegatedClaims({ ...base, auth: { amr } });
    amr.push('mfa');
    assert.deepEqual(claims.amr, ['pwd']);
  });
});

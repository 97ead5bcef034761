/**
 * Two `baton serve` instances on one PostgreSQL database act as one service, and key rotation
 * keeps issued tokens valid until they expire. PostgreSQL runs for real on 127.0.0.1:5432.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import { createLocalJWKSet, jwtVerify } from 'jose';
import { createSigner } from '@baton/core';
import { startTestServer, pgSchema, PG_URL, basic, decodeJwt, type TestServer } from './harness.ts';

const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const configure = (raw: any) => {
  raw.tenants[0].applications.find((a: any) => a.clientId === 'indexer').jwks = [{ ...pair.publicKey.export({ format: 'jwk' }), kid: 'k1' }];
};

let a: TestServer;
let b: TestServer;
let drop: () => Promise<void>;

before(async () => {
  const schema = await pgSchema();
  drop = schema.drop;
  // One KEK shared by both instances, as in production (BATON_KEK from the secret manager).
  const env = { BATON_KEK: randomBytes(32).toString('base64url') };
  a = await startTestServer({ storeUrl: PG_URL, storeSchema: schema.schema, env, configure, dev: false });
  b = await startTestServer({ storeUrl: PG_URL, storeSchema: schema.schema, env, configure, dev: false });
});
after(async () => {
  await a?.close();
  await b?.close();
  await drop?.();
});

async function jwksOf(server: TestServer) {
  return (await (await fetch(`${server.url}/contoso/discovery/v2.0/keys`)).json()) as { keys: Array<Record<string, unknown>> };
}

async function appToken(server: TestServer): Promise<string> {
  const response = await server.post('/contoso/oauth2/v2.0/token', { grant_type: 'client_credentials', scope: 'api://docs/.default' }, { authorization: basic('indexer', 'indexer-demo-secret-for-local-use-only') });
  assert.equal(response.status, 200, JSON.stringify(response.body));
  return response.body.access_token;
}

async function eventually(check: () => Promise<boolean>, what: string, ms = 5000): Promise<void> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail(`timed out waiting for ${what}`);
}

test('both instances publish the same keys and accept each other’s tokens', async () => {
  const [ka, kb] = [await jwksOf(a), await jwksOf(b)];
  assert.deepEqual(ka.keys.map((k) => k.kid).sort(), kb.keys.map((k) => k.kid).sort());
  const token = await appToken(a);
  // The instances listen on different ports (different issuers here); behind one public URL they
  // would share it. What matters: B's published keys verify A's signature.
  const { payload } = await jwtVerify(token, createLocalJWKSet(kb as never), { audience: 'docs-api' });
  assert.equal(payload.azp, 'indexer');
});

test('a client assertion jti used at one instance is refused at the other', async () => {
  const now = Math.floor(Date.now() / 1000);
  const jti = randomUUID();
  const make = (server: TestServer) =>
    createSigner(pair.privateKey, 'k1', 'ES256').sign({ iss: 'indexer', sub: 'indexer', aud: server.tokenUrl(), iat: now, exp: now + 300, jti });
  const form = (server: TestServer) => ({
    grant_type: 'client_credentials',
    scope: 'api://docs/.default',
    client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
    client_assertion: make(server),
  });
  const first = await a.post('/contoso/oauth2/v2.0/token', form(a));
  assert.equal(first.status, 200, JSON.stringify(first.body));
  const second = await b.post('/contoso/oauth2/v2.0/token', form(b));
  assert.equal(second.status, 400);
  assert.equal(second.body.error, 'invalid_client');
  assert.deepEqual(second.body.error_codes, [700027]);
});

test('a key rotated at one instance is served and used by both; old tokens stay valid until they expire', async () => {
  const before = await appToken(b);
  const oldKid = decodeJwt(before).header.kid;
  const rotated = await a.ctx.keyring.rotate('contoso', 'ES256');
  assert.equal(rotated, true);
  const current = (await a.ctx.store.listSigningKeys('contoso')).find((k) => k.alg === 'ES256' && k.status === 'current')!;
  assert.notEqual(current.kid, oldKid);

  // B hears of the rotation (LISTEN/NOTIFY) and signs with the new key.
  await eventually(async () => decodeJwt(await appToken(b)).header.kid === current.kid, 'instance B to sign with the rotated key');
  for (const server of [a, b]) {
    const jwks = await jwksOf(server);
    const kids = jwks.keys.map((k) => k.kid);
    assert.ok(kids.includes(current.kid), 'new current key published');
    assert.ok(kids.includes(oldKid), 'retired key kept for the grace period');
    // The token signed with the old key still verifies.
    await jwtVerify(before, createLocalJWKSet(jwks as never), { audience: 'docs-api' });
  }

  // After the grace period, the retired key leaves the JWKS.
  a.advance(8 * 24 * 3600);
  await a.ctx.keyring.prune('contoso');
  const later = await jwksOf(a);
  assert.equal(later.keys.some((k) => k.kid === oldKid), false);
});

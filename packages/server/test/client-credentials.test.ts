/**
 * The foundation, black-box over HTTPS: discovery, JWKS, the token endpoint with client
 * credentials and every client authentication method, and the bad input each must withstand.
 */
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, createHmac, createPublicKey, randomUUID, type KeyObject } from 'node:crypto';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { createSigner } from '@baton/core';
import { startTestServer, decodeJwt, basic, type TestServer } from './harness.ts';
import { hashClientSecret } from '../src/crypto/secrets.ts';

const INDEXER_SECRET = 'indexer-demo-secret-for-local-use-only';

let server: TestServer;
let clientKey: KeyObject;
let clientJwk: Record<string, unknown>;

before(async () => {
  const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  clientKey = pair.privateKey;
  clientJwk = { ...pair.publicKey.export({ format: 'jwk' }), kid: 'indexer-key-1', use: 'sig' };
  server = await startTestServer({
    tls: 'dev',
    configure(raw) {
      const indexer = raw.tenants[0].applications.find((a: any) => a.clientId === 'indexer');
      indexer.jwks = [clientJwk];
    },
  });
});
after(() => server.close());

const tokenPath = '/contoso/oauth2/v2.0/token';

function assertion(overrides: Record<string, unknown> = {}, options: { alg?: 'ES256'; key?: KeyObject } = {}): string {
  const now = Math.floor(Date.now() / 1000);
  const signer = createSigner(options.key ?? clientKey, 'indexer-key-1', options.alg ?? 'ES256');
  return signer.sign({ iss: 'indexer', sub: 'indexer', aud: server.tokenUrl(), exp: now + 300, iat: now, jti: randomUUID(), ...overrides });
}

function assertionForm(jwt: string): Record<string, string> {
  return {
    grant_type: 'client_credentials',
    scope: 'api://docs/.default',
    client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
    client_assertion: jwt,
  };
}

describe('discovery and JWKS', () => {
  test('the issuer is a URL under which openid-configuration answers', async () => {
    const issuer = `${server.url}/contoso/v2.0`;
    const response = await fetch(`${issuer}/.well-known/openid-configuration`);
    assert.equal(response.status, 200);
    const metadata = (await response.json()) as Record<string, any>;
    assert.equal(metadata.issuer, issuer);
    assert.equal(metadata.token_endpoint, server.tokenUrl());
    assert.equal(metadata.jwks_uri, `${server.url}/contoso/discovery/v2.0/keys`);
    assert.ok(metadata.grant_types_supported.includes('client_credentials'));
    assert.deepEqual(metadata.code_challenge_methods_supported, ['S256']);
    assert.equal(metadata.authorization_response_iss_parameter_supported, true);
    assert.ok(metadata.token_endpoint_auth_methods_supported.includes('private_key_jwt'));
    assert.ok(metadata.scopes_supported.includes('api://docs/Docs.Read'));
  });

  test('RFC 8414 metadata is served at the inserted well-known path', async () => {
    for (const path of ['/.well-known/oauth-authorization-server/contoso/v2.0', '/.well-known/oauth-authorization-server/contoso']) {
      const response = await fetch(`${server.url}${path}`);
      assert.equal(response.status, 200, path);
      assert.equal(((await response.json()) as any).issuer, `${server.url}/contoso/v2.0`);
    }
  });

  test('an unknown tenant is a clear 400, not a 500', async () => {
    const response = await fetch(`${server.url}/fabrikam/v2.0/.well-known/openid-configuration`);
    assert.equal(response.status, 400);
    const body = (await response.json()) as any;
    assert.equal(body.error, 'invalid_request');
    assert.deepEqual(body.error_codes, [90002]);
  });

  test('the JWKS publishes current and next public keys, never private members', async () => {
    const { keys } = (await (await fetch(`${server.url}/contoso/discovery/v2.0/keys`)).json()) as { keys: any[] };
    assert.ok(keys.length >= 2, 'current and next');
    for (const key of keys) {
      assert.equal(typeof key.kid, 'string');
      assert.equal(key.use, 'sig');
      assert.ok(['ES256', 'RS256', 'PS256'].includes(key.alg));
      for (const member of ['d', 'p', 'q', 'dp', 'dq', 'qi']) assert.equal(key[member], undefined);
    }
  });
});

describe('client credentials', () => {
  test('client_secret_basic: an RFC 9068 app-only token for the assigned roles', async () => {
    const response = await server.post(tokenPath, { grant_type: 'client_credentials', scope: 'api://docs/.default' }, { authorization: basic('indexer', INDEXER_SECRET) });
    assert.equal(response.status, 200, JSON.stringify(response.body));
    assert.equal(response.headers.get('cache-control'), 'no-store');
    const body = response.body;
    assert.equal(body.token_type, 'Bearer');
    assert.equal(typeof body.expires_in, 'number');
    assert.equal(body.refresh_token, undefined);
    const { header, payload } = decodeJwt(body.access_token);
    assert.equal(header.typ, 'at+jwt');
    assert.equal(header.alg, 'ES256');
    assert.equal(payload.iss, `${server.url}/contoso/v2.0`);
    assert.equal(payload.aud, 'docs-api');
    assert.equal(payload.azp, 'indexer');
    assert.equal(payload.client_id, 'indexer');
    assert.equal(payload.idtyp, 'app');
    assert.deepEqual(payload.roles, ['Docs.ReadAll']);
    assert.equal(payload.scp, undefined);
    assert.equal(payload.sub, payload.oid);
    assert.match(payload.tid, /^[0-9a-f-]{36}$/);
    assert.equal(typeof payload.jti, 'string');
    assert.ok(payload.exp > payload.iat);

    // An independent verifier (jose) accepts it through the published JWKS.
    const jwks = createRemoteJWKSet(new URL(`${server.url}/contoso/discovery/v2.0/keys`));
    const verified = await jwtVerify(body.access_token, jwks, { issuer: `${server.url}/contoso/v2.0`, audience: 'docs-api', typ: 'at+jwt' });
    assert.equal(verified.payload.azp, 'indexer');
  });

  test('client_secret_post works and echoes client-request-id', async () => {
    const id = randomUUID();
    const response = await server.post(`${tokenPath}?client-request-id=${id}`, {
      grant_type: 'client_credentials',
      scope: 'docs-api/.default',
      client_id: 'indexer',
      client_secret: INDEXER_SECRET,
      'x-client-SKU': 'msal.js.node',
      'x-ms-lib-capability': 'retry-after, h429',
    }, { 'content-type': 'application/x-www-form-urlencoded;charset=utf-8' });
    assert.equal(response.status, 200, JSON.stringify(response.body));
    assert.equal(response.headers.get('client-request-id'), id);
  });

  test('private_key_jwt: a signed assertion authenticates; its jti is single use', async () => {
    const jwt = assertion();
    const first = await server.post(tokenPath, assertionForm(jwt));
    assert.equal(first.status, 200, JSON.stringify(first.body));
    const replay = await server.post(tokenPath, assertionForm(jwt));
    assert.equal(replay.status, 400);
    assert.equal(replay.body.error, 'invalid_client');
    assert.deepEqual(replay.body.error_codes, [700027]);
    assert.match(replay.body.error_description, /already used/);
  });

  test('private_key_jwt: the issuer is an accepted audience too', async () => {
    const response = await server.post(tokenPath, assertionForm(assertion({ aud: `${server.url}/contoso/v2.0` })));
    assert.equal(response.status, 200, JSON.stringify(response.body));
  });
});

describe('client credentials: bad input gets the exact error, no 500', () => {
  const refused = async (form: Record<string, string> | string, headers: Record<string, string>, status: number, error: string, codes?: number[]) => {
    const response = await server.post(tokenPath, form, headers);
    assert.equal(response.status, status, JSON.stringify(response.body));
    assert.equal(response.body.error, error);
    if (codes) assert.deepEqual(response.body.error_codes, codes);
    assert.equal(typeof response.body.error_description, 'string');
    assert.equal(typeof response.body.trace_id, 'string');
    assert.equal(typeof response.body.correlation_id, 'string');
    assert.equal(typeof response.body.timestamp, 'string');
    return response;
  };

  test('wrong secret via Basic: 401 invalid_client with WWW-Authenticate', async () => {
    const response = await refused({ grant_type: 'client_credentials', scope: 'api://docs/.default' }, { authorization: basic('indexer', 'wrong') }, 401, 'invalid_client', [7000215]);
    assert.match(response.headers.get('www-authenticate') ?? '', /^Basic /);
    assert.doesNotMatch(JSON.stringify(response.body), /wrong|indexer-Demo/);
  });

  test('wrong secret via post', async () => {
    await refused({ grant_type: 'client_credentials', scope: 'api://docs/.default', client_id: 'indexer', client_secret: 'nope' }, {}, 400, 'invalid_client', [7000215]);
  });

  test('unknown client', async () => {
    await refused({ grant_type: 'client_credentials', scope: 'api://docs/.default' }, { authorization: basic('nobody', 'x') }, 401, 'invalid_client', [700016]);
  });

  test('a public client cannot use client credentials', async () => {
    await refused({ grant_type: 'client_credentials', scope: 'api://docs/.default', client_id: 'tasks-web' }, {}, 400, 'unauthorized_client');
  });

  test('a confidential client without credentials', async () => {
    await refused({ grant_type: 'client_credentials', scope: 'api://docs/.default', client_id: 'indexer' }, {}, 400, 'invalid_client');
  });

  test('two authentication methods at once', async () => {
    await refused({ grant_type: 'client_credentials', scope: 'api://docs/.default', client_id: 'indexer', client_secret: INDEXER_SECRET }, { authorization: basic('indexer', INDEXER_SECRET) }, 400, 'invalid_request');
  });

  test('client assertion: expired', async () => {
    const now = Math.floor(Date.now() / 1000);
    await refused(assertionForm(assertion({ exp: now - 3600, iat: now - 4000 })), {}, 400, 'invalid_client', [700027]);
  });

  test('client assertion: lives too long', async () => {
    await refused(assertionForm(assertion({ exp: Math.floor(Date.now() / 1000) + 86400 })), {}, 400, 'invalid_client', [700027]);
  });

  test('client assertion: another audience', async () => {
    await refused(assertionForm(assertion({ aud: 'https://elsewhere.example/token' })), {}, 400, 'invalid_client', [700027]);
  });

  test("client assertion: alg none", async () => {
    const now = Math.floor(Date.now() / 1000);
    const enc = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const jwt = `${enc({ alg: 'none', typ: 'JWT' })}.${enc({ iss: 'indexer', sub: 'indexer', aud: server.tokenUrl(), exp: now + 60, jti: randomUUID() })}.`;
    await refused(assertionForm(jwt), {}, 400, 'invalid_client', [700027]);
  });

  test('client assertion: HS256 keyed with the registered public key (algorithm confusion)', async () => {
    const now = Math.floor(Date.now() / 1000);
    const enc = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const input = `${enc({ alg: 'HS256', typ: 'JWT', kid: 'indexer-key-1' })}.${enc({ iss: 'indexer', sub: 'indexer', aud: server.tokenUrl(), exp: now + 60, jti: randomUUID() })}`;
    const publicPem = createPublicPem(clientJwk);
    const jwt = `${input}.${createHmac('sha256', publicPem).update(input).digest('base64url')}`;
    await refused(assertionForm(jwt), {}, 400, 'invalid_client', [700027]);
  });

  test('client assertion: signed by a key that is not registered', async () => {
    const other = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    const jti = randomUUID();
    await refused(assertionForm(assertion({ jti }, { key: other })), {}, 400, 'invalid_client', [700027]);
    // Nothing was written for the refused assertion: the same jti still works when properly signed.
    const ok = await server.post(tokenPath, assertionForm(assertion({ jti })));
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
  });

  test('client assertion: not a JWT', async () => {
    await refused(assertionForm('not.a.jwt!'), {}, 400, 'invalid_client', [700027]);
  });

  test('scope of an unknown API', async () => {
    await refused({ grant_type: 'client_credentials', scope: 'api://nowhere/.default' }, { authorization: basic('indexer', INDEXER_SECRET) }, 400, 'invalid_scope', [70011]);
  });

  test('scopes of two APIs in one request', async () => {
    await refused({ grant_type: 'client_credentials', scope: 'api://docs/.default api://audit/.default' }, { authorization: basic('indexer', INDEXER_SECRET) }, 400, 'invalid_scope', [70011]);
  });

  test('a named scope instead of .default', async () => {
    await refused({ grant_type: 'client_credentials', scope: 'api://docs/Docs.Read' }, { authorization: basic('indexer', INDEXER_SECRET) }, 400, 'invalid_scope');
  });

  test('no application permission assigned: invalid_scope, not an empty token', async () => {
    await refused({ grant_type: 'client_credentials', scope: 'api://docs/.default' }, { authorization: basic('tasks-api', 'tasks-api-demo-secret-for-local-use-only') }, 400, 'invalid_scope');
  });

  test('missing grant_type, unsupported grant_type', async () => {
    await refused({ scope: 'api://docs/.default' }, { authorization: basic('indexer', INDEXER_SECRET) }, 400, 'invalid_request');
    await refused({ grant_type: 'password', username: 'a', password: 'b' }, { authorization: basic('indexer', INDEXER_SECRET) }, 400, 'unsupported_grant_type', [70003]);
  });

  test('a parameter given twice', async () => {
    await refused('grant_type=client_credentials&scope=api%3A%2F%2Fdocs%2F.default&scope=api%3A%2F%2Faudit%2F.default', { authorization: basic('indexer', INDEXER_SECRET) }, 400, 'invalid_request', [90014]);
  });

  test('a body over 64 KiB', async () => {
    const response = await server.post(tokenPath, { grant_type: 'client_credentials', scope: 'api://docs/.default', padding: 'x'.repeat(70 * 1024) }, { authorization: basic('indexer', INDEXER_SECRET) });
    assert.equal(response.status, 413);
    assert.equal(response.body.error, 'invalid_request');
  });

  test('a JSON body instead of a form', async () => {
    const response = await fetch(server.tokenUrl(), { method: 'POST', headers: { 'content-type': 'application/json', authorization: basic('indexer', INDEXER_SECRET) }, body: JSON.stringify({ grant_type: 'client_credentials' }) });
    assert.equal(response.status, 400);
    assert.equal(((await response.json()) as any).error, 'invalid_request');
  });

  test('no content type at all', async () => {
    const response = await fetch(server.tokenUrl(), { method: 'POST', headers: { authorization: basic('indexer', INDEXER_SECRET) }, body: 'grant_type=client_credentials' });
    assert.ok(response.status === 415 || response.status === 400, String(response.status));
    assert.equal(((await response.json()) as any).error, 'invalid_request');
  });

  test('a malformed Basic header', async () => {
    await refused({ grant_type: 'client_credentials', scope: 'api://docs/.default' }, { authorization: 'Basic !!!notbase64' }, 401, 'invalid_client');
  });

  test('hostile percent-encoding and control characters do not crash the parser', async () => {
    await refused('grant_type=client_credentials&scope=%E0%A4%A&client_id=%00', {}, 400, 'invalid_request');
  });
});

/** SPKI PEM of a public JWK: what an attacker would use as an HMAC key. */
function createPublicPem(jwk: Record<string, unknown>): string {
  const { kid: _kid, use: _use, ...rest } = jwk;
  return createPublicKey({ key: rest as never, format: 'jwk' }).export({ type: 'spki', format: 'pem' }).toString();
}

describe('remembered secrets (the HMAC is spared for a secret that verified)', () => {
  const REPORTS = 'reports-api-demo-secret-for-local-use-only';
  const cc = { grant_type: 'client_credentials', scope: 'api://docs/.default' };
  /** invalid_client: authentication failed; anything else: it passed (reports-api holds no app role, so invalid_scope). */
  const authenticates = async (secret: string) => (await server.post(tokenPath, cc, { authorization: basic('reports-api', secret) })).body.error !== 'invalid_client';
  const setSecrets = async (records: { hash: string; hint: string; createdAt: number; expiresAt?: number }[]) => {
    const { ctx } = server;
    const app = await ctx.store.getApplication('contoso', 'reports-api');
    assert.ok(app);
    await ctx.store.putApplication({ ...app, secrets: records });
    for (let i = 0; i < 200; i++) {
      const seen = (await ctx.directories.get('contoso'))?.application('reports-api')?.secrets;
      if (JSON.stringify(seen) === JSON.stringify(records)) return;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.fail('the directory did not pick up the new secrets');
  };

  test('a wrong secret is refused every time, before and after the right one verified', async () => {
    assert.equal(await authenticates('reports-api-Demo-secret-2'), false);
    assert.equal(await authenticates(REPORTS), true);
    assert.equal(await authenticates(REPORTS), true);
    assert.equal(await authenticates('reports-api-Demo-secret-2'), false);
    assert.equal(await authenticates(`${REPORTS} `), false);
    assert.equal(await authenticates('x'.repeat(2000)), false);
  });

  test('rotation: once the registration changes, the remembered old secret no longer authenticates', async () => {
    const { ctx } = server;
    const original = (await ctx.store.getApplication('contoso', 'reports-api'))!.secrets;
    try {
      assert.equal(await authenticates(REPORTS), true);
      const rotated = 'reports-api-rotated-secret-0123456789abcdef';
      await setSecrets([{ hash: hashClientSecret(rotated, ctx.pepper), hint: 'rep', createdAt: ctx.now() }]);
      assert.equal(await authenticates(REPORTS), false);
      assert.equal(await authenticates(rotated), true);
    } finally {
      await setSecrets(original);
    }
  });

  test('expiry: a remembered secret stops authenticating when its record expires', async () => {
    const { ctx } = server;
    const original = (await ctx.store.getApplication('contoso', 'reports-api'))!.secrets;
    try {
      const expiring = 'reports-api-expiring-secret-0123456789abcdef';
      await setSecrets([{ hash: hashClientSecret(expiring, ctx.pepper), hint: 'rep', createdAt: ctx.now(), expiresAt: ctx.now() + 30 }]);
      assert.equal(await authenticates(expiring), true);
      assert.equal(await authenticates(expiring), true);
      server.advance(31);
      assert.equal(await authenticates(expiring), false);
    } finally {
      server.advance(-31);
      await setSecrets(original);
    }
  });
});

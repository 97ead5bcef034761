/**
 * DPoP (RFC 9449) at the token endpoint: an independent client (openid-client's DPoP support, with
 * its own key pair and proofs) gets bound tokens; every bad proof is `invalid_dpop_proof` 400
 * (9100010), a missing nonce `use_dpop_nonce` with `DPoP-Nonce`; bound refresh tokens and codes
 * refuse other keys; the exchange keeps a bound token bound (never silently unbound), each rule
 * with its exact error and audit rule name.
 */
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomUUID, sign as cryptoSign, createHash } from 'node:crypto';
import * as oidc from 'openid-client';
import { calculateJwkThumbprint, exportJWK } from 'jose';
import { createDpopProver, jwkThumbprint, derToP1363 } from '@baton/core';
import { startTestServer, decodeJwt, basic, type TestServer } from './harness.ts';
import { oboConfigure, userToken, obo, exchange, lastAudit, secretOf, OBO_GRANT } from './obo-fixtures.ts';
import { issueDelegatedToken } from '../src/tokens/issue.ts';
import { issueRefreshToken } from '../src/tokens/refresh.ts';
import { issueCode } from '../src/tokens/code.ts';
import { sessionPayload } from './obo-fixtures.ts';

let server: TestServer;
let nonceServer: TestServer;
/** Docs API's registered DPoP key (`dpop.keys`). */
const docsKey = createDpopProver(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey);

function configure(raw: any): void {
  oboConfigure(raw);
  const contoso = raw.tenants[0];
  // An API whose tokens are always DPoP-bound, and which exchanges only bound tokens with a proof.
  contoso.applications.push({
    name: 'Ledger API',
    clientId: 'ledger-api',
    identifierUri: 'api://ledger',
    secrets: [secretOf('ledger-api')],
    scopes: [{ value: 'Ledger.Read', description: 'Read the ledger' }],
    appRoles: [{ value: 'Ledger.ReadAll', description: 'Read every ledger', allowedMemberTypes: ['Application'] }],
    dpop: { incoming: 'required', exchanged: 'required' },
  });
  contoso.consents.push(
    { client: 'tasks-api', resource: 'api://ledger', scopes: ['Ledger.Read'], for: 'all' },
    { client: 'tasks-web', resource: 'api://ledger', scopes: ['Ledger.Read'], for: 'all' },
    { client: 'ledger-api', resource: 'api://docs', scopes: ['Docs.Read'], for: 'all' },
  );
  contoso.appRoleAssignments.push({ client: 'indexer', resource: 'api://ledger', roles: ['Ledger.ReadAll'] });
  // Docs API binds the tokens it gets by exchange to its one registered key.
  contoso.applications.find((a: any) => a.clientId === 'docs-api').dpop = { exchanged: 'required', keys: [docsKey.jkt] };
}

before(async () => {
  server = await startTestServer({ tls: 'dev', configure });
  nonceServer = await startTestServer({
    configure(raw) {
      configure(raw);
      raw.tenants[0].dpop = { nonce: 'required' };
    },
  });
});
after(async () => {
  await server?.close();
  await nonceServer?.close();
});

const ec = () => generateKeyPairSync('ec', { namedCurve: 'P-256' });

/** A client-credentials request for `indexer` with the given DPoP header(s). */
function clientCredentials(target: TestServer, dpop: string | undefined, scope = 'api://docs/.default') {
  return target.post('/contoso/oauth2/v2.0/token', { grant_type: 'client_credentials', scope }, {
    authorization: basic('indexer', secretOf('indexer')),
    ...(dpop === undefined ? {} : { dpop }),
  });
}

/** A hand-made proof: header and payload as given, signed with `key` (ES256). */
function handMade(header: Record<string, unknown>, payload: Record<string, unknown>, key = ec().privateKey): string {
  const input = `${Buffer.from(JSON.stringify(header)).toString('base64url')}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}`;
  return `${input}.${derToP1363(cryptoSign('sha256', Buffer.from(input), key), 32).toString('base64url')}`;
}

function assertRefused(response: { status: number; body: any }, error: string, code: number): void {
  assert.equal(response.status, 400, JSON.stringify(response.body));
  assert.equal(response.body.error, error, response.body.error_description);
  assert.deepEqual(response.body.error_codes, [code], response.body.error_description);
}

describe('token endpoint', () => {
  test('openid-client (its own DPoP key and proofs) gets a DPoP-bound client-credentials token', async () => {
    const config = await oidc.discovery(new URL(`${server.url}/contoso/v2.0`), 'indexer', undefined, oidc.ClientSecretBasic(secretOf('indexer')));
    assert.deepEqual(config.serverMetadata().dpop_signing_alg_values_supported, ['ES256', 'RS256', 'PS256', 'EdDSA', 'Ed25519']);
    for (const alg of ['ES256', 'PS256', 'RS256', 'EdDSA'] as const) {
      const keyPair = await oidc.randomDPoPKeyPair(alg);
      const tokens = await oidc.clientCredentialsGrant(config, { scope: 'api://docs/.default' }, { DPoP: oidc.getDPoPHandle(config, keyPair) });
      assert.equal(tokens.token_type, 'dpop');
      const { payload } = decodeJwt(tokens.access_token);
      // RFC 7638 thumbprint, computed by jose from the key openid-client made.
      assert.equal(payload.cnf.jkt, await calculateJwkThumbprint(await exportJWK(keyPair.publicKey)), alg);
    }
    // Without a proof: a bearer token, as before.
    const bearer = await oidc.clientCredentialsGrant(config, { scope: 'api://docs/.default' });
    assert.equal(bearer.token_type, 'bearer');
    assert.equal(decodeJwt(bearer.access_token).payload.cnf, undefined);
  });

  test("core's thumbprint is jose's calculateJwkThumbprint (EC, RSA, OKP)", async () => {
    for (const pair of [ec(), generateKeyPairSync('rsa', { modulusLength: 2048 }), generateKeyPairSync('ed25519')]) {
      const jwk = pair.publicKey.export({ format: 'jwk' });
      assert.equal(jwkThumbprint(jwk), await calculateJwkThumbprint(jwk as any));
      assert.equal(createDpopProver(pair.privateKey).jkt, await calculateJwkThumbprint(jwk as any));
    }
  });

  test('every bad proof is invalid_dpop_proof 400 (9100010), never a 500', async () => {
    const url = server.tokenUrl();
    const now = Math.floor(Date.now() / 1000);
    const pair = ec();
    const jwk = pair.publicKey.export({ format: 'jwk' });
    const good = { jti: randomUUID(), htm: 'POST', htu: url, iat: now };
    const hs256 = (() => {
      const input = `${Buffer.from(JSON.stringify({ typ: 'dpop+jwt', alg: 'HS256', jwk: { kty: 'oct', k: 'c2VjcmV0' } })).toString('base64url')}.${Buffer.from(JSON.stringify(good)).toString('base64url')}`;
      return `${input}.${createHash('sha256').update(input).digest('base64url')}`;
    })();
    const cases: Array<[string, string]> = [
      ['not a JWT', 'not-a-jwt'],
      ['typ JWT', handMade({ typ: 'JWT', alg: 'ES256', jwk }, { ...good, jti: randomUUID() }, pair.privateKey)],
      ['alg none', `${Buffer.from(JSON.stringify({ typ: 'dpop+jwt', alg: 'none', jwk })).toString('base64url')}.${Buffer.from(JSON.stringify(good)).toString('base64url')}.`],
      ['alg HS256', hs256],
      ['private jwk', handMade({ typ: 'dpop+jwt', alg: 'ES256', jwk: pair.privateKey.export({ format: 'jwk' }) }, { ...good, jti: randomUUID() }, pair.privateKey)],
      ['no jwk', handMade({ typ: 'dpop+jwt', alg: 'ES256' }, { ...good, jti: randomUUID() }, pair.privateKey)],
      ['signature by another key', handMade({ typ: 'dpop+jwt', alg: 'ES256', jwk }, { ...good, jti: randomUUID() })],
      ['method GET', handMade({ typ: 'dpop+jwt', alg: 'ES256', jwk }, { ...good, jti: randomUUID(), htm: 'GET' }, pair.privateKey)],
      ['another URL', handMade({ typ: 'dpop+jwt', alg: 'ES256', jwk }, { ...good, jti: randomUUID(), htu: server.tokenUrl('fabrikam') }, pair.privateKey)],
      ['stale iat', handMade({ typ: 'dpop+jwt', alg: 'ES256', jwk }, { ...good, jti: randomUUID(), iat: now - 3600 }, pair.privateKey)],
      ['future iat', handMade({ typ: 'dpop+jwt', alg: 'ES256', jwk }, { ...good, jti: randomUUID(), iat: now + 3600 }, pair.privateKey)],
      ['no jti', handMade({ typ: 'dpop+jwt', alg: 'ES256', jwk }, { htm: 'POST', htu: url, iat: now }, pair.privateKey)],
      ['crit', handMade({ typ: 'dpop+jwt', alg: 'ES256', jwk, crit: ['x'] }, { ...good, jti: randomUUID() }, pair.privateKey)],
    ];
    for (const [name, proof] of cases) {
      const response = await clientCredentials(server, proof);
      assertRefused(response, 'invalid_dpop_proof', 9100010);
      assert.match(response.body.error_description, /DPoP/, name);
    }
    // Two proofs (fetch joins a repeated header with a comma).
    const prover = createDpopProver(ec().privateKey);
    const headers = new Headers({ authorization: basic('indexer', secretOf('indexer')), 'content-type': 'application/x-www-form-urlencoded' });
    headers.append('dpop', prover.prove('POST', url));
    headers.append('dpop', prover.prove('POST', url));
    const twice = await fetch(url, { method: 'POST', headers, body: 'grant_type=client_credentials&scope=api%3A%2F%2Fdocs%2F.default' });
    assert.equal(twice.status, 400);
    assert.equal(((await twice.json()) as any).error, 'invalid_dpop_proof');
  });

  test('htu is compared normalised (case, default port, percent-encoding), without query', async () => {
    const prover = createDpopProver(ec().privateKey);
    const url = new URL(server.tokenUrl());
    const variant = `${url.protocol.toUpperCase()}//${url.host.toUpperCase()}/%63ontoso/oauth2/v2.0/token?x=1#f`;
    const response = await clientCredentials(server, prover.prove('POST', variant).replace(/^/, ''));
    // The prover strips the query; the host and the percent-encoded path still differ in spelling only.
    assert.equal(response.status, 200, JSON.stringify(response.body));
    assert.equal(response.body.token_type, 'DPoP');
  });

  test('a replayed proof is refused, on another instance too (the store holds the jti)', async () => {
    const prover = createDpopProver(ec().privateKey);
    const proof = prover.prove('POST', server.tokenUrl());
    assert.equal((await clientCredentials(server, proof)).status, 200);
    const again = await clientCredentials(server, proof);
    assertRefused(again, 'invalid_dpop_proof', 9100010);
    assert.match(again.body.error_description, /already used/);
  });

  test("server nonces: use_dpop_nonce with DPoP-Nonce, then accepted; openid-client retries by itself", async () => {
    const prover = createDpopProver(ec().privateKey);
    const first = await clientCredentials(nonceServer, prover.prove('POST', nonceServer.tokenUrl()));
    assertRefused(first, 'use_dpop_nonce', 9100011);
    const nonce = first.headers.get('dpop-nonce');
    assert.match(nonce ?? '', /^[A-Za-z0-9_-]{43}$/);
    const wrong = await clientCredentials(nonceServer, prover.prove('POST', nonceServer.tokenUrl(), { nonce: 'x'.repeat(43) }));
    assertRefused(wrong, 'use_dpop_nonce', 9100011);
    const second = await clientCredentials(nonceServer, prover.prove('POST', nonceServer.tokenUrl(), { nonce: nonce! }));
    assert.equal(second.status, 200, JSON.stringify(second.body));
    assert.equal(second.body.token_type, 'DPoP');
    assert.equal(second.headers.get('dpop-nonce'), nonce);
    // Without a proof the nonce policy asks nothing.
    assert.equal((await clientCredentials(nonceServer, undefined)).status, 200);

    const config = await oidc.discovery(new URL(`${nonceServer.url}/contoso/v2.0`), 'indexer', undefined, oidc.ClientSecretBasic(secretOf('indexer')), { execute: [oidc.allowInsecureRequests] });
    const DPoP = oidc.getDPoPHandle(config, await oidc.randomDPoPKeyPair('ES256'));
    let tokens;
    try {
      tokens = await oidc.clientCredentialsGrant(config, { scope: 'api://docs/.default' }, { DPoP });
    } catch (error) {
      // openid-client learns the nonce from the refusal; RFC 9449 §8 has the client retry once.
      assert.ok(oidc.ResponseBodyError && error instanceof oidc.ResponseBodyError && error.error === 'use_dpop_nonce', String(error));
      tokens = await oidc.clientCredentialsGrant(config, { scope: 'api://docs/.default' }, { DPoP });
    }
    assert.equal(tokens.token_type, 'dpop');
  });

  test('an API whose policy requires DPoP gets no unbound token (9100015)', async () => {
    assertRefused(await clientCredentials(server, undefined, 'api://ledger/.default'), 'invalid_dpop_proof', 9100015);
    const bound = await clientCredentials(server, createDpopProver(ec().privateKey).prove('POST', server.tokenUrl()), 'api://ledger/.default');
    assert.equal(bound.status, 200);
    assert.equal(bound.body.token_type, 'DPoP');
  });
});

describe('refresh tokens and codes of public clients', () => {
  async function boundRefreshToken(jkt: string | undefined) {
    const directory = (await server.ctx.directories.get('contoso'))!;
    const user = (await server.ctx.store.getUserByName('contoso', 'alice@contoso.test'))!;
    return issueRefreshToken(server.ctx, { directory, user, clientId: 'tasks-web', resource: 'tasks-api', scopes: ['Tasks.ReadWrite'], oidcScopes: ['offline_access'], auth: { amr: ['pwd'], authTime: server.ctx.now() }, jkt });
  }
  const refresh = (token: string, dpop?: string) =>
    server.post('/contoso/oauth2/v2.0/token', { grant_type: 'refresh_token', client_id: 'tasks-web', refresh_token: token }, dpop === undefined ? {} : { dpop });

  test('a bound refresh token is refused with another key or none (9100012), not burned, and works with its key', async () => {
    const owner = createDpopProver(ec().privateKey);
    const thief = createDpopProver(ec().privateKey);
    const { token } = await boundRefreshToken(owner.jkt);
    assertRefused(await refresh(token, thief.prove('POST', server.tokenUrl())), 'invalid_grant', 9100012);
    assertRefused(await refresh(token), 'invalid_grant', 9100012);
    const ok = await refresh(token, owner.prove('POST', server.tokenUrl()));
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    assert.equal(ok.body.token_type, 'DPoP');
    assert.equal(decodeJwt(ok.body.access_token).payload.cnf.jkt, owner.jkt);
    // The rotated refresh token is bound to the same key.
    assertRefused(await refresh(ok.body.refresh_token, thief.prove('POST', server.tokenUrl())), 'invalid_grant', 9100012);
    assert.equal((await refresh(ok.body.refresh_token, owner.prove('POST', server.tokenUrl()))).status, 200);
  });

  test('dpop_jkt (RFC 9449 §10): the code is redeemed only with a proof of that key (9100012), and then binds its tokens', async () => {
    const owner = createDpopProver(ec().privateKey);
    const user = (await server.ctx.store.getUserByName('contoso', 'alice@contoso.test'))!;
    const now = server.ctx.now();
    const sid = `sid-${randomUUID()}`;
    await server.ctx.store.putEphemeral({ kind: 'session', id: sid, tenantId: 'contoso', payload: sessionPayload(user.oid), familyId: sid, expiresAt: now + 900, createdAt: now });
    const { calculatePKCECodeChallenge, randomPKCECodeVerifier } = oidc;
    const verifier = randomPKCECodeVerifier();
    const code = await issueCode(server.ctx, 'contoso', {
      clientId: 'tasks-web',
      redirectUri: 'http://127.0.0.1:7000/callback',
      codeChallenge: await calculatePKCECodeChallenge(verifier),
      dpopJkt: owner.jkt,
      oid: user.oid,
      resource: { api: 'tasks-api', scopes: ['Tasks.ReadWrite'] },
      oidcScopes: ['openid', 'offline_access'],
      auth: { amr: ['pwd'], acr: '1', authTime: now, sid },
    });
    const redeem = (dpop?: string) =>
      server.post('/contoso/oauth2/v2.0/token', { grant_type: 'authorization_code', client_id: 'tasks-web', code, redirect_uri: 'http://127.0.0.1:7000/callback', code_verifier: verifier }, dpop === undefined ? {} : { dpop });
    assertRefused(await redeem(), 'invalid_grant', 9100012);
    assertRefused(await redeem(createDpopProver(ec().privateKey).prove('POST', server.tokenUrl())), 'invalid_grant', 9100012);
    const ok = await redeem(owner.prove('POST', server.tokenUrl()));
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    assert.equal(ok.body.token_type, 'DPoP');
    assert.equal(decodeJwt(ok.body.access_token).payload.cnf.jkt, owner.jkt);
    // A public client's refresh token from it is bound to the same key.
    assertRefused(await refresh(ok.body.refresh_token, createDpopProver(ec().privateKey).prove('POST', server.tokenUrl())), 'invalid_grant', 9100012);
  });

  test('a public client refreshing an unbound token with a proof binds the next one', async () => {
    const owner = createDpopProver(ec().privateKey);
    const { token } = await boundRefreshToken(undefined);
    const ok = await refresh(token, owner.prove('POST', server.tokenUrl()));
    assert.equal(ok.status, 200);
    assertRefused(await refresh(ok.body.refresh_token), 'invalid_grant', 9100012);
  });
});

describe('exchange', () => {
  const client = createDpopProver(ec().privateKey); // Tasks Web's key
  const api = createDpopProver(ec().privateKey); // Tasks API's own key

  async function boundUserToken(jkt: string, apiRef = 'api://tasks', scopes = ['Tasks.ReadWrite']) {
    const directory = (await server.ctx.directories.get('contoso'))!;
    const user = (await server.ctx.store.getUserByName('contoso', 'alice@contoso.test'))!;
    return (await issueDelegatedToken(server.ctx, { directory, user, clientId: 'tasks-web', api: directory.api(apiRef)!, scopes, auth: { amr: ['pwd'], acr: '1', authTime: server.ctx.now() }, jkt })).token;
  }

  test("a bound subject token exchanged with the API's proof: the new token is bound to the API's key", async () => {
    const assertion = await boundUserToken(client.jkt);
    const response = await obo(server, 'tasks-api', assertion, 'api://docs/Docs.Read', {}, 'contoso');
    // Without a proof: refused, never silently unbound.
    assertRefused(response, 'invalid_dpop_proof', 9100013);
    assert.equal(lastAudit(server).rule, 'dpop-bound-subject');

    const bound = await server.post('/contoso/oauth2/v2.0/token', { grant_type: OBO_GRANT, requested_token_use: 'on_behalf_of', assertion, scope: 'api://docs/Docs.Read' }, {
      authorization: basic('tasks-api', secretOf('tasks-api')),
      dpop: api.prove('POST', server.tokenUrl()),
    });
    assert.equal(bound.status, 200, JSON.stringify(bound.body));
    assert.equal(bound.body.token_type, 'DPoP');
    assert.equal(decodeJwt(bound.body.access_token).payload.cnf.jkt, api.jkt);
    assert.equal(lastAudit(server).rule, 'issue');
  });

  test('RFC 8693 form: bound in, bound out; a proof with the subject token\'s own key is refused (9100016)', async () => {
    const assertion = await boundUserToken(client.jkt);
    const form = { subject_token: assertion, audience: 'api://docs', scope: 'api://docs/Docs.Read' };
    assertRefused(await exchange(server, 'tasks-api', form), 'invalid_dpop_proof', 9100013);
    const withClientKey = await server.post('/contoso/oauth2/v2.0/token', { grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange', subject_token_type: 'urn:ietf:params:oauth:token-type:access_token', ...form }, {
      authorization: basic('tasks-api', secretOf('tasks-api')),
      dpop: client.prove('POST', server.tokenUrl()),
    });
    assertRefused(withClientKey, 'invalid_dpop_proof', 9100016);
    assert.equal(lastAudit(server).rule, 'dpop-api-key');
    const ok = await server.post('/contoso/oauth2/v2.0/token', { grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange', subject_token_type: 'urn:ietf:params:oauth:token-type:access_token', ...form }, {
      authorization: basic('tasks-api', secretOf('tasks-api')),
      dpop: api.prove('POST', server.tokenUrl()),
    });
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    assert.equal(ok.body.token_type, 'DPoP');
    assert.equal(decodeJwt(ok.body.access_token).payload.cnf.jkt, api.jkt);
  });

  test("a token for an API whose policy requires DPoP needs a proof on the exchange (9100015)", async () => {
    const assertion = await userToken(server);
    assertRefused(await obo(server, 'tasks-api', assertion, 'api://ledger/Ledger.Read'), 'invalid_dpop_proof', 9100015);
    assert.equal(lastAudit(server).rule, 'dpop-required');
  });

  test("the API's own policy: only bound incoming tokens (9100014), a proof on its exchanges (9100017), its registered keys (9100016)", async () => {
    const ledgerKey = createDpopProver(ec().privateKey);
    const unbound = await userToken(server, { api: 'api://ledger', scopes: ['Ledger.Read'] });
    const withProof = (assertion: string, prover = ledgerKey) =>
      server.post('/contoso/oauth2/v2.0/token', { grant_type: OBO_GRANT, requested_token_use: 'on_behalf_of', assertion, scope: 'api://docs/Docs.Read' }, {
        authorization: basic('ledger-api', secretOf('ledger-api')),
        dpop: prover.prove('POST', server.tokenUrl()),
      });
    assertRefused(await withProof(unbound), 'invalid_grant', 9100014);
    assert.equal(lastAudit(server).rule, 'dpop-incoming');

    const bound = await boundUserToken(client.jkt, 'api://ledger', ['Ledger.Read']);
    // A bound subject without a proof meets dpop-bound-subject first; the policy rule, in isolation, below.
    assertRefused(await obo(server, 'ledger-api', bound, 'api://docs/Docs.Read'), 'invalid_dpop_proof', 9100013);
    const ok = await withProof(bound);
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    assert.equal(decodeJwt(ok.body.access_token).payload.cnf.jkt, ledgerKey.jkt);
  });

  test("an API's exchanged policy: a proof on each exchange (9100017), made with a registered key (9100016)", async () => {
    const assertion = await userToken(server, { clientId: 'tasks-api', api: 'api://docs', scopes: ['Docs.Read'] });
    const docsObo = (dpop?: string) =>
      server.post('/contoso/oauth2/v2.0/token', { grant_type: OBO_GRANT, requested_token_use: 'on_behalf_of', assertion, scope: 'api://audit/Audit.Write' }, {
        authorization: basic('docs-api', secretOf('docs-api')),
        ...(dpop === undefined ? {} : { dpop }),
      });
    assertRefused(await docsObo(), 'invalid_dpop_proof', 9100017);
    assert.equal(lastAudit(server).rule, 'dpop-exchanged');
    assertRefused(await docsObo(createDpopProver(ec().privateKey).prove('POST', server.tokenUrl())), 'invalid_dpop_proof', 9100016);
    assert.equal(lastAudit(server).rule, 'dpop-api-key');
    const ok = await docsObo(docsKey.prove('POST', server.tokenUrl()));
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    assert.equal(decodeJwt(ok.body.access_token).payload.cnf.jkt, docsKey.jkt);
  });
});

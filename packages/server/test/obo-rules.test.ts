/**
 * The On-Behalf-Of rules (DESIGN rules 1–8) black-box over HTTPS: every bad input gets its exact
 * error JSON — `error`, HTTP status, Entra code, suberror — never a 500, and an audit event that
 * names the rule that refused. Run on both store engines (PostgreSQL on 127.0.0.1:5432, as the
 * store contract suite), since the user, session and consent reads are the store's.
 */
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { startTestServer, decodeJwt, basic, pgSchema, PG_URL, type TestServer } from './harness.ts';
import { OBO_GRANT, TOKEN_EXCHANGE_GRANT, ACCESS_TOKEN_TYPE, sessionPayload, auditDuring, lastAudit, obo, oboConfigure, exchange, secretOf, userToken } from './obo-fixtures.ts';

for (const engine of ['sqlite', 'postgres'] as const) describe(`OBO rules, ${engine} store`, () => {
  let server: TestServer;
  let dropSchema: (() => Promise<void>) | undefined;

  before(async () => {
    if (engine === 'postgres') {
      const schema = await pgSchema();
      dropSchema = schema.drop;
      server = await startTestServer({ tls: 'dev', configure: oboConfigure, storeUrl: PG_URL, storeSchema: schema.schema });
    } else {
      server = await startTestServer({ tls: 'dev', configure: oboConfigure });
    }
  });
  after(async () => {
    await server?.close();
    await dropSchema?.();
  });

  /** Signs arbitrary claims with contoso's current key, as only this service could. */
  async function signAsContoso(payload: Record<string, unknown>, typ = 'at+jwt'): Promise<string> {
    const signer = await server.ctx.keyring.signer('contoso', 'ES256');
    return signer.sign(payload, typ);
  }

  /** Alice's token's claims, to alter and re-sign. */
  async function aliceClaims(): Promise<Record<string, unknown>> {
    return decodeJwt(await userToken(server)).payload;
  }

  type Expected = { status: number; error: string; codes: number[]; suberror?: string; description?: RegExp; rule?: string };

  function expectError(response: { status: number; body: any }, expected: Expected): void {
    assert.equal(response.status, expected.status, JSON.stringify(response.body));
    assert.equal(response.body.error, expected.error);
    assert.deepEqual(response.body.error_codes, expected.codes);
    assert.equal(response.body.suberror, expected.suberror);
    assert.equal(typeof response.body.trace_id, 'string');
    assert.equal(typeof response.body.correlation_id, 'string');
    if (expected.description) assert.match(response.body.error_description, expected.description);
    assert.match(response.body.error_description, new RegExp(`^AADSTS${expected.codes[0]}: `));
  }

  describe('the assertion (rule 2): ours, validly signed, unexpired, addressed to the caller', () => {
    test('an assertion addressed to another API', async () => {
      const assertion = await userToken(server); // aud tasks-api
      const response = await obo(server, 'docs-api', assertion, 'api://audit/Audit.Write');
      expectError(response, { status: 400, error: 'invalid_grant', codes: [50013], description: /audience is 'tasks-api' but the caller is 'docs-api'/ });
      assert.equal(lastAudit(server).rule, 'assertion-audience');
    });

    test('an app-only assertion (idtyp app, no scp)', async () => {
      const now = server.ctx.now();
      const assertion = await signAsContoso({
        iss: `${server.url}/contoso/v2.0`, aud: 'tasks-api', sub: randomUUID(), oid: randomUUID(), tid: (await aliceClaims()).tid,
        azp: 'indexer', client_id: 'indexer', idtyp: 'app', roles: ['Tasks.All'], iat: now, nbf: now, exp: now + 600, jti: randomUUID(), ver: '2.0',
      });
      const response = await obo(server, 'tasks-api', assertion, 'api://docs/Docs.Read');
      expectError(response, { status: 400, error: 'invalid_grant', codes: [7000114], description: /application token/ });
      assert.equal(lastAudit(server).rule, 'assertion-delegated');
    });

    test('an expired assertion', async () => {
      const assertion = await userToken(server);
      server.advance(3600 + 120);
      try {
        const response = await obo(server, 'tasks-api', assertion, 'api://docs/Docs.Read');
        expectError(response, { status: 400, error: 'invalid_grant', codes: [500133], description: /expired/ });
        assert.equal(lastAudit(server).rule, 'assertion-lifetime');
      } finally {
        server.advance(-(3600 + 120));
      }
    });

    test('an assertion from another tenant (fabrikam’s key, fabrikam’s issuer)', async () => {
      const assertion = await userToken(server, { tenant: 'fabrikam' }); // fabrikam's tasks-api
      const here = await obo(server, 'tasks-api', assertion, 'api://docs/Docs.Read');
      expectError(here, { status: 400, error: 'invalid_grant', codes: [50013], description: /signed with a key tenant 'contoso' does not publish/ });
      assert.equal(lastAudit(server).rule, 'assertion-signature');
    });

    test('an assertion signed by this tenant but naming another issuer', async () => {
      const claims = await aliceClaims();
      const assertion = await signAsContoso({ ...claims, iss: `${server.url}/fabrikam/v2.0`, jti: randomUUID() });
      const response = await obo(server, 'tasks-api', assertion, 'api://docs/Docs.Read');
      expectError(response, { status: 400, error: 'invalid_grant', codes: [50013], description: /issued by '.*\/fabrikam\/v2.0', not by this tenant/ });
      assert.equal(lastAudit(server).rule, 'assertion-issuer');
    });

    test('alg: none (unsigned, or with a kid of ours)', async () => {
      const real = await userToken(server);
      const { header, payload } = decodeJwt(real);
      const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
      for (const forged of [`${b64({ alg: 'none', typ: 'at+jwt' })}.${b64(payload)}.`, `${b64({ ...header, alg: 'none' })}.${b64(payload)}.`]) {
        const response = await obo(server, 'tasks-api', forged, 'api://docs/Docs.Read');
        expectError(response, { status: 400, error: 'invalid_grant', codes: [50013] });
      }
    });

    test('HS256 keyed with our public key (algorithm confusion)', async () => {
      const { createHmac } = await import('node:crypto');
      const real = await userToken(server);
      const { header, payload } = decodeJwt(real);
      const jwks = (await (await fetch(`${server.url}/contoso/discovery/v2.0/keys`)).json()) as { keys: { kid: string }[] };
      const jwk = jwks.keys.find((k) => k.kid === header.kid);
      const input = `${Buffer.from(JSON.stringify({ ...header, alg: 'HS256' })).toString('base64url')}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}`;
      const forged = `${input}.${createHmac('sha256', JSON.stringify(jwk)).update(input).digest('base64url')}`;
      const response = await obo(server, 'tasks-api', forged, 'api://docs/Docs.Read');
      // Refused by the header policy (HS256 is on no list) before any key is touched.
      expectError(response, { status: 400, error: 'invalid_grant', codes: [50013], description: /algorithm is not accepted/ });
    });

    test('a forged signature (claims altered after signing)', async () => {
      const real = await userToken(server);
      const [h, , s] = real.split('.');
      const payload = { ...decodeJwt(real).payload, scp: 'Tasks.ReadWrite Admin.Everything' };
      const forged = `${h}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}.${s}`;
      const response = await obo(server, 'tasks-api', forged, 'api://docs/Docs.Read');
      expectError(response, { status: 400, error: 'invalid_grant', codes: [50013], description: /signature is invalid/ });
      assert.equal(lastAudit(server).rule, 'assertion-signature');
    });

    test('not an access token: typ JWT (an ID token, a client assertion)', async () => {
      const assertion = await signAsContoso({ ...(await aliceClaims()), jti: randomUUID() }, 'JWT');
      const response = await obo(server, 'tasks-api', assertion, 'api://docs/Docs.Read');
      expectError(response, { status: 400, error: 'invalid_grant', codes: [50013], description: /typ 'JWT', not 'at\+jwt'/ });
    });

    test('garbage and an assertion over 16 KiB', async () => {
      const garbage = await obo(server, 'tasks-api', 'not-a-jwt', 'api://docs/Docs.Read');
      expectError(garbage, { status: 400, error: 'invalid_grant', codes: [50013], description: /not a signed JWT/ });

      const claims = await aliceClaims();
      const big = await signAsContoso({ ...claims, jti: randomUUID(), padding: 'x'.repeat(16 * 1024) });
      assert.ok(big.length > 16 * 1024);
      const { result: response, events } = await auditDuring(server, () => obo(server, 'tasks-api', big, 'api://docs/Docs.Read'));
      expectError(response, { status: 400, error: 'invalid_grant', codes: [50013], description: /at most 16384 characters/ });
      assert.equal(events.length, 1);
      assert.equal(events[0]!.rule, 'assertion-signature');
    });

    test('a key retired within its grace period still verifies', async () => {
      const assertion = await userToken(server);
      await server.ctx.keyring.rotate('contoso', 'ES256');
      const response = await obo(server, 'tasks-api', assertion, 'api://docs/Docs.Read');
      assert.equal(response.status, 200, JSON.stringify(response.body));
    });
  });

  describe('the user and the session (rule 4)', () => {
    test('a disabled user (carol)', async () => {
      const assertion = await userToken(server, { username: 'carol@contoso.test' });
      const response = await obo(server, 'tasks-api', assertion, 'api://docs/Docs.Read');
      expectError(response, { status: 400, error: 'invalid_grant', codes: [50057], description: /disabled/ });
      assert.equal(lastAudit(server).rule, 'user-enabled');
    });

    test('the same assertion replayed after the user was disabled', async () => {
      const assertion = await userToken(server, { username: 'bob@contoso.test' });
      const first = await obo(server, 'tasks-api', assertion, 'api://docs/Docs.Read');
      assert.equal(first.status, 200, JSON.stringify(first.body));
      const bob = (await server.ctx.store.getUserByName('contoso', 'bob@contoso.test'))!;
      await server.ctx.store.putUser({ ...bob, enabled: false });
      try {
        const replay = await obo(server, 'tasks-api', assertion, 'api://docs/Docs.Read');
        expectError(replay, { status: 400, error: 'invalid_grant', codes: [50057] });
      } finally {
        await server.ctx.store.putUser(bob);
      }
    });

    test('a user who no longer exists', async () => {
      const assertion = await signAsContoso({ ...(await aliceClaims()), oid: randomUUID(), jti: randomUUID() });
      const response = await obo(server, 'tasks-api', assertion, 'api://docs/Docs.Read');
      expectError(response, { status: 400, error: 'invalid_grant', codes: [50034] });
    });

    test('sessions revoked for the user (revokedBefore)', async () => {
      const assertion = await userToken(server, { username: 'bob@contoso.test' });
      const bob = (await server.ctx.store.getUserByName('contoso', 'bob@contoso.test'))!;
      await server.ctx.store.putUser({ ...bob, revokedBefore: server.ctx.now() + 1 });
      try {
        const response = await obo(server, 'tasks-api', assertion, 'api://docs/Docs.Read');
        expectError(response, { status: 400, error: 'invalid_grant', codes: [50173], description: /revoked/ });
        assert.equal(lastAudit(server).rule, 'session-live');
      } finally {
        await server.ctx.store.putUser(bob);
      }
    });

    test('the sign-in session behind the token: live, capped lifetime, then revoked, unknown, another user’s', async () => {
      const now = server.ctx.now();
      const alice = (await server.ctx.store.getUserByName('contoso', 'alice@contoso.test'))!;
      const sid = randomUUID();
      await server.ctx.store.putEphemeral({ kind: 'session', id: sid, tenantId: 'contoso', payload: sessionPayload(alice.oid), familyId: sid, expiresAt: now + 900, createdAt: now });
      const assertion = await userToken(server, { sid });

      const live = await obo(server, 'tasks-api', assertion, 'api://docs/Docs.Read');
      assert.equal(live.status, 200, JSON.stringify(live.body));
      assert.ok(live.body.expires_in <= 900, 'the new token never outlives the session');
      const issued = decodeJwt(live.body.access_token).payload;
      assert.equal(issued.sid, sid);
      assert.ok(issued.exp <= now + 900);

      await server.ctx.store.revokeFamily('contoso', sid, server.ctx.now());
      const revoked = await obo(server, 'tasks-api', assertion, 'api://docs/Docs.Read');
      expectError(revoked, { status: 400, error: 'invalid_grant', codes: [50173] });
      assert.equal(lastAudit(server).rule, 'session-live');

      const unknown = await obo(server, 'tasks-api', await userToken(server, { sid: randomUUID() }), 'api://docs/Docs.Read');
      expectError(unknown, { status: 400, error: 'invalid_grant', codes: [50173] });

      // A sid is not a secret: naming another user's live session gains nothing.
      const bob = (await server.ctx.store.getUserByName('contoso', 'bob@contoso.test'))!;
      const bobs = randomUUID();
      await server.ctx.store.putEphemeral({ kind: 'session', id: bobs, tenantId: 'contoso', payload: sessionPayload(bob.oid), familyId: bobs, expiresAt: now + 900, createdAt: now });
      const borrowed = await obo(server, 'tasks-api', await userToken(server, { sid: bobs }), 'api://docs/Docs.Read');
      expectError(borrowed, { status: 400, error: 'invalid_grant', codes: [50173] });
    });
  });

  describe('scopes and consent (rules 5, 6)', () => {
    test('scopes of two APIs', async () => {
      const response = await obo(server, 'tasks-api', await userToken(server), 'api://docs/Docs.Read api://audit/Audit.Write');
      expectError(response, { status: 400, error: 'invalid_scope', codes: [70011], description: /names two APIs, 'api:\/\/docs' and 'api:\/\/audit'/ });
      assert.equal(lastAudit(server).rule, 'downstream-scopes');
    });

    test('an unknown scope, an unknown API, an app role asked for as a scope, only OIDC scopes', async () => {
      const assertion = await userToken(server);
      for (const [scope, description] of [
        ['api://docs/Docs.Delete', /does not exist on API 'api:\/\/docs'/],
        ['api://nowhere/Read', /names the API 'api:\/\/nowhere', which does not exist/],
        ['api://docs/Docs.ReadAll', /is an app role/],
        ['openid profile offline_access', /names no downstream API/],
      ] as const) {
        const response = await obo(server, 'tasks-api', assertion, scope);
        expectError(response, { status: 400, error: 'invalid_scope', codes: [70011], description });
      }
    });

    test('a scope the caller holds no consent for', async () => {
      const response = await obo(server, 'tasks-api', await userToken(server), 'api://audit/Audit.Write');
      expectError(response, { status: 400, error: 'invalid_grant', codes: [65001], suberror: 'consent_required', description: /has no consent for 'api:\/\/audit\/Audit.Write'.*adminconsent\?client_id=tasks-api/ });
      assert.equal(lastAudit(server).rule, 'consent');
    });

    test('a user’s own consent: within it succeeds, beyond it is consent_required, another user has none', async () => {
      const alice = await userToken(server);
      const within = await obo(server, 'tasks-api', alice, 'api://reports/Reports.Read');
      assert.equal(within.status, 200, JSON.stringify(within.body));
      assert.equal(decodeJwt(within.body.access_token).payload.scp, 'Reports.Read');

      const defaults = await obo(server, 'tasks-api', alice, 'api://reports/.default');
      assert.equal(defaults.status, 200, JSON.stringify(defaults.body));
      assert.equal(defaults.body.scope, 'api://reports/.default api://reports/Reports.Read', 'scopes only narrow: .default is what was consented');

      const beyond = await obo(server, 'tasks-api', alice, 'api://reports/Reports.Read api://reports/Reports.Export');
      expectError(beyond, { status: 400, error: 'invalid_grant', codes: [65001], suberror: 'consent_required', description: /no consent for 'api:\/\/reports\/Reports.Export'/ });

      const bob = await obo(server, 'tasks-api', await userToken(server, { username: 'bob@contoso.test' }), 'api://reports/Reports.Read');
      expectError(bob, { status: 400, error: 'invalid_grant', codes: [65001], suberror: 'consent_required' });
    });
  });

  describe('the caller (rule 1) and the request', () => {
    test('a public client calling OBO', async () => {
      const assertion = await userToken(server);
      const response = await server.post('/contoso/oauth2/v2.0/token', { grant_type: OBO_GRANT, requested_token_use: 'on_behalf_of', assertion, scope: 'api://docs/Docs.Read', client_id: 'tasks-web' });
      expectError(response, { status: 400, error: 'unauthorized_client', codes: [700025], description: /public client/ });
      assert.equal(lastAudit(server).rule, 'caller-confidential');
    });

    test('a wrong client secret never reaches the exchange', async () => {
      const { result: response, events } = await auditDuring(server, () =>
        server.post('/contoso/oauth2/v2.0/token', { grant_type: OBO_GRANT, requested_token_use: 'on_behalf_of', assertion: 'x', scope: 'api://docs/Docs.Read' }, { authorization: basic('tasks-api', 'wrong') }),
      );
      expectError(response, { status: 401, error: 'invalid_client', codes: [7000215] });
      assert.equal(events.length, 0);
    });

    test('duplicate parameters', async () => {
      const assertion = await userToken(server);
      const body = `grant_type=${encodeURIComponent(OBO_GRANT)}&requested_token_use=on_behalf_of&assertion=${assertion}&assertion=${assertion}&scope=api%3A%2F%2Fdocs%2FDocs.Read`;
      const response = await server.post('/contoso/oauth2/v2.0/token', body, { authorization: basic('tasks-api', secretOf('tasks-api')) });
      expectError(response, { status: 400, error: 'invalid_request', codes: [90014], description: /'assertion' is included more than once/ });
    });

    test('missing or wrong requested_token_use, missing assertion, missing scope', async () => {
      const assertion = await userToken(server);
      const auth = { authorization: basic('tasks-api', secretOf('tasks-api')) };
      const post = (form: Record<string, string>) => server.post('/contoso/oauth2/v2.0/token', { grant_type: OBO_GRANT, ...form }, auth);

      const noUse = await post({ assertion, scope: 'api://docs/Docs.Read' });
      expectError(noUse, { status: 400, error: 'invalid_request', codes: [900144], description: /'requested_token_use'/ });
      assert.equal(lastAudit(server).rule, 'request');

      const wrongUse = await post({ requested_token_use: 'something_else', assertion, scope: 'api://docs/Docs.Read' });
      expectError(wrongUse, { status: 400, error: 'invalid_request', codes: [900144], description: /must be 'on_behalf_of'/ });

      const noAssertion = await post({ requested_token_use: 'on_behalf_of', scope: 'api://docs/Docs.Read' });
      expectError(noAssertion, { status: 400, error: 'invalid_request', codes: [900144], description: /'assertion'/ });

      const noScope = await post({ requested_token_use: 'on_behalf_of', assertion });
      expectError(noScope, { status: 400, error: 'invalid_request', codes: [900144], description: /'scope'/ });
    });

    test('offline_access: a refresh token bound to the caller, redeemable by it alone', async () => {
      const response = await obo(server, 'tasks-api', await userToken(server), 'api://docs/Docs.Read openid profile offline_access');
      assert.equal(response.status, 200, JSON.stringify(response.body));
      assert.equal(response.body.scope, 'api://docs/Docs.Read');
      assert.equal(typeof response.body.refresh_token, 'string');
      assert.ok(response.body.refresh_token_expires_in > 0);

      const stolen = await server.post('/contoso/oauth2/v2.0/token', { grant_type: 'refresh_token', refresh_token: response.body.refresh_token }, { authorization: basic('docs-api', secretOf('docs-api')) });
      assert.equal(stolen.status, 400);
      assert.equal(stolen.body.error, 'invalid_grant');

      const renewed = await server.post('/contoso/oauth2/v2.0/token', { grant_type: 'refresh_token', refresh_token: response.body.refresh_token }, { authorization: basic('tasks-api', secretOf('tasks-api')) });
      assert.equal(renewed.status, 200, JSON.stringify(renewed.body));
      const claims = decodeJwt(renewed.body.access_token).payload;
      assert.equal(claims.aud, 'docs-api');
      assert.equal(claims.azp, 'tasks-api');
      assert.equal(claims.scp, 'Docs.Read');
    });

    test('a token renewed with an OBO refresh token keeps the act chain', async () => {
      const docs = await obo(server, 'tasks-api', await userToken(server), 'api://docs/Docs.Read offline_access');
      const renewed = await server.post('/contoso/oauth2/v2.0/token', { grant_type: 'refresh_token', refresh_token: docs.body.refresh_token }, { authorization: basic('tasks-api', secretOf('tasks-api')) });
      assert.equal(renewed.status, 200, JSON.stringify(renewed.body));
      assert.deepEqual(decodeJwt(renewed.body.access_token).payload.act, { sub: 'tasks-api', client_id: 'tasks-api' });
    });
  });

  describe('conditional access (rule 7), judged on the original sign-in', () => {
    test('a blocking policy: invalid_grant 53003, nothing to step up', async () => {
      const response = await obo(server, 'tasks-api', await userToken(server, { amr: ['pwd', 'mfa'] }), 'api://vault/Vault.Read');
      expectError(response, { status: 400, error: 'invalid_grant', codes: [53003], description: /blocked by the conditional access policy 'Vault is closed'/ });
      assert.equal(response.body.claims, undefined);
      assert.equal(lastAudit(server).rule, 'conditional-access');
    });

    test('sign-in frequency: an old sign-in gets interaction_required 70044 with a fresh-sign-in challenge', async () => {
      const now = server.ctx.now();
      const stale = await obo(server, 'tasks-api', await userToken(server, { authTime: now - 3600 }), 'api://vault/Vault.Recent');
      expectError(stale, { status: 400, error: 'interaction_required', codes: [70044], suberror: 'basic_action' });
      const claims = JSON.parse(stale.body.claims);
      assert.equal(claims.access_token.nbf.essential, true);
      assert.ok(Number(claims.access_token.nbf.value) >= now);
      assert.deepEqual(claims.id_token, { auth_time: { essential: true } });

      const fresh = await obo(server, 'tasks-api', await userToken(server, { authTime: now - 60 }), 'api://vault/Vault.Recent');
      assert.equal(fresh.status, 200, JSON.stringify(fresh.body));
    });

    test('network ranges judge the sign-in address recorded with the session', async () => {
      const now = server.ctx.now();
      const alice = (await server.ctx.store.getUserByName('contoso', 'alice@contoso.test'))!;
      const office = randomUUID();
      const home = randomUUID();
      await server.ctx.store.putEphemeral({ kind: 'session', id: office, tenantId: 'contoso', payload: sessionPayload(alice.oid, '10.1.2.3'), expiresAt: now + 3600, createdAt: now });
      await server.ctx.store.putEphemeral({ kind: 'session', id: home, tenantId: 'contoso', payload: sessionPayload(alice.oid, '203.0.113.9'), expiresAt: now + 3600, createdAt: now });

      const inside = await obo(server, 'tasks-api', await userToken(server, { sid: office }), 'api://vault/Vault.Office');
      assert.equal(inside.status, 200, JSON.stringify(inside.body));
      const outside = await obo(server, 'tasks-api', await userToken(server, { sid: home }), 'api://vault/Vault.Office');
      expectError(outside, { status: 400, error: 'invalid_grant', codes: [53003], description: /network ranges/ });
    });
  });

  describe('the chain (rule 8)', () => {
    test('one API deeper than delegation.maxDepth (2) is refused', async () => {
      const alice = await userToken(server);
      const docs = await obo(server, 'tasks-api', alice, 'api://docs/Docs.Read');
      assert.equal(docs.status, 200);
      const audit = await obo(server, 'docs-api', docs.body.access_token, 'api://audit/Audit.Write');
      assert.equal(audit.status, 200, JSON.stringify(audit.body));
      const reports = await obo(server, 'audit-api', audit.body.access_token, 'api://reports/Reports.Read');
      expectError(reports, { status: 400, error: 'invalid_grant', codes: [9100001], description: /chain of 3 APIs \(tasks-api → docs-api → audit-api\).*maxDepth 2/ });
      const event = lastAudit(server);
      assert.equal(event.rule, 'delegation-depth');
      assert.deepEqual(event.chain, ['audit-api', 'docs-api', 'tasks-api']);
    });
  });

  describe('audit', () => {
    test('every event carries the traceparent, never a token', async () => {
      const assertion = await userToken(server);
      const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
      const { result, events } = await auditDuring(server, () =>
        server.post(
          '/contoso/oauth2/v2.0/token',
          { grant_type: OBO_GRANT, requested_token_use: 'on_behalf_of', assertion, scope: 'api://docs/Docs.Read' },
          { authorization: basic('tasks-api', secretOf('tasks-api')), traceparent },
        ),
      );
      assert.equal(result.status, 200);
      assert.equal(events.length, 1);
      assert.equal(events[0]!.traceparent, traceparent);
      const serialized = JSON.stringify(events[0]);
      assert.ok(!serialized.includes(assertion) && !serialized.includes(result.body.access_token));
      assert.deepEqual(events[0]!.scopesRequested, ['api://docs/Docs.Read']);

      const { events: bad } = await auditDuring(server, () =>
        server.post('/contoso/oauth2/v2.0/token', { grant_type: OBO_GRANT, requested_token_use: 'on_behalf_of', assertion, scope: 'api://docs/Docs.Read' }, { authorization: basic('tasks-api', secretOf('tasks-api')), traceparent: 'junk-00-zz' }),
      );
      assert.equal(bad[0]!.traceparent, undefined, 'a malformed traceparent is dropped');
    });
  });
});

/**
 * The chain rules (issue 14) through the real token endpoint: loops, scopes that would widen, one
 * audience per token, and an API's own delegation limit — each with its exact error and the rule
 * the audit event names. One server (SQLite): the rules are core's, the store reads are covered above.
 */
describe('chain rules', () => {
  let server: TestServer;

  before(async () => {
    server = await startTestServer({
      tls: 'dev',
      configure(raw: any) {
        oboConfigure(raw);
        const contoso = raw.tenants[0];
        contoso.delegation = { maxDepth: 4 };
        // Docs API may call back into Tasks API: only the chain rule stands between them.
        contoso.consents.push({ client: 'docs-api', resource: 'api://tasks', scopes: ['Tasks.ReadWrite'], for: 'all' });
        // Tasks API may down-scope its own tokens (an RFC 8693 exchange to its own audience).
        contoso.applications.find((a: any) => a.clientId === 'tasks-api').scopes.push({ value: 'Tasks.Read', description: 'Read your tasks' });
        contoso.consents.push({ client: 'tasks-api', resource: 'api://tasks', scopes: ['Tasks.Read', 'Tasks.ReadWrite'], for: 'all' });
        // Reports API accepts tokens at most one API deep, stricter than the tenant's 4.
        contoso.applications.find((a: any) => a.clientId === 'reports-api').delegation = { maxDepth: 1 };
        contoso.consents.push({ client: 'docs-api', resource: 'api://reports', scopes: ['Reports.Read'], for: 'all' });
      },
    });
  });
  after(async () => {
    await server?.close();
  });

  function expectRefusal(response: { status: number; body: any }, error: string, code: number, description: RegExp): void {
    assert.equal(response.status, 400, JSON.stringify(response.body));
    assert.equal(response.body.error, error);
    assert.deepEqual(response.body.error_codes, [code]);
    assert.match(response.body.error_description, new RegExp(`^AADSTS${code}: `));
    assert.match(response.body.error_description, description);
  }

  test('no loops: Tasks → Docs → Tasks is refused (chain-loop, 9100002); the demo chain Tasks → Docs → Audit is not', async () => {
    const alice = await userToken(server);
    const docs = await obo(server, 'tasks-api', alice, 'api://docs/Docs.Read');
    assert.equal(docs.status, 200, JSON.stringify(docs.body));
    const { result: back, events } = await auditDuring(server, () => obo(server, 'docs-api', docs.body.access_token, 'api://tasks/Tasks.ReadWrite'));
    expectRefusal(back, 'invalid_grant', 9100002, /delegation chain tasks-api → docs-api → tasks-api, in which API 'tasks-api' appears twice: loops are refused \(rule chain-loop\)/);
    assert.equal(events.length, 1);
    assert.equal(events[0]!.rule, 'chain-loop');
    assert.equal(events[0]!.decision, 'refuse');
    // The same loop in the RFC 8693 form: the same rule and code.
    const rfc = await exchange(server, 'docs-api', { subject_token: docs.body.access_token, audience: 'api://tasks' });
    expectRefusal(rfc, 'invalid_grant', 9100002, /rule chain-loop/);

    const audit = await obo(server, 'docs-api', docs.body.access_token, 'api://audit/Audit.Write');
    assert.equal(audit.status, 200, JSON.stringify(audit.body));
    assert.equal(lastAudit(server).rule, 'issue');
  });

  test('scopes never widen: an exchange to the token’s own audience gets no more than its scp (scope-narrowing, 9100003)', async () => {
    const narrow = await userToken(server, { scopes: ['Tasks.Read'] });
    const wider = await exchange(server, 'tasks-api', { subject_token: narrow, audience: 'api://tasks', scope: 'Tasks.ReadWrite' });
    expectRefusal(wider, 'invalid_scope', 9100003, /Scopes never widen along the chain \(rule scope-narrowing\).*allows 'api:\/\/tasks\/Tasks.Read'.*\('api:\/\/tasks\/Tasks.ReadWrite'\)/);
    assert.equal(lastAudit(server).rule, 'scope-narrowing');
    // The Microsoft form to its own API: the same rule.
    expectRefusal(await obo(server, 'tasks-api', narrow, 'api://tasks/Tasks.ReadWrite'), 'invalid_scope', 9100003, /rule scope-narrowing/);

    // Audience alone (.default) narrows to what the token carried, and the new token says so.
    const same = await exchange(server, 'tasks-api', { subject_token: narrow, audience: 'api://tasks' });
    assert.equal(same.status, 200, JSON.stringify(same.body));
    assert.equal(same.body.scope, 'api://tasks/Tasks.Read');
    assert.equal(decodeJwt(same.body.access_token).payload.scp, 'Tasks.Read');
    // Down-scoping stays at the same hop: the narrowed token goes on to Docs API.
    const onward = await obo(server, 'tasks-api', same.body.access_token, 'api://docs/Docs.Read');
    assert.equal(onward.status, 200, JSON.stringify(onward.body));
  });

  test('one audience per token: a repeated audience or resource never reaches the exchange; two APIs are invalid_target', async () => {
    const alice = await userToken(server);
    const auth = { authorization: basic('tasks-api', secretOf('tasks-api')) };
    const base = `grant_type=${encodeURIComponent(TOKEN_EXCHANGE_GRANT)}&subject_token_type=${encodeURIComponent(ACCESS_TOKEN_TYPE)}&subject_token=${alice}`;
    for (const [name, first, second] of [['audience', 'docs-api', 'audit-api'], ['resource', 'api://docs', 'api://docs']] as const) {
      const { result, events } = await auditDuring(server, () =>
        server.post('/contoso/oauth2/v2.0/token', `${base}&${name}=${encodeURIComponent(first)}&${name}=${encodeURIComponent(second)}`, { ...auth, 'content-type': 'application/x-www-form-urlencoded' }),
      );
      // Refused by the form parser (RFC 6749 §3.2), one place for every endpoint: invalid_request, AADSTS90014.
      expectRefusal(result, 'invalid_request', 90014, new RegExp(`The parameter '${name}' is included more than once`));
      assert.equal(events.length, 0, 'no exchange was decided');
    }
    const two = await exchange(server, 'tasks-api', { subject_token: alice, audience: 'docs-api', resource: 'api://audit' });
    expectRefusal(two, 'invalid_target', 500011, /name two APIs, 'api:\/\/docs' and 'api:\/\/audit'/);
    assert.equal(lastAudit(server).rule, 'downstream-scopes');
    const one = await exchange(server, 'tasks-api', { subject_token: alice, audience: 'docs-api', resource: 'api://docs', scope: 'Docs.Read' });
    assert.equal(one.status, 200, JSON.stringify(one.body));
  });

  test('the depth limit per API: Reports API’s own maxDepth 1 refuses a second hop the tenant’s 4 allows (delegation-depth, 9100001)', async () => {
    const alice = await userToken(server);
    const direct = await obo(server, 'tasks-api', alice, 'api://reports/Reports.Read');
    assert.equal(direct.status, 200, JSON.stringify(direct.body));
    const docs = await obo(server, 'tasks-api', alice, 'api://docs/Docs.Read');
    assert.equal(docs.status, 200, JSON.stringify(docs.body));
    const reports = await obo(server, 'docs-api', docs.body.access_token, 'api://reports/Reports.Read');
    expectRefusal(reports, 'invalid_grant', 9100001, /chain of 2 APIs \(tasks-api → docs-api\), more than API 'api:\/\/reports' allows \(delegation.maxDepth 1\)/);
    assert.equal(lastAudit(server).rule, 'delegation-depth');
  });
});

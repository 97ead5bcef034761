/**
 * The On-Behalf-Of exchange with real clients, unchanged, over HTTPS:
 * - @azure/msal-node `acquireTokenOnBehalfOf` (the Microsoft form), its cache, its
 *   `InteractionRequiredAuthError` carrying the claims challenge;
 * - openid-client v6 `genericGrantRequest` (RFC 8693);
 * - the three-hop chain tasks-web → tasks-api → docs-api → audit-api, and the `act` it leaves;
 * - the tokens verified by jose through the published JWKS (an independent implementation).
 */
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { ConfidentialClientApplication, InteractionRequiredAuthError } from '@azure/msal-node';
import * as oidc from 'openid-client';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { startTestServer, decodeJwt, type TestServer } from './harness.ts';
import { ACCESS_TOKEN_TYPE, TOKEN_EXCHANGE_GRANT, auditDuring, exchange, lastAudit, obo, oboConfigure, secretOf, userToken } from './obo-fixtures.ts';

let server: TestServer;
let metadata: string;
let jwks: ReturnType<typeof createRemoteJWKSet>;
let issuer: string;

before(async () => {
  server = await startTestServer({ tls: 'dev', configure: oboConfigure });
  metadata = await (await fetch(`${server.url}/contoso/v2.0/.well-known/openid-configuration`)).text();
  jwks = createRemoteJWKSet(new URL(`${server.url}/contoso/discovery/v2.0/keys`));
  issuer = `${server.url}/contoso/v2.0`;
});
after(() => server.close());

function msal(clientId: string): ConfidentialClientApplication {
  return new ConfidentialClientApplication({
    auth: {
      clientId,
      clientSecret: secretOf(clientId),
      authority: `${server.url}/contoso`,
      knownAuthorities: [new URL(server.url).host],
      authorityMetadata: metadata,
    },
  });
}

describe('@azure/msal-node acquireTokenOnBehalfOf', () => {
  test('tasks-api gets a docs-api token for alice; the second call is served from MSAL’s cache', async () => {
    const assertion = await userToken(server);
    const cca = msal('tasks-api');
    const { result: first, events } = await auditDuring(server, () => cca.acquireTokenOnBehalfOf({ oboAssertion: assertion, scopes: ['api://docs/Docs.Read'] }));
    assert.ok(first);
    assert.equal(first.tokenType, 'Bearer');
    assert.equal(first.fromCache, false);
    assert.deepEqual(first.scopes, ['api://docs/Docs.Read']);

    const { payload, protectedHeader } = await jwtVerify(first.accessToken, jwks, { issuer, audience: 'docs-api', typ: 'at+jwt' });
    const incoming = decodeJwt(assertion).payload;
    assert.equal(protectedHeader.typ, 'at+jwt');
    assert.equal(payload.scp, 'Docs.Read');
    assert.equal(payload.oid, incoming.oid);
    assert.equal(payload.tid, incoming.tid);
    assert.notEqual(payload.sub, incoming.sub, 'sub is pairwise per API');
    assert.equal(payload.azp, 'tasks-api');
    assert.equal(payload.client_id, 'tasks-api');
    assert.deepEqual(payload.act, { sub: 'tasks-api', client_id: 'tasks-api' });
    assert.deepEqual(payload.amr, ['pwd']);
    assert.equal(payload.auth_time, incoming.auth_time);
    assert.equal(payload.ver, '2.0');
    assert.ok(typeof payload.uti === 'string' && typeof payload.jti === 'string');

    // One request reached the token service, and it was audited without the token.
    assert.equal(events.length, 1);
    const [event] = events;
    assert.equal(event!.decision, 'allow');
    assert.equal(event!.rule, 'issue');
    assert.equal(event!.form, 'on_behalf_of');
    assert.equal(event!.user, incoming.oid);
    assert.equal(event!.caller, 'tasks-api');
    assert.equal(event!.api, 'docs-api');
    assert.deepEqual(event!.scopesGranted, ['Docs.Read']);
    assert.deepEqual(event!.chain, ['tasks-api']);
    assert.equal(event!.subjectTokenId, incoming.jti);
    assert.equal(event!.issuedTokenId, payload.jti);
    assert.ok(!JSON.stringify(event).includes(assertion.split('.')[2]!), 'the audit event never carries the token');

    const { result: second, events: again } = await auditDuring(server, () => cca.acquireTokenOnBehalfOf({ oboAssertion: assertion, scopes: ['api://docs/Docs.Read'] }));
    assert.equal(second?.fromCache, true);
    assert.equal(second?.accessToken, first.accessToken);
    assert.equal(again.length, 0, 'no second request reached the token service');
  });

  test('the raw response is what MSAL needs: Bearer, scope as requested, ext_expires_in, client_info', async () => {
    const assertion = await userToken(server);
    const response = await obo(server, 'tasks-api', assertion, 'api://docs/Docs.Read openid profile', { client_info: '1' });
    assert.equal(response.status, 200, JSON.stringify(response.body));
    const body = response.body;
    assert.equal(body.token_type, 'Bearer');
    assert.equal(body.scope, 'api://docs/Docs.Read');
    assert.equal(body.expires_in, 3600);
    assert.equal(body.ext_expires_in, 3600);
    assert.equal(body.refresh_token, undefined, 'no offline_access, no refresh token');
    assert.equal(response.headers.get('cache-control'), 'no-store');
    const incoming = decodeJwt(assertion).payload;
    assert.deepEqual(JSON.parse(Buffer.from(body.client_info, 'base64url').toString()), { uid: incoming.oid, utid: incoming.tid });
    assert.deepEqual(Object.keys(body).sort(), ['access_token', 'client_info', 'expires_in', 'ext_expires_in', 'scope', 'token_type']);
  });

  test('.default: every scope the caller holds consent for, and MSAL’s cache still matches', async () => {
    const assertion = await userToken(server, { amr: ['pwd', 'mfa'] });
    const cca = msal('tasks-api');
    const first = await cca.acquireTokenOnBehalfOf({ oboAssertion: assertion, scopes: ['api://docs/.default'] });
    assert.ok(first);
    assert.equal(decodeJwt(first.accessToken).payload.scp, 'Docs.Read Docs.Write');
    const second = await cca.acquireTokenOnBehalfOf({ oboAssertion: assertion, scopes: ['api://docs/.default'] });
    assert.equal(second?.fromCache, true);
  });

  test('Docs.Write after a password-only sign-in: InteractionRequiredAuthError with the claims challenge', async () => {
    const assertion = await userToken(server);
    await assert.rejects(msal('tasks-api').acquireTokenOnBehalfOf({ oboAssertion: assertion, scopes: ['api://docs/Docs.Write'] }), (error: unknown) => {
      assert.ok(error instanceof InteractionRequiredAuthError, `got ${(error as Error).name}`);
      assert.equal(error.errorCode, 'interaction_required');
      assert.equal(error.subError, 'basic_action');
      assert.match(error.errorMessage, /AADSTS50076/);
      assert.deepEqual(JSON.parse(error.claims), { access_token: { amr: { essential: true, values: ['mfa'] } } });
      return true;
    });
    const event = lastAudit(server);
    assert.equal(event.decision, 'refuse');
    assert.equal(event.rule, 'conditional-access');
    assert.equal(event.entraCode, 50076);
  });

  test('the raw interaction_required response: claims (a JSON string) and suberror', async () => {
    const response = await obo(server, 'tasks-api', await userToken(server), 'api://docs/Docs.Write');
    assert.equal(response.status, 400);
    assert.equal(response.body.error, 'interaction_required');
    assert.equal(response.body.suberror, 'basic_action');
    assert.deepEqual(response.body.error_codes, [50076]);
    assert.equal(response.body.claims, '{"access_token":{"amr":{"essential":true,"values":["mfa"]}}}');
  });

  test('Docs.Write after a sign-in with MFA succeeds', async () => {
    const assertion = await userToken(server, { amr: ['pwd', 'mfa'] });
    const result = await msal('tasks-api').acquireTokenOnBehalfOf({ oboAssertion: assertion, scopes: ['api://docs/Docs.Write'] });
    assert.ok(result);
    const { payload } = await jwtVerify(result.accessToken, jwks, { issuer, audience: 'docs-api' });
    assert.equal(payload.scp, 'Docs.Write');
    assert.deepEqual(payload.amr, ['pwd', 'mfa']);
  });

  test('reports-api holds no consent: consent_required (65001) with the admin-consent URL', async () => {
    const assertion = await userToken(server, { api: 'api://reports', scopes: ['Reports.Read'], clientId: 'tasks-api' });
    const response = await obo(server, 'reports-api', assertion, 'api://docs/Docs.Read');
    assert.equal(response.status, 400);
    assert.equal(response.body.error, 'invalid_grant');
    assert.equal(response.body.suberror, 'consent_required');
    assert.deepEqual(response.body.error_codes, [65001]);
    assert.ok(response.body.error_description.includes(`${server.url}/contoso/adminconsent?client_id=reports-api`), response.body.error_description);

    await assert.rejects(msal('reports-api').acquireTokenOnBehalfOf({ oboAssertion: assertion, scopes: ['api://docs/Docs.Read'] }), (error: any) => {
      assert.equal(error.subError, 'consent_required');
      assert.match(error.errorMessage, /AADSTS65001/);
      return true;
    });
  });

  test('indexer’s app-only token cannot be exchanged (7000114)', async () => {
    const cc = await msal('indexer').acquireTokenByClientCredential({ scopes: ['api://docs/.default'] });
    assert.ok(cc);
    // Addressed to docs-api, so docs-api is the only one who could try to exchange it.
    const response = await obo(server, 'docs-api', cc.accessToken, 'api://audit/Audit.Write');
    assert.equal(response.status, 400);
    assert.equal(response.body.error, 'invalid_grant');
    assert.deepEqual(response.body.error_codes, [7000114]);
    assert.equal(lastAudit(server).rule, 'assertion-delegated');
  });
});

describe('openid-client RFC 8693 token exchange', () => {
  test('genericGrantRequest exchanges alice’s token for a docs-api token', async () => {
    const config = await oidc.discovery(new URL(issuer), 'tasks-api', undefined, oidc.ClientSecretPost(secretOf('tasks-api')));
    assert.ok(config.serverMetadata().grant_types_supported?.includes(TOKEN_EXCHANGE_GRANT));
    const subject = await userToken(server);
    const tokens = await oidc.genericGrantRequest(config, TOKEN_EXCHANGE_GRANT, {
      subject_token: subject,
      subject_token_type: ACCESS_TOKEN_TYPE,
      audience: 'api://docs',
      scope: 'Docs.Read',
    });
    assert.equal(tokens.token_type, 'bearer');
    assert.equal(tokens.issued_token_type, ACCESS_TOKEN_TYPE);
    assert.equal(tokens.scope, 'api://docs/Docs.Read');
    assert.equal(tokens.expires_in, 3600);
    const { payload } = await jwtVerify(tokens.access_token, jwks, { issuer, audience: 'docs-api', typ: 'at+jwt' });
    assert.deepEqual(payload.act, { sub: 'tasks-api', client_id: 'tasks-api' });
    assert.equal(lastAudit(server).form, 'token_exchange');
  });

  test('resource (RFC 8707) with no scope means every consented scope; requested_token_type jwt is honoured', async () => {
    const subject = await userToken(server, { amr: ['pwd', 'mfa'] });
    const response = await exchange(server, 'tasks-api', { subject_token: subject, resource: 'api://docs', requested_token_type: 'urn:ietf:params:oauth:token-type:jwt' });
    assert.equal(response.status, 200, JSON.stringify(response.body));
    assert.equal(response.body.issued_token_type, 'urn:ietf:params:oauth:token-type:jwt');
    assert.equal(response.body.scope, 'api://docs/Docs.Read api://docs/Docs.Write');
  });

  test('an actor_token that is the caller’s own app-only token is accepted; someone else’s is not', async () => {
    const subject = await userToken(server);
    const own = await msal('tasks-api').acquireTokenByClientCredential({ scopes: ['api://audit/.default'] });
    const accepted = await exchange(server, 'tasks-api', { subject_token: subject, audience: 'docs-api', scope: 'Docs.Read', actor_token: own!.accessToken, actor_token_type: ACCESS_TOKEN_TYPE });
    assert.equal(accepted.status, 200, JSON.stringify(accepted.body));
    // The act names the actor the actor_token represents: its sub (the service principal), iss and client_id.
    const actorClaims = decodeJwt(own!.accessToken).payload;
    assert.deepEqual(decodeJwt(accepted.body.access_token).payload.act, { sub: actorClaims.sub, iss: issuer, client_id: 'tasks-api' });

    const indexer = await msal('indexer').acquireTokenByClientCredential({ scopes: ['api://docs/.default'] });
    const response = await exchange(server, 'tasks-api', { subject_token: subject, audience: 'docs-api', actor_token: indexer!.accessToken, actor_token_type: ACCESS_TOKEN_TYPE });
    assert.equal(response.status, 400);
    assert.equal(response.body.error, 'invalid_request');
    assert.deepEqual(response.body.error_codes, [9100005]);
    assert.match(response.body.error_description, /^AADSTS9100005: The actor_token does not represent the authenticated client 'tasks-api' \(its client_id is 'indexer'\)/);
    assert.equal(lastAudit(server).rule, 'actor-token');

    const untyped = await exchange(server, 'tasks-api', { subject_token: subject, audience: 'docs-api', actor_token: own!.accessToken });
    assert.equal(untyped.body.error, 'invalid_request');
    assert.match(untyped.body.error_description, /actor_token_type/);
  });

  test('RFC 8693 errors: invalid_target for an unknown audience, invalid_request for a bad subject token', async () => {
    const subject = await userToken(server);
    const target = await exchange(server, 'tasks-api', { subject_token: subject, audience: 'api://nowhere' });
    assert.equal(target.status, 400);
    assert.equal(target.body.error, 'invalid_target');
    assert.deepEqual(target.body.error_codes, [500011]);

    const two = await exchange(server, 'tasks-api', { subject_token: subject, audience: 'api://docs', resource: 'api://audit' });
    assert.equal(two.body.error, 'invalid_target');

    const wrongScope = await exchange(server, 'tasks-api', { subject_token: subject, audience: 'api://docs', scope: 'api://audit/Audit.Write' });
    assert.equal(wrongScope.body.error, 'invalid_target');

    const forged = await exchange(server, 'tasks-api', { subject_token: `${subject.slice(0, -4)}AAAA`, audience: 'api://docs' });
    assert.equal(forged.status, 400);
    assert.equal(forged.body.error, 'invalid_request');
    assert.deepEqual(forged.body.error_codes, [50013]);

    const elsewhere = await exchange(server, 'docs-api', { subject_token: subject, audience: 'api://audit' });
    assert.equal(elsewhere.body.error, 'invalid_request');
    assert.deepEqual(elsewhere.body.error_codes, [50013]);

    const type = await exchange(server, 'tasks-api', { subject_token: subject, subject_token_type: 'urn:ietf:params:oauth:token-type:saml2', audience: 'api://docs' });
    assert.equal(type.body.error, 'invalid_request');
    assert.match(type.body.error_description, /subject_token_type .* is not supported/);

    const requested = await exchange(server, 'tasks-api', { subject_token: subject, audience: 'api://docs', requested_token_type: 'urn:ietf:params:oauth:token-type:refresh_token' });
    assert.equal(requested.body.error, 'invalid_request');

    const noType = await server.post('/contoso/oauth2/v2.0/token', { grant_type: TOKEN_EXCHANGE_GRANT, subject_token: subject, audience: 'api://docs', client_id: 'tasks-api', client_secret: secretOf('tasks-api') });
    assert.equal(noType.body.error, 'invalid_request');
    assert.match(noType.body.error_description, /subject_token_type/);
  });
});

describe('the chain', () => {
  test('three hops: the audit-api token’s act names docs-api, then tasks-api', async () => {
    const alice = await userToken(server);
    const docs = await msal('tasks-api').acquireTokenOnBehalfOf({ oboAssertion: alice, scopes: ['api://docs/Docs.Read'] });
    assert.ok(docs);
    const audit = await msal('docs-api').acquireTokenOnBehalfOf({ oboAssertion: docs.accessToken, scopes: ['api://audit/Audit.Write'] });
    assert.ok(audit);
    const { payload } = await jwtVerify(audit.accessToken, jwks, { issuer, audience: 'audit-api', typ: 'at+jwt' });
    assert.deepEqual(payload.act, { sub: 'docs-api', client_id: 'docs-api', act: { sub: 'tasks-api', client_id: 'tasks-api' } });
    assert.equal(payload.azp, 'docs-api');
    assert.equal(payload.scp, 'Audit.Write');
    assert.equal(payload.oid, decodeJwt(alice).payload.oid);
    assert.deepEqual(payload.amr, ['pwd']);
    assert.deepEqual(lastAudit(server).chain, ['docs-api', 'tasks-api']);
  });
});

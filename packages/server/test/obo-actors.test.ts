/**
 * Who may act for whom (issue 14), through the real token endpoint: an API's `delegation.mayAct`
 * (RFC 8693 `may_act`) in the configuration and the admin API, the `may_act` claim of the tokens
 * addressed to it, and the `may-act` rule's exact refusals in both exchange forms, with the rule
 * the audit event names.
 */
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { ConfidentialClientApplication, InteractionRequiredAuthError } from '@azure/msal-node';
import { startTestServer, decodeJwt, basic, type TestServer } from './harness.ts';
import { auditDuring, exchange, lastAudit, obo, oboConfigure, secretOf, userToken } from './obo-fixtures.ts';
import { admin, adminConfigure, adminToken, assertProblem } from './admin-kit.ts';

let server: TestServer;

before(async () => {
  server = await startTestServer({
    tls: 'dev',
    configure(raw: any) {
      oboConfigure(raw);
      adminConfigure(raw);
      raw.tenants = raw.tenants.filter((t: any, i: number) => i === 0 || t.applications.some((a: any) => a.clientId === 'ops'));
      const contoso = raw.tenants[0];
      contoso.delegation = { maxDepth: 4 };
      // Tasks API exchanges its users' tokens only for the Docs API; Reports API (its backend) for any API.
      contoso.applications.find((a: any) => a.clientId === 'tasks-api').delegation = {
        mayAct: [{ client: 'tasks-api', downstream: ['api://docs'] }, { client: 'reports-api' }],
      };
      contoso.consents.push({ client: 'reports-api', resource: 'api://docs', scopes: ['Docs.Read'], for: 'all' });
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

describe('may_act: the API a token is addressed to says which middle tiers may exchange it', () => {
  test('a token addressed to Tasks API carries may_act naming both middle tiers (RFC 8693 §4.4 objects)', async () => {
    const claims = decodeJwt(await userToken(server)).payload;
    assert.deepEqual(claims.may_act, [{ sub: 'tasks-api', client_id: 'tasks-api' }, { sub: 'reports-api', client_id: 'reports-api' }]);
    // Docs API registers nothing: its tokens carry no may_act.
    const docs = await obo(server, 'tasks-api', await userToken(server), 'api://docs/Docs.Read');
    assert.equal(docs.status, 200, JSON.stringify(docs.body));
    assert.equal(decodeJwt(docs.body.access_token).payload.may_act, undefined);
    assert.equal(lastAudit(server).rule, 'issue');
  });

  test('Tasks API for a downstream API its entry does not name: invalid_grant 9100004 (may-act); RFC 8693: invalid_request', async () => {
    const alice = await userToken(server);
    const { result, events } = await auditDuring(server, () => obo(server, 'tasks-api', alice, 'api://reports/Reports.Read'));
    expectRefusal(
      result,
      'invalid_grant',
      9100004,
      /^AADSTS9100004: API 'api:\/\/tasks' allows 'tasks-api' to exchange the tokens addressed to it only for 'api:\/\/docs', not for 'api:\/\/reports' \(rule may-act\)\. The API a user's token is addressed to says which middle tiers may exchange it, and for which downstream APIs \(its delegation\.mayAct\)\.$/,
    );
    assert.equal(events.length, 1);
    assert.equal(events[0]!.rule, 'may-act');
    assert.equal(events[0]!.decision, 'refuse');
    assert.equal(events[0]!.entraCode, 9100004);
    assert.equal(events[0]!.api, 'reports-api');
    const rfc = await exchange(server, 'tasks-api', { subject_token: alice, audience: 'api://reports' });
    expectRefusal(rfc, 'invalid_request', 9100004, /only for 'api:\/\/docs', not for 'api:\/\/reports' \(rule may-act\)/);
  });

  test('Reports API, which Tasks API names, exchanges a token addressed to Tasks API; the new act names it', async () => {
    const alice = await userToken(server);
    const response = await obo(server, 'reports-api', alice, 'api://docs/Docs.Read');
    assert.equal(response.status, 200, JSON.stringify(response.body));
    const claims = decodeJwt(response.body.access_token).payload;
    assert.equal(claims.aud, 'docs-api');
    assert.equal(claims.azp, 'reports-api');
    assert.deepEqual(claims.act, { sub: 'reports-api', client_id: 'reports-api' });
    assert.equal(lastAudit(server).rule, 'issue');
    const rfc = await exchange(server, 'reports-api', { subject_token: alice, audience: 'docs-api', scope: 'Docs.Read' });
    assert.equal(rfc.status, 200, JSON.stringify(rfc.body));
  });

  test('a middle tier Tasks API does not name: refused by may-act (9100004), in both forms', async () => {
    const alice = await userToken(server);
    const named = /^AADSTS9100004: API 'api:\/\/tasks' allows 'tasks-api', 'reports-api' to exchange the tokens addressed to it: 'docs-api' may not act for the user with them \(rule may-act\)\./;
    expectRefusal(await obo(server, 'docs-api', alice, 'api://audit/Audit.Write'), 'invalid_grant', 9100004, named);
    assert.equal(lastAudit(server).rule, 'may-act');
    expectRefusal(await exchange(server, 'docs-api', { subject_token: alice, audience: 'audit-api' }), 'invalid_request', 9100004, named);
    assert.equal(lastAudit(server).rule, 'may-act');
  });

  test('without a registration, only the addressee exchanges (assertion-audience, 50013, as before)', async () => {
    const docs = await obo(server, 'tasks-api', await userToken(server), 'api://docs/Docs.Read');
    const response = await obo(server, 'audit-api', docs.body.access_token, 'api://reports/Reports.Read');
    expectRefusal(response, 'invalid_grant', 50013, /audience is 'docs-api' but the caller is 'audit-api'/);
    assert.equal(lastAudit(server).rule, 'assertion-audience');
  });

  test('the admin API shows, sets and keeps delegation.mayAct; the next token and exchange follow it', async () => {
    const token = await adminToken(server);
    const read = await admin(server, 'GET', '/applications/tasks-api', { token });
    assert.deepEqual(read.body.delegation, { mayAct: [{ client: 'tasks-api', downstream: ['docs-api'] }, { client: 'reports-api' }] });
    let etag = read.headers.get('etag')!;
    // References are checked as the configuration's are; nothing is written.
    const bad = await admin(server, 'PATCH', '/applications/tasks-api', { token, body: { delegation: { mayAct: [{ client: 'tasks-web' }] } }, headers: { 'if-match': etag } });
    assertProblem(bad, 400, 'invalid-body');
    assert.match(bad.body.detail, /delegation\.mayAct\.0\.client: 'tasks-web' is a public client, which cannot exchange tokens/);
    // Another field alone keeps the rules.
    const renamed = await admin(server, 'PATCH', '/applications/tasks-api', { token, body: { name: 'Tasks API (renamed)' }, headers: { 'if-match': etag } });
    assert.equal(renamed.status, 200, JSON.stringify(renamed.body));
    assert.deepEqual(renamed.body.delegation, read.body.delegation);
    etag = renamed.headers.get('etag')!;
    const changed = await admin(server, 'PATCH', '/applications/tasks-api', {
      token,
      body: { delegation: { maxDepth: 3, mayAct: [{ client: 'tasks-api', downstream: ['api://docs', 'api://reports'] }] } },
      headers: { 'if-match': etag },
    });
    assert.equal(changed.status, 200, JSON.stringify(changed.body));
    assert.deepEqual(changed.body.delegation, { maxDepth: 3, mayAct: [{ client: 'tasks-api', downstream: ['docs-api', 'reports-api'] }] });

    const alice = await userToken(server);
    assert.deepEqual(decodeJwt(alice).payload.may_act, { sub: 'tasks-api', client_id: 'tasks-api' });
    const reports = await obo(server, 'tasks-api', alice, 'api://reports/Reports.Read');
    assert.equal(reports.status, 200, JSON.stringify(reports.body));
    // Reports API is no longer named: the registration and the token's own may_act both say so.
    expectRefusal(await obo(server, 'reports-api', alice, 'api://docs/Docs.Read'), 'invalid_grant', 9100004, /allows 'tasks-api' to exchange the tokens addressed to it: 'reports-api' may not act/);

    // null removes the rules: no may_act on the next token; the maxDepth is gone too. Put them back for the tests below.
    const removed = await admin(server, 'PATCH', '/applications/tasks-api', { token, body: { delegation: null }, headers: { 'if-match': changed.headers.get('etag')! } });
    assert.equal(removed.status, 200, JSON.stringify(removed.body));
    assert.equal(removed.body.delegation, undefined);
    assert.equal(decodeJwt(await userToken(server)).payload.may_act, undefined);
    const restored = await admin(server, 'PATCH', '/applications/tasks-api', { token, body: { delegation: changed.body.delegation }, headers: { 'if-match': removed.headers.get('etag')! } });
    assert.deepEqual(restored.body.delegation, changed.body.delegation);
    assertProblem(await admin(server, 'PATCH', '/applications/tasks-api', { token, body: { delegation: {} }, headers: { 'if-match': restored.headers.get('etag')! } }), 400, 'invalid-body');
  });
});

describe('RFC 8693 actor_token: validated as the caller’s own app token from this tenant, and named in act', () => {
  const TYPE = 'urn:ietf:params:oauth:token-type:access_token';
  /** An app-only token of `clientId` from client credentials, through the token endpoint. */
  async function appToken(clientId: string, scope: string): Promise<string> {
    const response = await server.post('/contoso/oauth2/v2.0/token', { grant_type: 'client_credentials', scope }, { authorization: basic(clientId, secretOf(clientId)) });
    assert.equal(response.status, 200, JSON.stringify(response.body));
    return response.body.access_token;
  }

  test('the caller’s own token: the new act names it with its sub, iss and client_id; the audit chain names the API', async () => {
    const own = await appToken('tasks-api', 'api://audit/.default');
    const subject = await userToken(server);
    const { result: response, events } = await auditDuring(server, () =>
      exchange(server, 'tasks-api', { subject_token: subject, audience: 'docs-api', scope: 'Docs.Read', actor_token: own, actor_token_type: TYPE }),
    );
    assert.equal(response.status, 200, JSON.stringify(response.body));
    const actor = decodeJwt(own).payload;
    assert.deepEqual(decodeJwt(response.body.access_token).payload.act, { sub: actor.sub, iss: `${server.url}/contoso/v2.0`, client_id: 'tasks-api' });
    assert.equal(actor.idtyp, 'app');
    assert.deepEqual(events[0]!.chain, ['tasks-api']);
    assert.equal(events[0]!.rule, 'issue');
  });

  test('another application’s token, or a user’s token: invalid_request 9100005 (actor-token)', async () => {
    const indexer = await appToken('indexer', 'api://docs/.default');
    const other = await exchange(server, 'tasks-api', { subject_token: await userToken(server), audience: 'docs-api', actor_token: indexer, actor_token_type: TYPE });
    expectRefusal(other, 'invalid_request', 9100005, /^AADSTS9100005: The actor_token does not represent the authenticated client 'tasks-api' \(its client_id is 'indexer'\): pass an app-only token the client obtained for itself, or omit actor_token \(the authenticated client is the actor\) \(rule actor-token\)\.$/);
    assert.equal(lastAudit(server).rule, 'actor-token');
    const user = await userToken(server);
    const delegated = await exchange(server, 'tasks-api', { subject_token: user, audience: 'docs-api', actor_token: user, actor_token_type: TYPE });
    expectRefusal(delegated, 'invalid_request', 9100005, /^AADSTS9100005: The actor_token is not an application token \(idtyp 'app'\)/);
    assert.equal(lastAudit(server).rule, 'actor-token');
  });

  test('another tenant’s token, an altered one, an expired one: invalid_request with the exact code', async () => {
    const foreign = await adminToken(server, { tenant: 'fabrikam' });
    const fromFabrikam = await exchange(server, 'tasks-api', { subject_token: await userToken(server), audience: 'docs-api', actor_token: foreign, actor_token_type: TYPE });
    expectRefusal(fromFabrikam, 'invalid_request', 50013, /^AADSTS50013: The actor_token is signed with a key tenant 'contoso' does not publish/);
    assert.equal(lastAudit(server).rule, 'assertion-signature');

    const own = await appToken('tasks-api', 'api://audit/.default');
    const [h, p, sig] = own.split('.');
    const altered = `${h}.${p}.${sig!.slice(0, -4)}${sig!.slice(-4) === 'AAAA' ? 'BBBB' : 'AAAA'}`;
    const badSignature = await exchange(server, 'tasks-api', { subject_token: await userToken(server), audience: 'docs-api', actor_token: altered, actor_token_type: TYPE });
    expectRefusal(badSignature, 'invalid_request', 50013, /^AADSTS50013: The actor_token's signature is invalid/);

    server.advance(3600 + 120);
    try {
      const fresh = await userToken(server);
      const expired = await exchange(server, 'tasks-api', { subject_token: fresh, audience: 'docs-api', actor_token: own, actor_token_type: TYPE });
      expectRefusal(expired, 'invalid_request', 500133, /^AADSTS500133: The actor_token expired at .*: obtain a fresh one \(rule actor-token\)\.$/);
      assert.equal(lastAudit(server).rule, 'actor-token');
    } finally {
      server.advance(-(3600 + 120));
    }
  });

  test('actor_token_type without actor_token, and actor_token without its type: invalid_request (RFC 8693 §2.1)', async () => {
    const subject = await userToken(server);
    const own = await appToken('tasks-api', 'api://audit/.default');
    const typeOnly = await exchange(server, 'tasks-api', { subject_token: subject, audience: 'docs-api', actor_token_type: TYPE });
    expectRefusal(typeOnly, 'invalid_request', 900144, /^AADSTS900144: 'actor_token_type' was given without 'actor_token' \(RFC 8693 §2\.1: it must not be included otherwise\)\.$/);
    assert.equal(lastAudit(server).rule, 'request');
    const tokenOnly = await exchange(server, 'tasks-api', { subject_token: subject, audience: 'docs-api', actor_token: own });
    expectRefusal(tokenOnly, 'invalid_request', 900144, /^AADSTS900144: The request body must contain the 'actor_token_type' parameter: 'urn:ietf:params:oauth:token-type:access_token'\.$/);
    const unsupported = await exchange(server, 'tasks-api', { subject_token: subject, audience: 'docs-api', actor_token: own, actor_token_type: 'urn:ietf:params:oauth:token-type:id_token' });
    expectRefusal(unsupported, 'invalid_request', 900144, /^AADSTS900144: The actor_token_type 'urn:ietf:params:oauth:token-type:id_token' is not supported/);
  });
});

describe('the claims parameter: a claims challenge the middle tier passes on is applied to the exchange', () => {
  const ACRS_C1 = '{"access_token":{"acrs":{"essential":true,"value":"c1"}}}';
  let metadata: string;
  before(async () => {
    metadata = await (await fetch(`${server.url}/contoso/v2.0/.well-known/openid-configuration`)).text();
  });
  const msal = (clientId: string, clientCapabilities?: string[]) =>
    new ConfidentialClientApplication({
      auth: { clientId, clientSecret: secretOf(clientId), authority: `${server.url}/contoso`, knownAuthorities: [new URL(server.url).host], authorityMetadata: metadata, ...(clientCapabilities ? { clientCapabilities } : {}) },
    });

  test('MSAL acquireTokenOnBehalfOf({ claims }) with an acrs step-up the password-only sign-in lacks: InteractionRequiredAuthError carrying the challenge (claims-challenge, 50076)', async () => {
    const assertion = await userToken(server);
    const { result, events } = await auditDuring(server, () =>
      msal('tasks-api').acquireTokenOnBehalfOf({ oboAssertion: assertion, scopes: ['api://docs/Docs.Read'], claims: ACRS_C1 }).then(
        () => assert.fail('expected a refusal'),
        (error: unknown) => error,
      ),
    );
    const error = await result;
    assert.ok(error instanceof InteractionRequiredAuthError, `got ${(error as Error).name}: ${(error as Error).message}`);
    assert.equal(error.errorCode, 'interaction_required');
    assert.equal(error.subError, 'basic_action');
    assert.match(error.errorMessage, /AADSTS50076: The claims challenge passed on with this exchange \(the claims parameter\) asks for multi-factor authentication \(authentication context 'c1'\) for API 'api:\/\/docs', which the user's sign-in behind the token being exchanged does not give \(rule claims-challenge\)\./);
    // The challenge comes back as MSAL sent it: our access_token demand, plus the id_token members
    // (login_hint, signin_state …, essential: false) msal-node adds to every claims request.
    assert.deepEqual(JSON.parse(error.claims).access_token, JSON.parse(ACRS_C1).access_token);
    assert.equal(events.length, 1);
    assert.equal(events[0]!.rule, 'claims-challenge');
    assert.equal(events[0]!.error, 'interaction_required');
    assert.equal(events[0]!.entraCode, 50076);
    // Without the claims, the same request is allowed: the challenge, not the policy, asked for MFA.
    const plain = await msal('tasks-api').acquireTokenOnBehalfOf({ oboAssertion: assertion, scopes: ['api://docs/Docs.Read'] });
    assert.ok(plain?.accessToken);
  });

  test('after an MFA sign-in the same challenge is met; client capabilities (xms_cc) demand nothing', async () => {
    const assertion = await userToken(server, { amr: ['pwd', 'mfa'] });
    const met = await msal('tasks-api').acquireTokenOnBehalfOf({ oboAssertion: assertion, scopes: ['api://docs/Docs.Read'], claims: ACRS_C1 });
    assert.equal(decodeJwt(met!.accessToken).payload.aud, 'docs-api');
    assert.equal(lastAudit(server).rule, 'issue');
    const capable = await msal('tasks-api', ['cp1']).acquireTokenOnBehalfOf({ oboAssertion: await userToken(server), scopes: ['api://docs/Docs.Read'] });
    assert.ok(capable?.accessToken);
  });

  test('a sign-in older than the challenge’s nbf: interaction_required 70044; in the RFC 8693 form the same', async () => {
    const assertion = await userToken(server, { authTime: server.ctx.now() - 600 });
    const nbf = `{"access_token":{"nbf":{"essential":true,"value":"${server.ctx.now() - 60}"}}}`;
    const response = await obo(server, 'tasks-api', assertion, 'api://docs/Docs.Read', { claims: nbf });
    assert.equal(response.status, 400, JSON.stringify(response.body));
    assert.equal(response.body.error, 'interaction_required');
    assert.deepEqual(response.body.error_codes, [70044]);
    assert.equal(response.body.suberror, 'basic_action');
    assert.equal(response.body.claims, nbf);
    assert.match(response.body.error_description, /^AADSTS70044: The claims challenge passed on with this exchange \(the claims parameter\) asks for a sign-in at or after .* \(rule claims-challenge\)/);
    const rfc = await exchange(server, 'tasks-api', { subject_token: assertion, audience: 'docs-api', scope: 'Docs.Read', claims: ACRS_C1 });
    assert.equal(rfc.body.error, 'interaction_required');
    assert.deepEqual(rfc.body.error_codes, [50076]);
    assert.equal(rfc.body.claims, ACRS_C1);
    assert.equal(lastAudit(server).rule, 'claims-challenge');
  });

  test('a malformed claims parameter: invalid_request 900144 naming what is wrong (rule request), never a 500', async () => {
    const assertion = await userToken(server);
    for (const [claims, message] of [
      ['{"access_token":', 'is not valid JSON'],
      ['[]', 'must be a JSON object'],
      ['{"access_token":{"acrs":"c1"}}', "entry 'access_token.acrs' must be null or an object"],
      ['{"refresh_token":{}}', "has the member 'refresh_token'; only access_token, id_token, userinfo are allowed"],
      ['{"access_token":{"nbf":{"essential":true,"value":"soon"}}}', "'access_token.nbf.value' must be epoch seconds"],
      [JSON.stringify({ access_token: { x: { value: 'y'.repeat(5000) } } }), 'is larger than 4096 bytes'],
    ] as const) {
      const response = await obo(server, 'tasks-api', assertion, 'api://docs/Docs.Read', { claims });
      expectRefusal(response, 'invalid_request', 900144, new RegExp(`^AADSTS900144: The claims parameter ${message.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} \\(OpenID Connect Core §5\\.5\\)\\.$`));
      assert.equal(lastAudit(server).rule, 'request');
    }
    const rfc = await exchange(server, 'tasks-api', { subject_token: assertion, audience: 'docs-api', claims: '{' });
    expectRefusal(rfc, 'invalid_request', 900144, /^AADSTS900144: The claims parameter is not valid JSON/);
  });
});

describe('introspection exposes the full chain and may_act', () => {
  const introspect = (clientId: string, token: string) =>
    server.post('/contoso/oauth2/v2.0/introspect', { token }, { authorization: basic(clientId, secretOf(clientId)) });

  test('a two-hop token: act as issued, actors outermost first with sub, client_id and iss (the hop an actor_token named); may_act of the token’s API', async () => {
    const cc = await server.post('/contoso/oauth2/v2.0/token', { grant_type: 'client_credentials', scope: 'api://audit/.default' }, { authorization: basic('tasks-api', secretOf('tasks-api')) });
    const actorToken = cc.body.access_token as string;
    const alice = await userToken(server, { amr: ['pwd', 'mfa'] });
    const docs = await exchange(server, 'tasks-api', { subject_token: alice, audience: 'docs-api', scope: 'Docs.Read', actor_token: actorToken, actor_token_type: 'urn:ietf:params:oauth:token-type:access_token' });
    assert.equal(docs.status, 200, JSON.stringify(docs.body));
    const audit = await obo(server, 'docs-api', docs.body.access_token, 'api://audit/Audit.Write offline_access');
    assert.equal(audit.status, 200, JSON.stringify(audit.body));
    const issuer = `${server.url}/contoso/v2.0`;
    const tasksSp = decodeJwt(actorToken).payload.sub;

    const answer = await introspect('audit-api', audit.body.access_token);
    assert.equal(answer.status, 200, JSON.stringify(answer.body));
    assert.equal(answer.body.active, true);
    assert.deepEqual(answer.body.act, { sub: 'docs-api', client_id: 'docs-api', act: { sub: tasksSp, iss: issuer, client_id: 'tasks-api' } });
    assert.deepEqual(answer.body.actors, [
      { sub: 'docs-api', client_id: 'docs-api' },
      { sub: tasksSp, client_id: 'tasks-api', iss: issuer },
    ]);
    assert.equal(answer.body.may_act, undefined, 'Audit API registers no mayAct');
    // The refresh token the second hop got keeps the chain, and says so.
    const refresh = await introspect('docs-api', audit.body.refresh_token);
    assert.equal(refresh.body.active, true);
    assert.deepEqual(refresh.body.actors, answer.body.actors);

    // A user's token for Tasks API: no chain yet, and who may exchange it.
    const own = await introspect('tasks-api', alice);
    assert.equal(own.body.active, true);
    assert.equal(own.body.actors, undefined);
    assert.deepEqual(own.body.may_act, decodeJwt(alice).payload.may_act);
    assert.ok(own.body.may_act !== undefined);
  });
});

/**
 * Bad input at the sign-in endpoints, one test each: the exact error and status, never a 500, and
 * nothing written (no code, no consent, no interaction) when the request is refused.
 */
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, basic, type TestServer } from './harness.ts';
import { ALICE, CAROL, BOB, Browser, WEB, advance, authorizeUrl, formOf, pageKind, pkce, redeem, runFlow, webParams } from './signin-kit.ts';

const PORTAL = { clientId: 'portal', secret: 'portal-Demo-secret-0123456789', redirectUri: 'http://127.0.0.1:7000/callback' };
const EVIL_NAME = '<script>alert("owned")</script> Evil & Co';

let server: TestServer;

before(async () => {
  server = await startTestServer({
    tls: 'dev',
    configure(raw) {
      const t = raw.tenants[0];
      t.consents = t.consents.filter((c: any) => c.client !== 'tasks-web');
      // A confidential client registered with the same redirect URI as tasks-web (code theft across clients).
      t.applications.push({ name: 'Portal', clientId: PORTAL.clientId, secrets: [PORTAL.secret], redirectUris: [PORTAL.redirectUri] });
      t.applications.push({ name: EVIL_NAME, clientId: 'evil-app', public: true, redirectUris: ['http://127.0.0.1:7000/evil'] });
      t.consents.push({ client: 'portal', resource: 'api://tasks', scopes: ['Tasks.ReadWrite'], for: 'all' });
    },
  });
});
after(() => server.close());

/** A page that is an error page: status, AADSTS code, and no redirect. */
function assertErrorPage(hop: { status: number; location?: string | undefined; body: string; headers: Headers }, status: number, code: number) {
  assert.equal(hop.status, status, hop.body.slice(0, 500));
  assert.equal(hop.location, undefined, 'never redirected');
  assert.equal(pageKind(hop as never), 'error');
  assert.match(hop.body, new RegExp(`AADSTS${code}`));
  assert.match(hop.headers.get('content-security-policy')!, /frame-ancestors 'none'/);
}

/** The error parameters a redirect to the client carries. */
function redirectError(hop: { status: number; location?: string | undefined }) {
  assert.equal(hop.status, 302);
  const url = new URL(hop.location!);
  assert.equal(`${url.origin}${url.pathname}`, WEB.redirectUri);
  return Object.fromEntries(url.searchParams);
}

async function codeFor(user = BOB, extra: Record<string, string> = {}) {
  const browser = new Browser();
  const { verifier, challenge } = pkce();
  const flow = await runFlow(browser, server, authorizeUrl(server, webParams(challenge, extra)), { user });
  assert.ok(flow.params?.code, flow.seen.join(','));
  return { code: flow.params.code, verifier, browser };
}

describe('PKCE', () => {
  test('a public client without code_challenge: invalid_request 9002325 to the client, no interaction started', async () => {
    const browser = new Browser();
    const hop = await browser.get(authorizeUrl(server, webParams('', { code_challenge: '', code_challenge_method: '' })));
    const params = redirectError(hop);
    assert.equal(params.error, 'invalid_request');
    assert.match(params.error_description!, /^AADSTS9002325:/);
    assert.equal(params.state, 'st-123');
    assert.deepEqual(browser.cookieNames(), [], 'nothing started');
  });

  test("code_challenge_method=plain (or absent, which means plain): invalid_request 900144", async () => {
    const { challenge } = pkce();
    for (const method of ['plain', undefined]) {
      const params = webParams(challenge);
      if (method === undefined) delete params.code_challenge_method;
      else params.code_challenge_method = method;
      const error = redirectError(await new Browser().get(authorizeUrl(server, params)));
      assert.equal(error.error, 'invalid_request');
      assert.match(error.error_description!, /^AADSTS900144:.*S256/);
    }
  });

  test('wrong or missing code_verifier: invalid_grant 501481, and the code is not burned', async () => {
    const { code, verifier } = await codeFor();
    const wrong = await redeem(server, code, pkce().verifier);
    assert.equal(wrong.status, 400);
    assert.equal(wrong.body.error, 'invalid_grant');
    assert.deepEqual(wrong.body.error_codes, [501481]);
    const missing = await redeem(server, code, '');
    assert.deepEqual(missing.body.error_codes, [501481]);
    const right = await redeem(server, code, verifier);
    assert.equal(right.status, 200);
  });
});

describe('authorization codes', () => {
  test('replayed: invalid_grant 54005, and the refresh token the first redemption got is revoked', async () => {
    const { code, verifier } = await codeFor();
    const first = await redeem(server, code, verifier);
    assert.equal(first.status, 200);
    const replay = await redeem(server, code, verifier);
    assert.equal(replay.status, 400);
    assert.equal(replay.body.error, 'invalid_grant');
    assert.deepEqual(replay.body.error_codes, [54005]);
    const refresh = await server.post('/contoso/oauth2/v2.0/token', { grant_type: 'refresh_token', client_id: WEB.clientId, refresh_token: first.body.refresh_token });
    assert.equal(refresh.status, 400);
    assert.equal(refresh.body.error, 'invalid_grant');
    assert.deepEqual(refresh.body.error_codes, [70000]);
  });

  test('redeemed by another client: invalid_grant 70000; with another (or no) redirect_uri: 500112; nothing burned', async () => {
    const { code, verifier } = await codeFor();
    const other = await server.post('/contoso/oauth2/v2.0/token', { grant_type: 'authorization_code', code, redirect_uri: PORTAL.redirectUri, code_verifier: verifier }, { authorization: basic(PORTAL.clientId, PORTAL.secret) });
    assert.equal(other.status, 400);
    assert.equal(other.body.error, 'invalid_grant');
    assert.deepEqual(other.body.error_codes, [70000]);
    const otherUri = await redeem(server, code, verifier, { redirect_uri: 'http://127.0.0.1:7000/evil' });
    assert.equal(otherUri.status, 400);
    assert.deepEqual(otherUri.body.error_codes, [500112]);
    const noUri = await server.post('/contoso/oauth2/v2.0/token', { grant_type: 'authorization_code', client_id: WEB.clientId, code, code_verifier: verifier });
    assert.deepEqual(noUri.body.error_codes, [500112]);
    assert.equal((await redeem(server, code, verifier)).status, 200, 'the legitimate client still redeems it');
  });

  test('expired: invalid_grant 70008; unknown or malformed: 70000', async () => {
    const { code, verifier } = await codeFor();
    advance(server, 601);
    const expired = await redeem(server, code, verifier);
    assert.equal(expired.status, 400);
    assert.deepEqual(expired.body.error_codes, [70008]);
    assert.deepEqual((await redeem(server, 'A'.repeat(43), verifier)).body.error_codes, [70000]);
    assert.deepEqual((await redeem(server, 'not a code', verifier)).body.error_codes, [70000]);
  });
});

describe('redirect URIs', () => {
  const attempts = [
    'https://evil/',
    'http://127.0.0.1:7000/callback/../x',
    'http://127.0.0.1:7000/callback/%2e%2e/x',
    'http://127.0.0.1:7000@evil/',
    'http://127.0.0.1:7000@evil/callback',
    'http://evil@127.0.0.1:7000/callback',
    'http://127.0.0.1:7000/callback?x=1',
    'http://127.0.0.1:7000/callback#x',
    'http://127.0.0.1:7000/Callback',
    'HTTP://127.0.0.1:7000/callback',
    'http://127.0.0.1:7000/callback/',
    'http://127.0.0.1:7000/callback ',
    'http://127.0.0.1:7001/callback',
    'javascript:alert(1)',
  ];
  test('mismatches and open-redirect attempts: an error page (400, AADSTS50011), never a redirect, nothing started', async () => {
    const { challenge } = pkce();
    for (const redirect of attempts) {
      const browser = new Browser();
      const hop = await browser.get(authorizeUrl(server, webParams(challenge, { redirect_uri: redirect })));
      assertErrorPage(hop, 400, 50011);
      assert.deepEqual(browser.cookieNames(), [], redirect);
    }
    // The same through POST /authorize.
    const post = await new Browser().post(`${server.url}/contoso/oauth2/v2.0/authorize`, webParams(challenge, { redirect_uri: 'https://evil/' }));
    assertErrorPage(post, 400, 50011);
  });

  test('an unknown client, a missing redirect_uri, an unknown tenant, a duplicated parameter: error pages', async () => {
    const { challenge } = pkce();
    assertErrorPage(await new Browser().get(authorizeUrl(server, webParams(challenge, { client_id: 'nobody' }))), 400, 700016);
    const params = webParams(challenge);
    delete params.redirect_uri;
    assertErrorPage(await new Browser().get(authorizeUrl(server, params)), 400, 900144);
    assertErrorPage(await new Browser().get(authorizeUrl(server, webParams(challenge), 'nowhere')), 400, 90002);
    const duplicated = `${authorizeUrl(server, webParams(challenge))}&redirect_uri=${encodeURIComponent('https://evil/')}`;
    assertErrorPage(await new Browser().get(duplicated), 400, 90014);
  });

  test('other errors go to the registered URI with state: response_type=token, unknown scope', async () => {
    const { challenge } = pkce();
    const token = redirectError(await new Browser().get(authorizeUrl(server, webParams(challenge, { response_type: 'token' }))));
    assert.equal(token.error, 'unsupported_response_type');
    assert.equal(token.state, 'st-123');
    assert.equal(token.iss, `${server.url}/contoso/v2.0`);
    const scope = redirectError(await new Browser().get(authorizeUrl(server, webParams(challenge, { scope: 'openid api://tasks/Nope' }))));
    assert.equal(scope.error, 'invalid_scope');
    assert.match(scope.error_description!, /^AADSTS70011:/);
  });
});

describe('pages', () => {
  test('the consent POST without its CSRF token: 403, nothing granted; a forwarded sign-in link does not open in another browser', async () => {
    const browser = new Browser();
    const { challenge } = pkce();
    const consent = await runFlow(browser, server, authorizeUrl(server, webParams(challenge)), { user: ALICE, stopAt: 'consent' });
    const { action, fields } = formOf(consent.hop);
    const missing = await browser.post(action, { decision: 'accept' });
    assertErrorPage(missing, 403, 900144);
    const wrong = await browser.post(action, { decision: 'accept', csrf_token: 'x'.repeat(43) });
    assertErrorPage(wrong, 403, 900144);
    const oid = (await server.ctx.store.getUserByName('contoso', ALICE.username))!.oid;
    assert.deepEqual(await server.ctx.store.listConsents({ tenantId: 'contoso', clientId: 'tasks-web', principal: oid }), []);

    const other = new Browser();
    assertErrorPage(await other.post(action, { ...fields, decision: 'accept' }), 400, 50089);
    assertErrorPage(await other.get(consent.hop.url), 400, 50089);
    assert.equal((await browser.post(action, { ...fields, decision: 'accept' })).status, 303, 'the right browser with the token is fine');
  });

  test('a disabled user with the right password: AADSTS50057 on the sign-in page, no session', async () => {
    const browser = new Browser();
    const { challenge } = pkce();
    const flow = await runFlow(browser, server, authorizeUrl(server, webParams(challenge)), { user: CAROL });
    assert.equal(flow.hop.status, 400);
    assert.equal(pageKind(flow.hop), 'login');
    assert.match(flow.hop.body, /AADSTS50057/);
    assert.equal(browser.cookie('__Host-baton-session-contoso'), undefined);
  });

  test("an application's display name with a <script> tag is rendered escaped on the consent page", async () => {
    const browser = new Browser();
    const { challenge } = pkce();
    const params = webParams(challenge, { client_id: 'evil-app', redirect_uri: 'http://127.0.0.1:7000/evil', login_hint: '"><script>alert(2)</script>' });
    const login = await runFlow(browser, server, authorizeUrl(server, params), { stopAt: 'login' });
    assert.doesNotMatch(login.hop.body, /<script>alert/);
    assert.match(login.hop.body, /value="&quot;&gt;&lt;script&gt;alert\(2\)&lt;\/script&gt;"/);
    const consent = await runFlow(browser, server, authorizeUrl(server, { ...params, login_hint: '' }), { user: BOB, stopAt: 'consent' });
    assert.equal(pageKind(consent.hop), 'consent');
    assert.doesNotMatch(consent.hop.body, /<script>alert/);
    assert.match(consent.hop.body, /&lt;script&gt;alert\(&quot;owned&quot;\)&lt;\/script&gt; Evil &amp; Co/);
    const csp = consent.hop.headers.get('content-security-policy')!;
    assert.match(csp, /script-src 'none'/);
    assert.match(csp, /style-src 'self'/);
    assert.match(csp, /frame-ancestors 'none'/);
    assert.equal(consent.hop.headers.get('x-frame-options'), 'DENY');
  });

  test('the SSO cookie is __Host-, HttpOnly, Secure, SameSite=Lax; its value is not the sid', async () => {
    const browser = new Browser();
    const { challenge } = pkce();
    const login = await runFlow(browser, server, authorizeUrl(server, webParams(challenge)), { stopAt: 'login' });
    const { action, fields } = formOf(login.hop);
    const hop = await browser.post(action, { ...fields, username: BOB.username, password: BOB.password });
    const cookie = hop.headers.getSetCookie().find((c) => c.startsWith('__Host-baton-session-contoso='))!;
    assert.match(cookie, /; Path=\/; HttpOnly; Secure; SameSite=Lax$/);
    assert.doesNotMatch(cookie, /Domain=/);
    assert.match(browser.cookie('__Host-baton-session-contoso')!, /^[0-9a-f-]{36}\.[A-Za-z0-9_-]{43}$/);
  });
});

describe('oversized and malformed input', () => {
  test('oversized parameters: state (not echoed), nonce, login_hint, a huge URL, a huge body, a huge username', async () => {
    const { challenge } = pkce();
    const state = redirectError(await new Browser().get(authorizeUrl(server, webParams(challenge, { state: 's'.repeat(3000) }))));
    assert.equal(state.error, 'invalid_request');
    assert.equal(state.state, undefined, 'an oversized state is not echoed');
    const nonce = redirectError(await new Browser().get(authorizeUrl(server, webParams(challenge, { nonce: 'n'.repeat(5000) }))));
    assert.equal(nonce.error, 'invalid_request');
    const hint = redirectError(await new Browser().get(authorizeUrl(server, webParams(challenge, { login_hint: 'h'.repeat(1000) }))));
    assert.equal(hint.error, 'invalid_request');

    const huge = await fetch(authorizeUrl(server, webParams(challenge, { junk: 'j'.repeat(40_000) })), { redirect: 'manual' });
    assert.ok(huge.status === 414 || huge.status === 431 || huge.status === 400 || huge.status === 302, `status ${huge.status}`);
    assert.notEqual(huge.status, 500);

    const body = await fetch(`${server.url}/contoso/oauth2/v2.0/authorize`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: `client_id=tasks-web&junk=${'j'.repeat(70_000)}`, redirect: 'manual' });
    assert.equal(body.status, 413);

    const browser = new Browser();
    const login = await runFlow(browser, server, authorizeUrl(server, webParams(challenge)), { stopAt: 'login' });
    const { action, fields } = formOf(login.hop);
    const long = await browser.post(action, { ...fields, username: 'u'.repeat(10_000), password: 'p' });
    assert.equal(long.status, 400);
    assert.equal(pageKind(long), 'login');
  });

  test('the token endpoint: missing code, missing refresh_token, a malformed refresh token', async () => {
    const missing = await server.post('/contoso/oauth2/v2.0/token', { grant_type: 'authorization_code', client_id: WEB.clientId, redirect_uri: WEB.redirectUri });
    assert.equal(missing.status, 400);
    assert.equal(missing.body.error, 'invalid_request');
    const noRefresh = await server.post('/contoso/oauth2/v2.0/token', { grant_type: 'refresh_token', client_id: WEB.clientId });
    assert.equal(noRefresh.body.error, 'invalid_request');
    const bad = await server.post('/contoso/oauth2/v2.0/token', { grant_type: 'refresh_token', client_id: WEB.clientId, refresh_token: 'x'.repeat(5000) });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.error, 'invalid_grant');
  });
});

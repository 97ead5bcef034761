/**
 * Sign-in, black box over HTTPS: authorize → pages → code → tokens, SSO, prompt/max_age/claims,
 * conditional access, consent (user, combined, admin), form_post, UserInfo, refresh rotation,
 * logout, revocation, introspection.
 */
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { ACR_MFA } from '@baton/core';
import { startTestServer, decodeJwt, basic, type TestServer } from './harness.ts';
import { ALICE, BOB, Browser, WEB, advance, authorizeUrl, formOf, pageKind, pkce, redeem, runFlow, webParams } from './signin-kit.ts';

const DANA = { username: 'dana@contoso.test', password: 'dana-Demo-pass-1', totp: 'JBSWY3DPEHPK3PXP' };
const ERIN = { username: 'erin@contoso.test', password: 'erin-Demo-pass-1' };
const PORTAL = { clientId: 'portal', secret: 'portal-Demo-secret-0123456789', redirectUri: 'https://portal.example/cb' };
const KIOSK = { clientId: 'kiosk', secret: 'kiosk-Demo-secret-0123456789', redirectUri: 'https://kiosk.example/cb' };

let server: TestServer;
let jwks: ReturnType<typeof createRemoteJWKSet>;
let issuer: string;

before(async () => {
  server = await startTestServer({
    tls: 'dev',
    configure(raw) {
      const t = raw.tenants[0];
      // No admin consent for the web app: users see the consent page (and combined consent).
      t.consents = t.consents.filter((c: any) => c.client !== 'tasks-web' && c.client !== 'tasks-api');
      t.users.push({ username: DANA.username, displayName: 'Dana Diaz', password: DANA.password, totpSecret: DANA.totp, roles: ['admin'] });
      t.users.push({ username: ERIN.username, displayName: 'Erin Evans', password: ERIN.password, email: 'erin@contoso.test' });
      t.applications.push({
        name: 'Contoso Portal',
        clientId: PORTAL.clientId,
        secrets: [PORTAL.secret],
        redirectUris: [PORTAL.redirectUri],
        requiredAccess: [
          { resource: 'api://docs', scopes: ['Docs.Read', 'Docs.Write'], roles: ['Docs.ReadAll'] },
          { resource: 'api://reports', scopes: ['Reports.Read'] },
        ],
      });
      t.applications.push({ name: 'Contoso Kiosk', clientId: KIOSK.clientId, secrets: [KIOSK.secret], redirectUris: [KIOSK.redirectUri], requiredAccess: [{ resource: 'api://docs', scopes: ['Docs.Read'], roles: ['Docs.ReadAll'] }] });
      t.consents.push({ client: 'portal', resource: 'api://reports', scopes: ['Reports.Read'], for: 'all' });
      t.consents.push({ client: 'portal', resource: 'api://audit', scopes: ['Audit.Write'], for: 'all' });
      t.policies.push({ name: 'MFA for reports', resources: ['api://reports'], require: { mfa: true } });
      t.policies.push({ name: 'No portal on audit', resources: ['api://audit'], clients: ['portal'], require: { block: true } });
    },
  });
  issuer = `${server.url}/contoso/v2.0`;
  jwks = createRemoteJWKSet(new URL(`${server.url}/contoso/discovery/v2.0/keys`));
});
after(() => server.close());

async function signedIn(user: { username: string; password: string; totp?: string } = ALICE, extra: Record<string, string> = {}) {
  const browser = new Browser();
  const { verifier, challenge } = pkce();
  const flow = await runFlow(browser, server, authorizeUrl(server, webParams(challenge, extra)), { user });
  assert.ok(flow.params?.code, `a code (pages: ${flow.seen.join(', ')}; ${flow.hop.body.slice(0, 300)})`);
  const tokens = await redeem(server, flow.params.code, verifier, { client_info: '1' });
  assert.equal(tokens.status, 200, JSON.stringify(tokens.body));
  return { browser, flow, tokens: tokens.body, verifier };
}

describe('authorization code flow', () => {
  test('first sign-in: password, consent (with combined consent for the API), code, tokens', async () => {
    const { flow, tokens } = await signedIn(BOB);
    assert.deepEqual(flow.seen, ['login', 'consent']);
    assert.equal(flow.params!.state, 'st-123');
    assert.equal(flow.params!.iss, issuer, 'RFC 9207 iss in the authorization response');

    assert.equal(tokens.token_type, 'Bearer');
    assert.equal(tokens.scope, 'api://tasks/Tasks.ReadWrite openid profile offline_access');
    assert.match(tokens.refresh_token, /^[A-Za-z0-9_-]{43}$/);
    const at = await jwtVerify(tokens.access_token, jwks, { issuer, audience: 'tasks-api', typ: 'at+jwt' });
    assert.equal(at.payload.scp, 'Tasks.ReadWrite');
    assert.equal(at.payload.azp, 'tasks-web');
    assert.deepEqual(at.payload.amr, ['pwd']);
    assert.equal(at.payload.acr, '1');
    assert.equal(typeof at.payload.sid, 'string');
    assert.equal(typeof at.payload.auth_time, 'number');
    const id = await jwtVerify(tokens.id_token, jwks, { issuer, audience: 'tasks-web', typ: 'JWT' });
    assert.equal(id.protectedHeader.alg, 'ES256');
    assert.equal(id.payload.nonce, 'n-456');
    assert.equal(id.payload.preferred_username, BOB.username);
    assert.equal(id.payload.name, 'Bob Brown');
    assert.equal(id.payload.oid, at.payload.oid);
    assert.equal(id.payload.tid, at.payload.tid);
    assert.equal(id.payload.sid, at.payload.sid);
    assert.equal(id.payload.auth_time, at.payload.auth_time);
    assert.notEqual(id.payload.sub, at.payload.sub, 'sub is pairwise: the client and the API see different values');
    assert.equal(id.payload.at_hash, createHash('sha256').update(tokens.access_token).digest().subarray(0, 16).toString('base64url'));
    assert.deepEqual(JSON.parse(Buffer.from(tokens.client_info, 'base64url').toString()), { uid: at.payload.oid, utid: at.payload.tid });

    // Combined consent: tasks-api now holds Docs.Read (not the admin-only Docs.Write) for Bob.
    const grants = await server.ctx.store.listConsents({ tenantId: 'contoso', principal: String(at.payload.oid) });
    assert.deepEqual(grants.map((g) => [g.clientId, g.resource, g.scopes]).sort(), [
      ['tasks-api', 'docs-api', ['Docs.Read']],
      ['tasks-web', 'tasks-api', ['Tasks.ReadWrite']],
    ]);
  });

  test('SSO: the same browser gets a code without any page; prompt=none works; another browser gets login_required', async () => {
    const { browser } = await signedIn(BOB);
    const { challenge } = pkce();
    const again = await runFlow(browser, server, authorizeUrl(server, webParams(challenge)));
    assert.deepEqual(again.seen, []);
    assert.ok(again.params?.code);
    const silent = await runFlow(browser, server, authorizeUrl(server, webParams(challenge, { prompt: 'none' })));
    assert.ok(silent.params?.code);
    const stranger = await runFlow(new Browser(), server, authorizeUrl(server, webParams(challenge, { prompt: 'none' })));
    assert.equal(stranger.params?.error, 'login_required');
    assert.match(stranger.params!.error_description!, /^AADSTS50058:/);
    assert.equal(stranger.params?.state, 'st-123');
  });

  test('prompt=login and max_age force the password again; prompt=consent shows consent again; login_hint prefills', async () => {
    const { browser, tokens } = await signedIn(BOB);
    const firstAuthTime = decodeJwt(tokens.id_token).payload.auth_time;
    const { verifier, challenge } = pkce();
    advance(server, 5);
    const relogin = await runFlow(browser, server, authorizeUrl(server, webParams(challenge, { prompt: 'login' })), { user: BOB });
    assert.deepEqual(relogin.seen, ['login']);
    const fresh = await redeem(server, relogin.params!.code!, verifier);
    assert.ok(decodeJwt(fresh.body.id_token).payload.auth_time > firstAuthTime, 'auth_time moved');
    advance(server, 5);
    assert.deepEqual((await runFlow(browser, server, authorizeUrl(server, webParams(challenge, { max_age: '1' })), { user: BOB })).seen, ['login']);
    assert.deepEqual((await runFlow(browser, server, authorizeUrl(server, webParams(challenge, { max_age: '3600' })), { user: BOB })).seen, []);
    assert.deepEqual((await runFlow(browser, server, authorizeUrl(server, webParams(challenge, { prompt: 'consent' })), { user: BOB })).seen, ['consent']);
    const hinted = await runFlow(new Browser(), server, authorizeUrl(server, webParams(challenge, { login_hint: 'bob@contoso.test' })), { stopAt: 'login' });
    assert.match(hinted.hop.body, /id="username" name="username"[^>]*value="bob@contoso.test"/);
  });

  test('prompt=select_account: pick the current account, or use another', async () => {
    const { browser } = await signedIn(BOB);
    const { challenge } = pkce();
    const same = await runFlow(browser, server, authorizeUrl(server, webParams(challenge, { prompt: 'select_account' })), { account: 'current' });
    assert.deepEqual(same.seen, ['select']);
    assert.ok(same.params?.code);
    const other = await runFlow(browser, server, authorizeUrl(server, webParams(challenge, { prompt: 'select_account' })), { account: 'other', user: ALICE });
    assert.deepEqual(other.seen.slice(0, 2), ['select', 'login']);
    assert.ok(other.params?.code);
  });

  test('step-up: a claims challenge asks for the second factor; the new tokens say mfa', async () => {
    const { browser } = await signedIn(ALICE);
    const claims = JSON.stringify({ access_token: { amr: { essential: true, values: ['mfa'] } } });
    const { verifier, challenge } = pkce();
    const stepUp = await runFlow(browser, server, authorizeUrl(server, webParams(challenge, { claims })));
    assert.deepEqual(stepUp.seen, ['mfa'], 'the session is reused: only the missing factor is asked');
    const tokens = await redeem(server, stepUp.params!.code!, verifier);
    const at = decodeJwt(tokens.body.access_token).payload;
    assert.deepEqual(at.amr, ['pwd', 'mfa']);
    assert.equal(at.acr, ACR_MFA);
    // acr_values=<mfa> is now satisfied by the session.
    assert.deepEqual((await runFlow(browser, server, authorizeUrl(server, webParams(challenge, { acr_values: ACR_MFA })))).seen, []);
  });

  test('conditional access at sign-in: an MFA policy on the API asks for the second factor; a block policy refuses (53003)', async () => {
    const browser = new Browser();
    const params = (scope: string) => ({ client_id: PORTAL.clientId, redirect_uri: PORTAL.redirectUri, response_type: 'code', scope, state: 's9' });
    const reports = await runFlow(browser, server, authorizeUrl(server, params('openid api://reports/Reports.Read')), { user: ALICE });
    assert.deepEqual(reports.seen, ['login', 'mfa']);
    const code = reports.params!.code!;
    const tokens = await server.post('/contoso/oauth2/v2.0/token', { grant_type: 'authorization_code', code, redirect_uri: PORTAL.redirectUri }, { authorization: basic(PORTAL.clientId, PORTAL.secret) });
    assert.equal(tokens.status, 200, JSON.stringify(tokens.body));
    assert.deepEqual(decodeJwt(tokens.body.access_token).payload.amr, ['pwd', 'mfa']);
    assert.equal(tokens.body.refresh_token, undefined, 'no offline_access, no refresh token');

    const blocked = await runFlow(browser, server, authorizeUrl(server, params('openid api://audit/Audit.Write')));
    assert.equal(blocked.params?.error, 'access_denied');
    assert.match(blocked.params!.error_description!, /^AADSTS53003:/);
    assert.equal(blocked.params?.state, 's9');

    const bob = await runFlow(new Browser(), server, authorizeUrl(server, params('openid api://reports/Reports.Read')), { user: BOB });
    assert.equal(bob.params?.error, 'access_denied', 'MFA required but Bob has no second factor');
    assert.match(bob.params!.error_description!, /^AADSTS50079:/);
  });

  test('response_mode=form_post: an auto-submitting form to the redirect URI, with a same-origin script under CSP', async () => {
    const browser = new Browser();
    const { challenge } = pkce();
    const flow = await runFlow(browser, server, authorizeUrl(server, webParams(challenge, { response_mode: 'form_post' })), { user: BOB });
    assert.equal(pageKind(flow.hop), 'form_post');
    const form = formOf(flow.hop);
    assert.equal(form.action, WEB.redirectUri);
    assert.ok(form.fields.code);
    assert.equal(form.fields.state, 'st-123');
    const csp = flow.hop.headers.get('content-security-policy')!;
    assert.match(csp, /script-src 'self'/);
    assert.match(csp, /form-action 'self' http:\/\/127\.0\.0\.1:7000/);
    assert.match(csp, /frame-ancestors 'none'/);
    assert.doesNotMatch(flow.hop.body, /<script>/, 'no inline script');
    const script = await fetch(`${server.url}/assets/baton/form-post.js`);
    assert.equal(script.status, 200);
    assert.match(script.headers.get('content-type')!, /javascript/);
  });
});

describe('consent', () => {
  test('admin-only scopes: a user gets "Need admin approval" (Cancel → access_denied 90094); an admin consents for the organization', async () => {
    const params = { client_id: PORTAL.clientId, redirect_uri: PORTAL.redirectUri, response_type: 'code', scope: 'openid api://docs/Docs.Write', state: 'sx' };
    const user = await runFlow(new Browser(), server, authorizeUrl(server, params), { user: ALICE });
    assert.deepEqual(user.seen.slice(0, 1), ['login']);
    assert.ok(user.seen.includes('admin_required'));
    assert.equal(user.params?.error, 'access_denied');
    assert.match(user.params!.error_description!, /^AADSTS90094:.*adminconsent\?client_id=portal/);

    const admin = new Browser();
    const page = await runFlow(admin, server, authorizeUrl(server, params), { user: DANA, stopAt: 'consent' });
    assert.match(page.hop.body, /Consent on behalf of your organization/);
    const { action, fields } = formOf(page.hop);
    const without = await admin.post(action, { ...fields, decision: 'accept' });
    assert.equal(without.status, 303, 'accepting without ticking the box grants nothing');
    assert.deepEqual([...(await server.ctx.directories.get('contoso'))!.tenantConsent('portal', 'docs-api')], []);
    const accepted = await admin.post(action, { ...fields, decision: 'accept', organization: '1' });
    assert.equal(accepted.status, 303);
    const done = await runFlow(admin, server, accepted.location!, {});
    assert.ok(done.params?.code);
    assert.deepEqual([...(await server.ctx.directories.get('contoso'))!.tenantConsent('portal', 'docs-api')], ['Docs.Write']);
    // Now everyone may: Alice gets her code without an approval page (MFA policy on Docs.Write applies).
    const later = await runFlow(new Browser(), server, authorizeUrl(server, params), { user: ALICE });
    assert.deepEqual(later.seen, ['login', 'mfa']);
    assert.ok(later.params?.code);
  });

  test('/{tenant}/adminconsent: an administrator grants the app its permissions (delegated and application) for everyone', async () => {
    const url = `${server.url}/contoso/adminconsent?client_id=portal&redirect_uri=${encodeURIComponent(PORTAL.redirectUri)}&state=ac1`;
    const notAdmin = await runFlow(new Browser(), server, url, { user: BOB });
    assert.equal(notAdmin.hop.status, 403);
    assert.match(notAdmin.hop.body, /AADSTS90094/);

    const admin = await runFlow(new Browser(), server, url, { user: DANA });
    assert.deepEqual(admin.seen, ['login', 'consent']);
    assert.equal(admin.params?.admin_consent, 'True');
    assert.equal(admin.params?.state, 'ac1');
    const directory = (await server.ctx.directories.get('contoso'))!;
    assert.equal(admin.params?.tenant, directory.tenant.tid);
    assert.deepEqual([...directory.tenantConsent('portal', 'docs-api')].sort(), ['Docs.Read', 'Docs.Write']);
    assert.deepEqual([...directory.applicationRoles('portal', 'docs-api')], ['Docs.ReadAll']);

    const bad = await new Browser().get(`${server.url}/contoso/adminconsent?client_id=portal&redirect_uri=https%3A%2F%2Fevil%2F`);
    assert.equal(bad.status, 400);
    assert.equal(bad.location, undefined);
    assert.match(bad.body, /AADSTS50011/);
  });

  test("/{tenant}/adminconsent: accepting after the administrator's sessions were revoked grants nothing and asks for a new sign-in", async () => {
    const url = `${server.url}/contoso/adminconsent?client_id=kiosk&redirect_uri=${encodeURIComponent(KIOSK.redirectUri)}&state=ac2`;
    const browser = new Browser();
    const page = await runFlow(browser, server, url, { user: DANA, stopAt: 'consent' });
    assert.deepEqual(page.seen, ['login', 'consent']);
    const { action, fields } = formOf(page.hop);
    const dana = (await server.ctx.store.getUserByName('contoso', DANA.username))!;
    // The administrator's sessions are revoked (Entra's revokeSignInSessions) while the consent page is open.
    await server.ctx.store.putUser({ ...dana, revokedBefore: server.ctx.now() + 1 });
    try {
      const accepted = await browser.post(action, { ...fields, decision: 'accept' });
      assert.equal(accepted.status, 303);
      assert.equal(new URL(accepted.location!, server.url).pathname, new URL(action, server.url).pathname.replace(/\/consent$/, ''), 'back to the interaction, not to the client');
      const directory = (await server.ctx.directories.get('contoso'))!;
      assert.deepEqual([...directory.tenantConsent('kiosk', 'docs-api')], [], 'no consent written');
      assert.deepEqual([...directory.applicationRoles('kiosk', 'docs-api')], [], 'no role assigned');
      const again = await browser.get(accepted.location!);
      assert.equal(pageKind(again), 'login', 'the interaction asks for a sign-in, as its GET does');
    } finally {
      await server.ctx.store.putUser(dana);
    }
  });

  test('Cancel on the consent page: access_denied 65004 to the client, nothing granted', async () => {
    const { challenge } = pkce();
    const flow = await runFlow(new Browser(), server, authorizeUrl(server, webParams(challenge)), { user: ERIN, consent: 'cancel' });
    assert.equal(flow.params?.error, 'access_denied');
    assert.match(flow.params!.error_description!, /^AADSTS65004:/);
    const oid = (await server.ctx.store.getUserByName('contoso', ERIN.username))!.oid;
    assert.deepEqual(await server.ctx.store.listConsents({ tenantId: 'contoso', principal: oid }), []);
  });
});

describe('UserInfo', () => {
  test('a sign-in with only OIDC scopes gets a token for UserInfo; sub matches the ID token; an API token is refused', async () => {
    const { tokens } = await signedIn(ERIN, { scope: 'openid profile email' });
    const at = decodeJwt(tokens.access_token).payload;
    assert.equal(at.aud, `${server.url}/oidc/userinfo`);
    assert.equal(at.scp, 'openid profile email');
    const response = await fetch(`${server.url}/oidc/userinfo`, { headers: { authorization: `Bearer ${tokens.access_token}` } });
    assert.equal(response.status, 200);
    const info = (await response.json()) as Record<string, unknown>;
    assert.equal(info.sub, decodeJwt(tokens.id_token).payload.sub);
    assert.equal(info.email, 'erin@contoso.test');
    assert.equal(info.preferred_username, ERIN.username);
    const post = await server.post('/oidc/userinfo', { access_token: tokens.access_token });
    assert.equal(post.status, 200);

    const api = await signedIn(ERIN);
    const refused = await fetch(`${server.url}/oidc/userinfo`, { headers: { authorization: `Bearer ${api.tokens.access_token}` } });
    assert.equal(refused.status, 401);
    assert.match(refused.headers.get('www-authenticate')!, /error="invalid_token"/);
    const none = await fetch(`${server.url}/oidc/userinfo`);
    assert.equal(none.status, 401);
    assert.equal(none.headers.get('www-authenticate'), 'Bearer realm="baton"');
  });
});

describe('refresh tokens', () => {
  test('rotation on every use; reuse revokes the family (70000); bound to the client', async () => {
    const { tokens } = await signedIn(BOB);
    const refresh = (token: string, extra: Record<string, string> = {}) =>
      server.post('/contoso/oauth2/v2.0/token', { grant_type: 'refresh_token', client_id: WEB.clientId, refresh_token: token, ...extra });
    const first = await refresh(tokens.refresh_token, { scope: 'api://tasks/Tasks.ReadWrite openid offline_access' });
    assert.equal(first.status, 200, JSON.stringify(first.body));
    assert.notEqual(first.body.refresh_token, tokens.refresh_token);
    assert.ok(first.body.id_token, 'openid was granted: a new ID token');
    assert.deepEqual(decodeJwt(first.body.access_token).payload.amr, ['pwd'], 'sign-in facts carried unchanged');
    const other = await server.post('/contoso/oauth2/v2.0/token', { grant_type: 'refresh_token', refresh_token: first.body.refresh_token }, { authorization: basic(PORTAL.clientId, PORTAL.secret) });
    assert.equal(other.status, 400);
    assert.equal(other.body.error, 'invalid_grant');
    assert.deepEqual(other.body.error_codes, [70000]);
    const second = await refresh(first.body.refresh_token);
    assert.equal(second.status, 200, 'the wrong client did not burn it');

    const reuse = await refresh(first.body.refresh_token);
    assert.equal(reuse.status, 400);
    assert.equal(reuse.body.error, 'invalid_grant');
    assert.deepEqual(reuse.body.error_codes, [70000]);
    const afterReuse = await refresh(second.body.refresh_token);
    assert.equal(afterReuse.status, 400, 'the whole family is revoked');
    assert.deepEqual(afterReuse.body.error_codes, [70000]);
  });

  test('multi-resource: another API needs consent (65001); the user disabled (50057); consent withdrawn (65001)', async () => {
    const { tokens } = await signedIn(ERIN);
    const refresh = (token: string, scope?: string) =>
      server.post('/contoso/oauth2/v2.0/token', { grant_type: 'refresh_token', client_id: WEB.clientId, refresh_token: token, ...(scope ? { scope } : {}) });
    const docs = await refresh(tokens.refresh_token, 'api://docs/Docs.Read');
    assert.equal(docs.status, 400);
    assert.equal(docs.body.suberror, 'consent_required');
    assert.deepEqual(docs.body.error_codes, [65001]);

    const { tokens: t2 } = await signedIn(ERIN);
    const oid = decodeJwt(t2.access_token).payload.oid;
    await server.ctx.store.deleteConsent('contoso', 'tasks-web', 'tasks-api', oid);
    const withdrawn = await refresh(t2.refresh_token);
    assert.deepEqual(withdrawn.body.error_codes, [65001]);

    const { tokens: t3 } = await signedIn(ERIN);
    const user = (await server.ctx.store.getUserById('contoso', oid))!;
    await server.ctx.store.putUser({ ...user, enabled: false });
    try {
      const disabled = await refresh(t3.refresh_token);
      assert.equal(disabled.status, 400);
      assert.equal(disabled.body.error, 'invalid_grant');
      assert.deepEqual(disabled.body.error_codes, [50057]);
    } finally {
      await server.ctx.store.putUser(user);
    }
  });
});

describe('logout, revocation, introspection', () => {
  test('logout with id_token_hint: session ended, its refresh tokens and tokens die, redirect only to a registered URI', async () => {
    const { browser, tokens } = await signedIn(BOB);
    const logout = await browser.get(`${server.url}/contoso/oauth2/v2.0/logout?id_token_hint=${tokens.id_token}&post_logout_redirect_uri=${encodeURIComponent(WEB.redirectUri)}&state=bye`);
    assert.equal(logout.status, 302);
    assert.equal(logout.location, `${WEB.redirectUri}?state=bye`);
    assert.match(logout.headers.getSetCookie().join('\n'), /__Host-baton-session-contoso=; Path=\/; Max-Age=0/);

    const refresh = await server.post('/contoso/oauth2/v2.0/token', { grant_type: 'refresh_token', client_id: WEB.clientId, refresh_token: tokens.refresh_token });
    assert.equal(refresh.status, 400);
    assert.deepEqual(refresh.body.error_codes, [50173]);
    const introspect = await server.post('/contoso/oauth2/v2.0/introspect', { token: tokens.access_token }, { authorization: basic('tasks-api', 'tasks-api-demo-secret-for-local-use-only') });
    assert.deepEqual(introspect.body, { active: false });
    const { challenge } = pkce();
    const silent = await runFlow(browser, server, authorizeUrl(server, webParams(challenge, { prompt: 'none' })));
    assert.equal(silent.params?.error, 'login_required');

    const evil = await new Browser().get(`${server.url}/contoso/oauth2/v2.0/logout?client_id=tasks-web&post_logout_redirect_uri=${encodeURIComponent('https://evil/')}`);
    assert.equal(evil.status, 400);
    assert.equal(evil.location, undefined);
    assert.match(evil.body, /AADSTS50011/);
  });

  test('logout without a hint asks first; the confirmation needs its single-use CSRF token', async () => {
    const { browser, tokens } = await signedIn(BOB);
    const ask = await browser.get(`${server.url}/contoso/oauth2/v2.0/logout`);
    assert.equal(ask.status, 200);
    assert.match(ask.body, /Sign out\?/);
    const { action, fields } = formOf(ask);
    const forged = await browser.post(action, {});
    assert.match(forged.body, /Sign out\?/, 'no token: asked again, still signed in');
    const done = await browser.post(action, fields);
    assert.equal(pageKind(done), 'signed_out');
    const refresh = await server.post('/contoso/oauth2/v2.0/token', { grant_type: 'refresh_token', client_id: WEB.clientId, refresh_token: tokens.refresh_token });
    assert.deepEqual(refresh.body.error_codes, [50173]);
  });

  test('RFC 7009 revocation of a refresh token revokes its family; RFC 7662 introspection for confidential clients', async () => {
    const { tokens } = await signedIn(BOB);
    const api = basic('tasks-api', 'tasks-api-demo-secret-for-local-use-only');
    const active = await server.post('/contoso/oauth2/v2.0/introspect', { token: tokens.access_token }, { authorization: api });
    assert.equal(active.status, 200);
    assert.equal(active.body.active, true);
    assert.equal(active.body.scope, 'Tasks.ReadWrite');
    assert.equal(active.body.client_id, 'tasks-web');
    assert.equal(active.body.aud, 'tasks-api');
    const notMine = await server.post('/contoso/oauth2/v2.0/introspect', { token: tokens.access_token }, { authorization: basic('docs-api', 'docs-api-demo-secret-for-local-use-only') });
    assert.deepEqual(notMine.body, { active: false });
    const publicClient = await server.post('/contoso/oauth2/v2.0/introspect', { token: tokens.access_token, client_id: 'tasks-web' });
    assert.equal(publicClient.status, 400);
    assert.equal(publicClient.body.error, 'unauthorized_client');
    const garbage = await server.post('/contoso/oauth2/v2.0/introspect', { token: 'nonsense' }, { authorization: api });
    assert.deepEqual(garbage.body, { active: false });

    const revoked = await server.post('/contoso/oauth2/v2.0/revoke', { token: tokens.refresh_token, token_type_hint: 'refresh_token', client_id: WEB.clientId });
    assert.equal(revoked.status, 200);
    const refresh = await server.post('/contoso/oauth2/v2.0/token', { grant_type: 'refresh_token', client_id: WEB.clientId, refresh_token: tokens.refresh_token });
    assert.equal(refresh.status, 400);
    assert.deepEqual(refresh.body.error_codes, [70000]);
    const unknown = await server.post('/contoso/oauth2/v2.0/revoke', { token: 'whatever', client_id: WEB.clientId });
    assert.equal(unknown.status, 200, 'RFC 7009 §2.2: an unknown token is not an error');
  });
});

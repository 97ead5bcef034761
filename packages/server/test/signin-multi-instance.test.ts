/**
 * Two instances on one store: a session, an interaction, a code and a refresh token made by one
 * are honoured (and single-use) on the other — nothing of the sign-in lives only in memory.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, type TestServer } from './harness.ts';
import { BOB, Browser, WEB, authorizeUrl, formOf, pkce, redeem, runFlow, webParams } from './signin-kit.ts';

let a: TestServer;
let b: TestServer;
before(async () => {
  a = await startTestServer({ tls: 'dev' });
  b = await startTestServer({ tls: 'dev', dataDir: a.dataDir });
});
after(async () => {
  await b?.close();
  await a?.close();
});

test('sign in on one instance, continue on the other', async () => {
  const browser = new Browser();
  const { verifier, challenge } = pkce();
  // The login page comes from A; the form is posted to B (a load balancer in between).
  const login = await runFlow(browser, a, authorizeUrl(a, webParams(challenge)), { stopAt: 'login' });
  const { action, fields } = formOf(login.hop);
  const posted = await browser.post(action.replace(a.url, b.url), { ...fields, username: BOB.username, password: BOB.password });
  assert.equal(posted.status, 303);
  const done = await runFlow(browser, b, posted.location!.replace(a.url, b.url));
  assert.ok(done.params?.code, done.seen.join(','));

  // Code issued by B, redeemed at A (issuers differ by port here, so only check the grant works).
  const tokens = await redeem(a, done.params.code, verifier);
  assert.equal(tokens.status, 200, JSON.stringify(tokens.body));
  const replay = await redeem(b, done.params.code, verifier);
  assert.deepEqual(replay.body.error_codes, [54005], 'single use across instances');

  const revoked = await b.post('/contoso/oauth2/v2.0/token', { grant_type: 'refresh_token', client_id: WEB.clientId, refresh_token: tokens.body.refresh_token });
  assert.deepEqual(revoked.body.error_codes, [70000], 'the replay on B revoked what the code issued on A');

  // The SSO session made through B is seen by A.
  const sso = await runFlow(browser, a, authorizeUrl(a, webParams(challenge, { prompt: 'none' })));
  assert.ok(sso.params?.code);
  const fresh = await redeem(a, sso.params.code, verifier);

  // Refresh on B with A's refresh token; the old one is then reuse on A.
  const refreshed = await b.post('/contoso/oauth2/v2.0/token', { grant_type: 'refresh_token', client_id: WEB.clientId, refresh_token: fresh.body.refresh_token });
  assert.equal(refreshed.status, 200, JSON.stringify(refreshed.body));
  const reuse = await a.post('/contoso/oauth2/v2.0/token', { grant_type: 'refresh_token', client_id: WEB.clientId, refresh_token: fresh.body.refresh_token });
  assert.deepEqual(reuse.body.error_codes, [70000]);
});


/**
 * The step-up round trip, in a real Chromium: alice signs in to tasks-web with her password only;
 * tasks-api's exchange for Docs.Write answers `interaction_required` with a claims challenge; the
 * client sends her back to /authorize with those claims; she enters her TOTP code; the exchange for
 * the new token succeeds. Every token comes from the real sign-in (authorization code + PKCE), so
 * the exchange also checks the live SSO session the token's `sid` names.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { chromium, type Browser, type Page } from 'playwright-core';
import { startTestServer, decodeJwt, type TestServer } from './harness.ts';
import { ALICE, WEB, authorizeUrl, pkce, redeem, totpAt, webParams } from './signin-kit.ts';
import { lastAudit, obo } from './obo-fixtures.ts';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

let server: TestServer;
let browser: Browser;

before(async () => {
  server = await startTestServer({ tls: 'dev' });
  if (existsSync(CHROMIUM)) {
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'] });
  }
});
after(async () => {
  await browser?.close();
  await server?.close();
});

/** Runs /authorize in the page until the redirect to tasks-web's callback, and returns the code. */
async function authorize(page: Page, extra: Record<string, string>, steps: (page: Page) => Promise<void>): Promise<{ code: string; verifier: string }> {
  const { verifier, challenge } = pkce();
  const delivered = new Promise<URL>((resolve) => {
    // Nothing listens on the client's loopback redirect URI: the page's request is answered here.
    void page.route(`${new URL(WEB.redirectUri).origin}/**`, async (route) => {
      const url = new URL(route.request().url());
      // Only the redirect itself: a late /favicon.ico for the previous page must not pass for it.
      if (url.pathname !== new URL(WEB.redirectUri).pathname) return route.fulfill({ status: 404 });
      resolve(url);
      await route.fulfill({ status: 200, contentType: 'text/html', body: '<p>tasks-web received the code</p>' });
    });
  });
  await page.goto(authorizeUrl(server, webParams(challenge, extra)));
  await steps(page);
  const url = await delivered;
  await page.unroute(`${new URL(WEB.redirectUri).origin}/**`);
  const code = url.searchParams.get('code');
  assert.ok(code, `no code in ${url.search.replace(/code=[^&]*/, 'code=…')}`);
  assert.equal(url.searchParams.get('state'), 'st-123');
  return { code, verifier };
}

test('step-up: password only → interaction_required with claims → authorize with claims + TOTP → the exchange succeeds', { skip: existsSync(CHROMIUM) ? false : `no Chromium at ${CHROMIUM}` }, async () => {
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  const page = await context.newPage();

  // 1. alice signs in to tasks-web with her password only.
  const first = await authorize(page, {}, async (p) => {
    await p.getByLabel('Username').fill(ALICE.username);
    await p.getByLabel('Password').fill(ALICE.password);
    await p.getByRole('button', { name: 'Sign in' }).click();
  });
  const tokens = await redeem(server, first.code, first.verifier);
  assert.equal(tokens.status, 200, JSON.stringify(tokens.body));
  const passwordOnly = tokens.body.access_token as string;
  const signIn = decodeJwt(passwordOnly).payload;
  assert.equal(signIn.aud, 'tasks-api');
  assert.ok(!signIn.amr.includes('mfa'), `amr ${signIn.amr}`);
  assert.equal(typeof signIn.sid, 'string', 'a token from a real sign-in names its session');

  // 2. tasks-api may read documents for her, but changing them needs MFA: a claims challenge.
  const read = await obo(server, 'tasks-api', passwordOnly, 'api://docs/Docs.Read');
  assert.equal(read.status, 200, JSON.stringify(read.body));
  assert.equal(decodeJwt(read.body.access_token).payload.sid, signIn.sid);
  const write = await obo(server, 'tasks-api', passwordOnly, 'api://docs/Docs.Write');
  assert.equal(write.status, 400);
  assert.equal(write.body.error, 'interaction_required');
  assert.deepEqual(write.body.error_codes, [50076]);
  const claims: string = write.body.claims;
  assert.deepEqual(JSON.parse(claims), { access_token: { amr: { essential: true, values: ['mfa'] } } });

  // 3. The client sends her back with the claims: the SSO session knows her, only the TOTP is asked.
  const second = await authorize(page, { claims }, async (p) => {
    await p.getByLabel('Code').fill(totpAt(ALICE.totp, server.ctx.now()));
    await p.getByRole('button', { name: 'Verify' }).click();
  });
  const stepped = await redeem(server, second.code, second.verifier);
  assert.equal(stepped.status, 200, JSON.stringify(stepped.body));
  const withMfa = decodeJwt(stepped.body.access_token).payload;
  assert.ok(withMfa.amr.includes('mfa'), `amr ${withMfa.amr}`);

  // 4. The exchange now succeeds, and the downstream token carries the stronger sign-in.
  const again = await obo(server, 'tasks-api', stepped.body.access_token, 'api://docs/Docs.Write');
  assert.equal(again.status, 200, JSON.stringify(again.body));
  const docs = decodeJwt(again.body.access_token).payload;
  assert.equal(docs.scp, 'Docs.Write');
  assert.ok(docs.amr.includes('mfa'));
  assert.deepEqual(docs.act, { sub: 'tasks-api', client_id: 'tasks-api' });
  assert.equal(lastAudit(server).decision, 'allow');

  // 5. Signing out ends the session: the tokens it issued can no longer be exchanged.
  await server.ctx.store.revokeFamily('contoso', withMfa.sid, server.ctx.now());
  const after = await obo(server, 'tasks-api', stepped.body.access_token, 'api://docs/Docs.Read');
  assert.equal(after.status, 400);
  assert.deepEqual(after.body.error_codes, [50173]);
  await context.close();
});

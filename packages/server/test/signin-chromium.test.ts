/**
 * Done-when of issue 3, in real Chromium (playwright-core): a user signs in with password and
 * TOTP, consents, and the client receives the code and redeems it. Also: form_post auto-submits
 * under the pages' CSP, and the pages raise no CSP violation.
 *
 * The client's redirect URI is intercepted by Playwright (nothing listens on 127.0.0.1:7000).
 * Screenshots of the sign-in, MFA and consent pages go to docs/img when BATON_SCREENSHOTS=1
 * (`BATON_SCREENSHOTS=1 node --test packages/server/test/signin-chromium.test.ts`), else to a
 * temporary directory.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser as Chromium, type Page } from 'playwright-core';
import { startTestServer, decodeJwt, type TestServer } from './harness.ts';
import { ALICE, WEB, authorizeUrl, pkce, redeem, totpAt, webParams, advance, serverNow } from './signin-kit.ts';

let server: TestServer;
let browser: Chromium;
let shots: string;

before(async () => {
  server = await startTestServer({
    tls: 'dev',
    configure(raw) {
      const t = raw.tenants[0];
      t.consents = t.consents.filter((c: any) => c.client !== 'tasks-web' && c.client !== 'tasks-api');
      t.policies.push({ name: 'MFA for tasks', resources: ['api://tasks'], require: { mfa: true } });
    },
  });
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'] });
  shots = process.env.BATON_SCREENSHOTS === '1' ? new URL('../../../docs/img/', import.meta.url).pathname : await mkdtemp(join(tmpdir(), 'baton-shots-'));
});
after(async () => {
  await browser?.close();
  await server?.close();
});

/** Opens a page that records CSP violations and what the client's redirect URI receives. */
async function open(): Promise<{ page: Page; violations: string[]; received: Promise<{ url: string; method: string; body: string | null }> }> {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 880, height: 820 }, deviceScaleFactor: 1 });
  const page = await context.newPage();
  const violations: string[] = [];
  page.on('console', (message) => {
    if (/Content Security Policy|Refused to/i.test(message.text())) violations.push(message.text());
  });
  const received = new Promise<{ url: string; method: string; body: string | null }>((resolve) => {
    void page.route(`${WEB.redirectUri}**`, async (route) => {
      const request = route.request();
      resolve({ url: request.url(), method: request.method(), body: request.postData() });
      await route.fulfill({ status: 200, contentType: 'text/html', body: '<!doctype html><title>Tasks Web</title><p>Signed in.</p>' });
    });
  });
  return { page, violations, received };
}

test('Chromium: password, TOTP, consent; the client receives the code and redeems it', async () => {
  const { page, violations, received } = await open();
  const { verifier, challenge } = pkce();
  await page.goto(authorizeUrl(server, webParams(challenge)));

  await page.getByLabel('Username').waitFor();
  assert.equal(await page.evaluate('document.activeElement && document.activeElement.id'), 'username', 'the username field has the focus');
  await page.screenshot({ path: join(shots, 'signin.png') });
  await page.getByLabel('Username').fill(ALICE.username);
  await page.getByLabel('Password').fill(ALICE.password);
  await page.getByRole('button', { name: 'Sign in' }).click();

  await page.getByLabel('Code').waitFor();
  assert.equal(await page.evaluate('document.activeElement && document.activeElement.id'), 'code');
  // Why the second factor: the tenant's policy and the API it protects, in the user's words.
  assert.equal(await page.locator('#mfa-why').innerText(), 'Contoso\'s policy “MFA for tasks” requires a second factor to use Tasks API.');
  await page.screenshot({ path: join(shots, 'mfa.png') });
  advance(server, 30);
  await page.getByLabel('Code').fill(totpAt(ALICE.totp, serverNow(server)));
  await page.getByRole('button', { name: 'Verify' }).click();

  await page.getByRole('button', { name: 'Accept' }).waitFor();
  const text = await page.locator('main').innerText();
  assert.match(text, /Tasks Web/);
  assert.match(text, /Tasks API/);
  assert.match(text, /Read and change your tasks/);
  assert.match(text, /Read the documents you can read/, 'combined consent for the API is shown');
  assert.ok(await page.getByRole('button', { name: 'Cancel' }).isVisible());
  await page.screenshot({ path: join(shots, 'consent.png'), fullPage: true });
  await page.getByRole('button', { name: 'Accept' }).click();

  const callback = await received;
  const params = new URL(callback.url).searchParams;
  assert.equal(params.get('state'), 'st-123');
  const code = params.get('code');
  assert.ok(code);
  const tokens = await redeem(server, code, verifier);
  assert.equal(tokens.status, 200, JSON.stringify(tokens.body));
  const at = decodeJwt(tokens.body.access_token).payload;
  assert.deepEqual(at.amr, ['pwd', 'mfa']);
  assert.equal(at.aud, 'tasks-api');
  assert.equal(decodeJwt(tokens.body.id_token).payload.nonce, 'n-456');
  assert.deepEqual(violations, []);

  // The session cookie as Chromium stored it.
  const cookies = await page.context().cookies(server.url);
  const session = cookies.find((c) => c.name === '__Host-baton-session-contoso');
  assert.ok(session);
  assert.equal(session.httpOnly, true);
  assert.equal(session.secure, true);
  assert.equal(session.sameSite, 'Lax');
  await page.context().close();
});

test('Chromium: response_mode=form_post posts the code to the client (script allowed by CSP, same origin only)', async () => {
  const { page, violations, received } = await open();
  const { challenge } = pkce();
  await page.goto(authorizeUrl(server, webParams(challenge, { response_mode: 'form_post', scope: 'openid profile' })));
  await page.getByLabel('Username').fill(ALICE.username);
  await page.getByLabel('Password').fill(ALICE.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  const callback = await received;
  assert.equal(callback.method, 'POST');
  const body = new URLSearchParams(callback.body ?? '');
  assert.ok(body.get('code'));
  assert.equal(body.get('state'), 'st-123');
  assert.deepEqual(violations, []);
  await page.context().close();
});

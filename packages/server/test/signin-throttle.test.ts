/**
 * Guessing: passwords throttled per account and per client IP with one generic answer
 * (AADSTS50126, then AADSTS50053), the same for real and made-up usernames, in similar time; TOTP
 * codes throttled per user and never accepted twice.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, type TestServer } from './harness.ts';
import { ALICE, BOB, Browser, advance, authorizeUrl, formOf, pageKind, pkce, runFlow, serverNow, totpAt, webParams } from './signin-kit.ts';
import { THROTTLE } from '../src/throttle.ts';

let server: TestServer;
before(async () => {
  server = await startTestServer({ tls: 'dev' });
});
after(() => server.close());

/**
 * A fresh throttle window, so tests do not see each other's failures: the server clock moves to the
 * start of the next window, so a whole window (15 minutes of real time) lies ahead of the test.
 * (Windows are fixed: moving by one window length kept the position inside it, and a test that ran
 * across a real quarter-hour saw its counts reset half way.)
 */
function newWindow(): void {
  advance(server, THROTTLE.windowSeconds - (serverNow(server) % THROTTLE.windowSeconds));
}

async function loginPage() {
  const browser = new Browser();
  const { challenge } = pkce();
  const page = await runFlow(browser, server, authorizeUrl(server, webParams(challenge)), { stopAt: 'login' });
  return { browser, ...formOf(page.hop) };
}

async function attempt(username: string, password: string) {
  const { browser, action, fields } = await loginPage();
  const started = performance.now();
  const hop = await browser.post(action, { ...fields, username, password });
  return { hop, ms: performance.now() - started, code: /AADSTS(\d+)/.exec(hop.body)?.[1] };
}

for (const [who, username] of [['a real account', ALICE.username], ['an account that does not exist', 'nobody@contoso.test']] as const) {
  test(`password guessing on ${who}: 50126 until the limit, then 50053 — even for the right password — until the window ends`, async () => {
    newWindow();
    for (let i = 1; i < THROTTLE.accountFailures; i++) {
      const { hop, code } = await attempt(username, `wrong-${i}-password`);
      assert.equal(hop.status, 400);
      assert.equal(code, '50126', `attempt ${i}`);
      assert.match(hop.body, /Your account or password is incorrect/);
    }
    const last = await attempt(username, 'wrong-last-password');
    assert.equal(last.hop.status, 429);
    assert.equal(last.code, '50053');
    if (username === ALICE.username) {
      const right = await attempt(ALICE.username, ALICE.password);
      assert.equal(right.code, '50053', 'locked: the right password does not help');
      assert.equal(right.hop.status, 429);
      const other = await attempt(BOB.username, BOB.password);
      assert.equal(other.hop.status, 303, 'another account is not affected');
      newWindow();
      assert.equal((await attempt(ALICE.username, ALICE.password)).hop.status, 303, 'unlocked when the window ends');
    }
  });
}

test('the answer for a wrong password takes about as long whether or not the user exists', async () => {
  newWindow();
  const real: number[] = [];
  const fake: number[] = [];
  for (let i = 0; i < THROTTLE.accountFailures - 1; i++) {
    real.push((await attempt(BOB.username, `nope-${i}-password`)).ms);
    fake.push((await attempt('ghost@contoso.test', `nope-${i}-password`)).ms);
  }
  const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
  const [a, b] = [median(real), median(fake)];
  assert.ok(Math.max(a, b) / Math.min(a, b) < 2, `medians ${a.toFixed(1)} ms vs ${b.toFixed(1)} ms`);
  assert.ok(Math.min(a, b) > 10, 'both pay for a password hash');
});

test('password spraying: failures across accounts from one IP lock the IP (50053), whatever the account', async () => {
  newWindow();
  for (let i = 1; i < THROTTLE.ipFailures; i++) {
    const { code } = await attempt(`user${i}@contoso.test`, 'Winter2026!');
    assert.equal(code, '50126', `attempt ${i}`);
  }
  assert.equal((await attempt('last@contoso.test', 'Winter2026!')).code, '50053');
  assert.equal((await attempt(BOB.username, BOB.password)).code, '50053', 'this IP is locked for every account');
  newWindow();
});

test('TOTP: a used code is refused the second time; wrong codes are throttled per user', async () => {
  newWindow();
  const claims = JSON.stringify({ access_token: { amr: { essential: true, values: ['mfa'] } } });
  const mfaPage = async () => {
    const browser = new Browser();
    const { challenge } = pkce();
    const page = await runFlow(browser, server, authorizeUrl(server, webParams(challenge, { claims })), { user: ALICE, stopAt: 'mfa' });
    assert.equal(pageKind(page.hop), 'mfa');
    return { browser, ...formOf(page.hop) };
  };
  advance(server, 30);
  const code = totpAt(ALICE.totp, serverNow(server));
  const first = await mfaPage();
  assert.equal((await first.browser.post(first.action, { ...first.fields, code })).status, 303);
  const second = await mfaPage();
  const replay = await second.browser.post(second.action, { ...second.fields, code });
  assert.equal(replay.status, 400);
  assert.match(replay.body, /AADSTS500121/);

  for (let i = 2; i < THROTTLE.accountFailures; i++) {
    const wrong = await second.browser.post(second.action, { ...second.fields, code: '000000' });
    assert.match(wrong.body, /AADSTS500121/, `attempt ${i}`);
  }
  const locked = await second.browser.post(second.action, { ...second.fields, code: '000000' });
  assert.equal(locked.status, 429);
  assert.match(locked.body, /AADSTS50053/);
  advance(server, 30);
  const good = totpAt(ALICE.totp, serverNow(server));
  assert.match((await second.browser.post(second.action, { ...second.fields, code: good })).body, /AADSTS50053/, 'locked: even the right code');
  newWindow();
});

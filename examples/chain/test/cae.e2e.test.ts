/**
 * Continuous access evaluation in the demo chain, end to end in Chromium (issue 17, docs/cae.md):
 *
 * 1. alice signs in and attaches a document (step-up to MFA): Tasks API → Docs API → Audit API;
 * 2. the chain view's "Revoke Alice's sessions" (the demo admin, through the admin API): the panel
 *    shows the CAEP `session-revoked` event received by the Tasks, Docs and Audit APIs (each polls
 *    its own SSF stream, created at start);
 * 3. her next click fails at the first hop: the Tasks API answers `401 insufficient_claims` with the
 *    claims challenge (`nbf` = the revocation), Tasks Web sends her to Baton's /authorize with those
 *    `claims`, Baton asks her to sign in, and the chain works again (Tasks API → Docs API);
 * 4. the same through the CLI: `baton admin users revoke-sessions alice@contoso.test`, run as a
 *    process against the same token service.
 *
 * Waits are for what the pages and the APIs answer, never for a time; the one wait on the clock is
 * for the revocation's edge (the next whole second) to pass before she signs in again, since a
 * sign-in within that second is void too (docs/cae.md).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import * as OTPAuth from 'otpauth';
import { auditLogOf, createLogger, readConfigFile, startServer, type RunningServer } from '@baton/server';
import { DEMO_ADMIN, startChain, withDemoAdmin, withWebPort, type RunningChain } from '../src/index.ts';
import { silentWriter } from '../src/log.ts';
import { freePort } from '../../../packages/server/test/free-port.ts';

const CONFIG = fileURLToPath(new URL('../baton.json', import.meta.url));
const CLI = fileURLToPath(new URL('../../../packages/cli/src/bin.ts', import.meta.url));
const ALICE = { username: 'alice@contoso.test', password: 'alice-Demo-pass-1', totp: 'JBSWY3DPEHPK3PXP' };
const SESSION_REVOKED = 'https://schemas.openid.net/secevent/caep/event-type/session-revoked';
const APIS = ['tasks-api', 'docs-api', 'audit-api'];

let WEB = '';
let dataDir: string;
let server: RunningServer;
let chain: RunningChain;
let browser: Browser;
let page: Page;
/** The `claims` parameter of every authorization request the browser made. */
const authorizeClaims: Array<string | null> = [];
const browserProblems: string[] = [];
const SHOTS = process.env.BATON_SCREENSHOTS;

/** BATON_SCREENSHOTS=<dir>: a screenshot of the step (as chain.e2e.test.ts makes docs/img/). */
async function shot(name: string): Promise<void> {
  if (SHOTS) await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true, animations: 'disabled' });
}

before(async () => {
  const webPort = await freePort();
  WEB = `http://127.0.0.1:${webPort}`;
  dataDir = await mkdtemp(join(tmpdir(), 'baton-cae-e2e-'));
  if (SHOTS) await mkdir(SHOTS, { recursive: true });
  // As `baton dev`: the demo admin added, Tasks Web's redirect URI on its port.
  server = await startServer({ config: withDemoAdmin(withWebPort(await readConfigFile(CONFIG), webPort)), dataDir, port: 0, tls: 'dev', dev: true, logger: createLogger('silent') });
  chain = await startChain({
    authority: `${server.url}/contoso/v2.0`,
    ca: server.ca,
    exchanges: auditLogOf(server.ctx),
    dataDir: join(dataDir, 'chain'),
    ports: { web: webPort, api: 0 },
    indexerIntervalMs: 0,
    indexerFirstRunMs: -1,
    log: silentWriter,
  });
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'] });
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 900 } });
  page = await context.newPage();
  page.on('request', (request) => {
    const url = new URL(request.url());
    if (url.pathname.endsWith('/oauth2/v2.0/authorize')) authorizeClaims.push(url.searchParams.get('claims'));
  });
  page.on('pageerror', (error) => browserProblems.push(`${page.url()}: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error' && /Content Security Policy|Refused to/i.test(message.text())) browserProblems.push(`${page.url()}: ${message.text()}`);
  });
});

after(async () => {
  await browser?.close();
  await chain?.close();
  await server?.close();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

function totpCode(): string {
  const left = 30 - (Math.floor(Date.now() / 1000) % 30);
  if (left < 3) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, left * 1000 + 200);
  return new OTPAuth.TOTP({ secret: OTPAuth.Secret.fromBase32(ALICE.totp), algorithm: 'SHA1', digits: 6, period: 30 }).generate();
}

/** The session-revoked events each API received, as the chain view's data holds them. */
function revocationsAt(api: string) {
  return (chain.signals?.visibleTo({ oid: '', allUsers: true }) ?? []).filter((e) => e.api === api && e.typeUri === SESSION_REVOKED);
}

/** The rows the chain view's panel shows for one API. */
const rowsAt = (api: string) => page.locator(`#signal-events .signal-api[data-api="${api}"] tr.signal[data-type="session-revoked"]`);

/** Waits until every API's panel shows `count` session-revoked events; checks them against the data. */
async function eventsShown(count: number, edge: number): Promise<void> {
  for (const api of APIS) {
    await rowsAt(api).nth(count - 1).waitFor({ timeout: 20_000 });
    assert.equal(await rowsAt(api).count(), count, api);
    const received = revocationsAt(api);
    assert.equal(received.length, count, api);
    assert.equal(received[0]!.edge, edge, `${api}: the event's time is the revocation edge`);
    assert.equal(received[0]!.via, 'poll');
    // Named by her oid (the demo's streams are `opaque`), shown with her name.
    assert.match((await rowsAt(api).first().textContent()) ?? '', /session-revoked.*Alice Adams — oid /);
  }
}

/** The edge is the next whole second: a sign-in before it would be void too. */
async function pastEdge(edge: number): Promise<void> {
  const wait = edge * 1000 - Date.now() + 50;
  if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
}

/** The next click (Documents): refused at the first hop with the claims challenge, Baton asks for a sign-in, then the chain works. */
async function challengedThenSignedInAgain(edge: number): Promise<void> {
  const before = authorizeClaims.length;
  const requestsBefore = new Set(chain.chain.snapshot().map((r) => r.id));
  await page.goto(`${WEB}/documents`);
  // Sent to Baton: its sign-in page, not the documents.
  await page.waitForURL(/^https:\/\/localhost:\d+\/contoso\//);
  await page.locator('#password').waitFor();
  await shot('cae-02-sign-in-again');

  // The click failed at the first hop: Tasks API → 401 with the claims challenge (nbf = the revocation).
  const refused = chain.chain.snapshot().find((r) => !requestsBefore.has(r.id) && r.label === 'List documents');
  assert.ok(refused, 'the refused request is in the chain log');
  assert.deepEqual(refused.hops.map((h) => `${h.to}:${h.status}`), ['tasks-api:401']);
  assert.ok(refused.notes.some((n) => /insufficient_claims/.test(n.text)), 'Tasks Web noted the challenge');
  // Tasks Web passed the challenge to /authorize as the `claims` request parameter.
  const sent = authorizeClaims.slice(before).filter((c) => c !== null);
  assert.equal(sent.length, 1);
  assert.deepEqual(JSON.parse(sent[0]!), { access_token: { nbf: { essential: true, value: String(edge) } } });

  await page.locator('#username').fill(ALICE.username);
  await page.locator('#password').fill(ALICE.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(`${WEB}/documents`);
  await page.getByRole('link', { name: 'Q3 figures' }).waitFor();
  // The chain works again: Tasks API → Docs API, with tokens issued after the revocation.
  const again = chain.chain.snapshot().find((r) => !requestsBefore.has(r.id) && r.label === 'List documents' && r.id !== refused.id);
  assert.ok(again);
  assert.deepEqual(again.hops.map((h) => `${h.to}:${h.status}`), ['tasks-api:200', 'docs-api:200']);
  for (const hop of again.hops) assert.ok(Number(hop.token?.iat) >= edge, `${hop.to}: a token issued after the revocation`);
}

test('the chain view revokes alice’s sessions: every API shows the event, her next click gets the claims challenge, she signs in again, the chain works', { timeout: 180_000 }, async () => {
  await page.goto(`${WEB}/`);
  await page.getByRole('link', { name: 'Sign in with Baton' }).click();
  await page.waitForURL(/^https:\/\/localhost:\d+\//);
  await page.locator('#username').fill(ALICE.username);
  await page.locator('#password').fill(ALICE.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Permissions requested' }).waitFor();
  await page.getByRole('button', { name: 'Accept' }).click();
  await page.waitForURL(`${WEB}/`);

  // The chain works: a document attached (Docs.Write: step-up to MFA), through all three APIs.
  await page.getByPlaceholder('What needs doing?').fill('Quarterly review');
  await page.getByRole('button', { name: 'Add task' }).click();
  const task = page.locator('li.task', { hasText: 'Quarterly review' });
  await task.waitFor();
  await task.locator('summary', { hasText: 'Attach a document' }).click();
  const form = task.locator('form[action$="/documents"]');
  await form.locator('input[name="title"]').fill('Q3 figures');
  await form.locator('textarea[name="content"]').fill('Revenue up 12%.');
  await form.getByRole('button', { name: 'Attach document' }).click();
  await page.getByRole('heading', { name: 'Verify your identity' }).waitFor();
  await page.locator('#code').fill(totpCode());
  await page.getByRole('button', { name: 'Verify' }).click();
  await page.getByText('Verified. Your change went through all the way to the Audit API.').waitFor();
  const attached = chain.chain.snapshot().find((r) => r.label.includes('retried after step-up'));
  assert.deepEqual(attached?.hops.map((h) => `${h.to}:${h.status}`), ['tasks-api:201', 'docs-api:201', 'audit-api:201']);

  // The chain view: no event yet, at any API.
  await page.goto(`${WEB}/chain`);
  await page.locator('body[data-chain-ready="true"]').waitFor();
  for (const api of APIS) {
    await page.locator(`#signal-events .signal-api[data-api="${api}"]`, { hasText: 'No event received yet.' }).waitFor();
    assert.equal(revocationsAt(api).length, 0);
  }

  await page.getByRole('button', { name: 'Revoke Alice’s sessions' }).click();
  await page.waitForURL(`${WEB}/chain#security-events`);
  await page.locator('#revoke-status', { hasText: 'Sessions of Alice Adams revoked' }).waitFor();
  const edge = Date.parse(/tokens issued before (\S+) are void/.exec((await page.locator('#revoke-status').textContent()) ?? '')?.[1] ?? '') / 1000;
  assert.ok(Number.isInteger(edge), 'the revocation edge is shown');
  await eventsShown(1, edge);
  await shot('cae-01-events-at-each-api');

  await pastEdge(edge);
  await challengedThenSignedInAgain(edge);
  assert.deepEqual(browserProblems, []);
});

test('the same through the CLI: `baton admin users revoke-sessions` run as a process against the token service', { timeout: 120_000 }, async () => {
  assert.ok(server.caPath, 'the dev CA is on disk');
  const { stdout } = await promisify(execFile)(process.execPath, [CLI, 'admin', 'users', 'revoke-sessions', ALICE.username, '--json'], {
    env: {
      ...process.env,
      BATON_URL: server.url,
      BATON_TENANT: 'contoso',
      BATON_CA: server.caPath,
      BATON_ADMIN_CLIENT_ID: DEMO_ADMIN.clientId,
      BATON_ADMIN_CLIENT_SECRET: DEMO_ADMIN.secret,
    },
    timeout: 60_000,
  });
  const answered = JSON.parse(stdout) as { username: string; sessionsRevokedBefore: string };
  assert.equal(answered.username, ALICE.username);
  const edge = Date.parse(answered.sessionsRevokedBefore) / 1000;

  await page.goto(`${WEB}/chain`);
  await page.locator('body[data-chain-ready="true"]').waitFor();
  await eventsShown(2, edge);

  await pastEdge(edge);
  await challengedThenSignedInAgain(edge);
  assert.deepEqual(browserProblems, []);
});

/**
 * The demo chain end to end, in Chromium (playwright-core), as a newcomer would click through it:
 *
 * 1. alice signs in (password only), consents to Tasks Web the first time, and creates a task;
 * 2. she attaches a document: the Tasks API's On-Behalf-Of exchange for `Docs.Write` is refused by
 *    the MFA policy, the claims challenge comes back to Tasks Web, Baton asks for her TOTP code, and
 *    the attach is retried — through Tasks API → Docs API → Audit API;
 * 3. the chain view shows that request with three hops and `act` nested;
 * 4. bob signs in and cannot open alice's document through the Tasks API, nor see her requests or
 *    titles in the chain view; only the demo's administrator (olivia) sees every user's;
 * 5. the anti-pattern switch makes the Tasks API try its own identity: the SDK refuses (red hop);
 * 6. the indexer reads every document with its application permission (the legitimate app-only path).
 *
 * Everything runs in this process on a temp data dir and free ports (Tasks Web's registered redirect
 * URI follows its port), with the demo's OpenTelemetry SDK exporting to the SDK's in-memory exporter:
 * the attach is one trace from Tasks Web through every API and both exchanges, and the refused
 * step-up exchange an ERROR span carrying its rule. BATON_SCREENSHOTS=<dir> saves a screenshot per
 * step (how docs/img/ is made).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import { existsSync } from 'node:fs';
import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import * as OTPAuth from 'otpauth';
import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { InMemorySpanExporter, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { auditLogOf, createLogger, readConfigFile, startServer, type RunningServer } from '@baton/server';
import { startChain, startTracing, withWebPort, type RunningChain, type Tracing } from '../src/index.ts';
import { silentWriter } from '../src/log.ts';
import { actChain } from '../src/chain-log.ts';
import { freePort } from '../../../packages/server/test/free-port.ts';

const CONFIG = fileURLToPath(new URL('../baton.json', import.meta.url));
const REPO = fileURLToPath(new URL('../../../', import.meta.url));
let webPort = 0;
let WEB = '';
const ALICE = { username: 'alice@contoso.test', password: 'alice-Demo-pass-1', totp: 'JBSWY3DPEHPK3PXP' };
const BOB = { username: 'bob@contoso.test', password: 'bob-Demo-pass-1' };
/** The demo's administrator (`roles: ["admin"]`): the only one who may see every user's requests. */
const OLIVIA = { username: 'olivia@contoso.test', password: 'olivia-Demo-pass-1' };
const SHOTS = process.env.BATON_SCREENSHOTS;

let dataDir: string;
let server: RunningServer;
let chain: RunningChain;
let browser: Browser;
let context: BrowserContext;
let page: Page;
/** Every span of the run (the demo's SDK, installed before anything starts). */
const spans = new InMemorySpanExporter();
let tracing: Tracing | undefined;
/** A trace UI the chain view links each hop to. */
const TRACE_UI = 'http://127.0.0.1:16686/trace/{traceId}';
/** Script errors and CSP violations seen by the browser: the pages must have none. */
const browserProblems: string[] = [];

async function shot(name: string, options: { fullPage?: boolean } = {}): Promise<void> {
  if (!SHOTS) return;
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: options.fullPage ?? false, animations: 'disabled' });
}

/** Scrolls so that `target` sits just below the sticky top bar (for screenshots). */
async function scrollTo(target: import('playwright-core').Locator): Promise<void> {
  await target.evaluate((node: { getBoundingClientRect(): { top: number } }) => {
    const w = globalThis as unknown as { scrollTo(x: number, y: number): void; scrollY: number };
    w.scrollTo(0, node.getBoundingClientRect().top + w.scrollY - 72);
  });
}

function totpCode(): string {
  // A code with less than 3 s left could expire in flight: wait for the next one.
  const left = 30 - (Math.floor(Date.now() / 1000) % 30);
  if (left < 3) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, left * 1000 + 200);
  return new OTPAuth.TOTP({ secret: OTPAuth.Secret.fromBase32(ALICE.totp), algorithm: 'SHA1', digits: 6, period: 30 }).generate();
}

/**
 * Signs in through Baton's pages. `consent`: this user has not consented to Tasks Web yet, so
 * Baton must show its consent page (the demo grants no tenant-wide consent to Tasks Web); it is
 * checked and accepted. Without it, no consent page may appear.
 */
async function signIn(user: { username: string; password: string }, expect: { consent: boolean }): Promise<void> {
  await page.goto(`${WEB}/`);
  await page.getByRole('link', { name: 'Sign in with Baton' }).click();
  await page.waitForURL(/^https:\/\/localhost:\d+\//);
  await page.locator('#username').fill(user.username);
  await page.locator('#password').fill(user.password);
  if (user.username === ALICE.username && expect.consent) await shot('02-baton-sign-in');
  await page.getByRole('button', { name: 'Sign in' }).click();
  if (expect.consent) {
    await page.getByRole('heading', { name: 'Permissions requested' }).waitFor();
    const text = (await page.locator('main').textContent()) ?? '';
    assert.match(text, /Tasks Web/);
    assert.match(text, /Read and change your tasks/);
    assert.match(text, /api:\/\/tasks\/Tasks\.ReadWrite/);
    if (user.username === ALICE.username) await shot('02b-baton-consent', { fullPage: true });
    await page.getByRole('button', { name: 'Accept' }).click();
  }
  await page.waitForURL(`${WEB}/`);
}

async function signOut(): Promise<void> {
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.waitForURL(`${WEB}/`);
  await page.getByText('You are signed out of Tasks Web and of Baton.').waitFor();
}

/** The chain view, once its first snapshot is rendered. */
async function openChainView(hash = ''): Promise<void> {
  await page.goto(`${WEB}/chain${hash}`);
  await page.locator('body[data-chain-ready="true"]').waitFor();
}

before(async () => {
  webPort = await freePort();
  WEB = `http://127.0.0.1:${webPort}`;
  dataDir = await mkdtemp(join(tmpdir(), 'baton-chain-e2e-'));
  if (SHOTS) await mkdir(SHOTS, { recursive: true });
  tracing = startTracing({ exporter: spans });
  // Tasks Web on a port of its own: the redirect URI it registers follows the port, as `baton dev --web-port` does.
  server = await startServer({ config: withWebPort(await readConfigFile(CONFIG), webPort), dataDir, port: 0, tls: 'dev', dev: true, logger: createLogger('silent') });
  chain = await startChain({
    authority: `${server.url}/contoso/v2.0`,
    ca: server.ca,
    exchanges: auditLogOf(server.ctx),
    dataDir: join(dataDir, 'chain'),
    ports: { web: webPort, api: 0 },
    indexerIntervalMs: 0,
    indexerFirstRunMs: -1,
    log: silentWriter,
    traceUrl: TRACE_UI,
  });
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'] });
  context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 800 } });
  page = await context.newPage();
  page.on('pageerror', (error) => browserProblems.push(`${page.url()}: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error' && /Content Security Policy|Refused to/i.test(message.text())) browserProblems.push(`${page.url()}: ${message.text()}`);
  });
});

let stopped = false;
/** Stops the in-process chain. */
async function stopInProcess(): Promise<void> {
  if (stopped) return;
  stopped = true;
  await browser?.close();
  await chain?.close();
  await server?.close();
  await tracing?.shutdown();
}

after(async () => {
  await stopInProcess();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

let aliceDocId = '';

test('alice signs in, creates a task, attaches a document after a step-up to MFA; the chain view shows three hops with act nested', { timeout: 120_000 }, async () => {
  await page.goto(`${WEB}/`);
  await page.locator('code.totp', { hasText: /\d{3} \d{3}/ }).waitFor();
  await shot('01-landing');
  await signIn(ALICE, { consent: true });
  await page.getByRole('heading', { name: 'Your tasks' }).waitFor();

  await page.getByPlaceholder('What needs doing?').fill('Prepare the quarterly review');
  await page.getByRole('button', { name: 'Add task' }).click();
  await page.waitForURL(`${WEB}/`);
  const task = page.locator('li.task', { hasText: 'Prepare the quarterly review' });
  await task.waitFor();
  await shot('03-task-created');

  // Attaching a document needs Docs.Write, which the tenant guards with MFA: Baton asks for it.
  await task.locator('summary', { hasText: 'Attach a document' }).click();
  const form = task.locator('form[action$="/documents"]');
  await form.locator('input[name="title"]').fill('Q3 figures');
  await form.locator('textarea[name="content"]').fill('Revenue up 12%. Costs flat. Confidential: do not share outside finance.');
  await shot('04-attach-form');
  await form.getByRole('button', { name: 'Attach document' }).click();
  await page.waitForURL(/^https:\/\/localhost:\d+\/contoso\/oauth2\/v2\.0\/interaction\//);
  await page.getByRole('heading', { name: 'Verify your identity' }).waitFor();
  // The page says why, in alice's words: which policy, protecting which API further down the chain.
  assert.equal(await page.locator('#mfa-why').textContent(), 'Tasks API is asking Docs API for you, and Contoso\'s policy “MFA to change documents” requires a second factor there.');
  await page.locator('#code').fill(totpCode());
  await shot('05-step-up-mfa');
  await page.getByRole('button', { name: 'Verify' }).click();
  await page.waitForURL(`${WEB}/`);
  await page.getByText('Verified. Your change went through all the way to the Audit API.').waitFor();
  const attachment = task.locator('ul.attachments a', { hasText: 'Q3 figures' });
  await attachment.waitFor();
  aliceDocId = ((await attachment.getAttribute('href')) ?? '').split('/').pop() ?? '';
  assert.match(aliceDocId, /^[0-9a-f-]{36}$/);
  await shot('06-attached');

  // The chain view: the retried attach crossed three hops; the first attempt was refused by policy.
  await openChainView();
  const retried = page.locator('article.request', { hasText: 'retried after step-up' });
  await retried.waitFor();
  const hops = retried.locator('section.hop.call');
  assert.equal(await hops.count(), 3);
  assert.deepEqual(
    await hops.evaluateAll((nodes: Array<{ getAttribute(name: string): string | null }>) => nodes.map((n) => `${n.getAttribute('data-from')}→${n.getAttribute('data-to')}`)),
    ['tasks-web→tasks-api', 'tasks-api→docs-api', 'docs-api→audit-api'],
  );
  // act nested: the Audit API's token says docs-api acted, on behalf of tasks-api.
  const third = hops.nth(2);
  assert.equal(await third.locator('.act .act').count(), 1);
  assert.equal((await third.locator('.act .actor-name').allTextContents()).join(' ← '), 'docs-api ← tasks-api');
  assert.match((await third.locator('.decision').textContent()) ?? '', /on_behalf_of/);
  assert.match((await hops.nth(0).locator('table.claims').textContent()) ?? '', /mfa/);
  // DPoP: each hop's cnf.jkt is shown (checked against the data below).
  const hopKeyShown = /cnf\.jkt([A-Za-z0-9_-]{10})…/.exec((await hops.nth(1).locator('table.claims').textContent()) ?? '')?.[1];
  // may_act (RFC 8693 §4.4: who the token's API lets exchange it, its delegation.mayAct) next to it.
  // The demo's APIs register none, so every hop says so.
  const mayActShown = await hops.evaluateAll((nodes: Array<{ querySelectorAll(s: string): ArrayLike<{ textContent: string | null }> }>) =>
    nodes.map((n) => Array.from(n.querySelectorAll('table.claims tr')).map((r) => r.textContent ?? '').find((t) => t.startsWith('may_act')) ?? ''),
  );
  assert.deepEqual(mayActShown, Array(3).fill('may_act— (its API names no middle tier)'));
  const firstAttempt = page.locator('article.request', { hasText: 'Attach document “Q3 figures” to a task' }).filter({ hasNotText: 'retried' });
  const refusedExchange = firstAttempt.locator('section.hop.exchange.refused');
  await refusedExchange.waitFor();
  assert.match((await refusedExchange.textContent()) ?? '', /conditional-access/);
  assert.match((await refusedExchange.textContent()) ?? '', /AADSTS50076/);
  await scrollTo(retried);
  await shot('07-chain-three-hops');
  await scrollTo(firstAttempt);
  await shot('08-chain-step-up-refusal');

  // The owner shares it (another Docs.Write change, recorded at the Audit API too): carol, not bob.
  await page.goto(`${WEB}/documents/${aliceDocId}`);
  await page.getByRole('heading', { name: 'Q3 figures' }).waitFor();
  await page.locator('#share-user').fill('carol@contoso.test');
  await page.getByRole('button', { name: 'Share' }).click();
  await page.waitForURL(`${WEB}/documents/${aliceDocId}`);
  await page.locator('ul.shares', { hasText: 'carol@contoso.test' }).waitFor();
  const shared = chain.chain.snapshot().find((r) => r.label.startsWith('Share a document with carol@contoso.test'));
  assert.deepEqual(shared?.hops.map((h) => `${h.to}:${h.status}`), ['tasks-api:200', 'docs-api:200', 'audit-api:201']);

  // The same, from the data behind the page.
  const request = chain.chain.snapshot().find((r) => r.label.includes('retried after step-up'));
  assert.ok(request);
  const audit = request.hops.find((h) => h.to === 'audit-api');
  assert.deepEqual(actChain(audit?.token?.act), ['docs-api', 'tasks-api']);
  assert.equal(audit?.token?.azp, 'docs-api');
  assert.equal(audit?.token?.aud, 'audit-api');

  // DPoP end to end (RFC 9449): each hop's token is bound to the key of the one who holds it —
  // Tasks Web's, then Tasks API's, then Docs API's — three different keys, shown in the chain view.
  const jkts = request.hops.filter((h) => h.kind === 'call').map((h) => (h.token?.cnf as { jkt?: string } | undefined)?.jkt);
  assert.equal(jkts.length, 3);
  for (const jkt of jkts) assert.match(jkt ?? '', /^[A-Za-z0-9_-]{43}$/);
  assert.equal(new Set(jkts).size, 3, 'three hops, three keys');
  assert.equal(hopKeyShown, jkts[1]!.slice(0, 10), "the chain view showed the Docs API hop's key");
});

/** The one span of `spans` that `match` picks (and a readable failure otherwise). */
function one(list: readonly ReadableSpan[], match: (s: ReadableSpan) => boolean, what: string): ReadableSpan {
  const found = list.filter(match);
  assert.equal(found.length, 1, `one ${what} span; the trace has ${list.map((s) => `${s.name}[${String(s.attributes['url.path'] ?? s.attributes['url.full'] ?? '')}]`).join(', ')}`);
  return found[0] as ReadableSpan;
}

test('OpenTelemetry: the attach is one trace from Tasks Web through both exchanges to the Audit API, parents right; the refused step-up exchange is an ERROR span with its rule; the chain view links each hop to its trace', { timeout: 60_000 }, async () => {
  const requests = chain.chain.snapshot();
  const retried = requests.find((r) => r.label.includes('retried after step-up'));
  const refused = requests.find((r) => r.label.startsWith('Attach document “Q3 figures”') && !r.label.includes('retried'));
  assert.ok(retried && refused, 'needs the attach of the first test');
  const all = spans.getFinishedSpans();

  // The retried attach: Client App → Tasks API → token service → Docs API → token service → Audit API.
  const trace = all.filter((s) => s.spanContext().traceId === retried.id);
  const byId = new Map(trace.map((s) => [s.spanContext().spanId, s]));
  const parent = (s: ReadableSpan) => byId.get(s.parentSpanContext?.spanId ?? '');
  const ancestors = (s: ReadableSpan) => {
    const up: ReadableSpan[] = [];
    for (let p = parent(s); p !== undefined; p = parent(p)) up.push(p);
    return up;
  };
  const roots = trace.filter((s) => s.parentSpanContext === undefined);
  assert.deepEqual(roots.map((s) => s.name), ['Tasks Web POST'], 'one root: the user action in Tasks Web');
  const root = roots[0] as ReadableSpan;
  for (const span of trace) assert.ok(span === root || ancestors(span).at(-1) === root, `${span.name} hangs off the user action`);

  const serverSpan = (api: string, path: RegExp) => one(trace, (s) => s.kind === SpanKind.SERVER && s.name === 'POST' && path.test(String(s.attributes['url.path'])), api);
  const tasksApi = serverSpan('Tasks API', /^\/tasks\/[^/]+\/documents$/);
  const docsApi = serverSpan('Docs API', /^\/documents$/);
  const auditApi = serverSpan('Audit API', /^\/entries$/);
  assert.equal(parent(tasksApi), root, 'the Tasks API continues Tasks Web’s span');
  const callOf = (to: ReadableSpan) => {
    const call = parent(to) as ReadableSpan;
    assert.equal(call.kind, SpanKind.CLIENT, `${to.name} is called by a CLIENT span`);
    return call;
  };
  assert.equal(parent(callOf(docsApi)), tasksApi, 'the Docs API is called from the Tasks API’s request');
  assert.equal(parent(callOf(auditApi)), docsApi, 'the Audit API is called from the Docs API’s request');
  for (const [api, request] of [['tasks-api', tasksApi], ['docs-api', docsApi], ['audit-api', auditApi]] as const) {
    const guard = one(trace, (s) => s.name === 'baton.guard' && parent(s) === request, `${api} guard`);
    assert.equal(guard.attributes['baton.guard.result'], 'allow');
    assert.equal(request.attributes['http.response.status_code'], 201);
  }

  // Two exchanges, each: OBO client span → token request (CLIENT) → token endpoint (SERVER) → decision.
  const endpoints = trace.filter((s) => s.name === 'POST /{tenant}/oauth2/v2.0/token');
  assert.equal(endpoints.length, 2);
  for (const [hop, api] of [[1, tasksApi], [2, docsApi]] as const) {
    const endpoint = one(endpoints, (s) => ancestors(s).includes(api) && !ancestors(s).includes(hop === 1 ? docsApi : auditApi), `hop ${hop} token endpoint`);
    const request = callOf(endpoint);
    assert.match(String(request.attributes['url.full']), /\/contoso\/oauth2\/v2\.0\/token$/);
    const obo = parent(request) as ReadableSpan;
    assert.equal(obo.name, 'baton.obo', `hop ${hop}: the token request is the OBO client's`);
    assert.equal(parent(obo), api, `hop ${hop}: the OBO client runs in the API’s request`);
    assert.equal(obo.attributes['baton.obo.grant'], 'on_behalf_of');
    const decision = one(trace, (s) => s.name === 'baton.exchange' && parent(s) === endpoint, `hop ${hop} decision`);
    assert.equal(decision.attributes['baton.exchange.decision'], 'allow');
    assert.equal(decision.attributes['baton.exchange.api'], hop === 1 ? 'docs-api' : 'audit-api');
    // The audit event of that exchange names the trace and the decision's span.
    const event = auditLogOf(server.ctx).recent().find((e) => e.spanId === decision.spanContext().spanId);
    assert.equal(event?.traceId, retried.id);
    assert.equal(event?.caller, hop === 1 ? 'tasks-api' : 'docs-api');
  }

  // The first attempt: its own trace, the Tasks API’s exchange refused by the MFA policy.
  const first = all.filter((s) => s.spanContext().traceId === refused.id);
  const decision = one(first, (s) => s.name === 'baton.exchange', 'refused decision');
  assert.equal(decision.status.code, SpanStatusCode.ERROR);
  assert.equal(decision.attributes['baton.exchange.rule'], 'conditional-access');
  assert.match(decision.status.message ?? '', /interaction_required: refused by rule conditional-access/);
  const firstById = new Map(first.map((s) => [s.spanContext().spanId, s]));
  const endpoint = firstById.get(decision.parentSpanContext?.spanId ?? '') as ReadableSpan;
  assert.equal(endpoint.name, 'POST /{tenant}/oauth2/v2.0/token');
  const obo = firstById.get(firstById.get(endpoint.parentSpanContext?.spanId ?? '')?.parentSpanContext?.spanId ?? '') as ReadableSpan;
  assert.equal(obo.name, 'baton.obo');
  assert.equal(obo.status.code, SpanStatusCode.ERROR);
  assert.equal(obo.attributes['error.type'], 'interaction_required');
  assert.equal(first.some((s) => s.kind === SpanKind.SERVER && s.attributes['url.path'] === '/documents'), false, 'nothing reached the Docs API');

  // Nothing secret in any span of the run: no client secret, no password, no TOTP secret.
  const text = JSON.stringify(all.map((s) => ({ n: s.name, a: s.attributes, st: s.status, e: s.events })));
  const demoConfig = JSON.parse(await readFile(CONFIG, 'utf8')) as { tenants: Array<{ applications: Array<{ secrets?: string[] }> }> };
  const secrets = [ALICE.password, ALICE.totp, BOB.password, ...demoConfig.tenants.flatMap((t) => t.applications.flatMap((a) => a.secrets ?? []))];
  assert.ok(secrets.length > 4);
  for (const secret of secrets) assert.ok(!text.includes(secret), 'a secret reached a span');

  // The chain view: each hop of the retried attach links to its trace in the trace UI.
  await openChainView(`#r-${retried.id}`);
  const links = page.locator(`article#r-${retried.id} section.hop a.trace-link`);
  await links.first().waitFor();
  assert.equal(await links.count(), 3);
  for (const href of await links.evaluateAll((nodes: Array<{ getAttribute(name: string): string | null }>) => nodes.map((n) => n.getAttribute('href')))) {
    assert.equal(href, TRACE_UI.replace('{traceId}', retried.id));
  }
});

test('bob signs in and cannot read alice’s document through the Tasks API', { timeout: 90_000 }, async () => {
  assert.ok(aliceDocId, 'needs the document of the first test');
  await page.goto(`${WEB}/`);
  await signOut();
  await signIn(BOB, { consent: true });
  await page.getByRole('heading', { name: 'Your tasks' }).waitFor();
  assert.equal(await page.locator('li.task').count(), 0, 'bob sees none of alice’s tasks');

  await page.getByRole('link', { name: 'Documents' }).click();
  await page.waitForURL(`${WEB}/documents`);
  assert.equal(await page.locator('table.docs').count(), 0, 'bob has no documents he can read');
  await page.locator('#doc-id').fill(aliceDocId);
  await page.getByRole('button', { name: 'Open' }).click();
  await page.getByRole('heading', { name: 'This document is not available to you' }).waitFor();
  assert.equal(await page.getByText('Revenue up 12%').count(), 0);
  await shot('09-bob-refused');

  await page.getByRole('link', { name: 'See the decision in the chain view →' }).click();
  await page.locator('body[data-chain-ready="true"]').waitFor();
  const card = page.locator('article.request', { hasText: 'Open document' }).first();
  const docsHop = card.locator('section.hop.call[data-to="docs-api"]');
  await docsHop.waitFor();
  assert.match((await docsHop.getAttribute('class')) ?? '', /refused/);
  assert.match((await docsHop.locator('.status').textContent()) ?? '', /404/);
  // The reason names neither the title nor the owner of a document bob may not read.
  assert.match((await docsHop.locator('.reason').textContent()) ?? '', /^Bob Brown may not read document [0-9a-f]{8}…: user: none/);
  // The token the Docs API judged was bob's, obtained On-Behalf-Of by the Tasks API.
  assert.match((await docsHop.locator('table.claims').textContent()) ?? '', /bob@contoso\.test/);
  await scrollTo(card);
  await shot('10-chain-bob-refused');
});

test('the chain view is private: bob sees only his own requests (no title of alice’s), single hops hidden by default, newest first; only an admin sees every user’s', { timeout: 120_000 }, async () => {
  // Still bob, on his own chain view.
  await openChainView();
  // What the chain view shows of requests and audit entries (the demo accounts box lists every demo user on purpose).
  const body = async () => `${(await page.locator('#requests').textContent()) ?? ''} ${(await page.locator('#audit-entries').textContent()) ?? ''}`;
  assert.match(await page.locator('#chain-scope').textContent() ?? '', /Requests made in the name of Bob Brown/);
  assert.equal(await page.locator('article.request', { hasText: 'Q3 figures' }).count(), 0);
  assert.equal(await page.locator('article.request', { hasText: 'Prepare the quarterly review' }).count(), 0);
  assert.doesNotMatch(await body(), /Q3 figures|quarterly review|Alice Adams/, 'nothing of alice’s: no trace, no document title, no audit entry');
  // Newest first, and single-hop requests (bob's page loads) hidden until asked for.
  const first = page.locator('article.request').first();
  assert.match((await first.textContent()) ?? '', /Open document/);
  assert.equal(await page.locator('article.request', { hasText: 'List tasks' }).count(), 0, 'single-hop requests are hidden by default');
  await page.locator('#show-single').check();
  await page.locator('article.request', { hasText: 'List tasks' }).first().waitFor();
  assert.doesNotMatch(await body(), /Q3 figures|quarterly review|Alice Adams/);
  await page.locator('#show-single').uncheck();
  // No way around it: the "all users" view is refused to bob, page and stream alike.
  assert.equal(await page.getByRole('link', { name: /Show every user/ }).count(), 0);
  const allPage = await page.goto(`${WEB}/chain?view=all`);
  assert.equal(allPage?.status(), 403);
  const stream = await page.request.get(`${WEB}/chain/events?view=all`);
  assert.equal(stream.status(), 403);
  assert.deepEqual(await stream.json(), { error: 'forbidden', error_description: 'Only an administrator may see every user’s requests.' });

  // Signed out: nothing at all.
  await page.goto(`${WEB}/`);
  await signOut();
  await openChainView();
  assert.equal(await page.locator('article.request').count(), 0);
  assert.match(await page.locator('#requests').textContent() ?? '', /Sign in to see the requests made in your name/);

  // Alice again: no consent page the second time, and her own requests are there.
  await signIn(ALICE, { consent: false });
  await openChainView();
  await page.locator('article.request', { hasText: 'retried after step-up' }).waitFor();
  assert.doesNotMatch(await body(), /Bob Brown|bob@contoso\.test/, 'alice does not see bob’s requests either');
  await page.goto(`${WEB}/`);
  await signOut();

  // Olivia, the demo's administrator: her own view by default, every user's on request.
  await signIn(OLIVIA, { consent: true });
  await openChainView();
  assert.equal(await page.locator('article.request', { hasText: 'retried after step-up' }).count(), 0);
  await page.getByRole('link', { name: /Show every user/ }).click();
  await page.waitForURL(`${WEB}/chain?view=all`);
  await page.locator('body[data-chain-ready="true"]').waitFor();
  await page.locator('article.request', { hasText: 'retried after step-up' }).waitFor();
  await page.locator('article.request', { hasText: 'Bob Brown' }).first().waitFor();
  await page.getByText('Every user\'s requests (administrator view).').waitFor();
});

test('the anti-pattern switch: the Tasks API tries its own identity for a user, the SDK refuses', { timeout: 90_000 }, async () => {
  await openChainView();
  await page.getByRole('button', { name: 'Turn on' }).click();
  await page.waitForURL(`${WEB}/chain`);
  await page.locator('#anti-pattern-state', { hasText: 'ON' }).waitFor();

  await page.goto(`${WEB}/documents`);
  // End-user words on the page; the developer's explanation only in the chain view.
  await page.getByText(/The Tasks API tried to reach your documents under its own name instead of yours, and refused to go on/).waitFor();
  assert.doesNotMatch((await page.locator('main').textContent()) ?? '', /appToken|ConfusedDeputyError|SDK/);

  await openChainView();
  const card = page.locator('article.request', { hasText: 'List documents' }).first();
  const refusal = card.locator('section.hop.exchange.refused');
  await refusal.waitFor();
  const text = (await refusal.textContent()) ?? '';
  assert.match(text, /Resource SDK · refused/);
  assert.match(text, /confused-deputy/);
  assert.match(text, /appToken\(\) was called while serving a request/);
  assert.equal(await card.locator('section.hop.call[data-to="docs-api"]').count(), 0, 'no call reached the Docs API');
  // A deliberate refusal (403, RFC 9457 problem details), not a 500 — asked directly, with alice's token.
  // `token issue` applies its configuration to the store: the one this service runs with (Tasks Web's redirect URI on its port).
  const configFile = join(dataDir, 'baton-web-port.json');
  await writeFile(configFile, JSON.stringify(withWebPort(JSON.parse(await readFile(CONFIG, 'utf8')), webPort)));
  const { stdout: token } = await promisify(execFile)(process.execPath, [
    join(REPO, 'packages/cli/src/bin.ts'), 'token', 'issue', '--config', configFile, '--data', dataDir, '--tenant', 'contoso',
    '--user', ALICE.username, '--client', 'tasks-web', '--scope', 'api://tasks/Tasks.ReadWrite', '--issuer-base', server.url,
  ], { env: { ...process.env, BATON_KEK: '' } });
  const direct = await fetch(`${chain.urls.tasksApi}/documents`, { headers: { authorization: `Bearer ${token.trim()}` } });
  assert.equal(direct.status, 403);
  assert.equal(direct.headers.get('content-type'), 'application/problem+json; charset=utf-8');
  assert.deepEqual(await direct.json(), {
    type: 'tag:baton.dev,2026:problems/confused-deputy',
    title: 'Refused to act without you',
    status: 403,
    detail: 'The Tasks API tried to reach your documents under its own name instead of yours, and refused to go on: the Docs API could no longer tell that it is you asking. Nothing was read or changed.',
    error: 'confused_deputy',
  });
  const listed = chain.chain.snapshot().find((r) => r.label === 'List documents' && r.hops.some((h) => h.kind === 'exchange' && h.outcome === 'refused'));
  assert.equal(listed?.hops.find((h) => h.kind === 'call' && h.to === 'tasks-api')?.status, 403);
  await scrollTo(page.locator('#anti-pattern-card'));
  await shot('11-chain-confused-deputy');

  await page.getByRole('button', { name: 'Turn off' }).click();
  await page.locator('#anti-pattern-state', { hasText: 'off' }).waitFor();
  assert.equal(chain.antiPattern.enabled, false);
});

test('no favicon 404: Tasks Web and the token service\'s pages both answer /favicon.ico and link their icon', { timeout: 90_000 }, async () => {
  for (const origin of [WEB, server.url]) {
    const icon = await page.request.get(`${origin}/favicon.ico`);
    assert.equal(icon.status(), 200, origin);
    assert.equal(icon.headers()['content-type'], 'image/svg+xml');
    assert.match(await icon.text(), /^<svg /);
  }
  // Baton's sign-in page, in a browser with no session there yet.
  const fresh = await browser.newContext({ ignoreHTTPSErrors: true });
  try {
    const signInPage = await fresh.newPage();
    await signInPage.goto(`${WEB}/signin`);
    await signInPage.waitForURL(/^https:\/\/localhost:\d+\//);
    await signInPage.locator('#username').waitFor();
    const href = await signInPage.locator('link[rel="icon"]').getAttribute('href');
    assert.equal((await signInPage.request.get(new URL(href ?? '', signInPage.url()).href)).status(), 200);
  } finally {
    await fresh.close();
  }
  await page.goto(`${WEB}/`);
  assert.equal((await page.request.get(new URL((await page.locator('link[rel="icon"]').getAttribute('href')) ?? '', page.url()).href)).status(), 200);
});

test('the indexer reads every document with its application permission, on its own route', { timeout: 60_000 }, async () => {
  await openChainView();
  await page.getByRole('button', { name: 'Run now' }).click();
  await page.waitForURL(`${WEB}/chain`);
  const card = page.locator('article.request', { hasText: 'Index every document' }).first();
  await card.locator('section.hop.call[data-to="docs-api"]').waitFor();
  const claims = (await card.locator('table.claims').textContent()) ?? '';
  assert.match(claims, /Docs\.ReadAll/);
  assert.match(claims, /idtyp\s*app/);
  assert.match((await card.locator('.decision').textContent()) ?? '', /client_credentials/);
  await page.locator('#indexer-status', { hasText: '1 document' }).waitFor();
  assert.deepEqual(chain.indexer.search('revenue').length, 1);
  await scrollTo(card);
  await shot('12-chain-indexer');
  assert.deepEqual(browserProblems, [], 'no script error and no CSP violation on any page');
});


/** `baton dev` as `npm start` runs it, until it prints `ready`. */
function devProcess(data: string, env: Record<string, string> = {}, args: string[] = []): { child: ChildProcess; stdout: () => string; stderr: () => string; exited: Promise<number | null> } {
  const child = spawn(process.execPath, ['packages/cli/src/bin.ts', 'dev', '--data', data, '--port', '0', '--api-port', '0', '--indexer-interval', '0', ...args], {
    cwd: REPO,
    env: { ...process.env, NO_COLOR: '1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, stdout: () => stdout, stderr: () => stderr, exited };
}

/** `baton dev` with Tasks Web on `webPort` (through BATON_WEB_PORT, as a user would set it), until it prints `ready`. */
function startDev(data: string, webPort: number): Promise<{ child: ChildProcess; stdout: string; stderr: () => string; exited: Promise<number | null> }> {
  const child = spawn(process.execPath, ['packages/cli/src/bin.ts', 'dev', '--data', data, '--port', '0', '--api-port', '0', '--indexer-interval', '0'], {
    cwd: REPO,
    env: { ...process.env, NO_COLOR: '1', BATON_WEB_PORT: String(webPort) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`baton dev did not print ready in 90 s: ${stderr}`));
    }, 90_000);
    child.stdout?.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      if (new RegExp(`^ready http://127\\.0\\.0\\.1:${webPort}$`, 'm').test(stdout)) {
        clearTimeout(timer);
        resolve({ child, stdout, stderr: () => stderr, exited });
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`baton dev exited (${code}) before ready: ${stderr}`));
    });
  });
}

test('`baton dev` (npm start) prints URLs, users and the CA, stops on Ctrl-C, and a second start reuses the data', { timeout: 120_000 }, async () => {
  await stopInProcess();
  const data = join(dataDir, 'dev');
  const port = await freePort();

  const first = await startDev(data, port);
  assert.match(first.stdout, new RegExp(`Tasks Web \\(Client App\\)\\s+http://127\\.0\\.0\\.1:${port}`));
  assert.match(first.stdout, new RegExp(`Chain view\\s+http://127\\.0\\.0\\.1:${port}/chain`));
  assert.match(first.stdout, /alice@contoso\.test\s+alice-Demo-pass-1\s+TOTP secret JBSWY3DPEHPK3PXP — current code \d{3} \d{3}/);
  assert.match(first.stdout, /bob@contoso\.test\s+bob-Demo-pass-1/);
  assert.match(first.stdout, /Trust the local CA[\s\S]*tls\/ca\.pem/);
  assert.doesNotMatch(first.stdout + first.stderr(), /eyJ[\w-]{10,}\./, 'no token printed');
  assert.doesNotMatch(first.stderr(), /client secret/i, 'the demo\'s own client secrets pass its own rule: no warning about them');
  assert.equal((await fetch(`http://127.0.0.1:${port}/healthz`)).status, 200);
  // The redirect URI registered at the token service followed the port: a sign-in starts and reaches Baton's page.
  const signin = await fetch(`http://127.0.0.1:${port}/signin`, { redirect: 'manual' });
  assert.equal(signin.status, 303);
  assert.equal(new URL(signin.headers.get('location') ?? '').searchParams.get('redirect_uri'), `http://127.0.0.1:${port}/callback`);
  // The demo's admin application: `baton admin` works against it, as the README shows.
  const tokenService = /Token service\s+(https:\/\/localhost:\d+)\/contoso\/v2\.0/.exec(first.stdout)![1]!;
  assert.match(first.stdout, /Admin API\s+https:\/\/localhost:\d+\/contoso\/admin\/v1\s+baton admin … as demo-admin/);
  const revoked = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    execFile(process.execPath, ['packages/cli/src/bin.ts', 'admin', 'users', 'revoke-sessions', 'alice@contoso.test', '--json'], {
      cwd: REPO,
      env: { ...process.env, BATON_URL: tokenService, BATON_TENANT: 'contoso', BATON_CA: join(data, 'tls', 'ca.pem'), BATON_ADMIN_CLIENT_ID: 'demo-admin', BATON_ADMIN_CLIENT_SECRET: 'demo-admin-demo-secret-for-local-use-only' },
    }, (error, stdout, stderr) => resolve({ code: error ? (error.code as number) : 0, stdout, stderr }));
  });
  assert.equal(revoked.code, 0, revoked.stderr);
  assert.equal(JSON.parse(revoked.stdout).username, 'alice@contoso.test');
  assert.ok(Date.parse(JSON.parse(revoked.stdout).sessionsRevokedBefore) > Date.now() - 60_000);
  const ca = await readFile(join(data, 'tls', 'ca.pem'), 'utf8');
  first.child.kill('SIGINT');
  assert.equal(await first.exited, 0, first.stderr());
  assert.ok(existsSync(join(data, 'chain', 'tasks.sqlite')), 'the APIs keep their data under the data directory');

  const second = await startDev(data, port);
  assert.equal(await readFile(join(data, 'tls', 'ca.pem'), 'utf8'), ca, 'the same local CA: a browser that trusts it keeps trusting it');
  assert.match(second.stderr(), /using a DEVELOPMENT key-encryption key/, 'the same keys');
  second.child.kill('SIGINT');
  assert.equal(await second.exited, 0, second.stderr());
});

test('`baton dev` on a taken port says which flag moves it', { timeout: 180_000 }, async () => {
  await stopInProcess();
  const blocker = createServer();
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
  const taken = (blocker.address() as import('node:net').AddressInfo).port;
  const env = { BATON_WEB_PORT: String(await freePort()) };
  try {
    const web = devProcess(join(dataDir, 'dev-taken'), {}, ['--web-port', String(taken)]);
    assert.equal(await web.exited, 1, web.stderr());
    assert.match(web.stderr(), new RegExp(`Tasks Web: port ${taken} on 127\\.0\\.0\\.1 is already in use.*--web-port N.{0,2} \\(or BATON_WEB_PORT=N\\)`));
    const api = devProcess(join(dataDir, 'dev-taken'), env, ['--api-port', String(taken)]);
    assert.equal(await api.exited, 1, api.stderr());
    assert.match(api.stderr(), /already in use.*--api-port N.{0,2} \(or BATON_API_PORT=N\)/);
    const tokenService = devProcess(join(dataDir, 'dev-taken'), env, ['--port', String(taken)]);
    assert.equal(await tokenService.exited, 1, tokenService.stderr());
    assert.match(tokenService.stderr(), /already in use.*--port N \(or BATON_PORT=N\)/);
  } finally {
    await new Promise<void>((resolve) => blocker.close(() => resolve()));
  }
});

/**
 * The metrics as an operator sees them (issue 13): the token service (startServer with a metrics
 * port) and the demo chain's APIs (their SDK metrics on ports of their own) scraped by a real
 * Prometheus — Debian's /usr/bin/prometheus, started here on 127.0.0.1 with its own configuration
 * and data directory, scraping every second. After a known load (client credentials issued and
 * refused, an On-Behalf-Of call through the Tasks API, its cached repeat, a step-up refusal, calls
 * without a token), the PromQL queries docs/operations.md gives return the expected counts through
 * Prometheus' HTTP API, every query in that section is valid PromQL, and `promtool check metrics`
 * finds nothing in any scraped text.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { auditLogOf } from '@baton/server';
import { startChain, type RunningChain } from '@baton/example-chain';
import { startTestServer, basic, type TestServer } from '../packages/server/test/harness.ts';
import { secretOf, userToken } from '../packages/server/test/obo-fixtures.ts';
import { freePort } from '../packages/server/test/free-port.ts';

const OPERATIONS = new URL('../docs/operations.md', import.meta.url);

let dir: string;
let server: TestServer;
let chain: RunningChain;
let prometheus: ChildProcess | undefined;
let prometheusUrl: string;
let prometheusLog = '';

/** Polls `check` until it returns a value (no fixed sleeps: Prometheus scrapes every second). */
async function eventually<T>(what: string, check: () => Promise<T | undefined>, attempts = 240): Promise<T> {
  let last: unknown;
  for (let i = 0; i < attempts; i++) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error(`${what}: not reached (${(last as Error | undefined)?.message ?? 'no match'})\n${prometheusLog.slice(-2000)}`);
}

interface Sample {
  metric: Record<string, string>;
  value: [number, string];
}

async function query(promql: string): Promise<Sample[]> {
  const response = await fetch(`${prometheusUrl}/api/v1/query?${new URLSearchParams({ query: promql })}`);
  const body = (await response.json()) as { status: string; error?: string; data?: { resultType: string; result: Sample[] } };
  if (body.status !== 'success') throw new Error(`${promql}: ${body.error}`);
  return body.data!.result;
}

/** The value of the one series of `promql` whose labels include `labels`. */
async function valueOf(promql: string, labels: Record<string, string> = {}): Promise<number | undefined> {
  const found = (await query(promql)).filter((s) => Object.entries(labels).every(([k, v]) => s.metric[k] === v));
  return found.length === 1 ? Number(found[0]!.value[1]) : undefined;
}

const tokenRequest = (clientId: string, secret: string) =>
  fetch(`${server.url}/contoso/oauth2/v2.0/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: basic(clientId, secret) },
    body: 'grant_type=client_credentials&scope=api%3A%2F%2Fdocs%2F.default',
  });

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'baton-prometheus-'));
  server = await startTestServer({ metrics: { port: 0 } });
  chain = await startChain({
    authority: `${server.url}/contoso/v2.0`,
    exchanges: auditLogOf(server.ctx),
    ports: { web: await freePort(), api: 0 },
    metricsPort: 0,
    indexerIntervalMs: 0,
    indexerFirstRunMs: -1,
    // No security event streams: their app-only tokens would add to the client-credentials count below.
    securityEvents: false,
    log: () => {},
  });
  const target = (url: string) => new URL(url).host;
  const config = [
    'global:',
    '  scrape_interval: 1s',
    '  scrape_timeout: 1s',
    '  evaluation_interval: 1s',
    'scrape_configs:',
    '  - job_name: baton',
    `    static_configs: [{ targets: ['${target(server.metrics!.url!)}'] }]`,
    '  - job_name: tasks-api',
    `    static_configs: [{ targets: ['${target(chain.metricsUrls!.tasksApi)}'] }]`,
    '  - job_name: docs-api',
    `    static_configs: [{ targets: ['${target(chain.metricsUrls!.docsApi)}'] }]`,
    '',
  ].join('\n');
  await writeFile(join(dir, 'prometheus.yml'), config);
  const port = await freePort();
  prometheusUrl = `http://127.0.0.1:${port}`;
  prometheus = spawn('/usr/bin/prometheus', [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  prometheus.stderr!.on('data', (chunk) => (prometheusLog += chunk));
  await eventually('Prometheus ready', async () => ((await fetch(`${prometheusUrl}/-/ready`)).status === 200 ? true : undefined));
  await eventually('every target up', async () => ((await query('up == 1')).length === 3 ? true : undefined));
});

after(async () => {
  if (prometheus && prometheus.exitCode === null) {
    const exited = new Promise((resolve) => prometheus!.once('exit', resolve));
    prometheus.kill('SIGTERM');
    await exited;
  }
  await chain?.close();
  await server?.close();
  await rm(dir, { recursive: true, force: true });
});

/** The queries of docs/operations.md this test checks, with the counts the load below produces. */
const EXPECTED: { query: string; labels: Record<string, string>; value: number }[] = [
  { query: 'sum by (client, result) (baton_token_requests_total{tenant="contoso", grant="client_credentials"})', labels: { client: 'indexer', result: 'ok' }, value: 5 },
  { query: 'sum by (client, result) (baton_token_requests_total{tenant="contoso", grant="client_credentials"})', labels: { client: 'indexer', result: 'invalid_client' }, value: 3 },
  { query: 'sum by (client, result) (baton_token_requests_total{tenant="contoso", grant="client_credentials"})', labels: { client: 'unknown', result: 'invalid_client' }, value: 2 },
  { query: 'sum by (caller, api, decision, rule) (baton_token_exchanges_total)', labels: { caller: 'tasks-api', api: 'docs-api', decision: 'allow' }, value: 1 },
  { query: 'sum by (caller, api, decision, rule) (baton_token_exchanges_total)', labels: { caller: 'tasks-api', api: 'docs-api', decision: 'refuse', rule: 'conditional-access' }, value: 1 },
  { query: 'sum by (job, result) (baton_guard_requests_total)', labels: { job: 'tasks-api', result: 'ok' }, value: 3 },
  { query: 'sum by (job, result) (baton_guard_requests_total)', labels: { job: 'tasks-api', result: 'ERR_BEARER_MISSING' }, value: 2 },
  { query: 'sum by (job, result) (baton_guard_requests_total)', labels: { job: 'docs-api', result: 'ok' }, value: 2 },
  { query: 'sum by (job, result) (baton_obo_cache_lookups_total{kind="obo"})', labels: { job: 'tasks-api', result: 'hit' }, value: 1 },
  { query: 'sum by (job, result) (baton_obo_cache_lookups_total{kind="obo"})', labels: { job: 'tasks-api', result: 'miss' }, value: 2 },
  { query: 'sum by (job, result) (baton_obo_token_requests_total)', labels: { job: 'tasks-api', result: 'ok' }, value: 1 },
  { query: 'sum by (job, result) (baton_obo_token_requests_total)', labels: { job: 'tasks-api', result: 'interaction_required' }, value: 1 },
  { query: 'sum by (job, api, outcome) (baton_downstream_requests_total)', labels: { job: 'tasks-api', api: 'api://docs', outcome: '2xx' }, value: 2 },
  { query: 'sum by (job, api, outcome) (baton_downstream_requests_total)', labels: { job: 'tasks-api', api: 'api://docs', outcome: 'claims_challenge' }, value: 1 },
  { query: 'sum by (tenant, alg, status) (baton_signing_keys)', labels: { tenant: 'contoso', alg: 'ES256', status: 'current' }, value: 1 },
];

test('after a known load, the PromQL of docs/operations.md returns the expected counts from a real Prometheus', async () => {
  for (let i = 0; i < 5; i++) assert.equal((await tokenRequest('indexer', secretOf('indexer'))).status, 200);
  for (let i = 0; i < 3; i++) assert.equal((await tokenRequest('indexer', 'not-the-secret')).status, 401);
  for (let i = 0; i < 2; i++) assert.equal((await tokenRequest(`made-up-${i}`, 'x')).status, 401);

  const alice = await userToken(server);
  const asAlice = { authorization: `Bearer ${alice}` };
  // An On-Behalf-Of call through the chain, then the same call from the SDK's cache.
  for (let i = 0; i < 2; i++) {
    const documents = await fetch(`${chain.urls.tasksApi}/documents`, { headers: asAlice });
    assert.equal(documents.status, 200, await documents.text());
  }
  // Docs.Write needs MFA: the exchange is refused (conditional access) and the Tasks API answers a claims challenge.
  const share = await fetch(`${chain.urls.tasksApi}/documents/doc-1/shares`, {
    method: 'POST',
    headers: { ...asAlice, 'content-type': 'application/json' },
    body: JSON.stringify({ username: 'bob@contoso.test', access: 'read' }),
  });
  assert.equal(share.status, 401, await share.text());
  for (let i = 0; i < 2; i++) assert.equal((await fetch(`${chain.urls.tasksApi}/documents`)).status, 401);

  for (const expected of EXPECTED) {
    await eventually(`${expected.query} ${JSON.stringify(expected.labels)} = ${expected.value}`, async () =>
      (await valueOf(expected.query, expected.labels)) === expected.value ? true : undefined,
    );
  }
  // The latency histograms have every request.
  assert.equal(await valueOf('sum by (grant) (baton_token_request_duration_seconds_count{grant="client_credentials"})', { grant: 'client_credentials' }), 10);
});

test('every query in the Metrics section of docs/operations.md is there and is valid PromQL', async () => {
  const docs = await readFile(OPERATIONS, 'utf8');
  const start = docs.indexOf('## Metrics');
  const end = docs.indexOf('\n## ', start + 1);
  const section = docs.slice(start, end < 0 ? undefined : end);
  assert.ok(docs.includes('## Metrics'));
  for (const { query: promql } of EXPECTED) assert.ok(section.includes(promql), `docs/operations.md lacks: ${promql}`);
  // Every `promql` block: one query per line (alert rules are checked by promtool below).
  const blocks = [...section.matchAll(/```promql\n([\s\S]*?)```/g)].flatMap((m) => m[1]!.split('\n')).map((l) => l.replace(/#.*$/, '').trim()).filter(Boolean);
  assert.ok(blocks.length >= 20, `${blocks.length} queries`);
  for (const promql of blocks) await query(promql);
  // The alert examples, as a rules file promtool accepts.
  const rules = /```yaml\n(groups:[\s\S]*?)```/.exec(section);
  assert.ok(rules, 'an alert rules example');
  await writeFile(join(dir, 'rules.yml'), rules[1]!);
  const checked = await promtool(['check', 'rules', join(dir, 'rules.yml')]);
  assert.equal(checked.code, 0, checked.output);
});

function promtool(args: string[], input?: string): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    const child = execFile('promtool', args, (error, stdout, stderr) => resolve({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, output: stdout + stderr }));
    if (input !== undefined) child.stdin!.end(input);
  });
}

test('promtool check metrics finds nothing in what the token service and the APIs expose', async () => {
  for (const url of [server.metrics!.url!, chain.metricsUrls!.tasksApi, chain.metricsUrls!.docsApi, chain.metricsUrls!.auditApi]) {
    const text = await (await fetch(url)).text();
    assert.match(text, /^# TYPE baton_/m, url);
    const checked = await promtool(['check', 'metrics'], text);
    assert.equal(checked.code, 0, `${url}: ${checked.output}`);
    assert.equal(checked.output.trim(), '', `${url}: ${checked.output}`);
  }
});

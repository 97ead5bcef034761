/**
 * The token service's Prometheus metrics (observe/metrics.ts), black-box over HTTP: `/metrics` on
 * its own listener and never on the public port, what each request counts under which labels, and
 * that nothing a client sends (a made-up client id, a garbage grant type, an unknown tenant) can
 * create a series. The scrape by a real Prometheus is test/prometheus.test.ts.
 */
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { createSigner } from '@baton/core';
import type { Registry } from 'prom-client';
import { startTestServer, basic, type TestServer } from './harness.ts';
import { OBO_GRANT, obo, oboConfigure, secretOf, userToken } from './obo-fixtures.ts';
import { ServerMetrics, tokenRequestRefused, tokenRouteHooks } from '../src/observe/metrics.ts';
import { toOAuthError } from '../src/http/errors.ts';
import { ALICE, Browser, authorizeUrl, formOf, pkce, runFlow, webParams } from './signin-kit.ts';

let server: TestServer;
const clientKey = generateKeyPairSync('ec', { namedCurve: 'P-256' });
before(async () => {
  server = await startTestServer({
    tls: 'dev',
    metrics: { port: 0 },
    configure(raw) {
      oboConfigure(raw);
      // The indexer may also authenticate with a client assertion (private_key_jwt).
      raw.tenants[0].applications.find((a: any) => a.clientId === 'indexer').jwks = [{ ...clientKey.publicKey.export({ format: 'jwk' }), kid: 'indexer-key-1', use: 'sig' }];
    },
  });
});
after(() => server.close());

const registry = (s: TestServer = server): Registry => s.metrics!.registry;

/** The sum of a metric's samples whose labels include `labels` (`name` may be a histogram's `_count`). */
async function sample(name: string, labels: Record<string, string> = {}, s: TestServer = server): Promise<number> {
  const base = name.replace(/_(count|sum)$/, '');
  const metric = registry(s).getSingleMetric(base) ?? registry(s).getSingleMetric(name);
  assert.ok(metric, `no metric ${name}`);
  const { values } = await metric.get();
  return values
    .filter((v) => (base === name ? !('metricName' in v) || v.metricName === name : (v as { metricName?: string }).metricName === name))
    .filter((v) => Object.entries(labels).every(([k, want]) => String((v.labels as Record<string, unknown>)[k]) === want))
    .reduce((sum, v) => sum + v.value, 0);
}

/** Every label value of a metric, as `name{k="v",…}` lines (to look for what must never be there). */
async function series(name: string): Promise<string[]> {
  const { values } = await registry().getSingleMetric(name)!.get();
  return values.map((v) => JSON.stringify(v.labels));
}

const clientCredentials = (clientId: string, secret: string, extra: Record<string, string> = {}, tenant = 'contoso') =>
  server.post(`/${tenant}/oauth2/v2.0/token`, { grant_type: 'client_credentials', scope: 'api://docs/.default', ...extra }, { authorization: basic(clientId, secret) });

describe('the metrics listener', () => {
  test('serves /metrics on 127.0.0.1, on a port other than the public one, in the Prometheus text format', async () => {
    const url = new URL(server.metrics!.url!);
    assert.equal(url.hostname, '127.0.0.1');
    assert.equal(url.pathname, '/metrics');
    assert.notEqual(url.port, new URL(server.url).port);
    const response = await fetch(url);
    assert.equal(response.status, 200);
    assert.match(response.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    const text = await response.text();
    for (const name of ['baton_token_requests_total', 'baton_token_request_duration_seconds', 'baton_store_call_duration_seconds', 'baton_signing_keys', 'process_cpu_user_seconds_total', 'nodejs_eventloop_lag_seconds']) {
      assert.match(text, new RegExp(`^# TYPE ${name} `, 'm'), name);
    }
  });

  test('the public port has no /metrics: 404, with nothing of the metrics in the answer', async () => {
    for (const method of ['GET', 'HEAD', 'POST']) {
      const response = await fetch(`${server.url}/metrics`, { method });
      assert.equal(response.status, 404, method);
      assert.doesNotMatch(await response.text(), /baton_|process_/);
    }
  });

  test('only GET and HEAD /metrics answer on the metrics port', async () => {
    const base = server.metrics!.url!.replace(/\/metrics$/, '');
    assert.equal((await fetch(`${base}/`)).status, 404);
    assert.equal((await fetch(`${base}/contoso/oauth2/v2.0/token`, { method: 'POST' })).status, 404);
    const post = await fetch(`${base}/metrics`, { method: 'POST' });
    assert.equal(post.status, 405);
    assert.equal(post.headers.get('allow'), 'GET, HEAD');
    const head = await fetch(`${base}/metrics`, { method: 'HEAD' });
    assert.equal(head.status, 200);
  });

  test('without the metrics option nothing is recorded and nothing listens', async () => {
    const plain = await startTestServer();
    try {
      assert.equal(plain.metrics, undefined);
      assert.equal(plain.ctx.metrics, undefined);
      assert.equal((await fetch(`${plain.url}/metrics`)).status, 404);
    } finally {
      await plain.close();
    }
  });

  test('two servers in one process keep their own registries', async () => {
    const other = await startTestServer({ metrics: {} });
    try {
      assert.equal(other.metrics!.url, undefined);
      const before = await sample('baton_token_requests_total', { client: 'indexer', result: 'ok' });
      const response = await other.post('/contoso/oauth2/v2.0/token', { grant_type: 'client_credentials', scope: 'api://docs/.default' }, { authorization: basic('indexer', secretOf('indexer')) });
      assert.equal(response.status, 200);
      assert.equal(await sample('baton_token_requests_total', { client: 'indexer', result: 'ok' }, other), 1);
      assert.equal(await sample('baton_token_requests_total', { client: 'indexer', result: 'ok' }), before);
    } finally {
      await other.close();
    }
  });
});

describe('token requests', () => {
  test('an issued token counts once under its tenant, grant, client and ok; its latency under the grant', async () => {
    const labels = { tenant: 'contoso', grant: 'client_credentials', client: 'indexer', result: 'ok' };
    const before = await sample('baton_token_requests_total', labels);
    const latency = await sample('baton_token_request_duration_seconds_count', { grant: 'client_credentials' });
    const signed = await sample('baton_jws_duration_seconds_count', { operation: 'sign', alg: 'ES256' });
    assert.equal((await clientCredentials('indexer', secretOf('indexer'))).status, 200);
    assert.equal(await sample('baton_token_requests_total', labels), before + 1);
    assert.equal(await sample('baton_token_request_duration_seconds_count', { grant: 'client_credentials' }), latency + 1);
    assert.equal(await sample('baton_jws_duration_seconds_count', { operation: 'sign', alg: 'ES256' }), signed + 1);
  });

  test('a client assertion (private_key_jwt) counts its signature check', async () => {
    const before = await sample('baton_jws_duration_seconds_count', { operation: 'verify', alg: 'ES256' });
    const now = Math.floor(Date.now() / 1000);
    const assertion = createSigner(clientKey.privateKey, 'indexer-key-1', 'ES256').sign({ iss: 'indexer', sub: 'indexer', aud: server.tokenUrl(), exp: now + 300, iat: now, jti: randomUUID() });
    const response = await server.post('/contoso/oauth2/v2.0/token', {
      grant_type: 'client_credentials',
      scope: 'api://docs/.default',
      client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
      client_assertion: assertion,
    });
    assert.equal(response.status, 200, JSON.stringify(response.body));
    assert.equal(await sample('baton_jws_duration_seconds_count', { operation: 'verify', alg: 'ES256' }), before + 1);
    assert.ok((await sample('baton_token_requests_total', { client: 'indexer', result: 'ok' })) >= 1);
  });

  test('a refusal counts under its OAuth error code; a registered client keeps its name when its secret is wrong', async () => {
    const labels = { tenant: 'contoso', grant: 'client_credentials', client: 'indexer', result: 'invalid_client' };
    const before = await sample('baton_token_requests_total', labels);
    assert.equal((await clientCredentials('indexer', 'not-the-secret')).status, 401);
    assert.equal(await sample('baton_token_requests_total', labels), before + 1);
    const scope = { tenant: 'contoso', grant: 'client_credentials', client: 'indexer', result: 'invalid_scope' };
    const beforeScope = await sample('baton_token_requests_total', scope);
    assert.equal((await clientCredentials('indexer', secretOf('indexer'), { scope: 'api://nowhere/.default' })).status, 400);
    assert.equal(await sample('baton_token_requests_total', scope), beforeScope + 1);
  });

  test('a client over its rate limit (429) counts as rate_limited; a store that is down (503) as temporarily_unavailable', async () => {
    const limited = await startTestServer({
      metrics: {},
      configure(raw) {
        oboConfigure(raw);
        raw.limits = { tokenEndpoint: { perClient: { requestsPerSecond: 0.001, burst: 1 } } };
      },
    });
    try {
      const once = () => limited.post('/contoso/oauth2/v2.0/token', { grant_type: 'client_credentials', scope: 'api://docs/.default' }, { authorization: basic('indexer', secretOf('indexer')) });
      assert.equal((await once()).status, 200);
      const refused = await once();
      assert.equal(refused.status, 429);
      assert.equal(refused.body.error, 'temporarily_unavailable', 'the client is answered the OAuth code');
      const labels = { tenant: 'contoso', grant: 'client_credentials', client: 'indexer' };
      assert.equal(await sample('baton_token_requests_total', { ...labels, result: 'rate_limited' }, limited), 1);
      assert.equal(await sample('baton_token_requests_total', { ...labels, result: 'temporarily_unavailable' }, limited), 0);
    } finally {
      await limited.close();
    }
    // A store's connection failing is answered 503 temporarily_unavailable (http/errors.ts): the hooks
    // the token route runs, given the error the store throws, count it apart from the 429.
    const metrics = new ServerMetrics({ store: server.ctx.store, now: () => 0 }, { processMetrics: false });
    const hooks = tokenRouteHooks(metrics, toOAuthError);
    const request = {};
    tokenRequestRefused(request, { tenant: 'contoso', grant: 'client_credentials', client: 'indexer' });
    hooks.onError(request, { elapsedTime: 1 }, Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' }), () => {});
    const text = await metrics.registry.metrics();
    assert.match(text, /baton_token_requests_total\{tenant="contoso",grant="client_credentials",client="indexer",result="temporarily_unavailable"\} 1/);
    assert.doesNotMatch(text, /result="rate_limited"/);
  });

  test('made-up client ids, grant types and tenants never become labels: they count as unknown', async () => {
    const metric = 'baton_token_requests_total';
    // One of each first, so the `unknown` series exist; then many distinct made-up values.
    const attempts = async (n: number) => {
      for (let i = 0; i < n; i++) {
        const junk = `junk-${randomUUID()}`;
        assert.equal((await clientCredentials(junk, 'x')).status, 401);
        assert.equal((await server.post('/contoso/oauth2/v2.0/token', { grant_type: junk }, { authorization: basic('indexer', secretOf('indexer')) })).status, 400);
        assert.equal((await server.post(`/${junk.slice(0, 40)}/oauth2/v2.0/token`, { grant_type: 'client_credentials' }, { authorization: basic(junk, 'x') })).status, 400);
        assert.equal((await clientCredentials('indexer', secretOf('indexer'), { grant_type: `urn:${junk}` })).status, 400);
      }
    };
    await attempts(1);
    const seriesBefore = (await series(metric)).length;
    const latencyBefore = (await series('baton_token_request_duration_seconds')).length;
    const unknownClient = await sample(metric, { tenant: 'contoso', grant: 'client_credentials', client: 'unknown', result: 'invalid_client' });
    const unknownGrant = await sample(metric, { tenant: 'contoso', grant: 'unknown', result: 'unsupported_grant_type' });
    const unknownTenant = await sample(metric, { tenant: 'unknown', grant: 'unknown', client: 'unknown', result: 'invalid_request' });
    await attempts(5);
    assert.equal((await series(metric)).length, seriesBefore, 'no new series');
    assert.equal((await series('baton_token_request_duration_seconds')).length, latencyBefore);
    assert.equal(await sample(metric, { tenant: 'contoso', grant: 'client_credentials', client: 'unknown', result: 'invalid_client' }), unknownClient + 5);
    assert.equal(await sample(metric, { tenant: 'contoso', grant: 'unknown', result: 'unsupported_grant_type' }), unknownGrant + 10);
    assert.equal(await sample(metric, { tenant: 'unknown', grant: 'unknown', client: 'unknown', result: 'invalid_request' }), unknownTenant + 5);
    const text = await registry().metrics();
    assert.doesNotMatch(text, /junk-/);
  });

  test('a body refused before the endpoint runs (JSON, a repeated parameter) still counts, as invalid_request', async () => {
    const labels = { tenant: 'unknown', grant: 'unknown', client: 'unknown', result: 'invalid_request' };
    const before = await sample('baton_token_requests_total', labels);
    const json = await fetch(server.tokenUrl(), { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"grant_type":"client_credentials"}' });
    assert.equal(json.status, 400);
    assert.equal((await server.post('/contoso/oauth2/v2.0/token', 'grant_type=client_credentials&grant_type=password')).status, 400);
    assert.equal(await sample('baton_token_requests_total', labels), before + 2);
  });
});

describe('exchanges', () => {
  test('an allowed and a refused On-Behalf-Of exchange count under their deciding rule, caller and API', async () => {
    const assertion = await userToken(server);
    const allowed = await obo(server, 'tasks-api', assertion, 'api://docs/Docs.Read');
    assert.equal(allowed.status, 200, JSON.stringify(allowed.body));
    const refused = await obo(server, 'tasks-api', assertion, 'api://vault/Vault.Read');
    assert.equal(refused.status, 400);
    const allowedRule = await sample('baton_token_exchanges_total', { tenant: 'contoso', form: 'on_behalf_of', decision: 'allow', caller: 'tasks-api', api: 'docs-api' });
    assert.ok(allowedRule >= 1);
    assert.equal(await sample('baton_token_exchanges_total', { tenant: 'contoso', form: 'on_behalf_of', decision: 'refuse', rule: 'conditional-access', caller: 'tasks-api', api: 'vault-api' }), 1);
    assert.ok((await sample('baton_token_requests_total', { grant: OBO_GRANT, client: 'tasks-api', result: 'ok' })) >= 1);
    assert.ok((await sample('baton_jws_duration_seconds_count', { operation: 'verify', alg: 'ES256' })) >= 2);
    const garbage = await obo(server, 'tasks-api', 'not.a.jwt', 'api://docs/Docs.Read');
    assert.equal(garbage.status, 400);
    assert.equal(await sample('baton_token_exchanges_total', { decision: 'refuse', rule: 'assertion-signature', caller: 'tasks-api', api: 'none' }), 1);
  });
});

describe('store, keys and sign-in', () => {
  test('store calls are timed by operation', async () => {
    await userToken(server);
    assert.ok((await sample('baton_store_call_duration_seconds_count', { operation: 'getUserByName', result: 'ok' })) >= 1);
    assert.ok((await sample('baton_store_call_duration_seconds_count', { operation: 'listSigningKeys', result: 'ok' })) >= 1);
    const operations = new Set((await registry().getSingleMetric('baton_store_call_duration_seconds')!.get()).values.map((v) => String(v.labels.operation)));
    for (const op of operations) assert.ok(!['close', 'onInvalidate', 'migrate', 'engine'].includes(op), op);
  });

  test('published signing keys by status, and the age of the newest', async () => {
    assert.equal(await sample('baton_signing_keys', { tenant: 'contoso', alg: 'ES256', status: 'current' }), 1);
    assert.equal(await sample('baton_signing_keys', { tenant: 'contoso', alg: 'ES256', status: 'next' }), 1);
    const age = await sample('baton_signing_key_newest_age_seconds', { tenant: 'contoso', alg: 'ES256' });
    assert.ok(age >= 0 && age < 3600, String(age));
    server.advance(7200);
    try {
      assert.ok((await sample('baton_signing_key_newest_age_seconds', { tenant: 'contoso', alg: 'ES256' })) >= 7200);
      assert.ok((await sample('baton_signing_key_current_age_seconds', { tenant: 'contoso', alg: 'ES256' })) >= 7200);
    } finally {
      server.advance(-7200);
    }
  });

  test('sign-in outcomes: a wrong password, then the right one', async () => {
    const browser = new Browser();
    const { challenge } = pkce();
    const page = await runFlow(browser, server, authorizeUrl(server, webParams(challenge)), { stopAt: 'login' });
    const { action, fields } = formOf(page.hop);
    const wrong = await browser.post(action, { ...fields, username: ALICE.username, password: 'wrong-password' });
    assert.equal(wrong.status, 400);
    assert.equal(await sample('baton_signin_attempts_total', { tenant: 'contoso', step: 'password', result: 'failed' }), 1);
    const fresh = new Browser();
    const next = formOf((await runFlow(fresh, server, authorizeUrl(server, webParams(pkce().challenge)), { stopAt: 'login' })).hop);
    await fresh.post(next.action, { ...next.fields, username: ALICE.username, password: ALICE.password });
    assert.equal(await sample('baton_signin_attempts_total', { tenant: 'contoso', step: 'password', result: 'ok' }), 1);
    const text = await registry().metrics();
    assert.doesNotMatch(text, /alice/i, 'no user name in any label');
  });
});

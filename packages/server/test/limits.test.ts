/**
 * Token endpoint abuse limits (limits.ts): in flight and rate, per client and per IP; 429 with
 * Retry-After and the OAuth error JSON; another client is not affected; nothing leaks.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { OAuthError } from '@baton/core';
import { TokenEndpointLimiter, DEFAULT_TOKEN_ENDPOINT_LIMITS } from '../src/limits.ts';
import { startTestServer, basic, type TestServer } from './harness.ts';
import { secretOf } from './obo-fixtures.ts';

function throttled(run: () => unknown, retryAfter: string): void {
  assert.throws(run, (error: unknown) => {
    assert.ok(error instanceof OAuthError);
    assert.equal(error.status, 429);
    assert.equal(error.error, 'temporarily_unavailable');
    assert.deepEqual(error.entraCodes, [90055]);
    assert.equal(error.headers['retry-after'], retryAfter);
    return true;
  });
}

describe('TokenEndpointLimiter', () => {
  test('in flight: the N+1st concurrent request of a client is refused, a released slot admits again, others are unaffected', () => {
    const limiter = new TokenEndpointLimiter({ perClient: { concurrent: 2, requestsPerSecond: null }, perIp: { concurrent: null, requestsPerSecond: null } });
    const a = limiter.admitClient('contoso', 'tasks-api');
    const b = limiter.admitClient('contoso', 'tasks-api');
    throttled(() => limiter.admitClient('contoso', 'tasks-api'), '1');
    const other = limiter.admitClient('contoso', 'docs-api');
    const sameIdOtherTenant = limiter.admitClient('fabrikam', 'tasks-api');
    a.release();
    a.release(); // idempotent: a second release frees nothing more
    const c = limiter.admitClient('contoso', 'tasks-api');
    throttled(() => limiter.admitClient('contoso', 'tasks-api'), '1');
    for (const admission of [b, c, other, sameIdOtherTenant]) admission.release();
    assert.equal(limiter.tracked, 0, 'no key left behind');
  });

  test('rate: a bucket of `burst`, refilled at requestsPerSecond; Retry-After says when the next token comes', () => {
    let now = 1_000_000;
    const limiter = new TokenEndpointLimiter({ perClient: { concurrent: null, requestsPerSecond: null }, perIp: { concurrent: null, requestsPerSecond: 0.5, burst: 3 } }, () => now);
    for (let i = 0; i < 3; i++) limiter.admitIp('203.0.113.9').release();
    throttled(() => limiter.admitIp('203.0.113.9'), '2');
    limiter.admitIp('198.51.100.1').release();
    now += 1000;
    throttled(() => limiter.admitIp('203.0.113.9'), '1');
    now += 1000;
    limiter.admitIp('203.0.113.9').release();
    throttled(() => limiter.admitIp('203.0.113.9'), '2');
  });

  test('the defaults: in-flight caps only (64 per client, 256 per IP), no rate limit', () => {
    assert.deepEqual(DEFAULT_TOKEN_ENDPOINT_LIMITS, { perClient: { concurrent: 64, requestsPerSecond: null }, perIp: { concurrent: 256, requestsPerSecond: null } });
    const limiter = new TokenEndpointLimiter();
    const held = Array.from({ length: 64 }, () => limiter.admitClient('contoso', 'indexer'));
    throttled(() => limiter.admitClient('contoso', 'indexer'), '1');
    for (const h of held) h.release();
    // Sequential requests never meet an in-flight cap, however many.
    for (let i = 0; i < 10_000; i++) limiter.admitClient('contoso', 'indexer').release();
    assert.equal(limiter.tracked, 0);
  });
});

describe('over HTTP, configured in the config file', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer({
      configure(raw) {
        raw.limits = { tokenEndpoint: { perClient: { requestsPerSecond: 0.01, burst: 2 }, perIp: { concurrent: 256 } } };
      },
    });
  });
  after(() => server.close());

  const cc = (clientId: string) => server.post('/contoso/oauth2/v2.0/token', { grant_type: 'client_credentials', scope: 'api://docs/.default' }, { authorization: basic(clientId, secretOf(clientId)) });

  test('a client over its rate gets 429 + Retry-After + the OAuth error; another client is still served', async () => {
    assert.equal((await cc('indexer')).status, 200);
    assert.equal((await cc('indexer')).status, 200);
    const refused = await cc('indexer');
    assert.equal(refused.status, 429);
    // 1 / 0.01 per second = 100 s for the next token, less what refilled while the first two ran on
    // the real clock (a loaded CI machine took over a second: seen as 99). Whole seconds, never 0.
    const retryAfter = refused.headers.get('retry-after') ?? '';
    assert.match(retryAfter, /^[1-9][0-9]*$/);
    assert.ok(Number(retryAfter) > 90 && Number(retryAfter) <= 100, retryAfter);
    const { timestamp: _t, trace_id: _i, correlation_id: _c, ...body } = refused.body;
    assert.deepEqual(body, {
      error: 'temporarily_unavailable',
      error_description: "AADSTS90055: Too many requests from the application 'indexer' to the token endpoint: cache the tokens you receive (they are valid until 'expires_in') and retry after the time in the Retry-After header.",
      error_codes: [90055],
    });
    // Another application is not starved by indexer's loop.
    const other = await cc('tasks-api');
    assert.notEqual(other.status, 429);
  });

  test('a request that fails client authentication does not spend the client\'s budget (limits apply to authenticated clients)', async () => {
    const wrong = await server.post('/contoso/oauth2/v2.0/token', { grant_type: 'client_credentials', scope: 'api://docs/.default' }, { authorization: basic('docs-api', 'wrong-secret-0123456789') });
    assert.equal(wrong.status, 401);
    assert.equal((await cc('docs-api')).status !== 429, true);
  });
});

/**
 * The SDK's OpenTelemetry spans, with the OTel SDK's in-memory exporter registered as an application
 * registers it: an Express API (guard + downstream) called with a `traceparent`. The request (a
 * SERVER span: the app has no HTTP instrumentation), the guard, the OBO exchange, the token request and the downstream call are spans of the caller's trace; the token
 * request and the downstream call carry their own CLIENT span as the parent of the next hop; the
 * cache hit is visible; no token reaches any exported span.
 */
import { after, before, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { context, propagation, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { createDownstream, createGuard, createOboClient } from '../src/index.ts';
import { authErrorHandler, requireAuth } from '../src/express.ts';
import { startIssuer, type TestIssuer } from './fixtures/issuer.ts';
import { startTokenEndpoint, type TokenEndpoint } from './fixtures/token-endpoint.ts';

const SECRET = 'tasks-api-Test-secret-1';
const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const CALLER_SPAN = '00f067aa0ba902b7';
const exporter = new InMemorySpanExporter();
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });

let issuer: TestIssuer;
let ts: TokenEndpoint;
let docsApi: Server;
let tasksApi: Server;
let tasksBase: string;
/** Headers of each request the Docs API received. */
const seen: IncomingHttpHeaders[] = [];

before(async () => {
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  trace.setGlobalTracerProvider(provider);
  issuer = await startIssuer();
  ts = await startTokenEndpoint({ secrets: { 'tasks-api': SECRET } });
  docsApi = createServer((req, res) => {
    seen.push(req.headers);
    res.writeHead(req.url === '/missing' ? 404 : 200, { 'content-type': 'application/json' }).end('{}');
  });
  await new Promise<void>((r) => docsApi.listen(0, '127.0.0.1', r));
  const docsBase = `http://127.0.0.1:${(docsApi.address() as AddressInfo).port}`;

  const guard = createGuard({ authority: issuer.authority, audience: issuer.audience });
  const obo = createOboClient({ clientId: 'tasks-api', tokenEndpoint: ts.tokenEndpoint, credential: { clientSecret: SECRET }, logger: { info() {}, warn() {} } });
  const docs = createDownstream({ obo, scopes: ['api://docs/Docs.Read'], baseUrl: docsBase });
  const app = express();
  app.get('/tasks/:id/document', requireAuth(guard, { scopes: { any: ['Tasks.Read'] } }), async (req, res) => {
    const r = await docs().fetch(req.params.id === 'missing' ? '/missing' : `/documents/${req.params.id}`);
    res.status(r.status).send(await r.text());
  });
  app.use(authErrorHandler());
  tasksApi = app.listen(0, '127.0.0.1');
  await new Promise<void>((r) => tasksApi.once('listening', r));
  tasksBase = `http://127.0.0.1:${(tasksApi.address() as AddressInfo).port}`;
});
after(async () => {
  for (const server of [tasksApi, docsApi]) {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  }
  await ts.close();
  await issuer.close();
  await provider.shutdown();
});
beforeEach(() => {
  exporter.reset();
  seen.length = 0;
  ts.requests.length = 0;
});

const spans = () => exporter.getFinishedSpans();
function only(predicate: (s: ReadableSpan) => boolean, what: string): ReadableSpan {
  const found = spans().filter(predicate);
  assert.equal(found.length, 1, `one ${what} span, saw ${spans().map((s) => `${s.name}(${s.kind})`).join(', ')}`);
  return found[0] as ReadableSpan;
}
const parentOf = (span: ReadableSpan) => span.parentSpanContext?.spanId;
const traceparentOf = (span: ReadableSpan) => `00-${span.spanContext().traceId}-${span.spanContext().spanId}-01`;

test('guard, OBO exchange, token request and downstream call are spans of the caller\'s trace; each outgoing request names its own span', async () => {
  const token = issuer.token();
  const res = await fetch(`${tasksBase}/tasks/7/document`, { headers: { authorization: `Bearer ${token}`, traceparent: `00-${TRACE_ID}-${CALLER_SPAN}-01` } });
  assert.equal(res.status, 200);

  // No HTTP instrumentation in this app: the adapter's SERVER span continues the caller's span.
  const server = only((s) => s.kind === SpanKind.SERVER, 'server');
  assert.equal(server.name, 'GET');
  assert.equal(server.spanContext().traceId, TRACE_ID);
  assert.equal(parentOf(server), CALLER_SPAN, 'the request continues the caller\'s trace');
  assert.equal(server.attributes['url.path'], '/tasks/7/document');
  assert.equal(server.attributes['http.response.status_code'], 200);
  const request = server.spanContext().spanId;

  const guard = only((s) => s.name === 'baton.guard', 'guard');
  assert.equal(guard.spanContext().traceId, TRACE_ID);
  assert.equal(parentOf(guard), request, 'the guard runs in the request\'s span');
  assert.equal(guard.attributes['baton.guard.result'], 'allow');
  assert.equal(guard.attributes['baton.guard.app_only'], false);
  assert.equal(typeof guard.attributes['baton.client_id'], 'string');

  const exchange = only((s) => s.name === 'baton.obo', 'OBO');
  assert.equal(parentOf(exchange), request);
  assert.deepEqual(
    { grant: exchange.attributes['baton.obo.grant'], cache: exchange.attributes['baton.obo.cache'], client: exchange.attributes['baton.client_id'], scopes: exchange.attributes['baton.obo.scopes'] },
    { grant: 'on_behalf_of', cache: 'miss', client: 'tasks-api', scopes: ['api://docs/Docs.Read'] },
  );

  const tokenRequest = only((s) => s.kind === SpanKind.CLIENT && s.attributes['url.full'] === ts.tokenEndpoint, 'token request');
  assert.equal(tokenRequest.name, 'POST');
  assert.equal(parentOf(tokenRequest), exchange.spanContext().spanId, 'the token request is the exchange\'s child');
  assert.equal(tokenRequest.attributes['http.response.status_code'], 200);
  assert.equal(ts.requests[0]?.headers.traceparent, traceparentOf(tokenRequest), 'the token service continues the token request\'s span');

  const call = only((s) => s.kind === SpanKind.CLIENT && s.name === 'GET', 'downstream call');
  assert.equal(parentOf(call), request);
  assert.equal(call.attributes['http.request.method'], 'GET');
  assert.equal(call.attributes['server.address'], '127.0.0.1');
  assert.match(String(call.attributes['url.full']), /^http:\/\/127\.0\.0\.1:\d+\/documents\/7$/);
  assert.equal(call.attributes['http.response.status_code'], 200);
  assert.equal(call.status.code, SpanStatusCode.UNSET);
  assert.equal(seen[0]?.traceparent, traceparentOf(call), 'the Docs API continues the call\'s span');

  // Nothing secret: not the caller's token, not the OBO token, not the client secret, not the assertion.
  const oboToken = String(seen[0]?.authorization).replace(/^Bearer /, '');
  const text = JSON.stringify(spans().map((s) => ({ n: s.name, a: s.attributes, st: s.status, e: s.events })));
  for (const secret of [token, oboToken, SECRET, token.split('.')[2] as string]) assert.ok(!text.includes(secret), 'a token or secret reached a span');

  // The same request again: the OBO token comes from the cache, no token request.
  exporter.reset();
  const again = await fetch(`${tasksBase}/tasks/7/document`, { headers: { authorization: `Bearer ${token}` } });
  assert.equal(again.status, 200);
  assert.equal(only((s) => s.name === 'baton.obo', 'OBO').attributes['baton.obo.cache'], 'hit');
  assert.equal(spans().filter((s) => s.attributes['url.full'] === ts.tokenEndpoint).length, 0);
  const root = only((s) => s.kind === SpanKind.SERVER, 'server');
  assert.equal(root.parentSpanContext, undefined, 'no traceparent: the request starts a new trace');
  for (const span of spans()) assert.equal(span.spanContext().traceId, root.spanContext().traceId, `${span.name}: one trace for the request`);
});

test('a refused request: the guard span says refuse and why, without an ERROR; a 404 downstream is a failed CLIENT span', async () => {
  const res = await fetch(`${tasksBase}/tasks/7/document`, { headers: { authorization: 'Bearer not.a.token' } });
  assert.equal(res.status, 401);
  const guard = only((s) => s.name === 'baton.guard', 'guard');
  assert.equal(guard.attributes['baton.guard.result'], 'refuse');
  assert.equal(guard.attributes['error.type'], 'invalid_token');
  assert.equal(typeof guard.attributes['baton.guard.reason'], 'string');
  assert.equal(guard.attributes['http.response.status_code'], 401);
  assert.equal(guard.status.code, SpanStatusCode.UNSET, 'refusing a bad token is the guard working');
  assert.equal(spans().some((s) => s.name === 'baton.obo'), false);
  assert.equal(only((s) => s.kind === SpanKind.SERVER, 'server').attributes['http.response.status_code'], 401);

  exporter.reset();
  const missing = await fetch(`${tasksBase}/tasks/missing/document`, { headers: { authorization: `Bearer ${issuer.token()}` } });
  assert.equal(missing.status, 404);
  const call = only((s) => s.kind === SpanKind.CLIENT && s.name === 'GET', 'call');
  assert.equal(call.status.code, SpanStatusCode.ERROR);
  assert.equal(call.attributes['error.type'], '404');
});

/**
 * OpenTelemetry traces of the token service, with the SDK's in-memory exporter registered the way an
 * application registers it (a provider, the AsyncLocalStorage context manager, the W3C propagator):
 * the token endpoint's SERVER span continues the caller's `traceparent`; client authentication, the
 * exchange decision, store calls and signing are its children; a refused step-up exchange is an ERROR
 * span carrying its rule; audit events and log lines name the trace; no token, secret or assertion
 * appears anywhere in what is exported.
 */
import { after, before, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { context, propagation, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { createLogger } from '@baton/server';
import { basic, startTestServer, type TestServer } from './harness.ts';
import { auditDuring, secretOf, userToken } from './obo-fixtures.ts';

const exporter = new InMemorySpanExporter();
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
let server: TestServer;
const logLines: Record<string, unknown>[] = [];

before(async () => {
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  trace.setGlobalTracerProvider(provider);
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line.trim() !== '') logLines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  server = await startTestServer({ logger: createLogger('info', false, sink) });
});
after(async () => {
  await server?.close();
  await provider.shutdown();
});
beforeEach(() => exporter.reset());

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const CALLER_SPAN = '00f067aa0ba902b7';
const TRACEPARENT = `00-${TRACE_ID}-${CALLER_SPAN}-01`;

function spansNamed(name: string): ReadableSpan[] {
  return exporter.getFinishedSpans().filter((s) => s.name === name);
}

function only(name: string): ReadableSpan {
  const spans = spansNamed(name);
  assert.equal(spans.length, 1, `one ${name} span, saw ${exporter.getFinishedSpans().map((s) => s.name).join(', ')}`);
  return spans[0] as ReadableSpan;
}

const parentOf = (span: ReadableSpan) => span.parentSpanContext?.spanId;

/** Every string a span exports: name, attributes, status message, events and their attributes, links. */
function exportedText(spans: readonly ReadableSpan[]): string {
  return JSON.stringify(spans.map((s) => ({ name: s.name, attributes: s.attributes, status: s.status, events: s.events, links: s.links, resource: s.resource.attributes })));
}

test('an allowed On-Behalf-Of exchange: one trace continuing the caller, the decision, store calls and the signature as children', async () => {
  const assertion = await userToken(server, { scopes: ['Tasks.ReadWrite'] });
  exporter.reset();
  const { result: res, events } = await auditDuring(server, () =>
    server.post(
      '/contoso/oauth2/v2.0/token',
      { grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', requested_token_use: 'on_behalf_of', assertion, scope: 'api://docs/Docs.Read' },
      { authorization: basic('tasks-api', secretOf('tasks-api')), traceparent: TRACEPARENT, tracestate: 'vendor=opaque' },
    ),
  );
  assert.equal(res.status, 200, JSON.stringify(res.body));

  const endpoint = only('POST /{tenant}/oauth2/v2.0/token');
  assert.equal(endpoint.kind, SpanKind.SERVER);
  assert.equal(endpoint.spanContext().traceId, TRACE_ID, 'the caller\'s trace continues');
  assert.equal(parentOf(endpoint), CALLER_SPAN, 'the caller\'s span is the parent');
  assert.equal(endpoint.parentSpanContext?.isRemote, true);
  assert.equal(endpoint.spanContext().traceState?.get('vendor'), 'opaque', 'tracestate is carried');
  assert.deepEqual(
    { tenant: endpoint.attributes['baton.tenant'], grant: endpoint.attributes['baton.grant_type'], client: endpoint.attributes['baton.client_id'], status: endpoint.attributes['http.response.status_code'], result: endpoint.attributes['baton.result'], route: endpoint.attributes['http.route'] },
    { tenant: 'contoso', grant: 'urn:ietf:params:oauth:grant-type:jwt-bearer', client: 'tasks-api', status: 200, result: 'issued', route: '/{tenant}/oauth2/v2.0/token' },
  );
  assert.equal(endpoint.status.code, SpanStatusCode.UNSET);

  const auth = only('baton.client_auth');
  assert.equal(parentOf(auth), endpoint.spanContext().spanId);
  assert.equal(auth.attributes['baton.client_auth.method'], 'client_secret_basic');
  assert.equal(auth.attributes['baton.client_id'], 'tasks-api');

  const decision = only('baton.exchange');
  assert.equal(parentOf(decision), endpoint.spanContext().spanId);
  assert.equal(decision.attributes['baton.exchange.decision'], 'allow');
  assert.equal(decision.attributes['baton.exchange.rule'], events[0]?.rule);
  assert.equal(decision.attributes['baton.exchange.api'], 'docs-api');
  assert.deepEqual(decision.attributes['baton.exchange.scopes_granted'], ['Docs.Read']);
  assert.equal(decision.status.code, SpanStatusCode.UNSET);

  // The signature and the user read happen inside the decision's span.
  const sign = only('baton.sign');
  assert.equal(parentOf(sign), decision.spanContext().spanId);
  assert.equal(sign.attributes['baton.sign.typ'], 'at+jwt');
  assert.match(String(sign.attributes['baton.sign.kid']), /\S/);
  const userRead = only('baton.store getUserById');
  assert.equal(parentOf(userRead), decision.spanContext().spanId);
  assert.equal(userRead.kind, SpanKind.CLIENT);
  assert.equal(userRead.attributes['db.system.name'], 'sqlite');
  assert.equal(userRead.attributes['db.operation.name'], 'getUserById');
  for (const span of exporter.getFinishedSpans()) assert.equal(span.spanContext().traceId, TRACE_ID, `${span.name} is in the caller's trace`);

  // The audit event and its log line name the trace and the decision's span.
  const [event] = events;
  assert.equal(event?.traceId, TRACE_ID);
  assert.equal(event?.spanId, decision.spanContext().spanId);
  const line = logLines.find((l) => (l.event as { seq?: number } | undefined)?.seq === event?.seq);
  assert.ok(line, 'the audit event is logged');
  assert.equal(line.trace_id, TRACE_ID);
  assert.equal(line.span_id, decision.spanContext().spanId);

  // Nothing secret is exported: not the assertion, not the token issued, not the client secret.
  const text = exportedText(exporter.getFinishedSpans());
  for (const secret of [assertion, res.body.access_token as string, secretOf('tasks-api'), assertion.split('.')[2] as string]) {
    assert.ok(!text.includes(secret), 'a token or secret reached a span');
  }
});

test('a request its caller did not sample records no span; its audit event and log line still name the caller\'s trace', async () => {
  const assertion = await userToken(server, { scopes: ['Tasks.ReadWrite'] });
  exporter.reset();
  const { result: res, events } = await auditDuring(server, () =>
    server.post(
      '/contoso/oauth2/v2.0/token',
      { grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', requested_token_use: 'on_behalf_of', assertion, scope: 'api://docs/Docs.Read' },
      // Flags 00: the caller did not sample this trace; the provider's default sampler is ParentBased.
      { authorization: basic('tasks-api', secretOf('tasks-api')), traceparent: `00-${TRACE_ID}-${CALLER_SPAN}-00` },
    ),
  );
  assert.equal(res.status, 200, JSON.stringify(res.body));
  assert.deepEqual(exporter.getFinishedSpans().map((s) => s.name), [], 'no span of an unsampled request');
  const [event] = events;
  assert.equal(event?.traceId, TRACE_ID);
  assert.match(String(event?.spanId), /^[0-9a-f]{16}$/, "the request's (unrecorded) span in the caller's trace");
  const line = logLines.find((l) => (l.event as { seq?: number } | undefined)?.seq === event?.seq);
  assert.equal(line?.trace_id, TRACE_ID);
});

test('the refused step-up exchange is an ERROR span carrying the conditional-access rule; the endpoint span records the 400 without failing', async () => {
  const assertion = await userToken(server, { amr: ['pwd'] });
  exporter.reset();
  const { result: res, events } = await auditDuring(server, () =>
    server.post(
      '/contoso/oauth2/v2.0/token',
      { grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', requested_token_use: 'on_behalf_of', assertion, scope: 'api://docs/Docs.Write' },
      { authorization: basic('tasks-api', secretOf('tasks-api')), traceparent: TRACEPARENT },
    ),
  );
  assert.equal(res.status, 400);
  assert.equal(res.body.error, 'interaction_required');
  assert.equal(events[0]?.rule, 'conditional-access');

  const decision = only('baton.exchange');
  assert.equal(decision.status.code, SpanStatusCode.ERROR);
  assert.match(decision.status.message ?? '', /interaction_required: refused by rule conditional-access/);
  assert.equal(decision.attributes['baton.exchange.rule'], 'conditional-access');
  assert.equal(decision.attributes['baton.exchange.decision'], 'refuse');
  assert.equal(decision.attributes['error.type'], 'interaction_required');
  assert.equal(events[0]?.spanId, decision.spanContext().spanId);

  const endpoint = only('POST /{tenant}/oauth2/v2.0/token');
  assert.equal(endpoint.attributes['http.response.status_code'], 400);
  assert.equal(endpoint.attributes['baton.result'], 'interaction_required');
  assert.equal(endpoint.status.code, SpanStatusCode.UNSET, 'a 4xx answer is the endpoint working (OTel HTTP server conventions)');
  assert.equal(exporter.getFinishedSpans().some((s) => s.name === 'baton.sign'), false, 'nothing is signed for a refusal');
  assert.ok(!exportedText(exporter.getFinishedSpans()).includes(assertion));
});

test('a wrong client secret: the client authentication span fails with invalid_client; the secret is not recorded', async () => {
  const wrong = 'not-the-secret-of-tasks-api-1234567890';
  const res = await server.post('/contoso/oauth2/v2.0/token', { grant_type: 'client_credentials', scope: 'api://docs/.default' }, { authorization: basic('tasks-api', wrong) });
  assert.equal(res.status, 401);
  const auth = only('baton.client_auth');
  assert.equal(auth.status.code, SpanStatusCode.ERROR);
  assert.equal(auth.attributes['error.type'], 'invalid_client');
  const endpoint = only('POST /{tenant}/oauth2/v2.0/token');
  assert.equal(endpoint.attributes['http.response.status_code'], 401);
  assert.equal(endpoint.attributes['baton.client_id'], undefined, 'an unauthenticated client id is not recorded as the caller');
  assert.ok(!exportedText(exporter.getFinishedSpans()).includes(wrong));
});

test('no traceparent: a new trace with the endpoint span as its root; a malformed traceparent is not continued', async () => {
  const res = await server.post('/contoso/oauth2/v2.0/token', { grant_type: 'client_credentials', scope: 'api://docs/.default' }, { authorization: basic('indexer', secretOf('indexer')) });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  const root = only('POST /{tenant}/oauth2/v2.0/token');
  assert.equal(root.parentSpanContext, undefined);
  assert.equal(root.attributes['baton.grant_type'], 'client_credentials');
  assert.equal(parentOf(only('baton.sign')), root.spanContext().spanId);
  assert.ok(!exportedText(exporter.getFinishedSpans()).includes(res.body.access_token as string));

  exporter.reset();
  const bad = await server.post('/contoso/oauth2/v2.0/token', { grant_type: 'client_credentials', scope: 'api://docs/.default' }, { authorization: basic('indexer', secretOf('indexer')), traceparent: `00-${'0'.repeat(32)}-${CALLER_SPAN}-01` });
  assert.equal(bad.status, 200);
  const fresh = only('POST /{tenant}/oauth2/v2.0/token');
  assert.equal(fresh.parentSpanContext, undefined);
  assert.notEqual(fresh.spanContext().traceId, '0'.repeat(32));
});

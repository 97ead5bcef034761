/**
 * `ensureSignalStream` against a live Baton (issue 17): the demo APIs hold `Baton.Signals` in
 * examples/chain/baton.json; a receiver's first start creates its polled stream, the next start
 * finds the same one (no second stream), another description is another stream, changed events
 * update it, push streams are matched by endpoint; the stream it answers feeds `createSignals`,
 * which then receives a revocation. An application without the role is refused (403).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createSignals, ensureSignalStream, REVOKING_EVENTS, SignalStreamError, ssfConfigurationUrl, type ReceivedEvent } from '../src/index.ts';
import { admin, adminConfigure, adminToken, eventually, OPS_SECRET } from '../../server/test/admin-kit.ts';
import { basic } from '../../server/test/harness.ts';
import { payloadOf, quietLogger, secretOf, startLiveBaton, type LiveBaton } from './fixtures/live-baton.ts';

let baton: LiveBaton;
const closers: Array<() => Promise<unknown>> = [];

before(async () => {
  baton = await startLiveBaton({ configure: adminConfigure });
});
after(async () => {
  for (const close of closers.reverse()) await close();
  await baton?.close();
});

function tokenOf(clientId: string, secret = secretOf(clientId)): () => Promise<string> {
  return async () => {
    const r = await baton.server.post('/contoso/oauth2/v2.0/token', { grant_type: 'client_credentials', scope: 'api://baton-admin/.default' }, { authorization: basic(clientId, secret) });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return r.body.access_token as string;
  };
}

async function streamsOf(clientId: string): Promise<any[]> {
  const r = await fetch(`${baton.server.url}/contoso/ssf/v1/streams`, { headers: { authorization: `Bearer ${await tokenOf(clientId)()}` } });
  assert.equal(r.status, 200);
  return (await r.json()) as any[];
}

test('the SSF metadata location puts the well-known segment before the issuer path (SSF 1.0 §7.2)', () => {
  assert.equal(ssfConfigurationUrl('https://login.example/contoso/v2.0'), 'https://login.example/.well-known/ssf-configuration/contoso/v2.0');
  assert.equal(ssfConfigurationUrl('https://login.example/'), 'https://login.example/.well-known/ssf-configuration');
});

test('first start creates the stream, the next finds it; another description is another stream; events changed are updated', async () => {
  const options = { issuer: baton.authority, accessToken: tokenOf('audit-api'), description: 'Audit API (test)', ca: baton.server.ca! };
  const first = await ensureSignalStream(options);
  assert.equal(first.created, true);
  assert.equal(first.issuer, baton.authority);
  assert.equal(first.jwksUri, `${baton.server.url}/contoso/discovery/v2.0/keys`);
  assert.equal(first.audience, 'audit-api');
  assert.equal(first.pollEndpoint, `${baton.server.url}/contoso/ssf/v1/poll/${first.streamId}`);
  assert.deepEqual([...first.eventsDelivered].sort(), REVOKING_EVENTS.filter((e) => first.eventsDelivered.includes(e)).sort());
  assert.ok(first.eventsDelivered.includes('https://schemas.openid.net/secevent/caep/event-type/session-revoked'));

  const again = await ensureSignalStream(options);
  assert.equal(again.created, false);
  assert.equal(again.streamId, first.streamId);
  assert.equal((await streamsOf('audit-api')).length, 1, 'no second stream on a restart');

  const other = await ensureSignalStream({ ...options, description: 'Audit API replica 2 (test)' });
  assert.equal(other.created, true);
  assert.notEqual(other.streamId, first.streamId);

  const narrowed = await ensureSignalStream({ ...options, events: ['https://schemas.openid.net/secevent/caep/event-type/session-revoked'] });
  assert.equal(narrowed.created, false);
  assert.equal(narrowed.streamId, first.streamId);
  assert.deepEqual(narrowed.eventsDelivered, ['https://schemas.openid.net/secevent/caep/event-type/session-revoked']);
  assert.equal(narrowed.subjectFormat, 'iss_sub');
  const opaque = await ensureSignalStream({ ...options, subjectFormat: 'opaque' });
  assert.equal(opaque.streamId, first.streamId, 'another subject format updates the stream');
  assert.equal(opaque.subjectFormat, 'opaque');
  assert.equal((await streamsOf('audit-api')).length, 2);
});

test('a push stream is matched by its endpoint', async () => {
  const options = { issuer: baton.authority, accessToken: tokenOf('docs-api'), description: 'Docs API push (test)', ca: baton.server.ca! };
  const a = await ensureSignalStream({ ...options, delivery: { method: 'push', endpointUrl: 'http://127.0.0.1:9/a', authorization: 'Bearer x' } });
  const b = await ensureSignalStream({ ...options, delivery: { method: 'push', endpointUrl: 'http://127.0.0.1:9/a', authorization: 'Bearer x' } });
  const c = await ensureSignalStream({ ...options, delivery: { method: 'push', endpointUrl: 'http://127.0.0.1:9/b' } });
  assert.equal(a.created, true);
  assert.equal(a.pollEndpoint, undefined);
  assert.equal(b.streamId, a.streamId);
  assert.equal(b.created, false);
  assert.notEqual(c.streamId, a.streamId);
});

test('the stream it answers feeds createSignals: a revocation arrives by poll, naming the user by her oid (opaque)', async () => {
  const accessToken = tokenOf('tasks-api');
  const stream = await ensureSignalStream({ issuer: baton.authority, accessToken, description: 'Tasks API (test)', subjectFormat: 'opaque', ca: baton.server.ca! });
  const received: ReceivedEvent[] = [];
  const signals = createSignals({ issuer: stream.issuer, jwksUri: stream.jwksUri, audience: stream.audience, poll: { endpoint: stream.pollEndpoint!, accessToken }, ca: baton.server.ca!, logger: quietLogger(), onEvent: (e) => received.push(e) });
  closers.push(() => signals.close());
  await signals.start();
  baton.server.advance(1);
  const r = await admin(baton.server, 'POST', '/users/alice@contoso.test/revoke-sessions', { token: await adminToken(baton.server) });
  assert.equal(r.status, 200);
  await eventually(async () => received.some((e) => e.type.endsWith('/session-revoked')), 'the session-revoked event', 15_000);
  const event = received.find((e) => e.type.endsWith('/session-revoked'))!;
  assert.equal(event.via, 'poll');
  assert.equal(event.edge, Date.parse(r.body.sessionsRevokedBefore) / 1000);
  const alice = payloadOf(await baton.userToken());
  assert.deepEqual(event.keys, [`oid:${String(alice.tid)}|${String(alice.oid)}`]);
});

test('an application without Baton.Signals (an admin holding Baton.Admin only) is refused', async () => {
  await assert.rejects(
    ensureSignalStream({ issuer: baton.authority, accessToken: tokenOf('ops', OPS_SECRET), description: 'Ops', ca: baton.server.ca! }),
    (error: unknown) => error instanceof SignalStreamError && error.status === 403,
  );
});

/**
 * Security events with two token-service instances on one PostgreSQL schema (the deployment of
 * issue 17's "done when"): an event caused at one instance is polled from the other, and with both
 * instances running push workers each SET reaches the receiver exactly once.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { startTestServer, pgSchema, PG_URL, type TestServer } from './harness.ts';
import { admin, adminToken, eventually } from './admin-kit.ts';
import { JoseReceiver, pollAll, receiverToken, signalsConfigure, ssf } from './signals-kit.ts';
import { transmitterOf } from '../src/signals/transmitter.ts';

const SESSION_REVOKED = 'https://schemas.openid.net/secevent/caep/event-type/session-revoked';

let a: TestServer;
let b: TestServer;
let drop: () => Promise<void>;

before(async () => {
  const schema = await pgSchema();
  drop = schema.drop;
  const env = { BATON_KEK: randomBytes(32).toString('base64url') };
  a = await startTestServer({ storeUrl: PG_URL, storeSchema: schema.schema, env, configure: signalsConfigure, dev: false });
  b = await startTestServer({ storeUrl: PG_URL, storeSchema: schema.schema, env, configure: signalsConfigure, dev: false });
});
after(async () => {
  await a?.close();
  await b?.close();
  await drop?.();
});

async function revokeAt(server: TestServer, user: string): Promise<void> {
  a.advance(1);
  b.advance(1);
  const response = await admin(server, 'POST', `/users/${user}@contoso.test/revoke-sessions`, { token: await adminToken(server) });
  assert.equal(response.status, 200, JSON.stringify(response.body));
}

test('an event caused at B is polled from A, acknowledged at B, and gone at A', async () => {
  const token = await receiverToken(a);
  const created = await ssf(a, 'POST', '/streams', token, { events_requested: [SESSION_REVOKED] });
  assert.equal(created.status, 201);
  const streamId = created.body.stream_id;
  await revokeAt(b, 'alice');
  await transmitterOf(b.ctx).settled();
  const polled = await pollAll(a, token, streamId);
  const [jti, set] = Object.entries(polled.sets)[0]!;
  // Signed by B with the tenant's shared key, under B's issuer (each test instance has its own URL;
  // behind one public URL both are the same issuer).
  const verified = await new JoseReceiver(b, 'receiver').accept(set);
  assert.equal(verified.type, SESSION_REVOKED);
  await new JoseReceiver(a, 'receiver').accept(set).then(
    () => assert.fail('the issuer differs'),
    (error: Error) => assert.match(error.message, /iss/),
  );
  assert.deepEqual((await pollAll(b, await receiverToken(b), streamId, { ack: [jti] })).sets, {});
  assert.deepEqual((await pollAll(a, token, streamId)).sets, {});
});

test('both instances push: every SET reaches the receiver exactly once', async () => {
  const received: string[] = [];
  const receiver: Server = createServer((request, response) => {
    let body = '';
    request.on('data', (chunk) => (body += chunk));
    request.on('end', () => {
      received.push(body);
      response.writeHead(202).end();
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  try {
    const endpoint = `http://127.0.0.1:${(receiver.address() as { port: number }).port}/events`;
    const token = await receiverToken(a);
    const created = await ssf(a, 'POST', '/streams', token, { events_requested: [SESSION_REVOKED], delivery: { method: 'urn:ietf:rfc:8935', endpoint_url: endpoint } });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const causes = 8;
    for (let i = 0; i < causes; i++) await revokeAt(i % 2 === 0 ? a : b, i % 4 < 2 ? 'alice' : 'bob');
    await eventually(async () => received.length >= causes, `${causes} pushes`, 20_000);
    // Long enough for a second worker's claim, had the lease not held it off.
    await new Promise((r) => setTimeout(r, 2500));
    const jtis = received.map((set) => JSON.parse(Buffer.from(set.split('.')[1]!, 'base64url').toString()).jti);
    assert.equal(new Set(jtis).size, causes, 'one SET per cause');
    assert.equal(received.length, causes, 'none pushed twice');
  } finally {
    await new Promise((resolve) => receiver.close(resolve));
  }
});

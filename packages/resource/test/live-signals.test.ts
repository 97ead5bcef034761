/**
 * Continuous access evaluation in the SDK against a live Baton (issue 17): the token service's
 * admin API revokes a user or a session; the SETs reach the API by poll (RFC 8936) or push
 * (RFC 8935, through the Express and node:http adapters); the guard then refuses the tokens issued
 * before with Entra's CAE claims challenge, other users' tokens and tokens issued after pass;
 * replicas share revocations through Redis (and a late one catches up); the OBO client drops the
 * tokens it cached for that user (memory and Redis). Waits are bounded polls, never timings.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import express from 'express';
import Fastify from 'fastify';
import { Hono } from 'hono';
import { Redis } from 'ioredis';
import { generateKeyPair, SignJWT } from 'jose';
import {
  ClaimsChallengeError,
  createGuard,
  createOboClient,
  createSignals,
  errorResponse,
  MemoryTokenCacheStore,
  tokenCacheKey,
  type Guard,
  type Signals,
} from '../src/index.ts';
import { signalsEndpoint as expressSignals } from '../src/express.ts';
import { signalsEndpoint as nodeSignals, protect } from '../src/node.ts';
import { signalsRoute } from '../src/fastify.ts';
import { signalsEndpoint as honoSignals } from '../src/hono.ts';
import { RedisTokenCacheStore } from '../src/redis.ts';
import { admin, adminConfigure, adminToken, eventually } from '../../server/test/admin-kit.ts';
import { basic } from '../../server/test/harness.ts';
import { challengeClaims, closeServer, listenLoopback, payloadOf, quietLogger, secretOf, serveLoopback, startLiveBaton, type LiveBaton } from './fixtures/live-baton.ts';

const CAEP = 'https://schemas.openid.net/secevent/caep/event-type/';
const EVENTS = [`${CAEP}session-revoked`, `${CAEP}credential-change`, `${CAEP}token-claims-change`, 'https://schemas.openid.net/secevent/risc/event-type/account-disabled'];
const BOUND_MS = 15_000;

let baton: LiveBaton;
let adminTok: string;
const closers: Array<() => Promise<unknown>> = [];

before(async () => {
  baton = await startLiveBaton({
    configure(raw) {
      adminConfigure(raw);
      // The APIs are receivers: Baton.Signals on the built-in API.
      for (const client of ['tasks-api', 'docs-api']) raw.tenants[0].appRoleAssignments.push({ client, resource: 'api://baton-admin', roles: ['Baton.Signals'] });
    },
  });
  adminTok = await adminToken(baton.server);
});
after(async () => {
  for (const close of closers.reverse()) await close();
  await baton?.close();
});

const jwksUri = () => `${baton.server.url}/contoso/discovery/v2.0/keys`;

/** A receiver's app-only token for the SSF endpoints. */
async function receiverToken(clientId: string): Promise<string> {
  const r = await baton.server.post('/contoso/oauth2/v2.0/token', { grant_type: 'client_credentials', scope: 'api://baton-admin/.default' }, { authorization: basic(clientId, secretOf(clientId)) });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body.access_token;
}

async function createStream(clientId: string, delivery: Record<string, unknown> = { method: 'urn:ietf:rfc:8936' }): Promise<any> {
  const response = await fetch(`${baton.server.url}/contoso/ssf/v1/streams`, {
    method: 'POST',
    headers: { authorization: `Bearer ${await receiverToken(clientId)}`, 'content-type': 'application/json' },
    body: JSON.stringify({ events_requested: EVENTS, delivery }),
  });
  const body: any = await response.json();
  assert.equal(response.status, 201, JSON.stringify(body));
  return body;
}

/**
 * Revokes a user's sessions. The edge is the next whole second, so the service clock moves on a
 * second before (a new revocation) and after (tokens minted next are issued after the edge).
 */
async function revoke(user: string): Promise<number> {
  baton.server.advance(1);
  const r = await admin(baton.server, 'POST', `/users/${user}@contoso.test/revoke-sessions`, { token: adminTok });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  baton.server.advance(1);
  return Date.parse(r.body.sessionsRevokedBefore) / 1000;
}

function pollingSignals(clientId: string, endpoint: string, extra: Partial<Parameters<typeof createSignals>[0]> = {}): Signals {
  const signals = createSignals({
    issuer: baton.authority,
    jwksUri: jwksUri(),
    audience: clientId,
    poll: { endpoint, accessToken: () => receiverToken(clientId) },
    // node:https with the dev CA: an aborted poll destroys its socket (the global fetch may keep one
    // it opened for the aborted request, which then holds the service's close for its keep-alive).
    ca: baton.server.ca!,
    logger: quietLogger(),
    ...extra,
  });
  closers.push(() => signals.close());
  return signals;
}

async function refusedWith(guard: Guard, token: string): Promise<ClaimsChallengeError | undefined> {
  try {
    await guard.verify(token);
    return undefined;
  } catch (error) {
    if (error instanceof ClaimsChallengeError) return error;
    throw error;
  }
}

describe('poll (RFC 8936)', () => {
  test("revoked sessions: the user's earlier tokens are refused with the CAE claims challenge; other users and later tokens pass", async () => {
    const stream = await createStream('tasks-api');
    const signals = pollingSignals('tasks-api', stream.delivery.endpoint_url);
    const guard = createGuard({ authority: baton.authority, audience: ['tasks-api', 'api://tasks'], signals });
    await signals.start();
    const alice = await baton.userToken();
    const bob = await baton.userToken({ username: 'bob@contoso.test' });
    assert.equal((await guard.verify(alice)).userId, payloadOf(alice).oid, 'verified (and remembered) before the event');
    const edge = await revoke('alice');
    await eventually(async () => (await refusedWith(guard, alice)) !== undefined, 'the guard to refuse alice’s token', BOUND_MS);

    const refused = (await refusedWith(guard, alice))!;
    const response = errorResponse(refused)!;
    assert.equal(response.status, 401);
    const header = response.headers['www-authenticate']!;
    assert.match(header, /^Bearer realm="tasks-api", error="insufficient_claims", error_description="[^"]+", authorization_uri="https:\/\/localhost:\d+\/contoso\/oauth2\/v2\.0\/authorize", claims="[A-Za-z0-9+/]+=*"$/);
    assert.deepEqual(challengeClaims(header), { access_token: { nbf: { essential: true, value: String(edge) } } });
    assert.equal(JSON.parse(response.body!).error, 'insufficient_claims');

    assert.equal((await guard.verify(bob)).userId, payloadOf(bob).oid, "another user's token passes");
    const fresh = await baton.userToken();
    assert.ok((payloadOf(fresh).iat as number) >= edge);
    assert.equal((await guard.verify(fresh)).userId, payloadOf(alice).oid, 'a token issued after the revocation passes');
    // A guard without signals (another API not subscribed) still accepts the old token: what CAE adds.
    assert.ok(await createGuard({ authority: baton.authority, audience: ['tasks-api'] }).verify(alice));
  });

  test('a receiver restarted before acknowledging gets the SETs again; the revocation holds in the new process', async () => {
    const stream = await createStream('tasks-api');
    const alice = await baton.userToken();
    await revoke('alice');
    // Nothing polled yet: the first receiver "crashes" (never started); a new one starts and catches up.
    const restarted = pollingSignals('tasks-api', stream.delivery.endpoint_url);
    const guard = createGuard({ authority: baton.authority, audience: ['tasks-api'], signals: restarted });
    await restarted.start();
    await eventually(async () => (await refusedWith(guard, alice)) !== undefined, 'the restarted receiver to refuse', BOUND_MS);
  });
});

describe('push (RFC 8935)', () => {
  let signals: Signals;
  let guard: Guard;
  let url: string;
  const PUSH_AUTH = `Bearer ${randomBytes(16).toString('base64url')}`;
  const accepted: string[] = [];

  before(async () => {
    signals = createSignals({ issuer: baton.authority, jwksUri: jwksUri(), audience: 'docs-api', pushAuthorization: PUSH_AUTH, logger: quietLogger(), onEvent: (e) => accepted.push(e.jti) });
    guard = createGuard({ authority: baton.authority, audience: ['docs-api', 'api://docs'], signals });
    const app = express();
    app.post('/security-events', expressSignals(signals));
    const server = createServer(app);
    const base = await listenLoopback(server);
    closers.push(() => closeServer(server));
    url = `${base}/security-events`;
    await createStream('docs-api', { method: 'urn:ietf:rfc:8935', endpoint_url: url, authorization_header: PUSH_AUTH });
  });

  test("a disabled user's tokens are refused by the API the event was pushed to (Express adapter)", async () => {
    const bob = await baton.userToken({ username: 'bob@contoso.test', api: 'api://docs', scopes: ['Docs.Read'] });
    assert.ok(await guard.verify(bob));
    assert.equal((await admin(baton.server, 'POST', '/users/bob@contoso.test/disable', { token: adminTok })).status, 200);
    try {
      await eventually(async () => (await refusedWith(guard, bob)) !== undefined, 'the pushed revocation', BOUND_MS);
    } finally {
      assert.equal((await admin(baton.server, 'POST', '/users/bob@contoso.test/enable', { token: adminTok })).status, 200);
    }
  });

  test('forged, other-audience, replayed, unauthorised and mistyped pushes are refused with RFC 8935 errors', async () => {
    const push = (body: string, headers: Record<string, string> = {}) =>
      fetch(url, { method: 'POST', headers: { 'content-type': 'application/secevent+jwt', authorization: PUSH_AUTH, ...headers }, body }).then(async (r) => ({ status: r.status, body: await r.text() }));
    // A genuine SET: what the transmitter pushed last.
    await revoke('alice');
    await eventually(async () => accepted.length > 0, 'a push', BOUND_MS);
    const polled = await createStream('tasks-api');
    await revoke('alice');
    const pollToken = await receiverToken('tasks-api');
    let genuineForTasks = '';
    await eventually(async () => {
      const r: any = await (await fetch(polled.delivery.endpoint_url, { method: 'POST', headers: { authorization: `Bearer ${pollToken}`, 'content-type': 'application/json' }, body: JSON.stringify({ returnImmediately: true }) })).json();
      genuineForTasks = Object.values(r.sets as Record<string, string>)[0] ?? '';
      return genuineForTasks !== '';
    }, 'a SET for tasks-api');
    // Another receiver's SET: signed right, addressed to tasks-api.
    assert.deepEqual(await push(genuineForTasks), { status: 400, body: JSON.stringify({ err: 'invalid_audience', description: 'The SET is addressed to another receiver.' }) });
    // The same claims re-signed with a key that is not the transmitter's.
    const claims = { ...payloadOf(genuineForTasks), aud: 'docs-api', jti: randomUUID() };
    const { privateKey } = await generateKeyPair('ES256');
    const forged = await new SignJWT(claims).setProtectedHeader({ alg: 'ES256', typ: 'secevent+jwt', kid: JSON.parse(Buffer.from(genuineForTasks.split('.')[0]!, 'base64url').toString()).kid }).sign(privateKey);
    assert.equal(JSON.parse((await push(forged)).body).err, 'invalid_key');
    // A real SET for docs-api, by stream: replayed after it was accepted.
    const docsStream = await createStream('docs-api');
    await revoke('carol');
    const docsToken = await receiverToken('docs-api');
    let genuine = '';
    await eventually(async () => {
      const r: any = await (await fetch(docsStream.delivery.endpoint_url, { method: 'POST', headers: { authorization: `Bearer ${docsToken}`, 'content-type': 'application/json' }, body: JSON.stringify({ returnImmediately: true }) })).json();
      genuine = Object.values(r.sets as Record<string, string>)[0] ?? '';
      return genuine !== '';
    }, 'a SET for docs-api');
    assert.equal((await push(genuine)).status, 202);
    const replay = await push(genuine);
    assert.equal(replay.status, 400);
    assert.equal(JSON.parse(replay.body).err, 'invalid_request');
    assert.equal((await push(genuine.replace(/.$/, genuine.endsWith('A') ? 'B' : 'A'))).status, 400);
    assert.equal((await push(genuine, { authorization: 'Bearer wrong' })).status, 401);
    assert.equal(JSON.parse((await push(genuine, { 'content-type': 'application/json' })).body).err, 'invalid_request');
    assert.equal((await push('not a jwt')).status, 400);
    assert.equal((await push('x'.repeat(70 * 1024))).status, 413);
  });
});

describe('replicas and the OBO cache', () => {
  test('an event pushed to one replica reaches the others through Redis; a replica started later catches up (node:http adapter)', async () => {
    const prefix = `baton:test:${randomUUID()}:`;
    const made: Signals[] = [];
    const replica = () => {
      const s = createSignals({ issuer: baton.authority, jwksUri: jwksUri(), audience: 'docs-api', redis: 'redis://127.0.0.1:6379', redisPrefix: prefix, logger: quietLogger() });
      made.push(s);
      closers.push(() => s.close());
      return s;
    };
    const [a, b] = [replica(), replica()];
    await Promise.all([a.start(), b.start()]);
    const guardB = createGuard({ authority: baton.authority, audience: ['docs-api'], signals: b });
    // Replica A alone has the push endpoint, on plain node:http.
    const server = createServer(nodeSignals(a));
    const base = await listenLoopback(server);
    closers.push(() => closeServer(server));
    await createStream('docs-api', { method: 'urn:ietf:rfc:8935', endpoint_url: `${base}/events` });
    const alice = await baton.userToken({ api: 'api://docs', scopes: ['Docs.Read'] });
    assert.ok(await guardB.verify(alice));
    await revoke('alice');
    await eventually(async () => (await refusedWith(guardB, alice)) !== undefined, 'replica B to refuse', BOUND_MS);
    const late = replica();
    await late.start();
    const guardLate = createGuard({ authority: baton.authority, audience: ['docs-api'], signals: late });
    assert.ok((await refusedWith(guardLate, alice)) instanceof ClaimsChallengeError, 'the late replica caught up at start');
    const redis = new Redis({ host: '127.0.0.1', port: 6379, lazyConnect: true });
    await redis.connect();
    for (const key of await redis.keys(`${prefix}*`)) await redis.del(key);
    redis.disconnect();
  });

  test("the OBO client drops the tokens it cached for a revoked user, in memory and in Redis on every replica", async () => {
    const stream = await createStream('tasks-api');
    const signals = pollingSignals('tasks-api', stream.delivery.endpoint_url);
    await signals.start();
    const memory = new MemoryTokenCacheStore();
    const obo = createOboClient({ authority: baton.authority, clientId: 'tasks-api', credential: { clientSecret: secretOf('tasks-api') }, cache: memory, signals, logger: quietLogger() });
    closers.push(() => obo.close());
    const prefix = `baton:test:${randomUUID()}:`;
    const key = randomBytes(32);
    // A generous command timeout: on a loaded machine the default 250 ms would serve from memory alone.
    const redisCaches = [0, 1].map(() => new RedisTokenCacheStore({ redis: 'redis://127.0.0.1:6379', key, prefix, logger: quietLogger(), commandTimeout: 5000 }));
    const replicas = redisCaches.map((cache) => createOboClient({ authority: baton.authority, clientId: 'tasks-api', credential: { clientSecret: secretOf('tasks-api') }, cache, signals, logger: quietLogger() }));
    for (const r of replicas) closers.push(() => r.close());

    const alice = await baton.userToken();
    const bob = await baton.userToken({ username: 'bob@contoso.test' });
    const tokenEndpoint = baton.tokenEndpoint;
    const cacheKey = (assertion: string) => tokenCacheKey({ kind: 'obo', tokenEndpoint, clientId: 'tasks-api', scopes: ['api://docs/Docs.Read'], assertion });
    for (const client of [obo, ...replicas]) {
      assert.equal((await client.acquire({ assertion: alice, scopes: ['api://docs/Docs.Read'] })).fromCache, client === replicas[1]);
      assert.equal((await client.acquire({ assertion: bob, scopes: ['api://docs/Docs.Read'] })).fromCache, client === replicas[1]);
    }
    assert.ok(await memory.get(cacheKey(alice)));
    for (const cache of redisCaches) assert.ok(await cache.get(cacheKey(alice)), 'replica has it (memory or Redis)');
    await revoke('alice');
    await eventually(async () => (await memory.get(cacheKey(alice))) === undefined, 'the memory cache to drop alice’s token', BOUND_MS);
    await eventually(async () => (await Promise.all(redisCaches.map((c) => c.get(cacheKey(alice))))).every((v) => v === undefined), 'every replica to drop it', BOUND_MS);
    assert.ok(await memory.get(cacheKey(bob)), "bob's token stays");
    for (const cache of redisCaches) assert.ok(await cache.get(cacheKey(bob)));
  });
});

describe('node:http protect with signals', () => {
  test('the API answers 401 with the claims challenge to a revoked session’s token, by sid', async () => {
    const stream = await createStream('tasks-api');
    const signals = pollingSignals('tasks-api', stream.delivery.endpoint_url);
    await signals.start();
    const guard = createGuard({ authority: baton.authority, audience: ['tasks-api', 'api://tasks'], signals });
    const server = createServer(protect(guard, { scopes: { any: ['Tasks.ReadWrite'] } }, (_req, res) => res.end('ok')));
    const base = await listenLoopback(server);
    closers.push(() => closeServer(server));
    // Two sessions of alice's: one signed out (a session-revoked about its sid), the other unaffected.
    const sid = randomUUID();
    const other = randomUUID();
    const signedOut = await baton.userToken({ sid });
    const stillIn = await baton.userToken({ sid: other });
    const { transmitterOf } = await import('../../server/src/signals/transmitter.ts');
    const { sessionRevoked } = await import('../../server/src/signals/events.ts');
    const oid = payloadOf(signedOut).oid as string;
    await transmitterOf(baton.server.ctx).emit('contoso', [sessionRevoked({ oid, sid }, baton.server.ctx.now() + 1, 'user', 'The user signed out.')]);
    const get = (token: string) => fetch(`${base}/tasks`, { headers: { authorization: `Bearer ${token}` } });
    await eventually(async () => (await get(signedOut)).status === 401, 'the signed-out session to be refused', BOUND_MS);
    const refused = await get(signedOut);
    assert.match(refused.headers.get('www-authenticate') ?? '', /error="insufficient_claims"/);
    assert.equal((await get(stillIn)).status, 200, "the user's other session is not touched");
  });
});

describe('Fastify and Hono push endpoints', () => {
  test('each accepts a genuine SET (202) and refuses a replay and a wrong media type (400), as RFC 8935 says', async () => {
    // Genuine SETs for docs-api, taken from a polled stream (acknowledged by nobody).
    const stream = await createStream('docs-api');
    await revoke('alice');
    await revoke('bob');
    const token = await receiverToken('docs-api');
    let sets: string[] = [];
    await eventually(async () => {
      const r: any = await (await fetch(stream.delivery.endpoint_url, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ returnImmediately: true }) })).json();
      sets = Object.values(r.sets as Record<string, string>);
      return sets.length >= 2;
    }, 'two SETs for docs-api');
    const receiver = () => createSignals({ issuer: baton.authority, jwksUri: jwksUri(), audience: 'docs-api', logger: quietLogger() });

    const fastifySignals = receiver();
    const app = Fastify({ logger: false });
    await app.register(signalsRoute, { signals: fastifySignals, path: '/security-events' });
    const fastifyBase = await app.listen({ host: '127.0.0.1', port: 0 });
    closers.push(() => app.close());

    const honoSignals_ = receiver();
    const hono = new Hono();
    hono.post('/security-events', honoSignals(honoSignals_));
    const { base: honoBase, server } = await serveLoopback(hono.fetch);
    closers.push(() => closeServer(server));

    for (const [name, base, signals] of [['fastify', fastifyBase, fastifySignals], ['hono', honoBase, honoSignals_]] as const) {
      const push = (body: string, type = 'application/secevent+jwt') => fetch(`${base}/security-events`, { method: 'POST', headers: { 'content-type': type }, body }).then(async (r) => ({ status: r.status, body: await r.text() }));
      assert.equal((await push(sets[0]!)).status, 202, name);
      assert.equal(signals.size, 1, `${name}: the revocation is held`);
      const replay = await push(sets[0]!);
      assert.equal(replay.status, 400, name);
      assert.equal(JSON.parse(replay.body).err, 'invalid_request');
      assert.equal(JSON.parse((await push(sets[1]!, 'application/json')).body).err, 'invalid_request', name);
      assert.equal((await push(sets[1]!)).status, 202, name);
      assert.equal(signals.size, 2);
    }
  });
});

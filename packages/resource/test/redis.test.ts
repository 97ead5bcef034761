/**
 * The Redis token cache on the real Redis at 127.0.0.1:6379: encrypted round trip, shared by two OBO
 * client instances, unreadable under another key, and a memory fallback (logged once) when Redis
 * is unreachable or goes away.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { createGuard, createOboClient, type CachedToken, type Logger, type Principal } from '../src/index.ts';
import { RedisTokenCacheStore } from '../src/redis.ts';
import { startIssuer, type TestIssuer } from './fixtures/issuer.ts';
import { startTokenEndpoint, type TokenEndpoint } from './fixtures/token-endpoint.ts';

const prefix = `baton:test:${randomUUID()}:`;
const key = randomBytes(32);
let admin: Redis;
let issuer: TestIssuer;
let ts: TokenEndpoint;
let alice: Principal;

function collecting(): Logger & { lines: string[] } {
  const lines: string[] = [];
  return { lines, info: (m, f) => lines.push(`info ${m} ${JSON.stringify(f)}`), warn: (m, f) => lines.push(`warn ${m} ${JSON.stringify(f)}`) };
}

before(async () => {
  admin = new Redis({ host: '127.0.0.1', port: 6379, lazyConnect: true, maxRetriesPerRequest: 1 });
  await admin.connect();
  assert.equal(await admin.ping(), 'PONG', 'Redis must run at 127.0.0.1:6379 (redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no)');
  issuer = await startIssuer();
  ts = await startTokenEndpoint({ secrets: { 'tasks-api': 'tasks-api-Test-secret-1' } });
  alice = await createGuard({ authority: issuer.authority, audience: issuer.audience }).verify(issuer.token());
});

after(async () => {
  const keys = await admin.keys(`${prefix}*`);
  if (keys.length > 0) await admin.del(...keys);
  await admin.quit();
  await ts.close();
  await issuer.close();
});

const token: CachedToken = { accessToken: 'eyJ.secret-access-token.sig', tokenType: 'Bearer', expiresAt: Math.floor(Date.now() / 1000) + 3600, scopes: ['api://docs/Docs.Read'] };

test('round trip, sealed with AES-256-GCM: Redis holds only ciphertext under the hashed key', async () => {
  const store = new RedisTokenCacheStore({ redis: 'redis://127.0.0.1:6379', key, prefix, logger: collecting() });
  try {
    assert.ok(await store.ready());
    await store.set('obo:k1', token, 60_000);
    const raw = await admin.get(`${prefix}obo:k1`);
    assert.ok(raw);
    assert.match(raw, /^v1\.[A-Za-z0-9_-]{16}\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]+$/);
    assert.ok(!raw.includes('secret-access-token'));
    const ttl = await admin.pttl(`${prefix}obo:k1`);
    assert.ok(ttl > 55_000 && ttl <= 60_000);

    // A second store (another replica): its memory is empty, so this read comes from Redis.
    const replica = new RedisTokenCacheStore({ redis: 'redis://127.0.0.1:6379', key, prefix, logger: collecting() });
    try {
      assert.ok(await replica.ready());
      assert.deepEqual(await replica.get('obo:k1'), token);
      assert.equal(await replica.get('obo:missing'), undefined);
      await replica.delete('obo:k1');
      assert.equal(await admin.exists(`${prefix}obo:k1`), 0);
    } finally {
      await replica.close();
    }
  } finally {
    await store.close();
  }
});

test('another key, a tampered value, or a value moved under another cache key: a miss, never an exception', async () => {
  const redis = new Redis({ host: '127.0.0.1', port: 6379 });
  const store = new RedisTokenCacheStore({ redis, key, prefix, logger: collecting() });
  const stranger = new RedisTokenCacheStore({ redis, key: randomBytes(32), prefix, logger: collecting() });
  try {
    assert.ok(await store.ready());
    await store.set('obo:k2', token, 60_000);
    assert.equal(await stranger.get('obo:k2'), undefined);
    const sealed = (await admin.get(`${prefix}obo:k2`)) as string;
    await admin.set(`${prefix}obo:moved`, sealed, 'PX', 60_000);
    const fresh = new RedisTokenCacheStore({ redis, key, prefix, logger: collecting() });
    assert.equal(await fresh.get('obo:moved'), undefined, 'the cache key is authenticated data');
    const parts = sealed.split('.');
    const flipped = Buffer.from(parts[3] as string, 'base64url');
    flipped[0] = (flipped[0] as number) ^ 1;
    await admin.set(`${prefix}obo:tampered`, [parts[0], parts[1], parts[2], flipped.toString('base64url')].join('.'), 'PX', 60_000);
    assert.equal(await fresh.get('obo:tampered'), undefined);
    await admin.set(`${prefix}obo:garbage`, 'not sealed', 'PX', 60_000);
    assert.equal(await fresh.get('obo:garbage'), undefined);
    // A short tag (GCM allows truncation) is refused.
    await admin.set(`${prefix}obo:short-tag`, [parts[0], parts[1], (parts[2] as string).slice(0, 6), parts[3]].join('.'), 'PX', 60_000);
    assert.equal(await fresh.get('obo:short-tag'), undefined);
    await fresh.close(); // not ours: the shared client stays open
    assert.equal(redis.status, 'ready');
  } finally {
    await store.close();
    await redis.quit();
  }
  assert.throws(() => new RedisTokenCacheStore({ redis: 'redis://127.0.0.1:6379', key: randomBytes(16) }), TypeError);
});

test('two OBO client instances share the Redis cache: one call to the token service', async () => {
  ts.requests.length = 0;
  const stores = [0, 1].map(() => new RedisTokenCacheStore({ redis: 'redis://127.0.0.1:6379', key, prefix, logger: collecting() }));
  const [a, b] = stores.map((cache) =>
    createOboClient({ clientId: 'tasks-api', tokenEndpoint: ts.tokenEndpoint, credential: { clientSecret: 'tasks-api-Test-secret-1' }, cache, logger: collecting() }),
  ) as [ReturnType<typeof createOboClient>, ReturnType<typeof createOboClient>];
  try {
    assert.deepEqual(await Promise.all(stores.map((s) => s.ready())), [true, true]);
    const first = await a.onBehalfOf(alice, ['api://docs/Docs.Read']);
    assert.equal(first.fromCache, false);
    const second = await b.onBehalfOf(alice, ['api://docs/Docs.Read']);
    assert.equal(second.fromCache, true);
    assert.equal(second.accessToken, first.accessToken);
    assert.equal(ts.requests.length, 1);
    const stored = await admin.keys(`${prefix}obo:*`);
    assert.ok(stored.length >= 1);
    assert.ok(stored.every((k) => !k.includes(alice.token.slice(-20))));
  } finally {
    await a.close();
    await b.close();
  }
});

test('Redis unreachable (127.0.0.1:1): memory only, no exception, logged once', async () => {
  const log = collecting();
  const store = new RedisTokenCacheStore({ redis: { host: '127.0.0.1', port: 1, retryStrategy: () => 50 }, key, prefix, logger: log });
  try {
    await new Promise((r) => setTimeout(r, 200)); // a few failed connection attempts
    const start = Date.now();
    await store.set('obo:k3', token, 60_000);
    assert.deepEqual(await store.get('obo:k3'), token);
    assert.equal(await store.get('obo:nothing'), undefined);
    await store.delete('obo:k3');
    assert.equal(await store.get('obo:k3'), undefined);
    assert.ok(Date.now() - start < 100, 'no waiting on a dead Redis');
    assert.equal(store.connected, false);
    const warnings = log.lines.filter((l) => l.startsWith('warn'));
    assert.equal(warnings.length, 1, log.lines.join('\n'));
    assert.match(warnings[0] as string, /Redis token cache unavailable; using memory only/);
    assert.ok(!log.lines.join('').includes('secret-access-token'));

    // An OBO client on that store keeps working.
    ts.requests.length = 0;
    const obo = createOboClient({ clientId: 'tasks-api', tokenEndpoint: ts.tokenEndpoint, credential: { clientSecret: 'tasks-api-Test-secret-1' }, cache: store, logger: collecting() });
    await obo.onBehalfOf(alice, ['api://docs/Docs.Write']);
    assert.equal((await obo.onBehalfOf(alice, ['api://docs/Docs.Write'])).fromCache, true);
    assert.equal(ts.requests.length, 1);
  } finally {
    await store.close();
  }
});

test('Redis lost after working: falls back to memory, logged once', async () => {
  const log = collecting();
  const redis = new Redis({ host: '127.0.0.1', port: 6379 });
  const store = new RedisTokenCacheStore({ redis, key, prefix, logger: log });
  try {
    assert.ok(await store.ready());
    await store.set('obo:k4', token, 60_000);
    redis.disconnect(); // the connection goes away (status 'end')
    await store.set('obo:k5', token, 60_000);
    assert.deepEqual(await store.get('obo:k5'), token);
    assert.deepEqual(await store.get('obo:k4'), token, 'still in the first level');
    assert.equal(await store.get('obo:never'), undefined);
    assert.equal(log.lines.filter((l) => l.startsWith('warn')).length, 1, log.lines.join('\n'));
  } finally {
    await store.close();
  }
});

/**
 * The Redis token cache shared by two OBO client instances (two replicas of the Tasks API), against
 * a live Baton and the real Redis at 127.0.0.1:6379: the second replica's acquire is served from
 * Redis, so the token service decides one exchange, not two.
 *
 * Redis must be running: redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { createGuard, createOboClient, type OboClient, type Principal } from '../src/index.ts';
import { RedisTokenCacheStore } from '../src/redis.ts';
import { quietLogger, secretOf, startLiveBaton, type LiveBaton } from './fixtures/live-baton.ts';

const prefix = `baton:test:live:${randomUUID()}:`;
const key = randomBytes(32);
const DOCS_READ = ['api://docs/Docs.Read'];

let admin: Redis;
let baton: LiveBaton;
let alice: Principal;
const clients: OboClient[] = [];

before(async () => {
  admin = new Redis({ host: '127.0.0.1', port: 6379, lazyConnect: true, maxRetriesPerRequest: 1 });
  await admin.connect();
  assert.equal(await admin.ping(), 'PONG', 'Redis must run at 127.0.0.1:6379');
  baton = await startLiveBaton();
  alice = await createGuard({ authority: baton.authority, audience: 'tasks-api' }).verify(await baton.userToken());
});

after(async () => {
  for (const c of clients) await c.close();
  const keys = await admin.keys(`${prefix}*`);
  if (keys.length > 0) await admin.del(...keys);
  await admin.quit();
  await baton?.close();
});

/** One replica of the Tasks API: its own OBO client, its own Redis connection and memory level. */
async function replica(encryptionKey = key): Promise<OboClient> {
  const cache = new RedisTokenCacheStore({ redis: 'redis://127.0.0.1:6379', key: encryptionKey, prefix, logger: quietLogger() });
  assert.ok(await cache.ready(), 'connected to Redis');
  const client = createOboClient({ authority: baton.authority, clientId: 'tasks-api', credential: { clientSecret: secretOf('tasks-api') }, cache, logger: quietLogger() });
  clients.push(client);
  return client;
}

const exchanges = () => baton.exchanges((e) => e.caller === 'tasks-api' && e.decision === 'allow').length;

test("two replicas share one Redis cache: the second replica's acquire is served from Redis (one exchange)", async () => {
  baton.reset();
  const [a, b] = [await replica(), await replica()];

  const first = await a.onBehalfOf(alice, DOCS_READ);
  assert.equal(first.fromCache, false);
  assert.equal(exchanges(), 1);

  // Redis holds it sealed: one key under our prefix, no token text in it.
  const keys = await admin.keys(`${prefix}*`);
  assert.equal(keys.length, 1);
  const raw = (await admin.get(keys[0] as string)) ?? '';
  assert.ok(raw.startsWith('v1.') && !raw.includes(first.accessToken) && !raw.includes(first.accessToken.split('.')[1] as string));
  const ttl = await admin.pttl(keys[0] as string);
  assert.ok(ttl > 3_000_000 && ttl <= 3_300_000, `ttl ${ttl} ms: until 5 minutes before exp`);

  const second = await b.onBehalfOf(alice, DOCS_READ);
  assert.equal(second.fromCache, true);
  assert.equal(second.accessToken, first.accessToken);
  assert.equal(exchanges(), 1, 'the token service saw one exchange for two replicas');
});

test('a replica holding another encryption key cannot read the shared entries: it exchanges (and overwrites)', async () => {
  baton.reset();
  const stranger = await replica(randomBytes(32));
  const t = await stranger.onBehalfOf(alice, DOCS_READ);
  assert.equal(t.fromCache, false);
  assert.equal(exchanges(), 1);
});

/**
 * `GET /readyz` answers 200 while the store answers and 503 when it does not (here: the store
 * closed under the running service, on each engine), while `/healthz` keeps saying the process is up.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pgSchema, startTestServer, PG_URL } from './harness.ts';

for (const engine of ['sqlite', 'postgres'] as const) {
  test(`/readyz follows the store (${engine})`, async () => {
    const pg = engine === 'postgres' ? await pgSchema() : undefined;
    const server = await startTestServer(pg ? { storeUrl: PG_URL, storeSchema: pg.schema } : {});
    try {
      const ready = await fetch(`${server.url}/readyz`);
      assert.equal(ready.status, 200);
      assert.equal(ready.headers.get('cache-control'), 'no-store');
      assert.deepEqual(await ready.json(), { status: 'ready' });

      await server.ctx.store.close();
      const down = await fetch(`${server.url}/readyz`);
      assert.equal(down.status, 503);
      assert.equal(down.headers.get('retry-after'), '5');
      assert.deepEqual(await down.json(), { status: 'unavailable', reason: 'the store does not answer' });
      assert.equal((await fetch(`${server.url}/healthz`)).status, 200);
    } finally {
      await server.close().catch(() => undefined);
      await pg?.drop();
    }
  });
}

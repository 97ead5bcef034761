/**
 * The store contract on PostgreSQL, for real (127.0.0.1:5432, or BATON_TEST_PG), in a throwaway
 * schema; two PostgresStore instances on that schema must act as one. If PostgreSQL cannot be
 * reached, these tests FAIL: a skipped multi-instance suite would hide exactly the bugs it exists for.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Client } from 'pg';
import { openStore } from '../src/store/index.ts';
import { MIGRATIONS } from '../src/store/migrations.ts';
import { consentListSql, PostgresStore } from '../src/store/postgres.ts';
import type { Invalidation, Store } from '../src/store/types.ts';
import { storeContract } from './store-contract.ts';

const PG_URL = process.env.BATON_TEST_PG ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const newSchema = () => `baton_test_${randomBytes(6).toString('hex')}`;
const schema = newSchema();
/** Every schema this file creates, dropped at the end. */
const schemas = [schema];

let admin: Client;

before(async () => {
  admin = new Client({ connectionString: PG_URL, connectionTimeoutMillis: 5000 });
  try {
    await admin.connect();
  } catch (error) {
    throw new Error(`PostgreSQL is not reachable at the test URL; start it (CI does): ${(error as Error).message}`);
  }
});

after(async () => {
  for (const name of schemas) await admin.query(`DROP SCHEMA IF EXISTS "${name}" CASCADE`);
  await admin.end();
});

const open = () => openStore({ url: PG_URL, schema });
storeContract('postgres, two instances on one schema', open, open);

function nextChange(store: Store, match: (change: Invalidation) => boolean, timeoutMs = 5000): Promise<Invalidation> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      stop();
      reject(new Error(`no matching invalidation within ${timeoutMs} ms`));
    }, timeoutMs);
    const stop = store.onInvalidate((change) => {
      if (!match(change)) return;
      clearTimeout(timer);
      stop();
      resolve(change);
    });
  });
}

const tenant = (id: string) => ({ id, tid: id, name: id, maxDelegationDepth: 2 });

describe('postgres engine', () => {
  it('four instances migrating a fresh schema at once all succeed, and record each version once', async () => {
    const fresh = newSchema();
    schemas.push(fresh);
    const stores = Array.from({ length: 4 }, () => new PostgresStore(PG_URL, { schema: fresh }));
    try {
      await Promise.all(stores.map((store) => store.migrate()));
      await Promise.all(stores.map((store) => store.migrate()));
      await (stores[0] as Store).putTenant(tenant('t1'));
      assert.deepEqual(await (stores[3] as Store).getTenant('t1'), tenant('t1'));
      const { rows } = await admin.query(`SELECT version, name FROM "${fresh}".baton_migrations ORDER BY version`);
      assert.deepEqual(rows, MIGRATIONS.map(({ version, name }) => ({ version, name })));
    } finally {
      await Promise.all(stores.map((store) => store.close()));
    }
  });

  it('schemas are isolated: data and invalidations stay in their schema', async () => {
    const otherSchema = newSchema();
    schemas.push(otherSchema);
    const here = await open();
    const there = await openStore({ url: PG_URL, schema: otherSchema });
    const thereToo = await openStore({ url: PG_URL, schema: otherSchema });
    try {
      const heard: Invalidation[] = [];
      const stop = there.onInvalidate((change) => heard.push(change));
      const marker = nextChange(there, (change) => change.tenantId === 'there');
      await here.putTenant(tenant('here'));
      // Notifications arrive in commit order on one connection: once "there" is heard, "here"
      // would have been heard before it if it leaked across schemas.
      await thereToo.putTenant(tenant('there'));
      await marker;
      stop();
      assert.deepEqual(heard, [{ tenantId: 'there', entity: 'tenant' }]);
      assert.equal(await there.getTenant('here'), undefined);
    } finally {
      await Promise.all([here.close(), there.close(), thereToo.close()]);
    }
  });

  it('a dropped LISTEN connection is re-established, with "everything changed" for what was missed', async () => {
    const a = await open();
    const b = await open();
    try {
      const reconnected = nextChange(b, (change) => change.tenantId === '*' && change.entity === '*', 10_000);
      const { rowCount } = await admin.query(
        `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE application_name = $1 AND query = 'LISTEN baton_invalidate'`,
        [`baton-listener:${schema}`],
      );
      assert.ok((rowCount ?? 0) >= 2, 'the listeners of both instances were found');
      await reconnected;
      const heard = nextChange(b, (change) => change.tenantId === 'after-reconnect' && change.entity === 'tenant');
      await a.putTenant(tenant('after-reconnect'));
      await heard;
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  it('every listConsents shape is answered from an index on all its filters, never a scan', async () => {
    const store = await open();
    await store.close();
    const client = new Client({ connectionString: PG_URL, options: `-c search_path=${schema}` });
    await client.connect();
    try {
      // With sequential scans priced out, a Seq Scan or a Filter line means no index serves the shape.
      await client.query('SET enable_seqscan = off');
      for (let mask = 0; mask < 8; mask++) {
        const columns = ['tenant_id', ...(mask & 1 ? ['client_id'] : []), ...(mask & 2 ? ['resource'] : []), ...(mask & 4 ? ['principal'] : [])];
        const { rows } = await client.query(`EXPLAIN ${consentListSql(mask)}`, columns.map(() => 'x'));
        const plan = rows.map((row: Record<string, string>) => String(row['QUERY PLAN'])).join('\n');
        assert.doesNotMatch(plan, /Seq Scan|Filter:/, `mask ${mask}:\n${plan}`);
        const conditions = plan.split('\n').filter((line) => /Index Cond|Recheck Cond/.test(line)).join(' ');
        for (const column of columns) assert.match(conditions, new RegExp(`\\b${column} =`), `mask ${mask}:\n${plan}`);
      }
    } finally {
      await client.end();
    }
  });

  it('keeps the schema when the URL carries its own startup options', async () => {
    const url = new URL(PG_URL);
    url.searchParams.set('options', '-c statement_timeout=30000');
    const withOptions = await openStore({ url: url.toString(), schema });
    const plain = await open();
    try {
      await withOptions.putTenant(tenant('via-url-options'));
      assert.deepEqual(await plain.getTenant('via-url-options'), tenant('via-url-options'));
    } finally {
      await Promise.all([withOptions.close(), plain.close()]);
    }
  });

  it('refuses a schema name that is not a plain identifier', () => {
    assert.throws(() => new PostgresStore(PG_URL, { schema: 'x"; DROP SCHEMA public; --' }), TypeError);
    assert.throws(() => new PostgresStore(PG_URL, { schema: 'Upper' }), TypeError);
  });

  it('a connection failure does not echo the password', async () => {
    await assert.rejects(
      openStore({ url: 'postgres://postgres:s3cret-pw@127.0.0.1:1/postgres', schema: newSchema() }),
      (error: unknown) => {
        assert.doesNotMatch(String((error as Error).message), /s3cret-pw/);
        return true;
      },
    );
  });
});

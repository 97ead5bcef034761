/**
 * An admin change, its change event and the security events (SETs) it causes are ONE transaction
 * (admin/changes.ts `commitChange`, `Store.atomically`), on SQLite and on PostgreSQL. The failure
 * is injected in the database itself, after the change's own write: a trigger that refuses the
 * queued SET. Then neither the change nor its event nor any SET is stored; without the trigger, all
 * three are.
 */
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import pg from 'pg';
import { startTestServer, pgSchema, PG_URL, type TestServer } from './harness.ts';
import { admin, adminToken } from './admin-kit.ts';
import { pollAll, receiverToken, signalsConfigure, ssf } from './signals-kit.ts';

const SESSION_REVOKED = 'https://schemas.openid.net/secevent/caep/event-type/session-revoked';

interface Engine {
  server: TestServer;
  /** Makes every insert into ssf_sets fail (true) or succeed again (false). */
  failSets(on: boolean): Promise<void>;
  close(): Promise<void>;
}

async function sqliteEngine(): Promise<Engine> {
  const server = await startTestServer({ configure: signalsConfigure });
  const db = new DatabaseSync(join(server.dataDir, 'baton.sqlite'), { timeout: 5000 });
  return {
    server,
    async failSets(on) {
      db.exec(on ? "CREATE TRIGGER fail_sets BEFORE INSERT ON ssf_sets BEGIN SELECT RAISE(ABORT, 'injected failure'); END" : 'DROP TRIGGER fail_sets');
    },
    async close() {
      db.close();
      await server.close();
    },
  };
}

async function postgresEngine(): Promise<Engine> {
  const { schema, drop } = await pgSchema();
  const server = await startTestServer({ storeUrl: PG_URL, storeSchema: schema, env: { BATON_KEK: randomBytes(32).toString('base64url') }, configure: signalsConfigure, dev: false });
  const client = new pg.Client({ connectionString: PG_URL });
  await client.connect();
  await client.query(`CREATE FUNCTION ${schema}.fail_sets() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'injected failure'; END $$`);
  return {
    server,
    async failSets(on) {
      await client.query(
        on ? `CREATE TRIGGER fail_sets BEFORE INSERT ON ${schema}.ssf_sets FOR EACH ROW EXECUTE FUNCTION ${schema}.fail_sets()` : `DROP TRIGGER fail_sets ON ${schema}.ssf_sets`,
      );
    },
    async close() {
      await client.end();
      await server.close();
      await drop();
    },
  };
}

for (const [name, open] of [
  ['sqlite', sqliteEngine],
  ['postgres', postgresEngine],
] as const) {
  describe(`one transaction: change, change event, SETs (${name})`, () => {
    let engine: Engine;
    before(async () => {
      engine = await open();
    });
    after(async () => {
      await engine?.close();
    });

    test('a failure after the write leaves none of them; a success leaves all three', async () => {
      const { server } = engine;
      const receiver = await receiverToken(server);
      const created = await ssf(server, 'POST', '/streams', receiver, { events_requested: [SESSION_REVOKED] });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      const streamId = created.body.stream_id;
      const token = await adminToken(server);
      const alice = async () => (await server.ctx.store.getUserByName('contoso', 'alice@contoso.test'))!;
      const eventsOf = async (oid: string) =>
        (await server.ctx.store.listAdminEvents({ tenantId: 'contoso', entity: 'user', target: oid, limit: 100 })).map((e) => (e.record.event as { action: string }).action);
      const before = await alice();

      await engine.failSets(true);
      server.advance(1);
      const refused = await admin(server, 'POST', '/users/alice@contoso.test/revoke-sessions', { token });
      assert.ok(refused.status >= 500, `the change fails: ${refused.status} ${JSON.stringify(refused.body)}`);
      assert.match(refused.headers.get('content-type') ?? '', /^application\/problem\+json/);
      assert.equal((await alice()).revokedBefore, before.revokedBefore, 'the user is unchanged');
      assert.deepEqual(await eventsOf(before.oid), [], 'no change event');
      assert.deepEqual((await pollAll(server, receiver, streamId)).sets, {}, 'no SET');

      await engine.failSets(false);
      server.advance(1);
      const done = await admin(server, 'POST', '/users/alice@contoso.test/revoke-sessions', { token });
      assert.equal(done.status, 200, JSON.stringify(done.body));
      const after = await alice();
      assert.notEqual(after.revokedBefore, before.revokedBefore, 'the user is changed');
      assert.deepEqual(await eventsOf(before.oid), ['user.revoke-sessions'], 'one change event');
      const sets = Object.values((await pollAll(server, receiver, streamId)).sets);
      assert.equal(sets.length, 1, 'one SET');
      const payload = JSON.parse(Buffer.from(sets[0]!.split('.')[1]!, 'base64url').toString());
      assert.equal(payload.events[SESSION_REVOKED].event_timestamp, after.revokedBefore);
      const stored = (await server.ctx.store.listAdminEvents({ tenantId: 'contoso', entity: 'user', target: before.oid, limit: 1 }))[0]!.record;
      assert.equal(payload.txn, stored.id, 'the SET names the change it came from');
    });
  });
}

/**
 * A change made through one instance's admin API is in force on every instance of the service:
 * two instances on one PostgreSQL database (LISTEN/NOTIFY), and two on one SQLite file (the change
 * poller). Waits are bounded polls, never timing assertions.
 */
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { startTestServer, pgSchema, PG_URL, basic, type TestServer } from './harness.ts';
import { obo, userToken } from './obo-fixtures.ts';
import { admin, adminConfigure, adminToken, eventually } from './admin-kit.ts';

/** Generous: the promise is one second; a loaded CI machine gets slack, the test still fails if it never happens. */
const BOUND_MS = 10_000;

function suite(name: string, start: () => Promise<{ a: TestServer; b: TestServer; cleanup: () => Promise<void> }>) {
  describe(name, () => {
    let a: TestServer;
    let b: TestServer;
    let cleanup: () => Promise<void>;
    before(async () => {
      ({ a, b, cleanup } = await start());
    });
    after(async () => {
      await cleanup?.();
    });

    test('a user disabled on A is refused by B at her next token request; enabled again, B serves her', async () => {
      const token = await adminToken(a);
      const exchangeAtB = async () => (await obo(b, 'tasks-api', await userToken(b), 'api://docs/Docs.Read')).status;
      assert.equal(await exchangeAtB(), 200);
      assert.equal((await admin(a, 'POST', '/users/alice@contoso.test/disable', { token })).status, 200);
      await eventually(async () => (await exchangeAtB()) === 400, 'B to refuse the disabled user', BOUND_MS);
      assert.equal((await admin(a, 'POST', '/users/alice@contoso.test/enable', { token })).status, 200);
      await eventually(async () => (await exchangeAtB()) === 200, 'B to serve the enabled user', BOUND_MS);
    });

    test('sessions revoked on A: B refuses the tokens issued before', async () => {
      const earlier = await userToken(b);
      assert.equal((await obo(b, 'tasks-api', earlier, 'api://docs/Docs.Read')).status, 200);
      assert.equal((await admin(a, 'POST', '/users/bob@contoso.test/revoke-sessions', { token: await adminToken(a) })).status, 200);
      assert.equal((await admin(a, 'POST', '/users/alice@contoso.test/revoke-sessions', { token: await adminToken(a) })).status, 200);
      await eventually(async () => (await obo(b, 'tasks-api', earlier, 'api://docs/Docs.Read')).status === 400, 'B to refuse a revoked session', BOUND_MS);
    });

    test('a secret revoked and a role removed on A stop working on B (its directory cache hears the change)', async () => {
      const token = await adminToken(a);
      const added = await admin(a, 'POST', '/applications/indexer/secrets', { token });
      assert.equal(added.status, 201, JSON.stringify(added.body));
      const atB = async (secret: string) =>
        (await b.post('/contoso/oauth2/v2.0/token', { grant_type: 'client_credentials', scope: 'api://docs/.default' }, { authorization: basic('indexer', secret) })).status;
      await eventually(async () => (await atB(added.body.secret)) === 200, 'B to accept the new secret', BOUND_MS);
      const read = await admin(a, 'GET', '/applications/indexer', { token });
      assert.equal((await admin(a, 'DELETE', `/applications/indexer/secrets/${added.body.id}`, { token, headers: { 'if-match': read.headers.get('etag')! } })).status, 204);
      await eventually(async () => (await atB(added.body.secret)) === 401, 'B to refuse the revoked secret', BOUND_MS);
      const assignment = (await admin(a, 'GET', '/role-assignments?client=indexer', { token })).body.items[0];
      assert.equal((await admin(a, 'DELETE', `/role-assignments/${assignment.id}`, { token, headers: { 'if-match': '*' } })).status, 204);
      await eventually(async () => (await atB('indexer-demo-secret-for-local-use-only')) === 400, 'B to refuse the unassigned role (invalid_scope)', BOUND_MS);
    });

    test("B's admin API sees A's change with the same ETag", async () => {
      const token = await adminToken(b);
      const atA = await admin(a, 'GET', '/users/bob@contoso.test', { token: await adminToken(a) });
      const atB = await admin(b, 'GET', '/users/bob@contoso.test', { token });
      assert.equal(atB.headers.get('etag'), atA.headers.get('etag'));
      // B accepts an If-Match taken at A.
      const patched = await admin(b, 'PATCH', '/users/bob@contoso.test', { token, body: { displayName: 'Bob from B' }, headers: { 'if-match': atA.headers.get('etag')! } });
      assert.equal(patched.status, 200, JSON.stringify(patched.body));
    });
  });
}

suite('PostgreSQL, two instances', async () => {
  const schema = await pgSchema();
  const env = { BATON_KEK: randomBytes(32).toString('base64url') };
  const a = await startTestServer({ storeUrl: PG_URL, storeSchema: schema.schema, env, configure: adminConfigure, dev: false });
  const b = await startTestServer({ storeUrl: PG_URL, storeSchema: schema.schema, env, configure: adminConfigure, dev: false });
  return {
    a,
    b,
    async cleanup() {
      await a.close();
      await b.close();
      await schema.drop();
    },
  };
});

suite('SQLite, two instances on one file', async () => {
  const a = await startTestServer({ configure: adminConfigure });
  const b = await startTestServer({ configure: adminConfigure, dataDir: a.dataDir });
  return {
    a,
    b,
    async cleanup() {
      await b.close();
      await a.close();
    },
  };
});

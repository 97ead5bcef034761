/**
 * The configuration file as the declarative source beside the admin API: a plan after a start is
 * empty, changes made through the admin API show up in the next plan, `apply` brings the store back
 * to the file (with `prune`, deleting what the file does not name), and no plan holds a secret.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, chainConfig, type TestServer } from './harness.ts';
import { compileConfig } from '../src/config/load.ts';
import { applyConfigPlan, planConfig, planSummary, type ConfigPlan } from '../src/config/plan.ts';
import { admin, adminConfigure, adminToken } from './admin-kit.ts';

let server: TestServer;
let token: string;
const config = chainConfig(adminConfigure);

before(async () => {
  server = await startTestServer({ config });
  token = await adminToken(server);
});
after(async () => {
  await server?.close();
});

async function plan(prune = false): Promise<{ plan: ConfigPlan; compiled: Awaited<ReturnType<typeof compileConfig>> }> {
  const ctx = server.ctx;
  const compiled = await compileConfig(config, { pepper: ctx.kek.derive('client-secret-pepper'), kek: ctx.kek, store: ctx.store, now: ctx.now() });
  return { plan: await planConfig(ctx.store, compiled, { prune }), compiled };
}

const line = (p: ConfigPlan, action: string, entity: string, name: string) => p.changes.find((c) => c.action === action && c.entity === entity && c.name === name);

test('right after a start the plan is empty', async () => {
  const { plan: p } = await plan();
  assert.deepEqual(planSummary(p), { create: 0, update: 0, delete: 0 });
  assert.deepEqual(p.changes, []);
  assert.ok(p.unchanged > 20);
});

test('admin API changes show up in the next plan; apply --prune brings the store back to the file', async () => {
  assert.equal((await admin(server, 'POST', '/users/bob@contoso.test/disable', { token })).status, 200);
  const secret = await admin(server, 'POST', '/applications/indexer/secrets', { token });
  assert.equal(secret.status, 201);
  assert.equal((await admin(server, 'POST', '/users', { token, body: { username: 'dave@contoso.test', displayName: 'Dave', password: 'dave-Admin-pass-1' } })).status, 201);
  assert.equal((await admin(server, 'POST', '/consents', { token, body: { client: 'tasks-api', resource: 'api://reports', scopes: ['Reports.Read'], for: 'alice@contoso.test' } })).status, 201);
  assert.equal((await admin(server, 'PUT', '/policies/Ad%20hoc', { token, body: { resources: ['api://docs'], require: { mfa: true } } })).status, 201);
  const read = await admin(server, 'GET', '/applications/tasks-web', { token });
  assert.equal((await admin(server, 'PATCH', '/applications/tasks-web', { token, body: { redirectUris: ['https://tasks.example/cb'] }, headers: { 'if-match': read.headers.get('etag')! } })).status, 200);

  const { plan: p } = await plan();
  assert.deepEqual(line(p, 'update', 'user', 'bob@contoso.test')?.fields, ['enabled']);
  assert.deepEqual(line(p, 'update', 'application', 'indexer')?.fields, ['secrets (0 added, 1 removed)']);
  assert.deepEqual(line(p, 'update', 'application', 'tasks-web')?.fields, ['redirectUris']);
  assert.ok(line(p, 'keep', 'user', 'dave@contoso.test'), 'a user the file does not name is kept and listed');
  assert.ok(line(p, 'keep', 'consent', 'tasks-api → reports-api for alice@contoso.test'));
  assert.ok(line(p, 'delete', 'policy', 'Ad hoc'), 'the file’s policies are the set');
  assert.equal(line(p, 'update', 'user', 'alice@contoso.test'), undefined, 'an unchanged password is not a change');
  const text = JSON.stringify(p);
  const stored = await server.ctx.store.getApplication('contoso', 'indexer');
  for (const s of stored!.secrets) assert.ok(!text.includes(s.hash));
  assert.ok(!text.includes(secret.body.secret) && !/hmac-sha256|scrypt\$|demo-secret|Demo-pass/.test(text));

  const pruned = await plan(true);
  assert.ok(line(pruned.plan, 'delete', 'consent', 'tasks-api → reports-api for alice@contoso.test'));
  await applyConfigPlan(server.ctx.store, pruned.compiled, pruned.plan);

  const after = await plan(true);
  assert.deepEqual(planSummary(after.plan), { create: 0, update: 0, delete: 0 });
  assert.deepEqual(after.plan.changes.map((c) => `${c.action} ${c.entity} ${c.name}`), ['keep user dave@contoso.test']);
  assert.equal((await admin(server, 'GET', '/users/bob@contoso.test', { token })).body.enabled, true);
  assert.deepEqual((await admin(server, 'GET', '/consents?client=tasks-api&for=alice@contoso.test', { token })).body.items, []);
  // The revoked-by-the-file secret no longer works.
  const refused = await server.post('/contoso/oauth2/v2.0/token', { grant_type: 'client_credentials', scope: 'api://docs/.default' }, { authorization: `Basic ${Buffer.from(`indexer:${secret.body.secret}`).toString('base64')}` });
  assert.equal(refused.status, 401);
});

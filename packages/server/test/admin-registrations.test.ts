/**
 * The admin API's applications (secrets, keys, redirect URIs), consents, app role assignments and
 * conditional-access policies, against a real server: each change takes effect at the token
 * endpoint, each refusal writes nothing.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, randomUUID } from 'node:crypto';
import { createSigner } from '@baton/core';
import { startTestServer, basic, type TestServer } from './harness.ts';
import { obo, userToken } from './obo-fixtures.ts';
import { adminLogOf, type AdminChangeEvent } from '../src/admin/audit.ts';
import { admin, adminConfigure, adminToken, assertProblem } from './admin-kit.ts';
import { SECRET_ID_PREFIX, secretId } from '../src/admin/applications.ts';

let server: TestServer;
let token: string;

before(async () => {
  server = await startTestServer({ configure: adminConfigure });
  token = await adminToken(server);
});
after(async () => {
  await server?.close();
});

const clientCredentials = (clientId: string, secret: string, scope = 'api://docs/.default') =>
  server.post('/contoso/oauth2/v2.0/token', { grant_type: 'client_credentials', scope }, { authorization: basic(clientId, secret) });

test('applications are listed (the built-in admin API among them) and read with an ETag, never a secret hash', async () => {
  const list = await admin(server, 'GET', '/applications?limit=200', { token });
  assert.equal(list.status, 200);
  const ids = list.body.items.map((a: any) => a.clientId);
  assert.ok(ids.includes('baton-admin') && ids.includes('tasks-api'), ids.join());
  assert.equal(list.body.items.find((a: any) => a.clientId === 'baton-admin').builtIn, true);
  const stored = await server.ctx.store.getApplication('contoso', 'tasks-api');
  const text = JSON.stringify(list.body);
  for (const s of stored!.secrets) assert.ok(!text.includes(s.hash));
  const one = await admin(server, 'GET', '/applications/tasks-api', { token });
  assert.match(one.headers.get('etag') ?? '', /^"/);
  assert.equal(one.body.secrets[0].hint, 'tas…');
  const builtIn = await admin(server, 'GET', '/applications/baton-admin', { token });
  assertProblem(await admin(server, 'PATCH', '/applications/baton-admin', { token, body: { name: 'Mine' }, headers: { 'if-match': builtIn.headers.get('etag')! } }), 409, 'conflict');
});

test('a secret id never starts with a dash, even when its hash\'s base64url digest does (1 in 64)', () => {
  // The first stored hash, in a fixed sequence, whose SHA-256 in base64url starts with '-': an id
  // made of the digest alone would be read as a flag by the command line.
  let hash = '';
  for (let i = 0; ; i++) {
    hash = `hash-${i}`;
    if (createHash('sha256').update(hash).digest('base64url').startsWith('-')) break;
  }
  const record = { hash, hint: 'abc', createdAt: 0 };
  const id = secretId(record);
  assert.ok(!id.startsWith('-'), id);
  assert.ok(id.startsWith(SECRET_ID_PREFIX));
  assert.match(id, /^sec_[A-Za-z0-9_-]{16}$/);
  assert.equal(secretId({ ...record, createdAt: 99 }), id, 'derived from the hash alone: the same on every instance');
});

test('create an application, add a secret (shown once), use it, rotate it, revoke it', async () => {
  const created = await admin(server, 'POST', '/applications', {
    token,
    body: { clientId: 'reporter', name: 'Reporter', requiredAccess: [{ resource: 'api://docs', roles: ['Docs.ReadAll'] }] },
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  assert.deepEqual(created.body.secrets, []);
  assertProblem(await admin(server, 'POST', '/applications', { token, body: { clientId: 'reporter', name: 'Again' } }), 409, 'conflict');
  assertProblem(await admin(server, 'POST', '/applications', { token, body: { clientId: 'x1', name: 'X', secrets: ['chosen-by-me-1234'] } }), 400, 'invalid-body');
  assertProblem(await admin(server, 'POST', '/applications', { token, body: { clientId: 'x2', name: 'X', requiredAccess: [{ resource: 'api://nowhere', scopes: ['A'] }] } }), 400, 'invalid-body');
  assertProblem(await admin(server, 'POST', '/applications', { token, body: { clientId: 'baton-admin', name: 'Mine' } }), 409, 'conflict');
  assertProblem(await admin(server, 'POST', '/applications', { token, body: { clientId: 'x3', name: 'X', identifierUri: 'api://docs' } }), 400, 'invalid-body');

  const added = await admin(server, 'POST', '/applications/reporter/secrets', { token, body: { expiresInDays: 30 } });
  assert.equal(added.status, 201, JSON.stringify(added.body));
  const secret: string = added.body.secret;
  assert.ok(secret.length >= 40);
  assert.ok(Date.parse(added.body.expiresAt) > Date.now() + 29 * 86400_000);
  const read = await admin(server, 'GET', '/applications/reporter', { token });
  assert.ok(!JSON.stringify(read.body).includes(secret), 'the secret is shown once');
  // The application works at once (no role yet → invalid_scope; then assign the role through the API).
  assert.equal((await clientCredentials('reporter', secret)).body.error, 'invalid_scope');
  const assigned = await admin(server, 'POST', '/role-assignments', { token, body: { client: 'reporter', resource: 'api://docs', roles: ['Docs.ReadAll'] } });
  assert.equal(assigned.status, 201, JSON.stringify(assigned.body));
  assert.equal((await clientCredentials('reporter', secret)).status, 200);

  const rotated = await admin(server, 'POST', `/applications/reporter/secrets/${added.body.id}/rotate`, { token, body: {} });
  assert.equal(rotated.status, 201, JSON.stringify(rotated.body));
  assert.equal((await clientCredentials('reporter', secret)).status, 401, 'the old secret stops at once without a grace period');
  assert.equal((await clientCredentials('reporter', rotated.body.secret)).status, 200);

  const current = await admin(server, 'GET', '/applications/reporter', { token });
  assertProblem(await admin(server, 'DELETE', `/applications/reporter/secrets/${rotated.body.id}`, { token }), 428, 'precondition-required');
  const revoked = await admin(server, 'DELETE', `/applications/reporter/secrets/${rotated.body.id}`, { token, headers: { 'if-match': current.headers.get('etag')! } });
  assert.equal(revoked.status, 204);
  assert.equal((await clientCredentials('reporter', rotated.body.secret)).status, 401);
  assertProblem(await admin(server, 'POST', '/applications/tasks-web/secrets', { token }), 409, 'conflict');
});

test('redirect URIs are replaced with If-Match and validated like the configuration', async () => {
  const read = await admin(server, 'GET', '/applications/tasks-web', { token });
  const etag = read.headers.get('etag')!;
  const bad = await admin(server, 'PATCH', '/applications/tasks-web', { token, body: { redirectUris: ['http://evil.example/callback'] }, headers: { 'if-match': etag } });
  assertProblem(bad, 400, 'invalid-body');
  assert.equal(bad.body.errors[0].path, 'redirectUris.0');
  const unknown = await admin(server, 'PATCH', '/applications/tasks-web', { token, body: { redirectUri: ['https://a.example/cb'] }, headers: { 'if-match': etag } });
  assertProblem(unknown, 400, 'invalid-body');
  const ok = await admin(server, 'PATCH', '/applications/tasks-web', { token, body: { redirectUris: ['http://127.0.0.1:7000/callback', 'https://tasks.example/callback'] }, headers: { 'if-match': etag } });
  assert.equal(ok.status, 200, JSON.stringify(ok.body));
  assert.deepEqual(ok.body.redirectUris, ['http://127.0.0.1:7000/callback', 'https://tasks.example/callback']);
  assert.deepEqual((await server.ctx.directories.get('contoso'))!.application('tasks-web')!.redirectUris, ok.body.redirectUris);
  // Only the named field changed: a PATCH never resets what it leaves out to a default.
  assert.deepEqual({ ...ok.body, redirectUris: read.body.redirectUris }, read.body);
  assertProblem(await admin(server, 'PATCH', '/applications/tasks-web', { token, body: { name: 'Stale' }, headers: { 'if-match': etag } }), 412, 'precondition-failed');
});

test('a public key registered through the API authenticates private_key_jwt; removed, it does not', async () => {
  const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk = { ...pair.publicKey.export({ format: 'jwk' }), kid: 'admin-k1' };
  assertProblem(await admin(server, 'POST', '/applications/indexer/keys', { token, body: { jwk: { ...pair.privateKey.export({ format: 'jwk' }), kid: 'x' } } }), 400, 'invalid-body');
  assertProblem(await admin(server, 'POST', '/applications/indexer/keys', { token, body: { jwk: { kty: 'EC', crv: 'P-256', x: 'AAAA', y: 'AAAA', kid: 'bad' } } }), 400, 'invalid-body');
  const added = await admin(server, 'POST', '/applications/indexer/keys', { token, body: { jwk } });
  assert.equal(added.status, 201, JSON.stringify(added.body));
  const assertion = () => {
    const now = Math.floor(Date.now() / 1000);
    return createSigner(pair.privateKey, 'admin-k1', 'ES256').sign({ iss: 'indexer', sub: 'indexer', aud: server.tokenUrl(), iat: now, exp: now + 300, jti: randomUUID() });
  };
  const form = () => ({ grant_type: 'client_credentials', scope: 'api://docs/.default', client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: assertion() });
  assert.equal((await server.post('/contoso/oauth2/v2.0/token', form())).status, 200);
  const removed = await admin(server, 'DELETE', '/applications/indexer/keys/admin-k1', { token, headers: { 'if-match': added.headers.get('etag')! } });
  assert.equal(removed.status, 204);
  assert.equal((await server.post('/contoso/oauth2/v2.0/token', form())).body.error, 'invalid_client');
});

test('consents: list, grant (her exchange works), revoke (it is refused again)', async () => {
  const exchange = async () => obo(server, 'tasks-api', await userToken(server), 'api://reports/Reports.Read');
  assert.equal((await exchange()).body.suberror, 'consent_required');
  const granted = await admin(server, 'POST', '/consents', { token, body: { client: 'tasks-api', resource: 'api://reports', scopes: ['Reports.Read'], for: 'alice@contoso.test' } });
  assert.equal(granted.status, 201, JSON.stringify(granted.body));
  assert.equal((await exchange()).status, 200);
  const listed = await admin(server, 'GET', '/consents?client=tasks-api&for=alice@contoso.test', { token });
  assert.deepEqual(listed.body.items.map((c: any) => c.id), [granted.body.id]);
  assertProblem(await admin(server, 'POST', '/consents', { token, body: { client: 'tasks-api', resource: 'api://reports', scopes: ['Reports.Nope'], for: 'all' } }), 400, 'invalid-body');
  assertProblem(await admin(server, 'POST', '/consents', { token, body: { client: 'tasks-api', resource: 'api://reports', scopes: ['Reports.Read'], for: 'nobody@contoso.test' } }), 400, 'invalid-body');
  assertProblem(await admin(server, 'GET', '/consents?color=red', { token }), 400, 'invalid-query');
  const revoked = await admin(server, 'DELETE', `/consents/${granted.body.id}`, { token, headers: { 'if-match': granted.headers.get('etag')! } });
  assert.equal(revoked.status, 204);
  assert.equal((await exchange()).body.suberror, 'consent_required');
  assertProblem(await admin(server, 'DELETE', '/consents/not-an-id', { token, headers: { 'if-match': '*' } }), 404, 'not-found');
});

test('role assignments: remove one and the application loses the permission', async () => {
  const listed = await admin(server, 'GET', '/role-assignments?client=indexer', { token });
  const assignment = listed.body.items.find((a: any) => a.resource === 'docs-api');
  assert.deepEqual(assignment.roles, ['Docs.ReadAll']);
  assert.equal((await clientCredentials('indexer', 'indexer-demo-secret-for-local-use-only')).status, 200);
  assertProblem(await admin(server, 'POST', '/role-assignments', { token, body: { client: 'indexer', resource: 'api://docs', roles: ['Docs.Read'] } }), 400, 'invalid-body');
  assertProblem(await admin(server, 'POST', '/role-assignments', { token, body: { client: 'tasks-web', resource: 'api://docs', roles: ['Docs.ReadAll'] } }), 400, 'invalid-body');
  assertProblem(await admin(server, 'POST', '/role-assignments', { token, body: { client: 'indexer', user: 'alice@contoso.test', resource: 'api://docs', roles: ['Docs.ReadAll'] } }), 400, 'invalid-body');
  const removed = await admin(server, 'DELETE', `/role-assignments/${assignment.id}`, { token, headers: { 'if-match': '*' } });
  assert.equal(removed.status, 204);
  assert.equal((await clientCredentials('indexer', 'indexer-demo-secret-for-local-use-only')).body.error, 'invalid_scope');
  assert.deepEqual((await admin(server, 'GET', '/role-assignments?client=indexer', { token })).body.items, []);
  assert.equal((await admin(server, 'POST', '/role-assignments', { token, body: { client: 'indexer', resource: 'api://docs', roles: ['Docs.ReadAll'] } })).status, 201);
  assert.equal((await clientCredentials('indexer', 'indexer-demo-secret-for-local-use-only')).status, 200);
});

test('policies: put one that blocks, the exchange is refused; delete it, allowed again', async () => {
  const exchange = async () => obo(server, 'tasks-api', await userToken(server), 'api://docs/Docs.Read');
  assert.equal((await exchange()).status, 200);
  const put = await admin(server, 'PUT', '/policies/No%20docs%20today', { token, body: { resources: ['api://docs'], scopes: ['Docs.Read'], require: { block: true } } });
  assert.equal(put.status, 201, JSON.stringify(put.body));
  assert.equal((await exchange()).body.error, 'invalid_grant');
  assertProblem(await admin(server, 'PUT', '/policies/No%20docs%20today', { token, body: { resources: ['api://docs'], require: { mfa: true } } }), 428, 'precondition-required');
  assertProblem(await admin(server, 'PUT', '/policies/Bad', { token, body: { resources: ['api://docs'], require: {} } }), 400, 'invalid-body');
  assertProblem(await admin(server, 'PUT', '/policies/Bad', { token, body: { resources: ['api://docs'], require: { ipRanges: ['10.0.0.0/33'] } } }), 400, 'invalid-body');
  const names = (await admin(server, 'GET', '/policies', { token })).body.items.map((p: any) => p.name);
  assert.ok(names.includes('No docs today') && !names.includes('Bad'));
  assertProblem(await admin(server, 'DELETE', '/policies/No%20docs%20today', { token, headers: { 'if-match': '"stale"' } }), 412, 'precondition-failed');
  assert.equal((await admin(server, 'DELETE', '/policies/No%20docs%20today', { token, headers: { 'if-match': put.headers.get('etag')! } })).status, 204);
  assert.equal((await exchange()).status, 200);
});

test('the change log holds every change with its actor, and no secret', async () => {
  const events: AdminChangeEvent[] = [];
  const stop = adminLogOf(server.ctx).subscribe((e) => events.push(e));
  let secret = '';
  try {
    const added = await admin(server, 'POST', '/applications/indexer/secrets', { token });
    secret = added.body.secret;
    const read = await admin(server, 'GET', '/applications/indexer', { token });
    await admin(server, 'DELETE', `/applications/indexer/secrets/${added.body.id}`, { token, headers: { 'if-match': read.headers.get('etag')! } });
  } finally {
    stop();
  }
  assert.deepEqual(events.map((e) => e.action), ['application.secret.add', 'application.secret.revoke']);
  assert.ok(events.every((e) => e.actor.clientId === 'ops'));
  const stored = await server.ctx.store.getApplication('contoso', 'indexer');
  const text = JSON.stringify(events);
  assert.ok(!text.includes(secret) && !text.includes('hmac-sha256$'));
  for (const s of stored!.secrets) assert.ok(!text.includes(s.hash));
});

test("an API's DPoP policy through the admin API: shown, changed by a PATCH, in force at the token endpoint at once", async () => {
  const before = await admin(server, 'GET', '/applications/docs-api', { token });
  assert.equal(before.body.dpop, undefined);
  assert.equal((await clientCredentials('indexer', 'indexer-demo-secret-for-local-use-only')).status, 200);
  assertProblem(await admin(server, 'PATCH', '/applications/docs-api', { token, body: { dpop: { incoming: 'sometimes' } }, headers: { 'if-match': before.headers.get('etag')! } }), 400, 'invalid-body');
  const patched = await admin(server, 'PATCH', '/applications/docs-api', { token, body: { dpop: { incoming: 'required' } }, headers: { 'if-match': before.headers.get('etag')! } });
  assert.equal(patched.status, 200, JSON.stringify(patched.body));
  assert.deepEqual(patched.body.dpop, { incoming: 'required', exchanged: 'allowed', keys: [] });
  // Tokens for the Docs API are now DPoP-bound only: a client-credentials request without a proof is refused (9100015).
  const refused = await clientCredentials('indexer', 'indexer-demo-secret-for-local-use-only');
  assert.equal(refused.status, 400);
  assert.deepEqual([refused.body.error, refused.body.error_codes], ['invalid_dpop_proof', [9100015]]);
  // A PATCH of another field keeps the policy; clearing it back to allowed lifts it.
  const renamed = await admin(server, 'PATCH', '/applications/docs-api', { token, body: { name: 'Docs API (renamed)' }, headers: { 'if-match': patched.headers.get('etag')! } });
  assert.deepEqual(renamed.body.dpop, { incoming: 'required', exchanged: 'allowed', keys: [] });
  const lifted = await admin(server, 'PATCH', '/applications/docs-api', { token, body: { name: 'Docs API', dpop: { incoming: 'allowed' } }, headers: { 'if-match': renamed.headers.get('etag')! } });
  assert.equal(lifted.status, 200);
  assert.equal((await clientCredentials('indexer', 'indexer-demo-secret-for-local-use-only')).status, 200);
});

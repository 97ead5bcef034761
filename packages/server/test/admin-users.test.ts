/**
 * The admin API's users, its token check and its answers to bad input, against a real server
 * (SQLite). Every refusal is problem+json; nothing refused is written.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, basic, decodeJwt, type TestServer } from './harness.ts';
import { signAccessToken } from '../src/tokens/issue.ts';
import { obo, userToken } from './obo-fixtures.ts';
import { adminLogOf, type AdminChangeEvent } from '../src/admin/audit.ts';
import { admin, adminConfigure, adminToken, assertProblem } from './admin-kit.ts';

let server: TestServer;
let token: string;

before(async () => {
  server = await startTestServer({ configure: adminConfigure });
  token = await adminToken(server);
});
after(async () => {
  await server?.close();
});

const aliceExchange = async () => obo(server, 'tasks-api', await userToken(server), 'api://docs/Docs.Read');

test('no token: 401 problem+json with a Bearer challenge', async () => {
  const response = await admin(server, 'GET', '/users');
  assertProblem(response, 401, 'unauthenticated');
  assert.match(response.headers.get('www-authenticate') ?? '', /^Bearer realm="/);
});

test('a token without Baton.Admin: refused at the token endpoint, and 403 insufficient_scope at the API', async () => {
  // The token service issues no admin-API token to an application without the role…
  const response = await server.post('/contoso/oauth2/v2.0/token', { grant_type: 'client_credentials', scope: 'api://baton-admin/.default' }, {
    authorization: basic('indexer', 'indexer-demo-secret-for-local-use-only'),
  });
  assert.equal(response.body.error, 'invalid_scope');
  // …and a token for the admin API without it (here: a real admin token's claims minus the role,
  // signed with the tenant's key) is refused by the API with the RFC 6750 challenge.
  const { payload } = decodeJwt(token);
  const { roles: _roles, ...claims } = payload;
  const adminApi = (await server.ctx.directories.get('contoso'))!.application('baton-admin')!;
  const roleless = await signAccessToken(server.ctx, 'contoso', adminApi, claims);
  const refused = await admin(server, 'GET', '/users', { token: roleless });
  assertProblem(refused, 403, 'insufficient-role', 'insufficient_scope');
  assert.match(refused.headers.get('www-authenticate') ?? '', /error="insufficient_scope"/);
});

test("another tenant's admin token, a user's token, a tampered token: 401 invalid_token", async () => {
  const fabrikam = await adminToken(server, { tenant: 'fabrikam' });
  assert.equal((await admin(server, 'GET', '/users', { token: fabrikam }, 'fabrikam')).status, 200);
  const foreign = await admin(server, 'GET', '/users', { token: fabrikam });
  assertProblem(foreign, 401, 'unauthenticated', 'invalid_token');
  const user = await admin(server, 'GET', '/users', { token: await userToken(server) });
  assertProblem(user, 401, 'unauthenticated', 'invalid_token');
  const [h, p, s] = token.split('.');
  const tampered = await admin(server, 'GET', '/users', { token: `${h}.${p}.${s!.slice(0, -4)}AAAA` });
  assertProblem(tampered, 401, 'unauthenticated', 'invalid_token');
});

test('an unknown tenant is 404; an unknown admin path is 404, both problem+json', async () => {
  assertProblem(await admin(server, 'GET', '/users', { token }, 'nowhere'), 404, 'not-found');
  assertProblem(await admin(server, 'GET', '/nothing-here', { token }), 404, 'not-found');
});

test('users are listed a page at a time by an opaque cursor', async () => {
  const seen: string[] = [];
  let path = '/users?limit=2';
  for (let i = 0; i < 10; i++) {
    const page = await admin(server, 'GET', path, { token });
    assert.equal(page.status, 200, JSON.stringify(page.body));
    assert.ok(page.body.items.length <= 2);
    seen.push(...page.body.items.map((u: any) => u.username));
    for (const user of page.body.items) assert.deepEqual(Object.keys(user).filter((k) => /hash|secret|totp|password/i.test(k)), []);
    if (page.body.next === undefined) break;
    assert.match(page.headers.get('link') ?? '', /rel="next"/);
    path = `/users?limit=2&cursor=${page.body.next}`;
  }
  assert.ok(seen.includes('alice@contoso.test') && seen.includes('olivia@contoso.test'), seen.join());
  assert.equal(new Set(seen).size, seen.length, 'no user twice');
  assertProblem(await admin(server, 'GET', '/users?cursor=bm90LWEtY3Vyc29y', { token }), 400, 'invalid-query', 'invalid_request');
  assertProblem(await admin(server, 'GET', '/users?limit=0', { token }), 400, 'invalid-query');
  assertProblem(await admin(server, 'GET', '/users?limit=abc', { token }), 400, 'invalid-query');
});

test('create a user: 201 with Location and ETag; the same name again is 409', async () => {
  const body = { username: 'Dave@contoso.test', displayName: 'Dave Diaz', password: 'dave-Admin-pass-1', email: 'dave@contoso.test' };
  const created = await admin(server, 'POST', '/users', { token, body });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  assert.equal(created.body.username, 'dave@contoso.test');
  assert.equal(created.body.enabled, true);
  assert.equal(created.body.mfaEnrolled, false);
  assert.equal(created.headers.get('location'), `/contoso/admin/v1/users/${created.body.id}`);
  const etag = created.headers.get('etag');
  assert.match(etag ?? '', /^"[A-Za-z0-9_-]+"$/);
  const read = await admin(server, 'GET', `/users/${created.body.id}`, { token });
  assert.equal(read.headers.get('etag'), etag);
  assert.deepEqual(read.body, created.body);
  assert.equal((await admin(server, 'GET', '/users/dave@contoso.test', { token })).body.id, created.body.id);
  assertProblem(await admin(server, 'POST', '/users', { token, body }), 409, 'conflict');
  // Dave can sign in: the stored hash verifies his password (scrypt), and the response never had it.
  const stored = await server.ctx.store.getUserByName('contoso', 'dave@contoso.test');
  assert.match(stored!.passwordHash, /^scrypt\$/);
  assert.ok(!JSON.stringify(created.body).includes(stored!.passwordHash));
});

test('bad bodies are refused with the field named, and nothing is written', async () => {
  const count = async () => (await server.ctx.store.listUsers('contoso')).length;
  const before = await count();
  const unknown = await admin(server, 'POST', '/users', { token, body: { username: 'eve@contoso.test', displayName: 'Eve', password: 'eve-Admin-pass-1', isAdmin: true } });
  assertProblem(unknown, 400, 'invalid-body', 'invalid_request');
  assert.match(unknown.body.detail, /unknown field: isAdmin/);
  const wrongType = await admin(server, 'POST', '/users', { token, body: { username: 'eve@contoso.test', displayName: 'Eve', password: 'eve-Admin-pass-1', enabled: 'yes' } });
  assertProblem(wrongType, 400, 'invalid-body');
  assert.deepEqual(wrongType.body.errors.map((e: any) => e.path), ['enabled']);
  const shortPassword = await admin(server, 'POST', '/users', { token, body: { username: 'eve@contoso.test', displayName: 'Eve', password: 'short' } });
  assertProblem(shortPassword, 400, 'invalid-body');
  assertProblem(await admin(server, 'POST', '/users', { token, body: ['not', 'an', 'object'] }), 400, 'invalid-body');
  assertProblem(await admin(server, 'POST', '/users', { token, raw: '{"username": "eve@contoso.test",' }), 400, 'malformed-json');
  assertProblem(await admin(server, 'POST', '/users', { token, raw: 'username=eve', contentType: 'application/x-www-form-urlencoded' }), 415, 'unsupported-media-type');
  assertProblem(await admin(server, 'POST', '/users', { token, raw: '{}', contentType: 'text/plain' }), 415, 'unsupported-media-type');
  const huge = await admin(server, 'POST', '/users', { token, body: { username: 'eve@contoso.test', displayName: 'x'.repeat(70_000), password: 'eve-Admin-pass-1' } });
  assertProblem(huge, 413, 'payload-too-large');
  const proto = await admin(server, 'POST', '/users', { token, raw: '{"username":"eve@contoso.test","displayName":"Eve","password":"eve-Admin-pass-1","__proto__":{"enabled":false}}' });
  assertProblem(proto, 400, 'invalid-body');
  assert.equal(await count(), before);
});

test('update needs If-Match: 428 without, 412 when stale, 200 with the current ETag', async () => {
  const read = await admin(server, 'GET', '/users/bob@contoso.test', { token });
  const etag = read.headers.get('etag')!;
  assertProblem(await admin(server, 'PATCH', '/users/bob@contoso.test', { token, body: { displayName: 'Robert Brown' } }), 428, 'precondition-required');
  const updated = await admin(server, 'PATCH', '/users/bob@contoso.test', { token, body: { displayName: 'Robert Brown' }, headers: { 'if-match': etag } });
  assert.equal(updated.status, 200, JSON.stringify(updated.body));
  assert.equal(updated.body.displayName, 'Robert Brown');
  assert.notEqual(updated.headers.get('etag'), etag);
  assertProblem(await admin(server, 'PATCH', '/users/bob@contoso.test', { token, body: { displayName: 'Bobby' }, headers: { 'if-match': etag } }), 412, 'precondition-failed');
  assertProblem(await admin(server, 'PATCH', '/users/bob@contoso.test', { token, body: { displayName: 'Bobby' }, headers: { 'if-match': `W/${updated.headers.get('etag')}` } }), 412, 'precondition-failed');
  assert.equal((await server.ctx.store.getUserByName('contoso', 'bob@contoso.test'))!.displayName, 'Robert Brown');
  assertProblem(await admin(server, 'PATCH', '/users/nobody@contoso.test', { token, body: { displayName: 'X' }, headers: { 'if-match': etag } }), 404, 'not-found');
});

test('disable and enable: her next exchange is refused, then allowed again', async () => {
  assert.equal((await aliceExchange()).status, 200);
  const disabled = await admin(server, 'POST', '/users/alice@contoso.test/disable', { token });
  assert.equal(disabled.status, 200, JSON.stringify(disabled.body));
  assert.equal(disabled.body.enabled, false);
  const refused = await aliceExchange();
  assert.equal(refused.status, 400);
  assert.equal(refused.body.error, 'invalid_grant');
  assert.equal((await admin(server, 'POST', '/users/alice@contoso.test/enable', { token })).body.enabled, true);
  assert.equal((await aliceExchange()).status, 200);
  // A stale If-Match on an action is refused too.
  assertProblem(await admin(server, 'POST', '/users/alice@contoso.test/disable', { token, headers: { 'if-match': disabled.headers.get('etag')! } }), 412, 'precondition-failed');
  assertProblem(await admin(server, 'POST', '/users/alice@contoso.test/disable', { token, body: { now: true } }), 400, 'invalid-body');
});

test('revoke sessions: tokens issued before are refused; reset MFA un-enrols', async () => {
  const earlier = await userToken(server);
  const revoked = await admin(server, 'POST', '/users/alice@contoso.test/revoke-sessions', { token });
  assert.equal(revoked.status, 200);
  assert.ok(Date.parse(revoked.body.sessionsRevokedBefore) > Date.now() - 5000);
  const refused = await obo(server, 'tasks-api', earlier, 'api://docs/Docs.Read');
  assert.equal(refused.body.error, 'invalid_grant', JSON.stringify(refused.body));
  assert.equal((await admin(server, 'GET', '/users/alice@contoso.test', { token })).body.mfaEnrolled, true);
  const reset = await admin(server, 'POST', '/users/alice@contoso.test/reset-mfa', { token });
  assert.equal(reset.body.mfaEnrolled, false);
  assert.equal((await server.ctx.store.getUserByName('contoso', 'alice@contoso.test'))!.totpSecret, undefined);
  const enrolled = await admin(server, 'POST', '/users/alice@contoso.test/reset-mfa', { token, body: { totpSecret: 'JBSWY3DPEHPK3PXPJBSWY3DP' } });
  assert.equal(enrolled.body.mfaEnrolled, true);
});

test('every change is one audit event: who, what, before and after, never a secret', async () => {
  const events: AdminChangeEvent[] = [];
  const stop = adminLogOf(server.ctx).subscribe((e) => events.push(e));
  try {
    const read = await admin(server, 'GET', '/users/olivia@contoso.test', { token });
    await admin(server, 'PATCH', '/users/olivia@contoso.test', { token, body: { password: 'olivia-New-pass-2' }, headers: { 'if-match': read.headers.get('etag')! } });
    await admin(server, 'POST', '/users/olivia@contoso.test/disable', { token });
    await admin(server, 'POST', '/users/olivia@contoso.test/disable', { token }); // no change: no event
    await admin(server, 'GET', '/users', { token }); // a read: no event
  } finally {
    stop();
  }
  assert.deepEqual(events.map((e) => e.action), ['user.update', 'user.disable']);
  const [update, disable] = events as [AdminChangeEvent, AdminChangeEvent];
  assert.equal(update.actor.clientId, 'ops');
  assert.equal(update.tenant, 'contoso');
  assert.equal((disable.before as any).enabled, true);
  assert.equal((disable.after as any).enabled, false);
  const stored = await server.ctx.store.getUserByName('contoso', 'olivia@contoso.test');
  const text = JSON.stringify(events);
  assert.ok(!text.includes('olivia-New-pass-2') && !text.includes(stored!.passwordHash) && !/scrypt\$/.test(text));
});

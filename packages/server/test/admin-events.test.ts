/**
 * The admin change log read back, `GET /{tenant}/admin/v1/events` (issue 13): every change made
 * through the admin API is one event (who, what, the record before and after, never a secret), oldest
 * first, filtered by record type, id and instant, paged by cursor; hostile queries are 400
 * problem+json; the route is guarded like every admin route and sees one tenant only.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, type TestServer } from './harness.ts';
import { admin, adminConfigure, adminToken, assertProblem } from './admin-kit.ts';

let server: TestServer;
let token: string;
const NEW_PASSWORD = 'olivia-Changed-pass-77';
let secret = '';
let started = '';

before(async () => {
  server = await startTestServer({ configure: adminConfigure });
  token = await adminToken(server);
  started = new Date(Date.now() - 1000).toISOString();
  const read = await admin(server, 'GET', '/users/olivia@contoso.test', { token });
  const changes = [
    await admin(server, 'PATCH', '/users/olivia@contoso.test', { token, body: { password: NEW_PASSWORD }, headers: { 'if-match': read.headers.get('etag')! } }),
    await admin(server, 'POST', '/users/olivia@contoso.test/disable', { token }),
    await admin(server, 'POST', '/users/olivia@contoso.test/disable', { token }), // no change: no event
    await admin(server, 'POST', '/applications/indexer/secrets', { token, body: {} }),
    await admin(server, 'PUT', '/policies/No%20writes', { token, body: { resources: ['api://docs'], scopes: ['Docs.Write'], require: { block: true } } }),
    await admin(server, 'POST', '/users/bob@contoso.test/revoke-sessions', { token }),
    await admin(server, 'POST', '/users/olivia@contoso.test/enable', { token }),
  ];
  for (const c of changes) assert.ok(c.status === 200 || c.status === 201, JSON.stringify(c.body));
  secret = changes[3]!.body.secret;
  assert.equal(typeof secret, 'string');
});
after(async () => {
  await server?.close();
});

const events = (query = '', as = token, tenant = 'contoso') => admin(server, 'GET', `/events${query}`, { token: as }, tenant);

test('every change is one event, oldest first: who, what, before and after, never a secret', async () => {
  const response = await events();
  assert.equal(response.status, 200, JSON.stringify(response.body));
  assert.deepEqual(
    response.body.items.map((e: any) => e.action),
    ['user.update', 'user.disable', 'application.secret.add', 'policy.put', 'user.revoke-sessions', 'user.enable'],
  );
  assert.equal(response.body.next, undefined);
  const [update, disable] = response.body.items;
  const olivia = await server.ctx.store.getUserByName('contoso', 'olivia@contoso.test');
  assert.equal(update.actor.clientId, 'ops');
  assert.equal(update.tenant, 'contoso');
  assert.equal(update.entity, 'user');
  assert.equal(update.target, olivia!.oid, 'a user is named by her object id');
  assert.equal(typeof update.id, 'string');
  assert.ok(Date.parse(update.time) >= Date.parse(started));
  assert.equal(update.credential, 'password');
  assert.equal(disable.before.enabled, true);
  assert.equal(disable.after.enabled, false);
  assert.equal(update.seq, undefined, 'no instance-local number');
  const text = JSON.stringify(response.body);
  assert.ok(!text.includes(NEW_PASSWORD), 'no password');
  assert.ok(!text.includes(secret), 'no client secret');
  assert.ok(!text.includes(olivia!.passwordHash) && !/scrypt\$/.test(text), 'no hash');
});

test('filters: type, id (an oid or a username for users), since', async () => {
  const olivia = await server.ctx.store.getUserByName('contoso', 'olivia@contoso.test');
  const byName = await events('?type=user&id=olivia@contoso.test');
  assert.deepEqual(byName.body.items.map((e: any) => e.action), ['user.update', 'user.disable', 'user.enable']);
  assert.deepEqual((await events(`?type=user&id=${olivia!.oid}`)).body.items, byName.body.items);
  assert.deepEqual((await events('?type=policy')).body.items.map((e: any) => e.target), ['No writes']);
  assert.deepEqual((await events('?type=application&id=indexer')).body.items.map((e: any) => e.action), ['application.secret.add']);
  assert.deepEqual((await events('?type=consent')).body.items, []);
  assert.deepEqual((await events('?type=user&id=nobody@contoso.test')).body.items, []);
  assert.equal((await events(`?since=${encodeURIComponent(started)}`)).body.items.length, 6);
  assert.deepEqual((await events('?since=2999-01-01T00:00:00Z')).body.items, []);
  const all = (await events()).body.items;
  const fourth = all[3].time;
  assert.deepEqual((await events(`?since=${encodeURIComponent(fourth)}`)).body.items.map((e: any) => e.id).slice(0, 1), [all[3].id]);
});

test('paging: a cursor per page, a Link to the next, and the pages together are the whole log', async () => {
  const all = (await events()).body.items.map((e: any) => e.id);
  const seen: string[] = [];
  let query = '?limit=4';
  let pages = 0;
  for (;;) {
    const page = await events(query);
    assert.equal(page.status, 200, JSON.stringify(page.body));
    pages += 1;
    seen.push(...page.body.items.map((e: any) => e.id));
    if (page.body.next === undefined) {
      assert.equal(page.headers.get('link'), null);
      break;
    }
    assert.match(page.headers.get('link') ?? '', /^<\/contoso\/admin\/v1\/events\?.*cursor=.*>; rel="next"$/);
    query = `?limit=4&cursor=${page.body.next}`;
  }
  assert.equal(pages, 2);
  assert.deepEqual(seen, all);
  // The cursor keeps the filters' place: page 2 of the users' events.
  const first = await events('?type=user&limit=2');
  const second = await events(`?type=user&limit=2&cursor=${first.body.next}`);
  assert.deepEqual(second.body.items.map((e: any) => e.action), ['user.revoke-sessions', 'user.enable']);
});

test('hostile queries are 400 problem+json', async () => {
  const offsetCursor = Buffer.from('o1:2').toString('base64url');
  for (const query of [
    '?cursor=bogus',
    `?cursor=${offsetCursor}`,
    `?cursor=${Buffer.from('e1:99999999999999999999').toString('base64url')}`,
    `?cursor=${'A'.repeat(5000)}`,
    '?limit=100000',
    '?limit=0',
    '?limit=-1',
    '?limit=1e3',
    '?foo=bar',
    '?type=secret',
    '?type=user&type=policy',
    '?id=olivia@contoso.test',
    '?since=yesterday',
    '?since=2026-13-45T99:99:99Z',
    `?type=user&id=${'x'.repeat(300)}`,
  ]) {
    const response = await events(query);
    assertProblem(response, 400, 'invalid-query', 'invalid_request');
  }
});

test('guarded like every admin route, and one tenant only', async () => {
  assertProblem(await admin(server, 'GET', '/events'), 401, 'unauthenticated');
  assertProblem(await events('', 'not-a-token'), 401, 'unauthenticated');
  const fabrikam = await adminToken(server, { tenant: 'fabrikam' });
  assertProblem(await events('', fabrikam), 401, 'unauthenticated');
  const theirs = await events('', fabrikam, 'fabrikam');
  assert.equal(theirs.status, 200);
  assert.deepEqual(theirs.body.items, []);
});

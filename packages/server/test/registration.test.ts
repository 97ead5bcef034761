/**
 * Grants and routes belong to a server instance, not to a module: a grant or a route given to one
 * `startServer` is offered by that server only, discovery lists what that server offers, and the
 * built-in ones are always there.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { BUILT_IN_GRANTS, GrantRegistry, type Grant, type RoutePlugin } from '../src/index.ts';
import { basic, startTestServer, type TestServer } from './harness.ts';
import { secretOf } from './obo-fixtures.ts';

const ECHO_GRANT = 'urn:example:params:oauth:grant-type:echo';

/** A third party's grant: answers with the authenticated client and the one parameter it declared. */
const echoGrant: Grant = {
  grantType: ECHO_GRANT,
  parameters: new Set(['word']),
  confidentialOnly: true,
  async handler(request) {
    return { client: request.client.app.clientId, word: request.params.word ?? '', ignored: request.params.other ?? 'stripped' };
  },
};

const opsRoutes: RoutePlugin = (app, ctx) => {
  app.get('/ops/tenants', async () => (await ctx.store.listTenants()).map((t) => t.id));
};

describe('grants and routes per server instance', () => {
  let withEcho: TestServer;
  let plain: TestServer;
  before(async () => {
    [withEcho, plain] = await Promise.all([startTestServer({ grants: [echoGrant], routes: [opsRoutes] }), startTestServer()]);
  });
  after(async () => {
    await Promise.all([withEcho?.close(), plain?.close()]);
  });

  test('the added grant answers on its server, with only its declared parameters', async () => {
    const response = await withEcho.post('/contoso/oauth2/v2.0/token', { grant_type: ECHO_GRANT, word: 'hello', other: 'x' }, { authorization: basic('tasks-api', secretOf('tasks-api')) });
    assert.equal(response.status, 200);
    assert.deepEqual(response.body, { client: 'tasks-api', word: 'hello', ignored: 'stripped' });
  });

  test('another server in the same process does not offer it', async () => {
    const response = await plain.post('/contoso/oauth2/v2.0/token', { grant_type: ECHO_GRANT }, { authorization: basic('tasks-api', secretOf('tasks-api')) });
    assert.equal(response.status, 400);
    assert.equal(response.body.error, 'unsupported_grant_type');
  });

  test('discovery lists each server’s grants: the built-in ones, then the added ones', async () => {
    const builtIn = BUILT_IN_GRANTS.map((g) => g.grantType);
    const read = async (server: TestServer) => (await (await fetch(`${server.url}/contoso/v2.0/.well-known/openid-configuration`)).json()) as { grant_types_supported: string[] };
    assert.deepEqual((await read(withEcho)).grant_types_supported, [...builtIn, ECHO_GRANT]);
    assert.deepEqual((await read(plain)).grant_types_supported, builtIn);
  });

  test('an added route is served by its server only', async () => {
    const ok = await fetch(`${withEcho.url}/ops/tenants`);
    assert.equal(ok.status, 200);
    assert.ok(((await ok.json()) as string[]).includes('contoso'));
    assert.equal((await fetch(`${plain.url}/ops/tenants`)).status, 404);
  });

  test('a grant type offered twice is a programming error, refused at start', async () => {
    assert.throws(() => new GrantRegistry([echoGrant, echoGrant]), { name: 'TypeError', message: `grant type ${ECHO_GRANT} is already registered` });
    await assert.rejects(startTestServer({ grants: [BUILT_IN_GRANTS[0]!] }), { name: 'TypeError' });
  });
});

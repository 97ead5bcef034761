/**
 * Assertions and signing-key rotation: a token signed by a key retired past its grace period is no
 * longer this tenant's token, even though it has not expired. Its own server: the clock moves.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, decodeJwt, type TestServer } from './harness.ts';
import { obo, oboConfigure, userToken } from './obo-fixtures.ts';

const GRACE = 300;
let server: TestServer;

before(async () => {
  server = await startTestServer({ tls: 'dev', configure: oboConfigure, retireGraceSeconds: GRACE });
});
after(() => server.close());

test('an assertion signed by a key retired past its grace period is refused (50013)', async () => {
  const assertion = await userToken(server);
  const { kid } = decodeJwt(assertion).header;

  await server.ctx.keyring.rotate('contoso', 'ES256');
  const withinGrace = await obo(server, 'tasks-api', assertion, 'api://docs/Docs.Read');
  assert.equal(withinGrace.status, 200, JSON.stringify(withinGrace.body));
  assert.notEqual(decodeJwt(withinGrace.body.access_token).header.kid, kid, 'new tokens are signed with the new current key');

  await server.ctx.keyring.rotate('contoso', 'ES256');
  server.advance(GRACE + 60);
  const jwks = (await (await fetch(`${server.url}/contoso/discovery/v2.0/keys`)).json()) as { keys: { kid: string }[] };
  assert.ok(!jwks.keys.some((k) => k.kid === kid), 'the key has left the JWKS');

  const response = await obo(server, 'tasks-api', assertion, 'api://docs/Docs.Read');
  assert.equal(response.status, 400);
  assert.equal(response.body.error, 'invalid_grant');
  assert.deepEqual(response.body.error_codes, [50013]);
  assert.match(response.body.error_description, /retired past its grace period/);
  assert.ok(decodeJwt(assertion).payload.exp > server.ctx.now(), 'the assertion itself has not expired');
});

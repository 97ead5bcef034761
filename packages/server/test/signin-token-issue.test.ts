/**
 * `baton token issue` (contracts/README.md): a delegated token for local API testing, signed with
 * the keys of the data directory a running token service uses, so an API validating against that
 * service's JWKS accepts it.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startTestServer, chainConfigRaw, type TestServer } from './harness.ts';

const run = promisify(execFile);
const BIN = new URL('../../cli/src/bin.ts', import.meta.url).pathname;
let server: TestServer;
/** The configuration the service runs with, as a file for the CLI. */
let configPath: string;

before(async () => {
  server = await startTestServer({ tls: 'dev' });
  configPath = join(server.dataDir, 'baton.json');
  writeFileSync(configPath, JSON.stringify(chainConfigRaw()));
});
after(() => server.close());

function issue(...extra: string[]) {
  const env = { ...process.env };
  delete env.BATON_KEK;
  return run(process.execPath, [BIN, 'token', 'issue', '--config', configPath, '--data', server.dataDir, '--tenant', 'contoso', '--issuer-base', server.url, ...extra], { env });
}

test('baton token issue prints a delegated token (amr pwd) that verifies against the running service', async () => {
  const { stdout, stderr } = await issue('--user', 'alice@contoso.test', '--client', 'tasks-web', '--scope', 'api://tasks/Tasks.ReadWrite');
  const token = stdout.trim();
  assert.match(token, /^[\w-]+\.[\w-]+\.[\w-]+$/, 'stdout is the token alone');
  assert.doesNotMatch(stderr, /eyJ/, 'the token is not repeated on stderr');
  const jwks = createRemoteJWKSet(new URL(`${server.url}/contoso/discovery/v2.0/keys`));
  const { payload, protectedHeader } = await jwtVerify(token, jwks, { issuer: `${server.url}/contoso/v2.0`, audience: 'tasks-api', typ: 'at+jwt' });
  assert.equal(protectedHeader.alg, 'ES256');
  assert.equal(payload.scp, 'Tasks.ReadWrite');
  assert.equal(payload.azp, 'tasks-web');
  assert.deepEqual(payload.amr, ['pwd']);
  assert.equal(payload.preferred_username, 'alice@contoso.test');
  // The API accepts it at introspection, as it would a token from a sign-in.
  const introspect = await server.post('/contoso/oauth2/v2.0/introspect', { token }, { authorization: `Basic ${Buffer.from('tasks-api:tasks-api-demo-secret-for-local-use-only').toString('base64')}` });
  assert.equal(introspect.body.active, true);
});

test('baton token issue refuses what the service would refuse: no consent, a disabled user, an unknown client', async () => {
  await assert.rejects(issue('--user', 'alice@contoso.test', '--client', 'tasks-web', '--scope', 'api://docs/Docs.Read'), (error: any) => {
    assert.equal(error.code, 1);
    assert.match(error.stderr, /AADSTS65001/);
    return true;
  });
  await assert.rejects(issue('--user', 'carol@contoso.test', '--client', 'tasks-web', '--scope', 'api://tasks/Tasks.ReadWrite'), /AADSTS50057/);
  await assert.rejects(issue('--user', 'alice@contoso.test', '--client', 'nobody', '--scope', 'api://tasks/Tasks.ReadWrite'), /AADSTS700016/);
  await assert.rejects(issue('--user', 'alice@contoso.test', '--client', 'tasks-web'), /--scope is required/);
});

/**
 * Per-API signing algorithms: ES256 by default, RS256 or PS256 when an API asks for it. Each
 * algorithm has its own key set in the tenant's JWKS, and an independent verifier (jose) accepts
 * every token through the published keys.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { startTestServer, decodeJwt, basic, type TestServer } from './harness.ts';

let server: TestServer;

before(async () => {
  server = await startTestServer({
    tls: 'dev',
    configure(raw) {
      const apps = raw.tenants[0].applications;
      apps.find((a: any) => a.clientId === 'docs-api').signingAlg = 'RS256';
      apps.find((a: any) => a.clientId === 'audit-api').signingAlg = 'PS256';
      apps.find((a: any) => a.clientId === 'audit-api').appRoles = [{ value: 'Audit.ReadAll', description: 'Read the audit log', allowedMemberTypes: ['Application'] }];
      raw.tenants[0].appRoleAssignments.push({ client: 'indexer', resource: 'api://audit', roles: ['Audit.ReadAll'] });
    },
  });
});
after(() => server.close());

async function token(scope: string): Promise<string> {
  const response = await server.post('/contoso/oauth2/v2.0/token', { grant_type: 'client_credentials', scope }, { authorization: basic('indexer', 'indexer-demo-secret-for-local-use-only') });
  assert.equal(response.status, 200, JSON.stringify(response.body));
  return response.body.access_token;
}

test('each API gets tokens in its own algorithm, all verifiable through the one JWKS', async () => {
  const jwks = createRemoteJWKSet(new URL(`${server.url}/contoso/discovery/v2.0/keys`));
  const { keys } = (await (await fetch(`${server.url}/contoso/discovery/v2.0/keys`)).json()) as { keys: Array<{ alg: string; kty: string }> };
  for (const alg of ['ES256', 'RS256', 'PS256']) assert.ok(keys.some((k) => k.alg === alg), `${alg} key published`);

  for (const [scope, alg, aud] of [['api://docs/.default', 'RS256', 'docs-api'], ['api://audit/.default', 'PS256', 'audit-api']] as const) {
    const jwt = await token(scope);
    assert.equal(decodeJwt(jwt).header.alg, alg);
    const { protectedHeader } = await jwtVerify(jwt, jwks, { issuer: `${server.url}/contoso/v2.0`, audience: aud, algorithms: [alg] });
    assert.equal(protectedHeader.typ, 'at+jwt');
    // The token's kid names a key of the same algorithm: no cross-algorithm key reuse.
    assert.equal(keys.find((k: any) => k.kid === protectedHeader.kid)?.alg, alg);
  }
});

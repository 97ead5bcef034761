/**
 * Real clients, unchanged, against Baton over HTTPS: @azure/msal-node and openid-client getting an
 * app-only token, and jose validating it through the remote JWKS. Nothing leaves 127.0.0.1:
 * MSAL is given the authority metadata and told the authority is known.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { ConfidentialClientApplication, LogLevel } from '@azure/msal-node';
import * as oidc from 'openid-client';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { startTestServer, type TestServer } from './harness.ts';

let server: TestServer;
const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });

before(async () => {
  server = await startTestServer({
    tls: 'dev',
    configure(raw) {
      raw.tenants[0].applications.find((a: any) => a.clientId === 'indexer').jwks = [{ ...pair.publicKey.export({ format: 'jwk' }), kid: 'k1' }];
    },
  });
});
after(() => server.close());

async function metadata(): Promise<string> {
  return (await fetch(`${server.url}/contoso/v2.0/.well-known/openid-configuration`)).text();
}

test('@azure/msal-node acquireTokenByClientCredential gets a token from Baton', async () => {
  const logs: string[] = [];
  const cca = new ConfidentialClientApplication({
    auth: {
      clientId: 'indexer',
      clientSecret: 'indexer-demo-secret-for-local-use-only',
      authority: `${server.url}/contoso`,
      knownAuthorities: [new URL(server.url).host],
      authorityMetadata: await metadata(),
    },
    system: { loggerOptions: { loggerCallback: (_level, message) => logs.push(message), logLevel: LogLevel.Warning, piiLoggingEnabled: false } },
  });
  const result = await cca.acquireTokenByClientCredential({ scopes: ['api://docs/.default'] });
  assert.ok(result, 'a result');
  assert.equal(result.tokenType, 'Bearer');
  assert.ok(result.accessToken.split('.').length === 3);
  const jwks = createRemoteJWKSet(new URL(`${server.url}/contoso/discovery/v2.0/keys`));
  const { payload, protectedHeader } = await jwtVerify(result.accessToken, jwks, { issuer: `${server.url}/contoso/v2.0`, audience: 'docs-api' });
  assert.equal(protectedHeader.typ, 'at+jwt');
  assert.deepEqual(payload.roles, ['Docs.ReadAll']);

  // MSAL caches it: a second call is served without a network round-trip (same token).
  const again = await cca.acquireTokenByClientCredential({ scopes: ['api://docs/.default'] });
  assert.equal(again?.accessToken, result.accessToken);
  assert.equal(again?.fromCache, true);
});

test('@azure/msal-node with a certificate-style client assertion (private_key_jwt)', async () => {
  const cca = new ConfidentialClientApplication({
    auth: {
      clientId: 'indexer',
      clientAssertion: async () => {
        const now = Math.floor(Date.now() / 1000);
        const { createSigner } = await import('@baton/core');
        return createSigner(pair.privateKey, 'k1', 'ES256').sign({ iss: 'indexer', sub: 'indexer', aud: server.tokenUrl(), iat: now, exp: now + 300, jti: randomUUID() });
      },
      authority: `${server.url}/contoso`,
      knownAuthorities: [new URL(server.url).host],
      authorityMetadata: await metadata(),
    },
  });
  const result = await cca.acquireTokenByClientCredential({ scopes: ['api://docs/.default'], skipCache: true });
  assert.ok(result?.accessToken);
});

test('@azure/msal-node surfaces Baton errors with their Entra codes', async () => {
  const cca = new ConfidentialClientApplication({
    auth: {
      clientId: 'indexer',
      clientSecret: 'not-the-secret',
      authority: `${server.url}/contoso`,
      knownAuthorities: [new URL(server.url).host],
      authorityMetadata: await metadata(),
    },
  });
  await assert.rejects(cca.acquireTokenByClientCredential({ scopes: ['api://docs/.default'] }), (error: any) => {
    assert.equal(error.errorCode, 'invalid_client');
    assert.match(error.errorMessage, /AADSTS7000215/);
    return true;
  });
});

test('openid-client clientCredentialsGrant (discovery, client_secret_basic and _post)', async () => {
  const issuer = new URL(`${server.url}/contoso/v2.0`);
  for (const auth of [oidc.ClientSecretBasic('indexer-demo-secret-for-local-use-only'), oidc.ClientSecretPost('indexer-demo-secret-for-local-use-only')]) {
    const config = await oidc.discovery(issuer, 'indexer', undefined, auth);
    const tokens = await oidc.clientCredentialsGrant(config, { scope: 'api://docs/.default' });
    assert.equal(tokens.token_type, 'bearer');
    const { payload } = await jwtVerify(tokens.access_token, createRemoteJWKSet(new URL(config.serverMetadata().jwks_uri!)), { issuer: issuer.href, audience: 'docs-api' });
    assert.equal(payload.idtyp, 'app');
  }
});

test('openid-client with private_key_jwt', async () => {
  const issuer = new URL(`${server.url}/contoso/v2.0`);
  const privateKey = await crypto.subtle.importKey('pkcs8', pair.privateKey.export({ type: 'pkcs8', format: 'der' }), { name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign']);
  const config = await oidc.discovery(issuer, 'indexer', undefined, oidc.PrivateKeyJwt({ key: privateKey, kid: 'k1' }));
  const tokens = await oidc.clientCredentialsGrant(config, { scope: 'api://docs/.default' });
  assert.ok(tokens.access_token);
});

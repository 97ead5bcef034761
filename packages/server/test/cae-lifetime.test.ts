/**
 * Client capability `cp1` (issue 17): a client that declares it (MSAL's `clientCapabilities:
 * ['cp1']`, sent as `claims={"access_token":{"xms_cc":{"values":["cp1"]}}}`) gets tokens carrying
 * `xms_cc: ["cp1"]` and, when the tenant sets `tokens.caeAccessTokenLifetimeSeconds`, that longer
 * lifetime; other clients keep the API's. Driven by the real @azure/msal-node over TLS.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { ConfidentialClientApplication, CryptoProvider } from '@azure/msal-node';
import { caeLifetime, clientCapabilitiesOf, parseClaimsRequest } from '@baton/core';
import { chainConfigRaw, decodeJwt, startTestServer, type TestServer } from './harness.ts';
import { ALICE, Browser, runFlow } from './signin-kit.ts';
import { parseConfig } from '../src/config/load.ts';

const PORTAL = { clientId: 'portal', secret: 'portal-Demo-secret-0123456789', redirectUri: 'http://127.0.0.1:7001/auth/callback' };
const CAE_LIFETIME = 8 * 3600;
const API_LIFETIME = 3600;

function configure(raw: any): void {
  const t = raw.tenants[0];
  t.tokens = { caeAccessTokenLifetimeSeconds: CAE_LIFETIME };
  t.applications.find((a: any) => a.clientId === 'tasks-api').accessTokenLifetimeSeconds = API_LIFETIME;
  t.applications.push({ name: 'Contoso Portal', clientId: PORTAL.clientId, secrets: [PORTAL.secret], redirectUris: [PORTAL.redirectUri], requiredAccess: [{ resource: 'api://tasks', scopes: ['Tasks.ReadWrite'] }] });
  t.consents.push({ client: 'portal', resource: 'api://tasks', scopes: ['Tasks.ReadWrite'], for: 'all' });
}

let server: TestServer;
before(async () => {
  server = await startTestServer({ tls: 'dev', configure });
});
after(async () => {
  await server?.close();
});

async function msal(capabilities: string[] | undefined): Promise<ConfidentialClientApplication> {
  return new ConfidentialClientApplication({
    auth: {
      clientId: PORTAL.clientId,
      clientSecret: PORTAL.secret,
      authority: `${server.url}/contoso`,
      knownAuthorities: [new URL(server.url).host],
      authorityMetadata: await (await fetch(`${server.url}/contoso/v2.0/.well-known/openid-configuration`)).text(),
      ...(capabilities !== undefined ? { clientCapabilities: capabilities } : {}),
    },
  });
}

const scopes = ['api://tasks/Tasks.ReadWrite'];

async function signIn(cca: ConfidentialClientApplication) {
  const { verifier, challenge } = await new CryptoProvider().generatePkceCodes();
  const url = await cca.getAuthCodeUrl({ scopes, redirectUri: PORTAL.redirectUri, codeChallenge: challenge, codeChallengeMethod: 'S256' });
  const flow = await runFlow(new Browser(), server, url, { user: ALICE });
  assert.ok(flow.params?.code, `pages ${flow.seen.join(',')}: ${flow.hop.body.slice(0, 300)}`);
  return cca.acquireTokenByCode({ code: flow.params.code, scopes, redirectUri: PORTAL.redirectUri, codeVerifier: verifier });
}

/** Seconds MSAL was told the token lives (`expires_in`, as MSAL stores it in `expiresOn`). */
const expiresIn = (result: { expiresOn: Date | null }) => Math.round((result.expiresOn!.getTime() - Date.now()) / 1000);

test('MSAL with cp1: xms_cc and the tenant’s CAE lifetime, at the code redemption and at a refresh', async () => {
  const cca = await msal(['cp1']);
  const first = await signIn(cca);
  const { payload } = decodeJwt(first.accessToken);
  assert.deepEqual(payload.xms_cc, ['cp1']);
  assert.equal(payload.exp - payload.iat, CAE_LIFETIME);
  assert.ok(Math.abs(expiresIn(first) - CAE_LIFETIME) <= 5, `expires_in ≈ ${CAE_LIFETIME}: ${expiresIn(first)}`);
  // A refresh (MSAL sends the capability again) keeps both.
  const refreshed = await cca.acquireTokenSilent({ account: first.account!, scopes, forceRefresh: true });
  assert.notEqual(refreshed.accessToken, first.accessToken);
  const again = decodeJwt(refreshed.accessToken).payload;
  assert.deepEqual(again.xms_cc, ['cp1']);
  assert.equal(again.exp - again.iat, CAE_LIFETIME);
  assert.ok(Math.abs(expiresIn(refreshed) - CAE_LIFETIME) <= 5);
});

test('MSAL without a capability (or with another one): no xms_cc, the API’s lifetime', async () => {
  for (const capabilities of [undefined, ['cp2']]) {
    const cca = await msal(capabilities);
    const result = await signIn(cca);
    const { payload } = decodeJwt(result.accessToken);
    assert.equal(payload.xms_cc, undefined);
    assert.equal(payload.exp - payload.iat, API_LIFETIME);
    assert.ok(Math.abs(expiresIn(result) - API_LIFETIME) <= 5, `expires_in ≈ ${API_LIFETIME}: ${expiresIn(result)}`);
  }
});

test('the lifetime rule and the claims reading (core)', () => {
  const tenant = { id: 't', tid: 'x', name: 'T', maxDelegationDepth: 4 };
  const api = { accessTokenLifetimeSeconds: 3600 } as any;
  assert.equal(caeLifetime({ ...tenant, caeAccessTokenLifetimeSeconds: 7200 }, api, ['cp1']), 7200);
  assert.equal(caeLifetime({ ...tenant, caeAccessTokenLifetimeSeconds: 7200 }, api, []), undefined);
  assert.equal(caeLifetime(tenant, api, ['cp1']), undefined, 'default off: the same lifetime');
  assert.equal(caeLifetime({ ...tenant, caeAccessTokenLifetimeSeconds: 1800 }, api, ['cp1']), undefined, 'never shorter than the API’s');
  assert.deepEqual(clientCapabilitiesOf(parseClaimsRequest('{"access_token":{"xms_cc":{"values":["cp1","cp1",7,"x"]},"nbf":{"essential":true,"value":"1"}}}')), ['cp1', 'x']);
  assert.deepEqual(clientCapabilitiesOf(parseClaimsRequest('{"id_token":{"xms_cc":{"values":["cp1"]}}}')), [], 'only the access token member');
  assert.deepEqual(clientCapabilitiesOf(undefined), []);
});

test('the configuration checks the setting: 5 minutes to 24 hours, whole seconds', () => {
  const withSetting = (value: unknown) =>
    JSON.stringify(chainConfigRaw((raw) => {
      raw.tenants[0].tokens = { caeAccessTokenLifetimeSeconds: value };
    }));
  assert.equal(parseConfig(withSetting(86_400)).tenants[0]!.tokens?.caeAccessTokenLifetimeSeconds, 86_400);
  for (const bad of [86_401, 299, 3600.5, '3600', -1]) assert.throws(() => parseConfig(withSetting(bad)), /caeAccessTokenLifetimeSeconds/, String(bad));
  assert.throws(() => parseConfig(JSON.stringify(chainConfigRaw((raw) => (raw.tenants[0].tokens = { caeLifetime: 3600 })))), /caeLifetime|unrecognized|unknown/i);
});

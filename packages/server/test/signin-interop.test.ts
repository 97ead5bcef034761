/**
 * Real clients, unchanged, signing users in against Baton over HTTPS: @azure/msal-node
 * (getAuthCodeUrl → acquireTokenByCode → acquireTokenSilent with forceRefresh) and openid-client
 * (buildAuthorizationUrl → authorizationCodeGrant with PKCE, refresh, UserInfo). The browser part
 * is the test kit's cookie-keeping fetch; Chromium is in signin-chromium.test.ts.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { ConfidentialClientApplication, CryptoProvider, LogLevel } from '@azure/msal-node';
import * as oidc from 'openid-client';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { startTestServer, type TestServer } from './harness.ts';
import { ALICE, BOB, Browser, WEB, runFlow } from './signin-kit.ts';

const PORTAL = { clientId: 'portal', secret: 'portal-Demo-secret-0123456789', redirectUri: 'http://127.0.0.1:7001/auth/callback' };

let server: TestServer;
before(async () => {
  server = await startTestServer({
    tls: 'dev',
    configure(raw) {
      const t = raw.tenants[0];
      t.applications.push({ name: 'Contoso Portal', clientId: PORTAL.clientId, secrets: [PORTAL.secret], redirectUris: [PORTAL.redirectUri], requiredAccess: [{ resource: 'api://tasks', scopes: ['Tasks.ReadWrite'] }] });
      t.consents.push({ client: 'portal', resource: 'api://tasks', scopes: ['Tasks.ReadWrite'], for: 'all' });
    },
  });
});
after(() => server.close());

test('@azure/msal-node: getAuthCodeUrl, acquireTokenByCode, then acquireTokenSilent({ forceRefresh: true })', async () => {
  const logs: string[] = [];
  const cca = new ConfidentialClientApplication({
    auth: {
      clientId: PORTAL.clientId,
      clientSecret: PORTAL.secret,
      authority: `${server.url}/contoso`,
      knownAuthorities: [new URL(server.url).host],
      authorityMetadata: await (await fetch(`${server.url}/contoso/v2.0/.well-known/openid-configuration`)).text(),
    },
    system: { loggerOptions: { loggerCallback: (_level, message) => logs.push(message), logLevel: LogLevel.Warning, piiLoggingEnabled: false } },
  });
  const { verifier, challenge } = await new CryptoProvider().generatePkceCodes();
  const scopes = ['api://tasks/Tasks.ReadWrite'];
  const url = await cca.getAuthCodeUrl({ scopes, redirectUri: PORTAL.redirectUri, codeChallenge: challenge, codeChallengeMethod: 'S256', state: 'msal-state' });
  const flow = await runFlow(new Browser(), server, url, { user: ALICE });
  assert.ok(flow.params?.code, `pages ${flow.seen.join(',')}: ${flow.hop.body.slice(0, 300)}`);
  assert.equal(flow.params.state, 'msal-state');

  const result = await cca.acquireTokenByCode({ code: flow.params.code, scopes, redirectUri: PORTAL.redirectUri, codeVerifier: verifier });
  assert.ok(result.account, 'MSAL built an account');
  const idClaims = result.idTokenClaims as { oid?: string; tid?: string };
  assert.equal(result.account.username, ALICE.username);
  assert.equal(result.account.tenantId, idClaims.tid);
  assert.equal(result.account.localAccountId, idClaims.oid);
  assert.equal(result.account.homeAccountId, `${idClaims.oid}.${idClaims.tid}`, 'from client_info');
  // Like Entra, the response's scope lists the API's scopes and the OIDC scopes granted.
  assert.deepEqual(result.scopes, [...scopes, 'openid', 'profile', 'offline_access']);
  const jwks = createRemoteJWKSet(new URL(`${server.url}/contoso/discovery/v2.0/keys`));
  const { payload } = await jwtVerify(result.accessToken, jwks, { issuer: `${server.url}/contoso/v2.0`, audience: 'tasks-api' });
  assert.equal(payload.azp, 'portal');

  const silent = await cca.acquireTokenSilent({ account: result.account, scopes, forceRefresh: true });
  assert.ok(silent.accessToken);
  assert.notEqual(silent.accessToken, result.accessToken, 'a new token from the refresh grant');
  assert.equal(silent.fromCache, false);
  assert.equal(silent.account?.homeAccountId, result.account.homeAccountId);
  // And again: the rotated refresh token MSAL cached works too.
  const again = await cca.acquireTokenSilent({ account: result.account, scopes, forceRefresh: true });
  assert.notEqual(again.accessToken, silent.accessToken);
  assert.deepEqual(logs.filter((l) => /error/i.test(l)), []);
});

test('openid-client: authorization code flow with PKCE, ID token validation, refresh, UserInfo', async () => {
  const issuer = new URL(`${server.url}/contoso/v2.0`);
  const config = await oidc.discovery(issuer, WEB.clientId, undefined, oidc.None());
  const run = async (scope: string, user = BOB) => {
    const verifier = oidc.randomPKCECodeVerifier();
    const state = oidc.randomState();
    const nonce = oidc.randomNonce();
    const url = oidc.buildAuthorizationUrl(config, {
      redirect_uri: WEB.redirectUri,
      scope,
      code_challenge: await oidc.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      state,
      nonce,
    });
    const flow = await runFlow(new Browser(), server, url.href, { user });
    assert.ok(flow.params?.code, flow.seen.join(','));
    const tokens = await oidc.authorizationCodeGrant(config, new URL(flow.hop.location!), { pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce, idTokenExpected: true });
    return tokens;
  };

  const tokens = await run('openid profile offline_access api://tasks/Tasks.ReadWrite');
  const claims = tokens.claims()!;
  assert.equal(claims.iss, issuer.href);
  assert.equal(claims.aud, WEB.clientId);
  assert.equal(claims.preferred_username, BOB.username);
  assert.ok(tokens.refresh_token);
  const refreshed = await oidc.refreshTokenGrant(config, tokens.refresh_token);
  assert.ok(refreshed.access_token);
  assert.notEqual(refreshed.refresh_token, tokens.refresh_token);
  assert.equal(refreshed.claims()?.sub, claims.sub, 'same pairwise sub for the same client');

  const signIn = await run('openid profile email', BOB);
  const info = await oidc.fetchUserInfo(config, signIn.access_token, signIn.claims()!.sub);
  assert.equal(info.sub, signIn.claims()!.sub);
  assert.equal(info.preferred_username, BOB.username);
});

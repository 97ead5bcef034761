/**
 * The whole loop of continuous access evaluation with a real client (issue 17): a web app on
 * @azure/msal-node with `clientCapabilities: ['cp1']` signs alice in; the Tasks API (the SDK's
 * guard given security events by poll) accepts her token; an administrator revokes her sessions;
 * the API answers the same token with the CAE claims challenge; MSAL's `acquireTokenSilent` with
 * those claims is refused with a new sign-in requirement; an interactive sign-in with the claims
 * gives a token the API accepts.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { ConfidentialClientApplication, CryptoProvider, InteractionRequiredAuthError } from '@azure/msal-node';
import { startTestServer, basic, type TestServer } from './harness.ts';
import { ALICE, Browser, runFlow } from './signin-kit.ts';
import { admin, adminConfigure, adminToken, eventually } from './admin-kit.ts';
import { ClaimsChallengeError, createGuard, createSignals, errorResponse, type Signals } from '../../resource/src/index.ts';

const PORTAL = { clientId: 'portal', secret: 'portal-Demo-secret-0123456789', redirectUri: 'http://127.0.0.1:7001/auth/callback' };
const TASKS_API_SECRET = 'tasks-api-demo-secret-for-local-use-only';

let server: TestServer;
let signals: Signals;
before(async () => {
  server = await startTestServer({
    tls: 'dev',
    configure(raw) {
      adminConfigure(raw);
      const t = raw.tenants[0];
      t.applications.push({ name: 'Contoso Portal', clientId: PORTAL.clientId, secrets: [PORTAL.secret], redirectUris: [PORTAL.redirectUri], requiredAccess: [{ resource: 'api://tasks', scopes: ['Tasks.ReadWrite'] }] });
      t.consents.push({ client: 'portal', resource: 'api://tasks', scopes: ['Tasks.ReadWrite'], for: 'all' });
      t.appRoleAssignments.push({ client: 'tasks-api', resource: 'api://baton-admin', roles: ['Baton.Signals'] });
    },
  });
});
after(async () => {
  await signals?.close();
  await server?.close();
});

test('MSAL (cp1) gets the claims challenge from the API after a revocation; acquireTokenSilent with it needs a new sign-in; the new sign-in passes', async () => {
  // The Tasks API subscribes (a polled stream) and guards with the events.
  const receiverToken = async () => {
    const r = await server.post('/contoso/oauth2/v2.0/token', { grant_type: 'client_credentials', scope: 'api://baton-admin/.default' }, { authorization: basic('tasks-api', TASKS_API_SECRET) });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return r.body.access_token as string;
  };
  const created = await fetch(`${server.url}/contoso/ssf/v1/streams`, {
    method: 'POST',
    headers: { authorization: `Bearer ${await receiverToken()}`, 'content-type': 'application/json' },
    body: JSON.stringify({ events_requested: ['https://schemas.openid.net/secevent/caep/event-type/session-revoked'] }),
  });
  const stream: any = await created.json();
  assert.equal(created.status, 201, JSON.stringify(stream));
  signals = createSignals({
    issuer: `${server.url}/contoso/v2.0`,
    jwksUri: `${server.url}/contoso/discovery/v2.0/keys`,
    audience: 'tasks-api',
    poll: { endpoint: stream.delivery.endpoint_url, accessToken: receiverToken },
    ca: server.ca!,
    logger: { info() {}, warn() {} },
  });
  await signals.start();
  const guard = createGuard({ authority: `${server.url}/contoso/v2.0`, audience: ['tasks-api', 'api://tasks'], signals, ca: server.ca! });

  const cca = new ConfidentialClientApplication({
    auth: {
      clientId: PORTAL.clientId,
      clientSecret: PORTAL.secret,
      authority: `${server.url}/contoso`,
      knownAuthorities: [new URL(server.url).host],
      authorityMetadata: await (await fetch(`${server.url}/contoso/v2.0/.well-known/openid-configuration`)).text(),
      clientCapabilities: ['cp1'],
    },
  });
  const scopes = ['api://tasks/Tasks.ReadWrite'];
  const signIn = async (claims?: string) => {
    const { verifier, challenge } = await new CryptoProvider().generatePkceCodes();
    const url = await cca.getAuthCodeUrl({ scopes, redirectUri: PORTAL.redirectUri, codeChallenge: challenge, codeChallengeMethod: 'S256', ...(claims ? { claims } : {}) });
    assert.match(decodeURIComponent(new URL(url).searchParams.get('claims') ?? ''), /"xms_cc":\{"values":\["cp1"\]\}/, 'MSAL sends the client capability');
    const flow = await runFlow(new Browser(), server, url, { user: ALICE });
    assert.ok(flow.params?.code, `pages ${flow.seen.join(',')}: ${flow.hop.body.slice(0, 300)}`);
    return cca.acquireTokenByCode({ code: flow.params.code, scopes, redirectUri: PORTAL.redirectUri, codeVerifier: verifier, ...(claims ? { claims } : {}) });
  };

  const first = await signIn();
  assert.ok(await guard.verify(first.accessToken), 'the API accepts her token');

  server.advance(1);
  const revoked = await admin(server, 'POST', '/users/alice@contoso.test/revoke-sessions', { token: await adminToken(server) });
  assert.equal(revoked.status, 200);
  server.advance(1);
  let challenge: ClaimsChallengeError | undefined;
  await eventually(async () => {
    try {
      await guard.verify(first.accessToken);
      return false;
    } catch (error) {
      if (!(error instanceof ClaimsChallengeError)) throw error;
      challenge = error;
      return true;
    }
  }, 'the API to refuse her token', 15_000);
  const header = errorResponse(challenge)!.headers['www-authenticate']!;
  const claims = Buffer.from(/claims="([^"]+)"/.exec(header)![1]!, 'base64').toString('utf8');
  assert.deepEqual(JSON.parse(claims), { access_token: { nbf: { essential: true, value: String(Date.parse(revoked.body.sessionsRevokedBefore) / 1000) } } });

  // MSAL with the challenge's claims: its refresh token predates the revocation, so a new sign-in is needed.
  await assert.rejects(cca.acquireTokenSilent({ account: first.account!, scopes, claims }), (error: unknown) => {
    assert.ok(error instanceof InteractionRequiredAuthError, String(error));
    return true;
  });

  // The interactive sign-in with the claims: the new token is issued after the revocation and passes.
  const again = await signIn(claims);
  assert.ok(await guard.verify(again.accessToken), 'the new token passes the API');
});

/**
 * RFC 7591 Dynamic Client Registration and RFC 7592 management (issue 15), black box over HTTPS:
 * a public client registers, signs a user in with PKCE for an MCP server, reads, updates and
 * deletes its registration with the registration access token (stored hashed); policies on
 * redirect URIs, auth methods and scopes; a flood from one address is cut off (429); a
 * registration never used expires; a deleted one stops working at once.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, decodeJwt, type TestServer } from './harness.ts';
import { ALICE, Browser, authorizeUrl, pageKind, pkce, runFlow } from './signin-kit.ts';

const MCP = { clientId: 'wiki-mcp', secret: 'wiki-mcp-Demo-secret-0123456789', uri: 'https://wiki.contoso.test/mcp' };
const REDIRECT = 'http://127.0.0.1:7799/callback';
const PER_IP = 30;

let server: TestServer;

function configure(raw: any): void {
  raw.registration = { dynamic: { enabled: true, perIpPerHour: PER_IP, unusedTtlSeconds: 3600, allowedScopes: ['Wiki.Read', 'offline_access'] } };
  raw.tenants[0].applications.push({ name: 'Wiki MCP', clientId: MCP.clientId, secrets: [MCP.secret], identifierUri: MCP.uri, tokenAudience: 'identifierUri', scopes: [{ value: 'Wiki.Read', description: 'Read the wiki' }, { value: 'Wiki.Write', description: 'Edit the wiki' }] });
}
let registerUrl: string;

before(async () => {
  server = await startTestServer({ tls: 'dev', configure });
  registerUrl = `${server.url}/contoso/oauth2/v2.0/register`;
});
after(() => server.close());

let registrations = 0;
async function register(metadata: unknown, headers: Record<string, string> = {}) {
  registrations++;
  const response = await fetch(registerUrl, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: typeof metadata === 'string' ? metadata : JSON.stringify(metadata) });
  return { status: response.status, headers: response.headers, body: (await response.json().catch(() => undefined)) as Record<string, any> };
}
const agent = (extra: Record<string, unknown> = {}) => ({ client_name: 'Wiki Agent', redirect_uris: [REDIRECT], grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'], token_endpoint_auth_method: 'none', scope: 'Wiki.Read', ...extra });

function authorizeParams(clientId: string, challenge: string) {
  return { client_id: clientId, redirect_uri: REDIRECT, response_type: 'code', scope: 'Wiki.Read', resource: MCP.uri, state: 's-dcr', code_challenge: challenge, code_challenge_method: 'S256' };
}

test('metadata advertises the registration endpoint', async () => {
  const metadata = (await (await fetch(`${server.url}/.well-known/oauth-authorization-server/contoso/v2.0`)).json()) as Record<string, unknown>;
  assert.equal(metadata.registration_endpoint, registerUrl);
});

test('register, sign in with PKCE for the MCP server, redeem; the registration access token is stored hashed', async () => {
  const created = await register(agent({ logo_uri: 'https://wiki-agent.example/logo.png' }));
  assert.equal(created.status, 201, JSON.stringify(created.body));
  assert.equal(created.headers.get('cache-control'), 'no-store');
  const info = created.body;
  assert.match(info.client_id, /^dcr-[0-9a-f-]{36}$/);
  assert.equal(info.token_endpoint_auth_method, 'none');
  assert.equal(info.client_secret, undefined, 'a public client: no secret');
  assert.deepEqual(info.redirect_uris, [REDIRECT]);
  assert.match(info.registration_access_token, /^[A-Za-z0-9_-]{43}$/);
  assert.equal(info.registration_client_uri, `${registerUrl}/${info.client_id}`);
  const stored = await server.ctx.store.getApplication('contoso', info.client_id);
  assert.ok(stored?.registration?.accessTokenHash?.startsWith('hmac-sha256$'));
  assert.ok(!JSON.stringify(stored).includes(info.registration_access_token), 'the token is nowhere in the stored record');

  const consent = await runFlow(new Browser(), server, authorizeUrl(server, authorizeParams(info.client_id, pkce().challenge)), { user: ALICE, stopAt: 'consent' });
  assert.match(consent.hop.body, /<span class="app-name">Wiki Agent<span class="badge" id="unverified">Not pre-registered<\/span>/);
  assert.match(consent.hop.body, /when it registered itself \(dynamic client registration\)/);

  const { verifier, challenge } = pkce();
  const flow = await runFlow(new Browser(), server, authorizeUrl(server, authorizeParams(info.client_id, challenge)), { user: ALICE });
  assert.ok(flow.params?.code, flow.seen.join(', '));
  const tokens = await server.post('/contoso/oauth2/v2.0/token', { grant_type: 'authorization_code', client_id: info.client_id, redirect_uri: REDIRECT, code: flow.params.code, code_verifier: verifier, resource: MCP.uri });
  assert.equal(tokens.status, 200, JSON.stringify(tokens.body));
  assert.equal(decodeJwt(tokens.body.access_token).payload.aud, MCP.uri);
  // Used: it no longer expires unused.
  assert.equal((await server.ctx.store.getApplication('contoso', info.client_id))?.registration?.expiresAt, undefined);
});

test('RFC 7592: read and update with the registration access token; delete stops the client at once', async () => {
  const { body: info } = await register(agent());
  const manage = (method: string, token: string, body?: unknown) =>
    fetch(info.registration_client_uri, { method, headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) }, ...(body ? { body: JSON.stringify(body) } : {}) });
  const read = await manage('GET', info.registration_access_token);
  assert.equal(read.status, 200);
  const current = (await read.json()) as Record<string, unknown>;
  assert.equal(current.client_id, info.client_id);
  assert.equal(current.registration_access_token, undefined, 'shown once, at registration');

  const wrong = await manage('GET', 'A'.repeat(43));
  assert.equal(wrong.status, 401);
  assert.match(wrong.headers.get('www-authenticate') ?? '', /invalid_token/);
  const other = await register(agent());
  assert.equal((await manage('GET', other.body.registration_access_token)).status, 401, "another registration's token manages only its own");

  const updated = await manage('PUT', info.registration_access_token, { ...agent({ client_name: 'Wiki Agent 2', redirect_uris: ['http://127.0.0.1/cb2'] }), client_id: info.client_id });
  assert.equal(updated.status, 200);
  assert.deepEqual(((await updated.json()) as Record<string, unknown>).redirect_uris, ['http://127.0.0.1/cb2']);
  const badUpdate = await manage('PUT', info.registration_access_token, { ...agent(), client_id: 'dcr-someone-else' });
  assert.equal(badUpdate.status, 400);

  assert.equal((await manage('DELETE', info.registration_access_token)).status, 204);
  assert.equal((await manage('GET', info.registration_access_token)).status, 401);
  const hop = await new Browser().get(authorizeUrl(server, { ...authorizeParams(info.client_id, pkce().challenge), redirect_uri: 'http://127.0.0.1/cb2' }));
  assert.equal(pageKind(hop), 'error');
  const token = await server.post('/contoso/oauth2/v2.0/token', { grant_type: 'refresh_token', client_id: info.client_id, refresh_token: 'x'.repeat(40) });
  assert.equal(token.body.error, 'invalid_client');
});

test('policy: redirect URIs, auth method, grant types, scopes, bad JSON', async () => {
  const cases: Array<[unknown, string, RegExp]> = [
    [agent({ redirect_uris: ['http://agent.example/cb'] }), 'invalid_redirect_uri', /only https or loopback/],
    [agent({ redirect_uris: ['https://agent.example/cb#x'] }), 'invalid_redirect_uri', /fragment/],
    [agent({ redirect_uris: [] }), 'invalid_redirect_uri', /1 to 10/],
    [agent({ token_endpoint_auth_method: 'client_secret_basic' }), 'invalid_client_metadata', /public/],
    [agent({ grant_types: ['client_credentials'] }), 'invalid_client_metadata', /grant_types/],
    [agent({ scope: 'Wiki.Read Tasks.Admin' }), 'invalid_client_metadata', /'Tasks.Admin' may not be registered/],
    [agent({ logo_uri: 'javascript:alert(1)' }), 'invalid_client_metadata', /logo_uri/],
    ['{"redirect_uris": [', 'invalid_client_metadata', /not valid JSON/],
    [[1, 2], 'invalid_client_metadata', /JSON object/],
  ];
  for (const [metadata, error, description] of cases) {
    const { status, body } = await register(metadata);
    assert.equal(status, 400, JSON.stringify(metadata));
    assert.equal(body.error, error, JSON.stringify(body));
    assert.match(body.error_description, description);
  }
  const form = await fetch(registerUrl, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'redirect_uris=x' });
  assert.equal(form.status, 400);
});

test('a registered client asks only for the scopes it registered; one that named none gets the policy\'s', async () => {
  const askFor = async (clientId: string, scope: string) => {
    const hop = await new Browser().get(authorizeUrl(server, { ...authorizeParams(clientId, pkce().challenge), scope }));
    // A redirect to the client carries the error; Baton's own sign-in page is not a redirect to it.
    if (hop.status !== 302 || hop.location!.startsWith(server.url)) return undefined;
    return new URL(hop.location!).searchParams;
  };
  const named = await register(agent({ scope: 'Wiki.Read' }));
  assert.equal(named.status, 201, JSON.stringify(named.body));
  const widened = await askFor(named.body.client_id, 'Wiki.Read Wiki.Write');
  assert.equal(widened?.get('error'), 'invalid_scope');
  assert.match(widened?.get('error_description') ?? '', /registered the scope 'Wiki\.Read' and may not ask for 'Wiki\.Write'/);
  // Qualified with the API, the same scope is the same scope.
  assert.equal(await askFor(named.body.client_id, `${MCP.uri}/Wiki.Read`), undefined, 'the sign-in page, not a redirect');

  // No scope in the metadata, under a policy: the registration is held to the policy (no way around allowedScopes).
  const unnamed = await register(agent({ scope: undefined }));
  assert.equal(unnamed.status, 201, JSON.stringify(unnamed.body));
  assert.equal(unnamed.body.scope, 'Wiki.Read offline_access');
  assert.equal((await askFor(unnamed.body.client_id, 'Wiki.Write'))?.get('error'), 'invalid_scope');
  assert.equal(await askFor(unnamed.body.client_id, 'Wiki.Read'), undefined);
});

test('a registration never used expires; one used does not', async () => {
  const { body: unused } = await register(agent());
  server.advance(3601);
  const hop = await new Browser().get(authorizeUrl(server, authorizeParams(unused.client_id, pkce().challenge)));
  assert.equal(pageKind(hop), 'error');
  assert.match(hop.body, /was not found/, hop.body.slice(hop.body.indexOf('<h1'), hop.body.indexOf('<h1') + 600));
  server.advance(-3601);
});

test('a flood of registrations from one address is cut off with 429 and Retry-After', async () => {
  // Earlier tests registered from this address too; the limit is per address per hour.
  let status = 201;
  let last: Awaited<ReturnType<typeof register>> | undefined;
  for (let i = 0; i < PER_IP + 1 && status !== 429; i++) {
    last = await register(agent());
    status = last.status;
  }
  assert.equal(status, 429);
  assert.ok(registrations <= PER_IP + 1, 'cut off at the limit: every request counts, refused ones too');
  assert.ok(Number(last?.headers.get('retry-after')) > 0);
  assert.match(last?.body.error_description, /at most 30 an hour/);
  // The count lives in the store: a second instance on the same data refuses that address too.
  const second = await startTestServer({ tls: 'dev', dataDir: server.dataDir, configure });
  try {
    const response = await fetch(`${second.url}/contoso/oauth2/v2.0/register`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(agent()) });
    assert.equal(response.status, 429, 'another instance shares the count');
    assert.ok(Number(response.headers.get('retry-after')) > 0);
  } finally {
    await second.close();
  }
});

/**
 * Issue 15's done-when, with a pre-registered client, with a Client ID Metadata Document served on
 * loopback (the development allow-list) and with Dynamic Client Registration: the official MCP
 * TypeScript SDK client
 * (`@modelcontextprotocol/sdk`, unchanged: Client + StreamableHTTPClientTransport + its auth flow)
 * connects to the demo's Docs MCP server, gets 401, discovers Baton through the protected-resource
 * metadata (RFC 9728) and the authorization server metadata (RFC 8414), sends alice through sign-in,
 * TOTP and consent in real Chromium, gets a token whose `aud` is the MCP server's canonical URI, and
 * calls `create_document`: the document exists in the Docs API, owned by alice, created with a token
 * obtained On-Behalf-Of her (`act` names docs-mcp). Also: each tool needs its scope (403
 * insufficient_scope), the agent's token passed through to the Docs API is refused (audience), the
 * chain view shows Agent → Docs MCP → Docs API, and the consent page names a self-registered agent
 * from its metadata (name, logo, home page) and marks it not pre-registered.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer as createHttpsServer } from 'node:https';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tls from 'node:tls';
import { DatabaseSync } from 'node:sqlite';
import { chromium, type Browser, type Page } from 'playwright-core';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError, type OAuthClientProvider } from '@modelcontextprotocol/sdk/client/auth.js';
import type { OAuthClientInformationMixed, OAuthClientMetadata, OAuthTokens } from '@modelcontextprotocol/sdk/shared/auth.js';
import { TOTP, Secret } from 'otpauth';
import { auditLogOf, createLogger, readConfigFile, startServer, type RunningServer } from '@baton/server';
import { startChain, withDocsMcp, withWebPort, type RunningChain } from '../src/index.ts';

const CONFIG = new URL('../baton.json', import.meta.url).pathname;
const ALICE = { username: 'alice@contoso.test', password: 'alice-Demo-pass-1', totp: 'JBSWY3DPEHPK3PXP' };
const AGENT = 'docs-agent';
const silentWriter = () => {};
const step = (text: string) => {
  if (process.env.MCP_DEBUG === '1') process.stderr.write(`[mcp e2e] ${text}\n`);
};

let server: RunningServer;
let chain: RunningChain;
let browser: Browser;
let dataDir: string;
let callbackPort: number;

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as { port: number };
      probe.close(() => resolve(port));
    });
  });
}

/** What an MCP host keeps for one server: the SDK asks for it and hands it back (in memory here). */
class AgentProvider implements OAuthClientProvider {
  /** Set: the SDK uses it as the client_id when the server supports metadata documents. */
  clientMetadataUrl: string | undefined;
  #client: OAuthClientInformationMixed | undefined;
  #tokens: OAuthTokens | undefined;
  #verifier = '';
  /** The authorization URL the SDK sent the user to. */
  authorizationUrl: URL | undefined;
  readonly redirectUrl: string;
  readonly clientMetadata: OAuthClientMetadata;
  constructor(redirectUrl: string, clientMetadata: OAuthClientMetadata, client?: OAuthClientInformationMixed) {
    this.redirectUrl = redirectUrl;
    this.clientMetadata = clientMetadata;
    this.#client = client;
  }
  clientInformation() {
    return this.#client;
  }
  saveClientInformation(info: OAuthClientInformationMixed) {
    this.#client = info;
  }
  tokens() {
    return this.#tokens;
  }
  saveTokens(tokens: OAuthTokens) {
    this.#tokens = tokens;
  }
  redirectToAuthorization(url: URL) {
    this.authorizationUrl = url;
  }
  saveCodeVerifier(verifier: string) {
    this.#verifier = verifier;
  }
  codeVerifier() {
    return this.#verifier;
  }
}

/** A fetch that records what the SDK asked for (it changes nothing). */
function recordingFetch(log: string[]): typeof fetch {
  return async (input, init) => {
    const response = await fetch(input, init);
    const url = new URL(input instanceof Request ? input.url : String(input));
    log.push(`${init?.method ?? (input instanceof Request ? input.method : 'GET')} ${url.origin}${url.pathname} ${response.status}`);
    return response;
  };
}

function payloadOf(jwt: string): Record<string, any> {
  return JSON.parse(Buffer.from(jwt.split('.')[1] as string, 'base64url').toString());
}

let lastTotpStep = -1;
/** A TOTP code of a step not used yet: Baton accepts each step once per user (replay protection), so wait for the next one. */
async function freshTotp(): Promise<string> {
  let step = Math.floor(Date.now() / 30_000);
  if (step <= lastTotpStep) {
    await new Promise((resolve) => setTimeout(resolve, (lastTotpStep + 1) * 30_000 - Date.now() + 200));
    step = Math.floor(Date.now() / 30_000);
  }
  lastTotpStep = step;
  return TOTP.generate({ secret: Secret.fromBase32(ALICE.totp), timestamp: step * 30_000 + 1000 });
}

/** alice signs in, passes TOTP and consents in Chromium; returns the code the redirect URI received. */
async function signInInChromium(url: URL, redirectUrl: string, options: { consent: boolean; mfa: boolean; onConsent?: (page: Page) => Promise<void> }): Promise<{ code: string; page: Page }> {
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  context.setDefaultTimeout(20_000);
  const page = await context.newPage();
  const received = new Promise<string>((resolve) => {
    void page.route(`${redirectUrl}**`, async (route) => {
      resolve(route.request().url());
      await route.fulfill({ status: 200, contentType: 'text/html', body: '<!doctype html><title>Agent</title><p>You can close this window.</p>' });
    });
  });
  await page.goto(url.href);
  step(`authorize page: ${page.url()}`);
  await page.getByLabel('Username').fill(ALICE.username);
  await page.getByLabel('Password').fill(ALICE.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  step(`after password: ${page.url()}`);
  if (options.mfa) {
    await page.getByLabel('Code').waitFor();
    await page.getByLabel('Code').fill(await freshTotp());
    await page.getByRole('button', { name: 'Verify' }).click();
  }
  if (options.consent) {
    await page.getByRole('button', { name: 'Accept' }).waitFor();
    await options.onConsent?.(page);
    await page.getByRole('button', { name: 'Accept' }).click();
  }
  step(`after consent: ${page.url()}`);
  const timeout = new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`no redirect to the client: ${page.url()}`)), 20_000).unref());
  const back = new URL(await Promise.race([received, timeout]).catch(async (error: Error) => {
    throw new Error(`${error.message}\n${(await page.locator('body').innerText()).slice(0, 600)}`);
  }));
  const code = back.searchParams.get('code');
  assert.ok(code, `a code at the redirect URI: ${back.href}`);
  await context.close();
  return { code, page };
}

before(async () => {
  const webPort = await freePort();
  const mcpPort = await freePort();
  callbackPort = await freePort();
  dataDir = await mkdtemp(join(tmpdir(), 'baton-mcp-e2e-'));
  server = await startServer({ config: withDocsMcp(withWebPort(await readConfigFile(CONFIG), webPort), mcpPort), dataDir, port: 0, tls: 'dev', dev: true, logger: createLogger('silent') });
  // The agent runs in this process: trust the token service's development CA, as NODE_EXTRA_CA_CERTS would.
  tls.setDefaultCACertificates([...tls.getCACertificates('default'), server.ca as string]);
  chain = await startChain({
    authority: `${server.url}/contoso/v2.0`,
    ca: server.ca,
    exchanges: auditLogOf(server.ctx),
    dataDir: join(dataDir, 'chain'),
    ports: { web: webPort, api: 0, mcp: mcpPort },
    indexerIntervalMs: 0,
    indexerFirstRunMs: -1,
    log: silentWriter,
  });
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'] });
});

after(async () => {
  await browser?.close();
  await chain?.close();
  await server?.close();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

let agentToken = '';

/** A token for the Docs MCP with `scope`, through authorize (PKCE, resource) and sign-in in Chromium. */
async function tokenFor(scope: string): Promise<string> {
  const redirectUrl = `http://127.0.0.1:${callbackPort}/callback`;
  const verifier = randomBytes(32).toString('base64url');
  const url = new URL(`${server.url}/contoso/oauth2/v2.0/authorize`);
  for (const [name, value] of Object.entries({ client_id: AGENT, redirect_uri: redirectUrl, response_type: 'code', scope, resource: chain.urls.docsMcp as string, code_challenge: createHash('sha256').update(verifier).digest('base64url'), code_challenge_method: 'S256' })) url.searchParams.set(name, value);
  const { code } = await signInInChromium(url, redirectUrl, { consent: false, mfa: false });
  const response = await fetch(`${server.url}/contoso/oauth2/v2.0/token`, { method: 'POST', body: new URLSearchParams({ grant_type: 'authorization_code', client_id: AGENT, code, code_verifier: verifier, redirect_uri: redirectUrl, resource: chain.urls.docsMcp as string }) });
  const body = (await response.json()) as { access_token?: string };
  assert.ok(body.access_token, JSON.stringify(body));
  return body.access_token;
}

test('the MCP SDK client, pre-registered: 401 → discovery → sign-in, TOTP, consent in Chromium → create_document on behalf of alice', { timeout: 120_000 }, async () => {
  const resource = chain.urls.docsMcp as string;
  const redirectUrl = `http://127.0.0.1:${callbackPort}/callback`;
  const provider = new AgentProvider(redirectUrl, { client_name: 'Docs Agent', redirect_uris: [redirectUrl], grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'], token_endpoint_auth_method: 'none' }, { client_id: AGENT });
  const requests: string[] = [];
  const transport = new StreamableHTTPClientTransport(new URL(resource), { authProvider: provider, fetch: recordingFetch(requests) });
  const client = new Client({ name: 'baton-test-agent', version: '1.0.0' });
  step('connecting');
  await assert.rejects(client.connect(transport), UnauthorizedError);
  step(`requests: ${requests.join(' | ')}`);

  // 401 with resource_metadata, the protected-resource metadata, then Baton's RFC 8414 metadata.
  const mcpOrigin = new URL(resource).origin;
  assert.equal(requests[0], `POST ${resource} 401`);
  assert.ok(requests.includes(`GET ${mcpOrigin}/.well-known/oauth-protected-resource/mcp 200`), requests.join('\n'));
  assert.ok(requests.includes(`GET ${server.url}/.well-known/oauth-authorization-server/contoso/v2.0 200`), requests.join('\n'));
  const authorizationUrl = provider.authorizationUrl;
  assert.ok(authorizationUrl, 'the SDK sent the user to Baton');
  assert.equal(authorizationUrl.origin + authorizationUrl.pathname, `${server.url}/contoso/oauth2/v2.0/authorize`);
  assert.equal(authorizationUrl.searchParams.get('resource'), resource);
  assert.equal(authorizationUrl.searchParams.get('code_challenge_method'), 'S256');

  const { code } = await signInInChromium(authorizationUrl, redirectUrl, { consent: true, mfa: true });
  await transport.finishAuth(code);
  const tokens = provider.tokens();
  assert.ok(tokens?.access_token);
  agentToken = tokens.access_token;
  const claims = payloadOf(agentToken);
  assert.equal(claims.aud, resource, 'the token is addressed to the MCP server itself');
  assert.equal(claims.azp, AGENT);
  assert.deepEqual(claims.scp.split(' ').sort(), ['Docs.Create', 'Docs.Search']);

  const connected = new Client({ name: 'baton-test-agent', version: '1.0.0' });
  await connected.connect(new StreamableHTTPClientTransport(new URL(resource), { authProvider: provider }));
  const { tools } = await connected.listTools();
  assert.deepEqual(tools.map((t) => t.name).sort(), ['create_document', 'search_documents']);
  const created = await connected.callTool({ name: 'create_document', arguments: { title: 'Agent notes', content: 'Written by an AI agent for alice, through Docs MCP.' } });
  assert.notEqual(created.isError, true, JSON.stringify(created));
  const document = created.structuredContent as { id: string; title: string; owner: string };
  assert.equal(document.title, 'Agent notes');

  // The document is in the Docs API's own database, owned by alice.
  const db = new DatabaseSync(join(dataDir, 'chain', 'docs.sqlite'), { readOnly: true });
  const row = db.prepare('SELECT owner_oid, title FROM documents WHERE id = ?').get(document.id) as { owner_oid: string; title: string } | undefined;
  db.close();
  assert.deepEqual({ ...row }, { owner_oid: claims.oid, title: 'Agent notes' });

  const found = await connected.callTool({ name: 'search_documents', arguments: { query: 'agent notes' } });
  assert.deepEqual((found.structuredContent as { documents: Array<{ id: string }> }).documents.map((d) => d.id), [document.id]);
  await connected.close();

  // The chain view: Agent → Docs MCP → Docs API, the Docs API's token for itself with act = docs-mcp.
  const request = chain.chain.snapshot().find((r) => r.hops.some((h) => h.to === 'docs-api' && h.method === 'POST'));
  assert.ok(request, 'the create_document request is in the chain view');
  const mcpHop = request.hops.find((h) => h.to === 'docs-mcp');
  const docsHop = request.hops.find((h) => h.to === 'docs-api');
  assert.equal(mcpHop?.from, AGENT);
  assert.equal(mcpHop?.token?.aud, resource);
  assert.equal(docsHop?.from, 'docs-mcp');
  assert.equal(docsHop?.token?.aud, 'docs-api');
  assert.deepEqual(docsHop?.token?.act, { sub: 'docs-mcp', client_id: 'docs-mcp' });
  assert.equal(docsHop?.token?.oid, claims.oid);
});

test("passthrough: the agent's token sent on to the Docs API is refused there (audience)", async () => {
  assert.ok(agentToken, 'the first test got a token');
  const response = await fetch(`${chain.urls.docsApi}/documents`, { headers: { authorization: `Bearer ${agentToken}` } });
  assert.equal(response.status, 401);
  assert.match(response.headers.get('www-authenticate') ?? '', /error="invalid_token"/);
  assert.match(response.headers.get('www-authenticate') ?? '', /audience/i);
});

test('each tool needs its scope: a token with Docs.Search alone gets 403 insufficient_scope for create_document', async () => {
  assert.ok(agentToken, 'the first test got a token');
  const call = (token: string, name: string, args: Record<string, unknown>) =>
    fetch(chain.urls.docsMcp as string, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-06-18' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name, arguments: args } }),
    });
  // A token for the MCP server with Docs.Search alone (alice consented before; no MFA for searching).
  const narrow = await tokenFor('Docs.Search');
  assert.equal(payloadOf(narrow).scp, 'Docs.Search');
  const refused = await call(narrow, 'create_document', { title: 'x', content: 'y' });
  assert.equal(refused.status, 403);
  const challenge = refused.headers.get('www-authenticate') ?? '';
  assert.match(challenge, /error="insufficient_scope"/);
  assert.match(challenge, /scope="Docs.Create"/);
  assert.match(challenge, /resource_metadata="http:\/\/127\.0\.0\.1:\d+\/\.well-known\/oauth-protected-resource\/mcp"/);
  const allowed = await call(narrow, 'search_documents', { query: 'agent' });
  assert.equal(allowed.status, 200, await allowed.clone().text());
});

test('the MCP SDK client with a Client ID Metadata Document on loopback: the consent page names the agent and marks it not pre-registered', { timeout: 120_000 }, async () => {
  // The agent publishes its metadata over https on this machine (the development allow-list), with the token service's development certificate.
  const [cert, key] = await Promise.all([readFile(join(dataDir, 'tls', 'localhost.pem'), 'utf8'), readFile(join(dataDir, 'tls', 'localhost-key.pem'), 'utf8')]);
  const redirectUrl = `http://127.0.0.1:${callbackPort}/callback`;
  let fetches = 0;
  const site = createHttpsServer({ cert, key }, (req, res) => {
    if (req.url === '/agent/logo.svg') return void res.writeHead(200, { 'content-type': 'image/svg+xml' }).end('<svg xmlns="http://www.w3.org/2000/svg" width="40" height="40"><rect width="40" height="40" fill="#2b6"/></svg>');
    if (req.url !== '/agent/client.json') return void res.writeHead(404).end();
    fetches++;
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'max-age=600' }).end(JSON.stringify(metadataDocument));
  });
  await new Promise<void>((resolve) => site.listen(0, '127.0.0.1', resolve));
  const origin = `https://localhost:${(site.address() as AddressInfo).port}`;
  const clientId = `${origin}/agent/client.json`;
  const metadataDocument = { client_id: clientId, client_name: 'Research Agent', client_uri: `${origin}/agent/`, logo_uri: `${origin}/agent/logo.svg`, redirect_uris: [redirectUrl], grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'], token_endpoint_auth_method: 'none' };
  try {
    const provider = new AgentProvider(redirectUrl, { client_name: 'Research Agent', redirect_uris: [redirectUrl], grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'], token_endpoint_auth_method: 'none' });
    provider.clientMetadataUrl = clientId;
    const resource = chain.urls.docsMcp as string;
    const transport = new StreamableHTTPClientTransport(new URL(resource), { authProvider: provider });
    await assert.rejects(new Client({ name: 'research-agent', version: '1.0.0' }).connect(transport), UnauthorizedError);
    const authorizationUrl = provider.authorizationUrl;
    assert.ok(authorizationUrl);
    assert.equal(authorizationUrl.searchParams.get('client_id'), clientId, 'the SDK used the metadata document URL as its client_id');

    const { code } = await signInInChromium(authorizationUrl, redirectUrl, {
      consent: true,
      mfa: true,
      onConsent: async (page) => {
        assert.equal(await page.locator('.app-name').innerText(), 'Research AgentNot pre-registered');
        assert.equal(await page.locator('#unverified').innerText(), 'Not pre-registered');
        assert.match((await page.locator('#client-source').innerText()).replace(/\s+/g, ' '), new RegExp(`described itself at ${clientId.replace(/[.?]/g, '\\$&')} \\(home page ${origin.replace(/[.?]/g, '\\$&')}/agent/\\)`));
        // The logo loads (the page's CSP allows the logo's origin, and only it).
        assert.ok(await page.locator('img.logo').evaluate((img) => (img as { naturalWidth: number }).naturalWidth > 0), 'the logo is shown');
      },
    });
    assert.equal(fetches, 1, 'fetched once, then cached');
    await transport.finishAuth(code);
    const claims = payloadOf(provider.tokens()?.access_token as string);
    assert.equal(claims.aud, resource);
    assert.equal(claims.azp, clientId);

    const connected = new Client({ name: 'research-agent', version: '1.0.0' });
    await connected.connect(new StreamableHTTPClientTransport(new URL(resource), { authProvider: provider }));
    const created = await connected.callTool({ name: 'create_document', arguments: { title: 'Research summary', content: 'By an agent that registered itself.' } });
    assert.notEqual(created.isError, true, JSON.stringify(created));
    const id = (created.structuredContent as { id: string }).id;
    const db = new DatabaseSync(join(dataDir, 'chain', 'docs.sqlite'), { readOnly: true });
    const row = db.prepare('SELECT owner_oid FROM documents WHERE id = ?').get(id) as { owner_oid: string } | undefined;
    db.close();
    assert.equal(row?.owner_oid, claims.oid);
    await connected.close();
  } finally {
    site.closeAllConnections();
    await new Promise<void>((resolve) => site.close(() => resolve()));
  }
});

test('the MCP SDK client with Dynamic Client Registration (RFC 7591): registers, signs alice in, creates a document for her', { timeout: 120_000 }, async () => {
  const redirectUrl = `http://127.0.0.1:${callbackPort}/callback`;
  const provider = new AgentProvider(redirectUrl, { client_name: 'Scratch Agent', redirect_uris: [redirectUrl], grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'], token_endpoint_auth_method: 'none' });
  const resource = chain.urls.docsMcp as string;
  const requests: string[] = [];
  const transport = new StreamableHTTPClientTransport(new URL(resource), { authProvider: provider, fetch: recordingFetch(requests) });
  await assert.rejects(new Client({ name: 'scratch-agent', version: '1.0.0' }).connect(transport), UnauthorizedError);
  assert.ok(requests.includes(`POST ${server.url}/contoso/oauth2/v2.0/register 201`), requests.join('\n'));
  const registered = provider.clientInformation() as { client_id: string };
  assert.match(registered.client_id, /^dcr-/);

  const { code } = await signInInChromium(provider.authorizationUrl as URL, redirectUrl, {
    consent: true,
    mfa: true,
    onConsent: async (page) => {
      assert.equal(await page.locator('#unverified').innerText(), 'Not pre-registered');
      assert.match(await page.locator('#client-source').innerText(), /dynamic client registration/);
    },
  });
  await transport.finishAuth(code);
  const claims = payloadOf(provider.tokens()?.access_token as string);
  assert.equal(claims.aud, resource);
  assert.equal(claims.azp, registered.client_id);
  const connected = new Client({ name: 'scratch-agent', version: '1.0.0' });
  await connected.connect(new StreamableHTTPClientTransport(new URL(resource), { authProvider: provider }));
  const created = await connected.callTool({ name: 'create_document', arguments: { title: 'Scratch', content: 'From a dynamically registered agent.' } });
  assert.notEqual(created.isError, true, JSON.stringify(created));
  const db = new DatabaseSync(join(dataDir, 'chain', 'docs.sqlite'), { readOnly: true });
  const row = db.prepare('SELECT owner_oid FROM documents WHERE id = ?').get((created.structuredContent as { id: string }).id) as { owner_oid: string } | undefined;
  db.close();
  assert.equal(row?.owner_oid, claims.oid);
  await connected.close();
});

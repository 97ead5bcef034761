/**
 * Client ID Metadata Documents (issue 15): a client_id that is an https URL names the client's
 * metadata, fetched by Baton at the authorization endpoint. The documents are served here over
 * https on loopback (the development allow-list, `registration.metadataDocuments.allowLoopback`),
 * with a certificate from a CA this process trusts. Hostile cases: a private or link-local
 * address, loopback without the allow-list, a document over the size limit, a slow one, a
 * redirect, a client_id that does not match, redirect URIs the document does not list, one address
 * fetching documents as fast as it can.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:https';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { OAuthError } from '@baton/core';
import { ensureDevTls } from '../src/tls/dev-ca.ts';
import { addressProblem, cacheSecondsOf, fetchMetadataDocument, DEFAULT_METADATA_DOCUMENT_OPTIONS } from '../src/registration/metadata-document.ts';
import { startTestServer, decodeJwt, trustCa, type TestServer } from './harness.ts';
import { ALICE, Browser, authorizeUrl, pageKind, pkce, runFlow } from './signin-kit.ts';

const MCP = { clientId: 'notes-mcp', secret: 'notes-mcp-Demo-secret-0123456789', uri: 'https://notes.contoso.test/mcp' };
const REDIRECT = 'http://127.0.0.1:7788/callback';
/** `registration.metadataDocuments.fetchesPerIpPerMinute` here (the tests before the flood fetch fewer). */
const FETCHES_PER_MINUTE = 25;

let server: TestServer;
let docs: Server;
let docsBase: string;
let tlsDir: string;
/** Requests the document server received, by path. */
const hits = new Map<string, number>();
/** What the document server answers, by path. */
const routes = new Map<string, (res: import('node:http').ServerResponse) => void>();

function document(path: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { client_id: `${docsBase}${path}`, client_name: 'Notes Agent', redirect_uris: [REDIRECT], grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'], token_endpoint_auth_method: 'none', logo_uri: 'https://agent.example/logo.png', client_uri: 'https://agent.example/', ...extra };
}
function serveJson(path: string, body: unknown, headers: Record<string, string> = { 'cache-control': 'max-age=60' }): string {
  routes.set(path, (res) => res.writeHead(200, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(body)));
  return `${docsBase}${path}`;
}

before(async () => {
  tlsDir = await mkdtemp(join(tmpdir(), 'baton-cimd-tls-'));
  const tls = await ensureDevTls(tlsDir);
  trustCa(tls.ca);
  docs = createServer({ cert: tls.cert, key: tls.key }, (req, res) => {
    const path = (req.url ?? '/').split('?')[0] as string;
    hits.set(path, (hits.get(path) ?? 0) + 1);
    const route = routes.get(path);
    if (route) route(res);
    else res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => docs.listen(0, '127.0.0.1', resolve));
  docsBase = `https://localhost:${(docs.address() as AddressInfo).port}`;
  server = await startTestServer({
    tls: 'dev',
    configure(raw) {
      raw.registration = { metadataDocuments: { enabled: true, allowLoopback: true, timeoutMs: 1500, maxBytes: 5120, fetchesPerIpPerMinute: FETCHES_PER_MINUTE } };
      raw.tenants[0].applications.push({
        name: 'Notes MCP',
        clientId: MCP.clientId,
        secrets: [MCP.secret],
        identifierUri: MCP.uri,
        tokenAudience: 'identifierUri',
        scopes: [{ value: 'Notes.Read', description: 'Read your notes' }],
      });
    },
  });
});
after(async () => {
  await server?.close();
  docs?.closeAllConnections();
  await new Promise<void>((resolve) => docs.close(() => resolve()));
  await rm(tlsDir, { recursive: true, force: true });
});

function params(clientId: string, challenge: string, extra: Record<string, string> = {}): Record<string, string> {
  return { client_id: clientId, redirect_uri: REDIRECT, response_type: 'code', scope: 'Notes.Read', resource: MCP.uri, state: 's-cimd', code_challenge: challenge, code_challenge_method: 'S256', ...extra };
}

/** The authorize request's first answer: the sign-in page, or an error page (never a redirect). */
async function firstPage(clientId: string, extra: Record<string, string> = {}) {
  const browser = new Browser();
  let hop = await browser.get(authorizeUrl(server, params(clientId, pkce().challenge, extra)));
  // Baton's own interaction pages are followed; a redirect anywhere else is to the client.
  while ((hop.status === 302 || hop.status === 303) && hop.location?.startsWith(server.url)) hop = await browser.get(hop.location);
  return { hop, kind: hop.status === 302 || hop.status === 303 ? 'redirect' : pageKind(hop) };
}

test('metadata says client_id_metadata_document_supported', async () => {
  const response = await fetch(`${server.url}/.well-known/oauth-authorization-server/contoso/v2.0`);
  const metadata = (await response.json()) as Record<string, unknown>;
  assert.equal(metadata.client_id_metadata_document_supported, true);
});

test('a client_id that is an https URL: Baton fetches the document, the user signs in, the token is for the MCP server', async () => {
  const clientId = serveJson('/agent.json', document('/agent.json'));
  // The consent page names the agent from its metadata and marks it as not pre-registered.
  const consent = await runFlow(new Browser(), server, authorizeUrl(server, params(clientId, pkce().challenge)), { user: ALICE, stopAt: 'consent' });
  assert.equal(pageKind(consent.hop), 'consent');
  assert.match(consent.hop.body, /<span class="app-name">Notes Agent<span class="badge" id="unverified">Not pre-registered<\/span>/);
  assert.match(consent.hop.body, /<img class="avatar logo" src="https:\/\/agent\.example\/logo\.png"/);
  assert.match(consent.hop.body, /described itself at <span class="perm-scope">https:\/\/localhost:\d+\/agent\.json<\/span> \(home page <a href="https:\/\/agent\.example\/"/);
  assert.match(consent.hop.headers.get('content-security-policy') ?? '', /img-src 'self' data: https:\/\/agent\.example;/);
  const { verifier, challenge } = pkce();
  const flow = await runFlow(new Browser(), server, authorizeUrl(server, params(clientId, challenge)), { user: ALICE });
  assert.ok(flow.params?.code, `a code (pages: ${flow.seen.join(', ')}; ${flow.hop.body.slice(0, 300)})`);
  assert.ok(flow.seen.includes('consent'));
  const tokens = await server.post('/contoso/oauth2/v2.0/token', { grant_type: 'authorization_code', client_id: clientId, redirect_uri: REDIRECT, code: flow.params.code, code_verifier: verifier, resource: MCP.uri });
  assert.equal(tokens.status, 200, JSON.stringify(tokens.body));
  const claims = decodeJwt(tokens.body.access_token).payload;
  assert.equal(claims.aud, MCP.uri);
  assert.equal(claims.azp, clientId);
  // Cached (max-age=60): a second authorization does not fetch again.
  const before = hits.get('/agent.json');
  assert.equal((await firstPage(clientId)).kind, 'login');
  assert.equal(hits.get('/agent.json'), before);
});

test('no-store: the document is fetched again at every authorization request', async () => {
  const clientId = serveJson('/fresh.json', document('/fresh.json'), { 'cache-control': 'no-store' });
  assert.equal((await firstPage(clientId)).kind, 'login');
  assert.equal((await firstPage(clientId)).kind, 'login');
  assert.equal(hits.get('/fresh.json'), 2);
});

test('redirect URIs must be the ones the document lists: anything else is an error page, never a redirect', async () => {
  const clientId = serveJson('/listed.json', document('/listed.json'));
  const { hop, kind } = await firstPage(clientId, { redirect_uri: 'https://evil.example/cb' });
  assert.equal(kind, 'error');
  assert.match(hop.body, /does not match the redirect URIs/);
});

test('hostile documents are refused on an error page, naming what was wrong', async () => {
  const cases: Array<[string, () => string, RegExp]> = [
    ['client_id mismatch', () => serveJson('/mismatch.json', document('/mismatch.json', { client_id: 'https://agent.example/other.json' })), /is not the URL it was fetched from/],
    ['a redirect', () => {
      routes.set('/moved.json', (res) => res.writeHead(302, { location: `${docsBase}/agent.json` }).end());
      return `${docsBase}/moved.json`;
    }, /answered 302 \(a redirect\)/],
    ['over the size limit', () => serveJson('/big.json', document('/big.json', { client_name: 'x'.repeat(6000) })), /larger than 5120 bytes/],
    ['over the size limit, without content-length', () => {
      routes.set('/chunked.json', (res) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        for (let i = 0; i < 10; i++) res.write(' '.repeat(1000));
        res.end('{}');
      });
      return `${docsBase}/chunked.json`;
    }, /larger than 5120 bytes/],
    ['slow', () => {
      routes.set('/slow.json', (res) => {
        const timer = setTimeout(() => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(document('/slow.json'))), 4000);
        res.on('close', () => clearTimeout(timer));
      });
      return `${docsBase}/slow.json`;
    }, /did not arrive within 1500 ms/],
    ['a confidential client', () => serveJson('/secret.json', document('/secret.json', { token_endpoint_auth_method: 'client_secret_basic' })), /is not supported/],
    ['no redirect_uris', () => serveJson('/none.json', document('/none.json', { redirect_uris: [] })), /redirect_uris must list/],
    ['not JSON', () => {
      routes.set('/text.json', (res) => res.writeHead(200, { 'content-type': 'text/plain' }).end('hello'));
      return `${docsBase}/text.json`;
    }, /is not JSON/],
    ['a private address', () => 'https://10.1.2.3/agent.json', /private, link-local or reserved address/],
    ['a link-local address', () => 'https://[fe80::1]/agent.json', /private, link-local or reserved address/],
    ['the cloud metadata address', () => 'https://169.254.169.254/latest/meta-data.json', /private, link-local or reserved address/],
  ];
  for (const [name, make, expected] of cases) {
    const { hop, kind } = await firstPage(make());
    assert.equal(kind, 'error', `${name}: ${hop.status} ${hop.body.slice(0, 200)}`);
    assert.match(hop.body.replace(/&#39;/g, "'"), expected, name);
    assert.equal(hop.status >= 400, true, name);
  }
});

test('without the development allow-list, loopback is refused too (also when a name resolves there: the resolved address is checked)', async () => {
  const url = serveJson('/loop.json', document('/loop.json'));
  const before = hits.get('/loop.json') ?? 0;
  await assert.rejects(fetchMetadataDocument(url, { ...DEFAULT_METADATA_DOCUMENT_OPTIONS, enabled: true, allowLoopback: false }), (error: unknown) => error instanceof OAuthError && /resolves to 127\.0\.0\.1, a loopback address/.test(error.description));
  assert.equal(hits.get('/loop.json') ?? 0, before, 'nothing was sent');
  assert.equal(addressProblem('127.0.0.1', false)?.startsWith('a loopback address'), true);
  assert.equal(addressProblem('::ffff:10.0.0.1', true), 'a private, link-local or reserved address');
  assert.equal(addressProblem('fd00::1', true), 'a private, link-local or reserved address');
  assert.equal(addressProblem('93.184.215.14', false), undefined);
  assert.equal(addressProblem('2606:4700::1111', false), undefined);
});

test('caching follows Cache-Control', () => {
  const options = { maxCacheSeconds: 3600, defaultCacheSeconds: 300 };
  assert.equal(cacheSecondsOf(undefined, options), 300);
  assert.equal(cacheSecondsOf('public, max-age=120', options), 120);
  assert.equal(cacheSecondsOf('max-age=999999', options), 3600);
  assert.equal(cacheSecondsOf('no-store', options), 0);
  assert.equal(cacheSecondsOf('no-cache, max-age=100', options), 0);
});

test('client_ids that are not metadata-document URLs stay unknown clients', async () => {
  for (const clientId of ['http://127.0.0.1/agent.json', `${docsBase}/`, `${docsBase}/a/../agent.json`, `${docsBase}/agent.json#x`]) {
    const { kind } = await firstPage(clientId);
    assert.equal(kind, 'error', clientId);
  }
});

test('one address fetching document after document is cut off: 429 with Retry-After on the error page, nothing more fetched', async () => {
  // Every document is new to Baton (its own path), so each authorization request would fetch one.
  let refused: Awaited<ReturnType<typeof firstPage>> | undefined;
  let fetchedBefore = 0;
  for (let i = 0; i < 2 * FETCHES_PER_MINUTE + 2 && refused === undefined; i++) {
    const path = `/flood-${i}.json`;
    const clientId = serveJson(path, document(path));
    const page = await firstPage(clientId);
    if (page.hop.status === 429) {
      refused = page;
      assert.equal(hits.get(path) ?? 0, 0, 'the refused document was not fetched');
    } else {
      assert.equal(page.kind, 'login', `${path}: ${page.hop.status}`);
      fetchedBefore++;
    }
  }
  assert.ok(refused, 'a flood is refused');
  // At most the limit within one window (two when the minute turned during the loop).
  assert.ok(fetchedBefore <= 2 * FETCHES_PER_MINUTE, `fetched ${fetchedBefore}`);
  assert.equal(refused.kind, 'error');
  assert.match(refused.hop.body, /Too many client metadata documents fetched for this address: at most 25 a minute/);
  const retryAfter = Number(refused.hop.headers.get('retry-after'));
  assert.ok(retryAfter >= 1 && retryAfter <= 60, `retry-after ${retryAfter}`);
  // A document already cached still works for that address: only fetches are counted.
  assert.equal((await firstPage(`${docsBase}/agent.json`)).kind, 'login');
});

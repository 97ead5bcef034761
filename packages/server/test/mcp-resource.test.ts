/**
 * Baton as the authorization server of an MCP server (issue 15, slice 1), black box over HTTPS:
 * RFC 8707 `resource` on authorize and token (the token's `aud` is exactly the MCP server's
 * canonical URI; refresh keeps it; an unregistered resource, or another server's, is
 * `invalid_target`), PKCE required for every client of an MCP server, the RFC 8414 metadata MCP
 * clients compute by path insertion, and On-Behalf-Of from the MCP server (a token for the MCP
 * server is not accepted elsewhere).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { ConfigurationError } from '@baton/core';
import { parseConfig } from '../src/config/load.ts';
import { chainConfigRaw, startTestServer, decodeJwt, basic, type TestServer } from './harness.ts';
import { ALICE, Browser, authorizeUrl, pkce, runFlow } from './signin-kit.ts';

const MCP = { clientId: 'files-mcp', secret: 'files-mcp-Demo-secret-0123456789', uri: 'https://files.contoso.test/mcp' };
const AGENT = { clientId: 'files-agent', redirectUri: 'http://127.0.0.1:7777/callback' };
const DESKTOP = { clientId: 'files-desktop', secret: 'files-desktop-Demo-secret-0123456789', redirectUri: 'https://desktop.example/cb' };

let server: TestServer;
let issuer: string;
let jwks: ReturnType<typeof createRemoteJWKSet>;

before(async () => {
  server = await startTestServer({
    tls: 'dev',
    configure(raw) {
      const t = raw.tenants[0];
      t.applications.push({
        name: 'Files MCP',
        clientId: MCP.clientId,
        secrets: [MCP.secret],
        identifierUri: MCP.uri,
        tokenAudience: 'identifierUri',
        scopes: [
          { value: 'Files.Search', description: 'Search your files' },
          { value: 'Files.Create', description: 'Create files for you' },
        ],
        requiredAccess: [{ resource: 'api://docs', scopes: ['Docs.Read', 'Docs.Write'] }],
      });
      t.applications.push({ name: 'Files Agent', clientId: AGENT.clientId, public: true, redirectUris: [AGENT.redirectUri] });
      t.applications.push({ name: 'Files Desktop', clientId: DESKTOP.clientId, secrets: [DESKTOP.secret], redirectUris: [DESKTOP.redirectUri] });
      t.consents.push({ client: MCP.clientId, resource: 'api://docs', scopes: ['Docs.Read', 'Docs.Write'], for: 'all' });
    },
  });
  issuer = `${server.url}/contoso/v2.0`;
  jwks = createRemoteJWKSet(new URL(`${server.url}/contoso/discovery/v2.0/keys`));
});
after(() => server.close());

function agentParams(challenge: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    client_id: AGENT.clientId,
    redirect_uri: AGENT.redirectUri,
    response_type: 'code',
    scope: 'Files.Search Files.Create offline_access',
    resource: MCP.uri,
    state: 'st-mcp',
    code_challenge: challenge,
    code_challenge_method: 'S256',
    ...extra,
  };
}

async function agentCode(extra: Record<string, string> = {}) {
  const { verifier, challenge } = pkce();
  const flow = await runFlow(new Browser(), server, authorizeUrl(server, agentParams(challenge, extra)), { user: ALICE });
  return { flow, verifier };
}

function redeem(code: string, verifier: string, extra: Record<string, string> = {}) {
  return server.post('/contoso/oauth2/v2.0/token', { grant_type: 'authorization_code', client_id: AGENT.clientId, redirect_uri: AGENT.redirectUri, code, code_verifier: verifier, ...extra });
}

test('RFC 8414 metadata at the path MCP clients compute from the issuer names what they read', async () => {
  const url = new URL(issuer);
  const response = await fetch(`${url.origin}/.well-known/oauth-authorization-server${url.pathname}`);
  assert.equal(response.status, 200);
  const metadata = (await response.json()) as Record<string, any>;
  assert.equal(metadata.issuer, issuer);
  assert.deepEqual(metadata.response_types_supported, ['code']);
  assert.deepEqual(metadata.code_challenge_methods_supported, ['S256']);
  assert.ok(metadata.grant_types_supported.includes('authorization_code') && metadata.grant_types_supported.includes('refresh_token'));
  assert.ok(metadata.token_endpoint_auth_methods_supported.includes('none'));
  assert.ok(metadata.scopes_supported.includes(`${MCP.uri}/Files.Search`));
});

test('resource = the MCP server: the token is addressed to its canonical URI, and refresh keeps it', async () => {
  const { flow, verifier } = await agentCode();
  assert.ok(flow.params?.code, `a code (pages: ${flow.seen.join(', ')})`);
  assert.ok(flow.seen.includes('consent'), 'the user consents to the agent');
  const tokens = await redeem(flow.params.code, verifier, { resource: MCP.uri });
  assert.equal(tokens.status, 200, JSON.stringify(tokens.body));
  const { payload } = await jwtVerify(tokens.body.access_token, jwks, { issuer, audience: MCP.uri, typ: 'at+jwt' });
  assert.equal(payload.aud, MCP.uri);
  assert.equal(payload.azp, AGENT.clientId);
  assert.equal(payload.scp, 'Files.Search Files.Create');

  const refreshed = await server.post('/contoso/oauth2/v2.0/token', { grant_type: 'refresh_token', client_id: AGENT.clientId, refresh_token: tokens.body.refresh_token, resource: MCP.uri });
  assert.equal(refreshed.status, 200, JSON.stringify(refreshed.body));
  assert.equal(decodeJwt(refreshed.body.access_token).payload.aud, MCP.uri);
  assert.equal(decodeJwt(refreshed.body.access_token).payload.scp, 'Files.Search Files.Create');
  // Without `resource` the original grant is renewed too.
  const again = await server.post('/contoso/oauth2/v2.0/token', { grant_type: 'refresh_token', client_id: AGENT.clientId, refresh_token: refreshed.body.refresh_token });
  assert.equal(again.status, 200, JSON.stringify(again.body));
  assert.equal(decodeJwt(again.body.access_token).payload.aud, MCP.uri);
});

test('a resource the tenant does not register is invalid_target, sent back to the client', async () => {
  const { flow } = await agentCode({ resource: 'https://evil.example/mcp' });
  assert.equal(flow.params?.error, 'invalid_target', JSON.stringify(flow.params));
  assert.equal(flow.params?.state, 'st-mcp');
  assert.match(flow.params?.error_description ?? '', /https:\/\/evil\.example\/mcp/);
  for (const bad of ['https://files.contoso.test/mcp#frag', 'https://files.contoso.test/mcp/', 'https://FILES.contoso.test/mcp']) {
    const refused = await agentCode({ resource: bad });
    assert.equal(refused.flow.params?.error, 'invalid_target', `${bad}: ${JSON.stringify(refused.flow.params)}`);
  }
});

test("at the token endpoint, a resource for another server is invalid_target and the code survives", async () => {
  const { flow, verifier } = await agentCode();
  const code = flow.params!.code!;
  const other = await redeem(code, verifier, { resource: 'api://docs' });
  assert.equal(other.status, 400);
  assert.equal(other.body.error, 'invalid_target');
  const unknown = await redeem(code, verifier, { resource: 'https://elsewhere.example/mcp' });
  assert.equal(unknown.body.error, 'invalid_target');
  const ok = await redeem(code, verifier, { resource: MCP.uri });
  assert.equal(ok.status, 200, JSON.stringify(ok.body));
  // A refresh for another API gets no token it was not consented to.
  const widened = await server.post('/contoso/oauth2/v2.0/token', { grant_type: 'refresh_token', client_id: AGENT.clientId, refresh_token: ok.body.refresh_token, resource: 'api://docs' });
  assert.equal(widened.status, 400);
  assert.equal(widened.body.error, 'invalid_grant');
  assert.equal(widened.body.suberror, 'consent_required');
});

test('PKCE is required of every client of an MCP server, confidential ones too', async () => {
  const params = { client_id: DESKTOP.clientId, redirect_uri: DESKTOP.redirectUri, response_type: 'code', scope: 'Files.Search', resource: MCP.uri, state: 's1' };
  const hop = await new Browser().get(authorizeUrl(server, params));
  assert.equal(hop.status, 302);
  const back = new URL(hop.location!);
  assert.equal(back.origin + back.pathname, DESKTOP.redirectUri);
  assert.equal(back.searchParams.get('error'), 'invalid_request');
  assert.match(back.searchParams.get('error_description')!, /MCP server.*code_challenge/);
  // The same client, for an ordinary API, may still choose not to use PKCE (it is confidential).
  const ordinary = await new Browser().get(authorizeUrl(server, { ...params, scope: 'openid api://docs/Docs.Read', resource: '' }));
  assert.notEqual(new URL(ordinary.location ?? `${server.url}/x`).searchParams.get('error'), 'invalid_request');
});

test('the MCP server exchanges its token On-Behalf-Of; the same token passed through is refused elsewhere', async () => {
  const { flow, verifier } = await agentCode();
  const tokens = await redeem(flow.params!.code!, verifier, { resource: MCP.uri });
  assert.equal(tokens.status, 200, JSON.stringify(tokens.body));
  const obo = await server.post(
    '/contoso/oauth2/v2.0/token',
    { grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', requested_token_use: 'on_behalf_of', assertion: tokens.body.access_token, scope: 'api://docs/Docs.Read' },
    { authorization: basic(MCP.clientId, MCP.secret) },
  );
  assert.equal(obo.status, 200, JSON.stringify(obo.body));
  const { payload } = await jwtVerify(obo.body.access_token, jwks, { issuer, audience: 'docs-api' });
  assert.deepEqual(payload.act, { sub: MCP.clientId, client_id: MCP.clientId });
  assert.equal(payload.scp, 'Docs.Read');
  assert.equal(payload.oid, decodeJwt(tokens.body.access_token).payload.oid);

  // Another middle tier holding the MCP server's token cannot exchange it: it is not addressed to it.
  const stolen = await server.post(
    '/contoso/oauth2/v2.0/token',
    { grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', requested_token_use: 'on_behalf_of', assertion: tokens.body.access_token, scope: 'api://docs/Docs.Read' },
    { authorization: basic('tasks-api', 'tasks-api-demo-secret-for-local-use-only') },
  );
  assert.equal(stolen.status, 400);
  assert.equal(stolen.body.error, 'invalid_grant');
  assert.match(stolen.body.error_description, /audience is 'https:\/\/files\.contoso\.test\/mcp'/);
});

test('configuration: an MCP server addressed by its identifierUri needs an https canonical URI', () => {
  const withMcp = (identifierUri: string | undefined) =>
    chainConfigRaw((raw) => {
      raw.tenants[0].applications.push({ name: 'M', clientId: 'm-mcp', secrets: ['m-mcp-Demo-secret-0123456789'], ...(identifierUri ? { identifierUri } : {}), tokenAudience: 'identifierUri' });
    });
  const problems = (raw: unknown): string[] => {
    try {
      parseConfig(JSON.stringify(raw));
      return [];
    } catch (error) {
      assert.ok(error instanceof ConfigurationError);
      return [...error.issues];
    }
  };
  assert.deepEqual(problems(withMcp('https://m.example/mcp')), []);
  assert.deepEqual(problems(withMcp('http://127.0.0.1:4104/mcp')), []);
  assert.match(problems(withMcp('api://m')).join('\n'), /identifierUri: 'api:\/\/m' must be an https URL/);
  assert.match(problems(withMcp('http://m.example/mcp')).join('\n'), /must be an https URL/);
  assert.match(problems(withMcp('https://m.example/mcp#x')).join('\n'), /has a fragment/);
  assert.match(problems(withMcp(undefined)).join('\n'), /needs one/);
});

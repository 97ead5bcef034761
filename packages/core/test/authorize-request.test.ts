import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseAuthorizeRequest, s256Challenge, type AuthorizeParseResult } from '../src/index.ts';
import { buildFixture, assertOAuthError } from './fixtures.ts';

const fx = buildFixture((c) => {
  c.tenants[0]!.applications.push({ name: 'Portal', clientId: 'portal', secrets: ['portal-secret-0123456789'], redirectUris: ['https://portal.example/cb'] });
});
const CHALLENGE = s256Challenge('v'.repeat(43));
const base = {
  client_id: 'tasks-web',
  redirect_uri: 'http://127.0.0.1:7000/callback',
  response_type: 'code',
  scope: 'openid profile offline_access api://tasks/Tasks.ReadWrite',
  state: 's1',
  nonce: 'n1',
  code_challenge: CHALLENGE,
  code_challenge_method: 'S256',
};
const parse = (change: Record<string, string | undefined> = {}): AuthorizeParseResult => {
  const params: Record<string, string> = { ...base };
  for (const [k, v] of Object.entries(change)) {
    if (v === undefined) delete params[k];
    else params[k] = v;
  }
  return parseAuthorizeRequest(fx.directory, params);
};
const pageError = (result: AuthorizeParseResult) => {
  assert.equal(result.ok, false);
  assert.ok(!result.ok && !result.redirect, 'shown on a page, never redirected');
  return result.error;
};
const redirected = (result: AuthorizeParseResult) => {
  assert.ok(!result.ok && result.redirect, 'sent back to the client');
  return result;
};

test('a valid request', () => {
  const result = parse();
  assert.ok(result.ok);
  assert.deepEqual(result.request, {
    clientId: 'tasks-web',
    redirectUri: 'http://127.0.0.1:7000/callback',
    responseMode: 'query',
    state: 's1',
    nonce: 'n1',
    oidcScopes: ['openid', 'profile', 'offline_access'],
    resource: { api: 'tasks-api', scopes: ['Tasks.ReadWrite'], isDefault: false },
    codeChallenge: CHALLENGE,
    prompt: [],
    acrValues: [],
    clientInfo: false,
  });
});

test('unknown client, missing or mismatched redirect URI: an error page, never a redirect', () => {
  assertOAuthError(pageError(parse({ client_id: 'nobody' })), { error: 'invalid_request', entraCodes: [700016] });
  assertOAuthError(pageError(parse({ client_id: undefined })), { error: 'invalid_request', entraCodes: [900144] });
  assertOAuthError(pageError(parse({ redirect_uri: undefined })), { error: 'invalid_request', entraCodes: [900144] });
  for (const uri of ['https://evil/', 'http://127.0.0.1:7000/callback/../x', 'http://127.0.0.1:7000@evil/', 'http://127.0.0.1:7000/callback?x=1', 'http://127.0.0.1:7000/CALLBACK', 'http://127.0.0.1:7000/callback/', 'x'.repeat(5000)]) {
    assertOAuthError(pageError(parse({ redirect_uri: uri })), { error: 'invalid_request', entraCodes: [50011] });
  }
  // Even with other errors present, a bad redirect URI wins: nothing goes to it.
  assertOAuthError(pageError(parse({ redirect_uri: 'https://evil/', response_type: 'token' })), { error: 'invalid_request', entraCodes: [50011] });
});

test('PKCE: required S256 for public clients; plain refused everywhere; optional for confidential clients', () => {
  const missing = redirected(parse({ code_challenge: undefined, code_challenge_method: undefined }));
  assertOAuthError(missing.error, { error: 'invalid_request', entraCodes: [9002325] });
  assert.equal(missing.state, 's1');
  assertOAuthError(redirected(parse({ code_challenge_method: 'plain' })).error, { error: 'invalid_request', entraCodes: [900144], description: /plain/ });
  assertOAuthError(redirected(parse({ code_challenge_method: undefined })).error, { error: 'invalid_request', entraCodes: [900144], description: /plain/ });
  assertOAuthError(redirected(parse({ code_challenge: 'short' })).error, { error: 'invalid_request', entraCodes: [900144] });
  const portal = { client_id: 'portal', redirect_uri: 'https://portal.example/cb' };
  assert.ok(parse({ ...portal, code_challenge: undefined, code_challenge_method: undefined }).ok, 'a confidential client may skip PKCE');
  assert.ok(parse(portal).ok, 'and may use it');
  assertOAuthError(redirected(parse({ ...portal, code_challenge_method: 'plain' })).error, { error: 'invalid_request', entraCodes: [900144] });
});

test('response_type, response_mode, prompt, max_age, claims, scope', () => {
  assertOAuthError(redirected(parse({ response_type: 'token' })).error, { error: 'unsupported_response_type', entraCodes: [900144] });
  assertOAuthError(redirected(parse({ response_type: undefined })).error, { error: 'invalid_request', entraCodes: [900144] });
  assertOAuthError(redirected(parse({ response_mode: 'fragment' })).error, { error: 'invalid_request', entraCodes: [900144] });
  const formPost = parse({ response_mode: 'form_post', prompt: 'bogus' });
  assert.equal(redirected(formPost).responseMode, 'form_post', 'errors use the requested form_post mode');
  assertOAuthError(redirected(parse({ prompt: 'none login' })).error, { error: 'invalid_request', entraCodes: [900144] });
  assertOAuthError(redirected(parse({ max_age: '-1' })).error, { error: 'invalid_request', entraCodes: [900144] });
  assertOAuthError(redirected(parse({ claims: '{"bogus":{}}' })).error, { error: 'invalid_request', entraCodes: [900144] });
  assertOAuthError(redirected(parse({ scope: 'api://tasks/Tasks.ReadWrite api://docs/Docs.Read' })).error, { error: 'invalid_scope', entraCodes: [70011] });
  assertOAuthError(redirected(parse({ scope: 'profile' })).error, { error: 'invalid_scope', entraCodes: [70011] });
  assertOAuthError(redirected(parse({ scope: undefined })).error, { error: 'invalid_request', entraCodes: [900144] });
  assertOAuthError(redirected(parse({ request: 'eyJ...' })).error, { error: 'invalid_request', entraCodes: [900144] });

  const ok = parse({ prompt: 'login consent', max_age: '0', claims: '{"access_token":{"amr":{"essential":true,"values":["mfa"]}}}', acr_values: 'a b a', login_hint: 'alice@contoso.test', client_info: '1' });
  assert.ok(ok.ok);
  assert.deepEqual(ok.request.prompt, ['login', 'consent']);
  assert.equal(ok.request.maxAge, 0);
  assert.equal(ok.demands?.mfa, true);
  assert.deepEqual(ok.request.acrValues, ['a', 'b']);
  assert.equal(ok.request.clientInfo, true);
  assert.ok(parse({ scope: 'openid' }).ok, 'sign-in only');
});

test('oversized parameters are refused without echoing an oversized state', () => {
  const big = redirected(parse({ state: 's'.repeat(3000) }));
  assertOAuthError(big.error, { error: 'invalid_request', entraCodes: [900144], description: /state/ });
  assert.equal(big.state, undefined);
  assertOAuthError(redirected(parse({ nonce: 'n'.repeat(2000) })).error, { error: 'invalid_request', entraCodes: [900144], description: /nonce/ });
  assertOAuthError(redirected(parse({ login_hint: 'x'.repeat(300) })).error, { error: 'invalid_request', entraCodes: [900144], description: /login_hint/ });
  assertOAuthError(redirected(parse({ whatever: 'x'.repeat(9000) })).error, { error: 'invalid_request', entraCodes: [900144] });
  assertOAuthError(pageError(parse({ client_id: 'c'.repeat(200) })), { error: 'invalid_request', entraCodes: [900144] });
});

test('dpop_jkt (RFC 9449 §10): a thumbprint is kept for the code; anything else goes back to the client as invalid_request', () => {
  const jkt = 'a'.repeat(43);
  const ok = parse({ dpop_jkt: jkt });
  assert.ok(ok.ok);
  assert.equal(ok.ok && ok.request.dpopJkt, jkt);
  assert.ok(parse().ok && (parse() as { request: { dpopJkt?: string } }).request.dpopJkt === undefined);
  const bad = redirected(parse({ dpop_jkt: 'not a thumbprint' }));
  assert.equal(bad.error.error, 'invalid_request');
  assert.match(bad.error.description, /dpop_jkt/);
});

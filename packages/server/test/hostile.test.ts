/**
 * Issue 12: the four classes of hostile input that got through, closed everywhere they can occur.
 * Each test asserts the exact error (JSON body or error page, and status) and that the store is
 * unchanged (a snapshot of every SQLite table before and after).
 *
 * 1. form encoding only: every endpoint that takes a body takes a form, nothing else;
 * 2. type confusion: a handler sees only strings it validated (one parser, duplicates and NUL
 *    refused in one place);
 * 3. one JWS header policy for every JWS the service reads (crit, alg, typ, jku/x5u/jwk);
 * 4. a refused refresh (or code redemption) never burns the token; only a replay burns a family.
 */
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomUUID, sign as cryptoSign } from 'node:crypto';
import { OAuthError } from '@baton/core';
import { startTestServer, basic, decodeJwt, type TestServer } from './harness.ts';
import { storeSnapshot, snapshotDiff } from './store-snapshot.ts';
import { Browser, WEB, authorizeUrl, pkce, redeem, runFlow, webParams, BOB } from './signin-kit.ts';
import { userToken, obo, exchange, secretOf } from './obo-fixtures.ts';
import { formBody } from '../src/http/form.ts';

const TOKEN = '/contoso/oauth2/v2.0/token';
const INDEXER = basic('indexer', 'indexer-demo-secret-for-local-use-only');
const SIGNER = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const SIGNER_JWK = { ...SIGNER.publicKey.export({ format: 'jwk' }), kid: 'signer-1' };

let server: TestServer;

before(async () => {
  server = await startTestServer({
    tls: 'dev',
    configure(raw) {
      const t = raw.tenants[0];
      // A confidential client authenticating with private_key_jwt (RFC 7523).
      t.applications.push({ name: 'Signer', clientId: 'signer', jwks: [SIGNER_JWK], requiredAccess: [{ resource: 'api://docs', roles: ['Docs.ReadAll'] }] });
      t.appRoleAssignments = [...(t.appRoleAssignments ?? []), { client: 'signer', resource: 'api://docs', roles: ['Docs.ReadAll'] }];
      // tasks-web may ask for Docs.Write on a refresh: the MFA policy on it is then the refusal.
      t.consents.push({ client: 'tasks-web', resource: 'api://docs', scopes: ['Docs.Write'], for: 'all' });
    },
  });
});
after(() => server.close());

/** Runs `request` and asserts it wrote nothing; returns its result. */
async function unchanged<T>(request: () => Promise<T>): Promise<T> {
  const before = storeSnapshot(server.dataDir);
  const result = await request();
  assert.deepEqual(snapshotDiff(before, storeSnapshot(server.dataDir)), {}, 'the store is unchanged');
  return result;
}

/** The exact JSON of an OAuth error (RFC 6749 §5.2 plus Entra's members). */
function assertOAuthError(response: { status: number; body: any; headers: Headers }, status: number, error: string, code: number, description: RegExp) {
  assert.equal(response.status, status, JSON.stringify(response.body));
  assert.match(response.headers.get('content-type') ?? '', /^application\/json/);
  const { timestamp, trace_id, correlation_id, ...rest } = response.body;
  assert.match(timestamp, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$/);
  assert.equal(typeof trace_id, 'string');
  assert.equal(typeof correlation_id, 'string');
  assert.equal(rest.error, error);
  assert.deepEqual(rest.error_codes, [code]);
  assert.match(rest.error_description, new RegExp(`^AADSTS${code}: `));
  assert.match(rest.error_description, description);
  assert.deepEqual(Object.keys(rest).sort(), ['error', 'error_codes', 'error_description']);
  assert.doesNotMatch(JSON.stringify(response.body), /at .*\.ts:\d+|node:internal/, 'no stack trace');
}

async function raw(path: string, body: string, contentType: string | undefined, headers: Record<string, string> = {}) {
  const response = await fetch(`${server.url}${path}`, { method: 'POST', headers: { ...(contentType === undefined ? {} : { 'content-type': contentType }), ...headers }, body });
  const text = await response.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // an HTML page
  }
  return { status: response.status, headers: response.headers, body: parsed as any, text };
}

const NOT_FORM = /must be sent as 'application\/x-www-form-urlencoded'/;
const OTHER_TYPES = ['application/json', 'application/json; charset=utf-8', 'text/plain', 'multipart/form-data; boundary=x', 'application/xml', 'application/x-www-form-urlencoded-evil', undefined];

describe('1. form encoding only', () => {
  test('the hostile case: client credentials as JSON get 400 invalid_request, no token', async () => {
    const response = await unchanged(() =>
      raw(TOKEN, JSON.stringify({ grant_type: 'client_credentials', scope: 'api://docs/.default' }), 'application/json', { authorization: INDEXER }),
    );
    assertOAuthError(response, 400, 'invalid_request', 900144, NOT_FORM);
    assert.equal(response.body.access_token, undefined);
    // The same request as a form works: the refusal is the content type and nothing else.
    const ok = await server.post(TOKEN, { grant_type: 'client_credentials', scope: 'api://docs/.default' }, { authorization: INDEXER });
    assert.equal(ok.status, 200);
  });

  for (const path of [TOKEN, '/contoso/oauth2/v2.0/revoke', '/contoso/oauth2/v2.0/introspect', '/oidc/userinfo']) {
    test(`${path}: every other content type is 400 invalid_request (JSON), not parsed`, async () => {
      for (const type of OTHER_TYPES) {
        const body = type?.startsWith('application/json') ? '{"grant_type":"client_credentials","token":"x"}' : 'grant_type=client_credentials&token=x';
        const response = await unchanged(() => raw(path, body, type, { authorization: INDEXER }));
        assertOAuthError(response, 400, 'invalid_request', 900144, NOT_FORM);
      }
    });
  }

  test('authorize POST, logout POST and the interaction forms: other content types get a 400 error page, not JSON', async () => {
    const browser = new Browser();
    const { challenge } = pkce();
    const start = await browser.get(authorizeUrl(server, webParams(challenge)));
    assert.equal(start.status, 302);
    const interaction = start.location!;
    const paths = [
      '/contoso/oauth2/v2.0/authorize',
      '/contoso/oauth2/v2.0/logout',
      ...['login', 'mfa', 'select', 'consent'].map((step) => `${new URL(interaction).pathname}/${step}`),
    ];
    for (const path of paths) {
      for (const type of ['application/json', 'text/plain', 'multipart/form-data; boundary=x']) {
        const hop = await unchanged(() => browser.request('POST', `${server.url}${path}`, { username: BOB.username, password: BOB.password, ...webParams(challenge) }, { 'content-type': type }));
        assert.equal(hop.status, 400, `${path} ${type}`);
        assert.match(hop.headers.get('content-type') ?? '', /^text\/html/);
        assert.match(hop.body, /AADSTS900144/);
        assert.match(hop.body, /application\/x-www-form-urlencoded/);
        assert.equal(hop.location, undefined);
      }
    }
  });
});

describe('2. type confusion: handlers see only validated strings', () => {
  test('the hostile case: arrays and objects in a JSON body never reach a handler (400, not 500)', async () => {
    for (const body of [
      { grant_type: 'client_credentials', client_id: 'indexer', client_secret: ['indexer-demo-secret-for-local-use-only'] },
      { grant_type: 'client_credentials', client_id: { toString: 'indexer' }, client_secret: 'x' },
      { grant_type: ['client_credentials'], client_id: 'indexer', client_secret: 'indexer-demo-secret-for-local-use-only' },
      [1, 2, 3],
      'client_credentials',
      null,
    ]) {
      const response = await unchanged(() => raw(TOKEN, JSON.stringify(body), 'application/json'));
      assertOAuthError(response, 400, 'invalid_request', 900144, NOT_FORM);
    }
  });

  test('formBody refuses any body its parser did not make (the central guarantee)', () => {
    for (const body of [{ client_id: ['a'] }, { client_id: { a: 1 } }, ['a'], 'grant_type=x', 42]) {
      assert.throws(() => formBody({ body } as never), (error: unknown) => error instanceof OAuthError && error.error === 'invalid_request' && error.status === 400);
    }
    assert.deepEqual({ ...formBody({ body: undefined } as never) }, {});
  });

  const forms: Array<[string, string]> = [
    [TOKEN, 'grant_type=client_credentials&scope=api%3A%2F%2Fdocs%2F.default'],
    ['/contoso/oauth2/v2.0/revoke', 'token=abc'],
    ['/contoso/oauth2/v2.0/introspect', 'token=abc'],
  ];
  for (const [path, form] of forms) {
    test(`${path}: a duplicated parameter is 90014, a NUL is 900144, an oversized body is 413 — nothing written`, async () => {
      const name = form.split('=')[0]!;
      const dup = await unchanged(() => raw(path, `${form}&${name}=again`, 'application/x-www-form-urlencoded', { authorization: INDEXER }));
      assertOAuthError(dup, 400, 'invalid_request', 90014, new RegExp(`The parameter '${name}' is included more than once`));
      const nul = await unchanged(() => raw(path, `${form}&client_info=%00`, 'application/x-www-form-urlencoded', { authorization: INDEXER }));
      assertOAuthError(nul, 400, 'invalid_request', 900144, /contains a NUL character/);
      const big = await unchanged(() => raw(path, `${form}&pad=${'x'.repeat(70 * 1024)}`, 'application/x-www-form-urlencoded', { authorization: INDEXER }));
      assertOAuthError(big, 413, 'invalid_request', 900144, /too large/);
    });
  }

  test('oversized strings where short ones are expected: the right OAuth error, never a 5xx', async () => {
    const long = 'x'.repeat(60 * 1024);
    const cases: Array<[Record<string, string>, Record<string, string>, number, string]> = [
      [{ grant_type: 'client_credentials', client_id: long, client_secret: 'x' }, {}, 400, 'invalid_client'],
      [{ grant_type: long }, { authorization: INDEXER }, 400, 'unsupported_grant_type'],
      [{ grant_type: 'client_credentials', scope: long }, { authorization: INDEXER }, 400, 'invalid_request'],
      [{ grant_type: 'refresh_token', refresh_token: long, client_id: 'tasks-web' }, {}, 400, 'invalid_grant'],
      [{ grant_type: 'authorization_code', code: long, client_id: 'tasks-web', redirect_uri: WEB.redirectUri }, {}, 400, 'invalid_grant'],
    ];
    for (const [form, headers, status, error] of cases) {
      const response = await unchanged(() => server.post(TOKEN, form, headers));
      assert.equal(response.status, status, JSON.stringify(response.body).slice(0, 300));
      assert.equal(response.body.error, error);
      assert.ok(JSON.stringify(response.body).length < 2048, 'the long value is not echoed back');
    }
  });

  test('authorize GET: a duplicated query parameter is an error page (90014), never a redirect', async () => {
    const { challenge } = pkce();
    const url = `${authorizeUrl(server, webParams(challenge))}&client_id=tasks-web`;
    const hop = await unchanged(() => new Browser().get(url));
    assert.equal(hop.status, 400);
    assert.match(hop.body, /AADSTS90014/);
    assert.equal(hop.location, undefined);
  });
});

/** A compact JWS signed by the test client key, with any header. */
function assertionWith(header: Record<string, unknown>, claims: Record<string, unknown> = {}): string {
  const now = Math.floor(Date.now() / 1000);
  const payload = { iss: 'signer', sub: 'signer', aud: `${server.url}${TOKEN}`, jti: randomUUID(), iat: now, exp: now + 300, ...claims };
  const input = `${Buffer.from(JSON.stringify(header)).toString('base64url')}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}`;
  const signature = cryptoSign('sha256', Buffer.from(input), { key: SIGNER.privateKey, dsaEncoding: 'ieee-p1363' });
  return `${input}.${signature.toString('base64url')}`;
}

const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
const ccWith = (assertion: string) => ({ grant_type: 'client_credentials', scope: 'api://docs/.default', client_assertion_type: ASSERTION_TYPE, client_assertion: assertion });

describe('3. one JWS header policy', () => {
  test('a well-formed private_key_jwt assertion is accepted (the control)', async () => {
    const response = await server.post(TOKEN, ccWith(assertionWith({ alg: 'ES256', kid: 'signer-1', typ: 'JWT' })));
    assert.equal(response.status, 200, JSON.stringify(response.body));
    // MSAL sends x5t with certificate credentials: a hint, accepted and never used to pick a key.
    const withX5t = await server.post(TOKEN, ccWith(assertionWith({ alg: 'ES256', kid: 'signer-1', x5t: 'AAAA' })));
    assert.equal(withX5t.status, 200);
  });

  test('the hostile case: an unknown critical header in a client assertion is refused (RFC 7515 §4.1.11), its jti not recorded', async () => {
    const response = await unchanged(() => server.post(TOKEN, ccWith(assertionWith({ alg: 'ES256', kid: 'signer-1', crit: ['urn:example:ext'], 'urn:example:ext': true }))));
    assertOAuthError(response, 400, 'invalid_client', 700027, /critical header extensions \(crit\)/);
  });

  test('client assertions: alg, typ and key references per the policy', async () => {
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ alg: 'ES256', kid: 'signer-1', crit: [] }, /crit/],
      [{ alg: 'ES256', kid: 'signer-1', crit: 'exp' }, /crit/],
      [{ alg: 'ES256', kid: 'signer-1', b64: false, crit: ['b64'] }, /crit/],
      [{ alg: 'HS256', kid: 'signer-1' }, /algorithm is not accepted/],
      [{ alg: 'none' }, /algorithm is not accepted/],
      [{ alg: 'ES256', kid: 'signer-1', typ: 'at+jwt' }, /typ must be/],
      [{ alg: 'ES256', kid: 'signer-1', typ: 42 }, /typ header is not a string/],
      [{ alg: 'ES256', kid: 'signer-1', jku: 'http://127.0.0.1:1/jwks' }, /'jku' header/],
      [{ alg: 'ES256', kid: 'signer-1', x5u: 'http://127.0.0.1:1/cert' }, /'x5u' header/],
      [{ alg: 'ES256', jwk: SIGNER_JWK }, /'jwk' header/],
      [{ alg: 'ES256', kid: ['signer-1'] }, /kid header is malformed/],
    ];
    for (const [header, description] of cases) {
      const response = await unchanged(() => server.post(TOKEN, ccWith(assertionWith(header))));
      assertOAuthError(response, 400, 'invalid_client', 700027, description);
    }
  });

  /** `token` with its header replaced (the signature no longer matters: the header is judged first). */
  const reheader = (token: string, extra: Record<string, unknown>) => {
    const [, payload, signature] = token.split('.');
    return `${Buffer.from(JSON.stringify({ ...decodeJwt(token).header, ...extra })).toString('base64url')}.${payload}.${signature}`;
  };

  test('OBO assertion and RFC 8693 subject/actor tokens: the same policy', async () => {
    const token = await userToken(server);
    for (const extra of [{ crit: ['urn:example:ext'] }, { jku: 'http://127.0.0.1:1/jwks' }, { jwk: SIGNER_JWK }, { alg: 'HS256' }, { typ: 'JWT' }]) {
      const response = await unchanged(() => obo(server, 'tasks-api', reheader(token, extra), 'api://docs/Docs.Read'));
      assertOAuthError(response, 400, 'invalid_grant', 50013, /header|typ|crit/);
      const subject = await unchanged(() => exchange(server, 'tasks-api', { subject_token: reheader(token, extra), scope: 'api://docs/Docs.Read' }));
      assertOAuthError(subject, 400, 'invalid_request', 50013, /subject_token/);
      const actor = await unchanged(() =>
        exchange(server, 'tasks-api', { subject_token: token, actor_token: reheader(token, extra), actor_token_type: 'urn:ietf:params:oauth:token-type:access_token', scope: 'api://docs/Docs.Read' }),
      );
      assertOAuthError(actor, 400, 'invalid_request', 50013, /actor_token/);
    }
    // The control: the unaltered token is exchanged.
    assert.equal((await obo(server, 'tasks-api', token, 'api://docs/Docs.Read')).status, 200);
  });

  test('introspection and UserInfo: a token with crit or jku is not active / invalid_token', async () => {
    const token = await userToken(server);
    for (const extra of [{ crit: ['urn:example:ext'] }, { jku: 'http://127.0.0.1:1/jwks' }]) {
      const introspect = await server.post('/contoso/oauth2/v2.0/introspect', { token: reheader(token, extra) }, { authorization: basic('tasks-api', secretOf('tasks-api')) });
      assert.deepEqual(introspect.body, { active: false });
      const userinfo = await fetch(`${server.url}/oidc/userinfo`, { headers: { authorization: `Bearer ${reheader(token, extra)}` } });
      assert.equal(userinfo.status, 401);
      assert.equal(((await userinfo.json()) as any).error, 'invalid_token');
    }
  });
});

/** A refresh token for tasks-web after a real sign-in (bob: password only). */
async function signedIn(): Promise<{ refresh: string }> {
  const browser = new Browser();
  const { verifier, challenge } = pkce();
  const flow = await runFlow(browser, server, authorizeUrl(server, webParams(challenge)), { user: BOB });
  assert.ok(flow.params?.code, flow.seen.join(','));
  const redeemed = await redeem(server, flow.params.code, verifier);
  assert.equal(redeemed.status, 200, JSON.stringify(redeemed.body));
  return { refresh: redeemed.body.refresh_token };
}

const refresh = (token: string, extra: Record<string, string> = {}) => server.post(TOKEN, { grant_type: 'refresh_token', client_id: WEB.clientId, refresh_token: token, ...extra });

async function setEnabled(username: string, enabled: boolean): Promise<void> {
  const user = await server.ctx.store.getUserByName('contoso', username);
  assert.ok(user);
  await server.ctx.store.putUser({ ...user, enabled });
}

describe('4. a refused refresh never burns the refresh token', () => {
  test('the hostile case: a scope without consent (65001), then an ordinary refresh succeeds', async () => {
    const { refresh: token } = await signedIn();
    const refused = await unchanged(() => refresh(token, { scope: 'api://audit/Audit.Write' }));
    assert.equal(refused.status, 400);
    assert.equal(refused.body.error, 'invalid_grant');
    assert.equal(refused.body.suberror, 'consent_required');
    assert.deepEqual(refused.body.error_codes, [65001]);
    const ok = await refresh(token);
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    assert.ok(ok.body.access_token);
    assert.notEqual(ok.body.refresh_token, token, 'rotated');
  });

  test('conditional access (MFA for Docs.Write), a claims challenge, a malformed scope, a disabled user: each refused, none burns', async () => {
    const { refresh: token } = await signedIn();
    const ca = await unchanged(() => refresh(token, { scope: 'api://docs/Docs.Write' }));
    assert.equal(ca.body.error, 'interaction_required', JSON.stringify(ca.body));
    assert.deepEqual(ca.body.error_codes, [50076]);
    const claims = await unchanged(() => refresh(token, { claims: JSON.stringify({ access_token: { amr: { essential: true, values: ['mfa'] } } }) }));
    assert.equal(claims.body.error, 'interaction_required', JSON.stringify(claims.body));
    const malformed = await unchanged(() => refresh(token, { scope: 'api://docs/Docs.Read api://tasks/Tasks.ReadWrite' }));
    assert.equal(malformed.status, 400);
    await setEnabled(BOB.username, false);
    try {
      const disabled = await unchanged(() => refresh(token));
      assert.equal(disabled.body.error, 'invalid_grant');
      assert.deepEqual(disabled.body.error_codes, [50057]);
    } finally {
      await setEnabled(BOB.username, true);
    }
    const ok = await refresh(token);
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
  });

  test('a refresh by another client is refused and burns nothing', async () => {
    const { refresh: token } = await signedIn();
    const other = await unchanged(() => server.post(TOKEN, { grant_type: 'refresh_token', refresh_token: token }, { authorization: basic('tasks-api', secretOf('tasks-api')) }));
    assert.equal(other.body.error, 'invalid_grant');
    assert.equal((await refresh(token)).status, 200);
  });

  test('a real replay still revokes the family: the replayed token and its successor both fail', async () => {
    const { refresh: first } = await signedIn();
    const second = (await refresh(first)).body.refresh_token as string;
    assert.ok(second);
    const replay = await refresh(first);
    assert.equal(replay.status, 400);
    assert.equal(replay.body.error, 'invalid_grant');
    assert.deepEqual(replay.body.error_codes, [70000]);
    const successor = await refresh(second);
    assert.equal(successor.status, 400, 'the family is revoked');
    assert.deepEqual(successor.body.error_codes, [70000]);
  });
});

describe('4b. a refused code redemption does not burn the code; a replay revokes what it issued', () => {
  test('user disabled between sign-in and redemption: 50057, the code survives and redeems once re-enabled', async () => {
    const browser = new Browser();
    const { verifier, challenge } = pkce();
    const flow = await runFlow(browser, server, authorizeUrl(server, webParams(challenge)), { user: BOB });
    const code = flow.params!.code!;
    await setEnabled(BOB.username, false);
    try {
      const refused = await unchanged(() => redeem(server, code, verifier));
      assert.equal(refused.body.error, 'invalid_grant');
      assert.deepEqual(refused.body.error_codes, [50057]);
    } finally {
      await setEnabled(BOB.username, true);
    }
    const ok = await redeem(server, code, verifier);
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    const replay = await redeem(server, code, verifier);
    assert.deepEqual(replay.body.error_codes, [54005]);
    assert.deepEqual((await refresh(ok.body.refresh_token)).body.error_codes, [70000], 'the replay revoked the refresh token the code issued');
  });
});

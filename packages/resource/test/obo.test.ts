/**
 * The OBO client's own behaviour, against a minimal token-endpoint fixture (see
 * fixtures/token-endpoint.ts): request forms, client authentication, the cache (key, margin, LRU,
 * single flight), retries, typed errors, the confused-deputy guard. The real OBO rules are Baton's
 * token service's; the acceptance tests against it come with that endpoint.
 */
import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import {
  ConfusedDeputyError,
  ConsentRequiredError,
  createGuard,
  createOboClient,
  InteractionRequiredError,
  InvalidGrantError,
  MemoryTokenCacheStore,
  OboError,
  runWithPrincipal,
  tokenCacheKey,
  type Logger,
  type OboClientOptions,
  type Principal,
} from '../src/index.ts';
import { startIssuer, type TestIssuer } from './fixtures/issuer.ts';
import { startTokenEndpoint, type TokenEndpoint } from './fixtures/token-endpoint.ts';

const SECRET = 'tasks-api-Test-secret-1';
const DOCS = ['api://docs/Docs.Read', 'api://docs/Docs.Write'];

let issuer: TestIssuer;
let ts: TokenEndpoint;
let alice: Principal;
let bob: Principal;
let daemon: Principal;
const clientKey = generateKeyPairSync('ec', { namedCurve: 'P-256' });

before(async () => {
  issuer = await startIssuer();
  ts = await startTokenEndpoint({ secrets: { 'tasks-api': SECRET, 'other-api': 'other-Test-secret' }, keys: { 'tasks-api': clientKey.publicKey } });
  const guard = createGuard({ authority: issuer.authority, audience: issuer.audience });
  alice = await guard.verify(issuer.token());
  bob = await guard.verify(issuer.token({ oid: 'bob', sub: 'pairwise-bob' }));
  daemon = await guard.verify(issuer.token({ idtyp: 'app', scp: undefined, roles: ['Tasks.All'] }));
});
after(async () => {
  await ts.close();
  await issuer.close();
});
beforeEach(() => {
  ts.requests.length = 0;
  ts.respond = undefined;
  ts.expiresIn = 3600;
});

const quiet: Logger = { info: () => {}, warn: () => {} };
function client(overrides: Partial<OboClientOptions> = {}) {
  return createOboClient({ clientId: 'tasks-api', tokenEndpoint: ts.tokenEndpoint, credential: { clientSecret: SECRET }, logger: quiet, ...overrides });
}

/** Nothing secret in an error: not the assertion, not the client secret. */
function assertClean(error: unknown): void {
  const text = `${String((error as Error).message)} ${JSON.stringify(error)} ${String((error as Error).stack)}`;
  assert.ok(!text.includes(alice.token) && !text.includes(SECRET));
}

describe('requests', () => {
  test("Microsoft's OBO form with client_secret_basic", async () => {
    const t = await client().onBehalfOf(alice, [DOCS[1] as string, DOCS[0] as string, DOCS[0] as string]);
    assert.match(t.accessToken, /^at-\d+-jwt-bearer$/);
    assert.equal(t.fromCache, false);
    assert.equal(t.tokenType, 'Bearer');
    const [req] = ts.requests;
    assert.equal(req?.client, 'tasks-api');
    assert.deepEqual(req?.form, {
      grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer',
      requested_token_use: 'on_behalf_of',
      assertion: alice.token,
      scope: 'api://docs/Docs.Read api://docs/Docs.Write',
    });
    assert.equal(req?.headers['content-type'], 'application/x-www-form-urlencoded');
  });

  test('client_secret_post, and Basic credentials are form-encoded first (RFC 6749 §2.3.1)', async () => {
    await client({ credential: { clientSecret: SECRET, method: 'client_secret_post' } }).onBehalfOf(alice, DOCS);
    assert.equal(ts.requests[0]?.form.client_id, 'tasks-api');
    assert.equal(ts.requests[0]?.form.client_secret, SECRET);
    assert.equal(ts.requests[0]?.headers.authorization, undefined);
    await createOboClient({ clientId: 'odd:client id', tokenEndpoint: ts.tokenEndpoint, credential: { clientSecret: 'p@ss:w rd' }, logger: quiet }).onBehalfOf(alice, DOCS).catch(() => {});
    const basic = Buffer.from((ts.requests[1]?.headers.authorization ?? '').slice(6), 'base64').toString();
    assert.equal(basic, 'odd%3Aclient+id:p%40ss%3Aw+rd');
  });

  test('RFC 8693 form', async () => {
    await client({ form: 'rfc8693' }).acquire({ assertion: alice.token, scopes: DOCS, audience: 'api://docs' });
    assert.deepEqual(ts.requests[0]?.form, {
      grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
      subject_token: alice.token,
      subject_token_type: 'urn:ietf:params:oauth:token-type:access_token',
      requested_token_type: 'urn:ietf:params:oauth:token-type:access_token',
      scope: 'api://docs/Docs.Read api://docs/Docs.Write',
      audience: 'api://docs',
    });
    await assert.rejects(client().acquire({ assertion: alice.token, scopes: DOCS, audience: 'api://docs' }), TypeError);
  });

  test('private_key_jwt: iss = sub = client, aud = token endpoint, short exp, fresh jti each time', async () => {
    const obo = client({ credential: { privateKey: clientKey.privateKey, keyId: 'tasks-api-key-1' } });
    await obo.onBehalfOf(alice, DOCS);
    await obo.onBehalfOf(bob, DOCS);
    assert.equal(ts.requests.length, 2);
    for (const req of ts.requests) {
      assert.equal(req.client, 'tasks-api', 'the fixture verified the assertion');
      assert.equal(req.form.client_assertion_type, 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer');
      const [h, p] = (req.form.client_assertion ?? '').split('.').slice(0, 2).map((s) => JSON.parse(Buffer.from(s, 'base64url').toString()) as Record<string, unknown>);
      assert.deepEqual(h, { alg: 'ES256', kid: 'tasks-api-key-1', typ: 'JWT' });
      assert.equal(p?.aud, ts.tokenEndpoint);
      assert.ok((p?.exp as number) - (p?.iat as number) <= 120);
    }
    assert.throws(() => client({ credential: { privateKey: clientKey.publicKey, keyId: 'k' } }), TypeError);
    assert.throws(() => client({ credential: { privateKey: clientKey.privateKey, keyId: 'k', algorithm: 'RS256' } }), TypeError);
  });

  test('the token endpoint found by discovery', async () => {
    const obo = createOboClient({ clientId: 'tasks-api', authority: ts.authority, credential: { clientSecret: SECRET }, logger: quiet });
    await obo.onBehalfOf(alice, DOCS);
    assert.equal(ts.requests.length, 1);
  });

  test('options are checked at construction', () => {
    assert.throws(() => createOboClient({ clientId: '', tokenEndpoint: ts.tokenEndpoint, credential: { clientSecret: 'x' } }), TypeError);
    assert.throws(() => createOboClient({ clientId: 'a', credential: { clientSecret: 'x' } } as OboClientOptions), TypeError);
    assert.throws(() => createOboClient({ clientId: 'a', tokenEndpoint: 'http://as.example/token', credential: { clientSecret: 'x' } }), /https/);
    assert.throws(() => createOboClient({ clientId: 'a', tokenEndpoint: ts.tokenEndpoint, authority: ts.authority, credential: { clientSecret: 'x' } }), TypeError);
    assert.throws(() => createOboClient({ clientId: 'a', tokenEndpoint: ts.tokenEndpoint, credential: {} as never }), TypeError);
    assert.throws(() => createOboClient({ clientId: 'a', tokenEndpoint: ts.tokenEndpoint, credential: { clientSecret: 'x' }, form: 'other' as never }), TypeError);
    assert.throws(() => createOboClient({ clientId: 'a', tokenEndpoint: ts.tokenEndpoint, credential: { clientSecret: 'x' }, retry: { retries: 99 } }), TypeError);
  });

  test('an app-only caller cannot be exchanged: refused before any request', async () => {
    await assert.rejects(client().onBehalfOf(daemon, DOCS), (e: OboError) => e.error === 'invalid_grant');
    assert.equal(ts.requests.length, 0);
    await assert.rejects(client().onBehalfOf(alice, []), TypeError);
    await assert.rejects(client().onBehalfOf(alice, ['two words']), TypeError);
  });
});

describe('cache', () => {
  test('the key: sorted scopes, hashed assertion, client, claims, endpoint', () => {
    const base = { kind: 'obo' as const, tokenEndpoint: ts.tokenEndpoint, clientId: 'tasks-api', scopes: ['b', 'a'], assertion: alice.token };
    const k = tokenCacheKey(base);
    assert.equal(k, tokenCacheKey({ ...base, scopes: ['a', 'b', 'a'] }));
    assert.notEqual(k, tokenCacheKey({ ...base, scopes: ['a'] }));
    assert.notEqual(k, tokenCacheKey({ ...base, assertion: bob.token }));
    assert.notEqual(k, tokenCacheKey({ ...base, clientId: 'other-api' }));
    assert.notEqual(k, tokenCacheKey({ ...base, claims: '{"access_token":{}}' }));
    assert.notEqual(k, tokenCacheKey({ ...base, tokenEndpoint: 'https://elsewhere/token' }));
    assert.notEqual(k, tokenCacheKey({ ...base, kind: 'app' }));
    assert.ok(!k.includes(alice.token) && !k.includes(alice.token.split('.')[2] as string));
  });

  test('hit for the same assertion and scopes (any order); miss for another user, scope set, client or claims', async () => {
    const store = new MemoryTokenCacheStore();
    const obo = client({ cache: store });
    const first = await obo.onBehalfOf(alice, DOCS);
    const again = await obo.onBehalfOf(alice, [...DOCS].reverse());
    assert.equal(again.accessToken, first.accessToken);
    assert.equal(again.fromCache, true);
    assert.equal(ts.requests.length, 1);
    await obo.onBehalfOf(bob, DOCS);
    await obo.onBehalfOf(alice, ['api://docs/Docs.Read']);
    await obo.onBehalfOf(alice, DOCS, { claims: '{"access_token":{"acrs":{"essential":true,"value":"c1"}}}' });
    const other = createOboClient({ clientId: 'other-api', tokenEndpoint: ts.tokenEndpoint, credential: { clientSecret: 'other-Test-secret' }, cache: store, logger: quiet });
    await other.onBehalfOf(alice, DOCS);
    assert.equal(ts.requests.length, 5);
    await obo.onBehalfOf(alice, DOCS, { forceRefresh: true });
    assert.equal(ts.requests.length, 6);
  });

  test('renewed a margin before exp: 5 minutes, or half the lifetime of short tokens', async () => {
    let now = Date.now();
    const obo = client({ clock: () => now });
    await obo.onBehalfOf(alice, DOCS);
    now += 3299_000;
    assert.equal((await obo.onBehalfOf(alice, DOCS)).fromCache, true);
    now += 2_000; // past exp - 300 s
    assert.equal((await obo.onBehalfOf(alice, DOCS)).fromCache, false);
    assert.equal(ts.requests.length, 2);

    ts.expiresIn = 120; // short-lived: margin = 60 s
    ts.requests.length = 0;
    const short = client({ clock: () => now });
    await short.onBehalfOf(bob, DOCS);
    now += 59_000;
    assert.equal((await short.onBehalfOf(bob, DOCS)).fromCache, true);
    now += 2_000;
    assert.equal((await short.onBehalfOf(bob, DOCS)).fromCache, false);
    assert.equal(ts.requests.length, 2);
  });

  test('concurrent identical requests share one call; different ones do not', async () => {
    ts.respond = () => ({ delay: 50, body: { token_type: 'Bearer', access_token: `shared-${ts.requests.length}`, expires_in: 3600 } });
    const obo = client();
    const same = await Promise.all(Array.from({ length: 25 }, () => obo.onBehalfOf(alice, DOCS)));
    assert.equal(ts.requests.length, 1);
    assert.ok(same.every((t) => t.accessToken === 'shared-1'));
    ts.requests.length = 0;
    await Promise.all([obo.onBehalfOf(bob, DOCS), obo.onBehalfOf(bob, ['api://docs/Docs.Read']), obo.onBehalfOf(alice, DOCS, { forceRefresh: true })]);
    assert.equal(ts.requests.length, 3);
  });

  test('LRU-bounded', async () => {
    const obo = client({ cacheSize: 2 });
    await obo.onBehalfOf(alice, ['api://docs/A']);
    await obo.onBehalfOf(alice, ['api://docs/B']);
    await obo.onBehalfOf(alice, ['api://docs/A']); // hit, A most recent
    await obo.onBehalfOf(alice, ['api://docs/C']); // evicts B
    assert.equal(ts.requests.length, 3);
    assert.equal((await obo.onBehalfOf(alice, ['api://docs/A'])).fromCache, true);
    assert.equal((await obo.onBehalfOf(alice, ['api://docs/B'])).fromCache, false);
    assert.equal(ts.requests.length, 4);
  });

  test('failures are not cached', async () => {
    ts.respond = (_r, n) => (n === 1 ? { status: 400, body: { error: 'invalid_grant', error_description: 'AADSTS50013: Assertion failed signature validation.', error_codes: [50013] } } : undefined);
    const obo = client();
    await assert.rejects(obo.onBehalfOf(alice, DOCS), InvalidGrantError);
    assert.ok(await obo.onBehalfOf(alice, DOCS));
    assert.equal(ts.requests.length, 2);
  });
});

describe('retries and errors', () => {
  test('5xx retried with backoff, then success', async () => {
    const warnings: string[] = [];
    ts.respond = (_r, n) => (n <= 2 ? { status: 503, body: { error: 'temporarily_unavailable' } } : undefined);
    const obo = client({ retry: { retries: 2, baseDelayMs: 10 }, logger: { info: () => {}, warn: (m, f) => warnings.push(`${m} ${JSON.stringify(f)}`) } });
    assert.ok(await obo.onBehalfOf(alice, DOCS));
    assert.equal(ts.requests.length, 3);
    assert.equal(warnings.length, 2);
    assert.ok(warnings.every((w) => !w.includes(alice.token) && !w.includes(SECRET)));
  });

  test('429 honours Retry-After; a Retry-After beyond the bound is not waited for', async () => {
    ts.respond = (_r, n) => (n === 1 ? { status: 429, headers: { 'retry-after': '1' }, body: { error: 'temporarily_unavailable' } } : undefined);
    const start = Date.now();
    assert.ok(await client().onBehalfOf(alice, DOCS));
    assert.ok(Date.now() - start >= 950, 'waited about a second');
    assert.equal(ts.requests.length, 2);

    ts.requests.length = 0;
    ts.respond = () => ({ status: 429, headers: { 'retry-after': '120' }, body: { error: 'temporarily_unavailable', error_description: 'slow down' } });
    const t0 = Date.now();
    await assert.rejects(client().onBehalfOf(bob, DOCS), (e: OboError) => e.status === 429 && e.error === 'temporarily_unavailable');
    assert.ok(Date.now() - t0 < 500);
    assert.equal(ts.requests.length, 1);
  });

  test('exhausted retries and unreachable token services are typed errors', async () => {
    ts.respond = () => ({ status: 500, body: { error: 'server_error' } });
    await assert.rejects(client({ retry: { retries: 1, baseDelayMs: 5 } }).onBehalfOf(alice, DOCS), (e: OboError) => e.status === 500 && e.error === 'server_error');
    assert.equal(ts.requests.length, 2);
    const dead = createOboClient({ clientId: 'tasks-api', tokenEndpoint: 'http://127.0.0.1:1/token', credential: { clientSecret: SECRET }, retry: { retries: 1, baseDelayMs: 5 }, logger: quiet });
    await assert.rejects(dead.onBehalfOf(alice, DOCS), (e: OboError) => {
      assertClean(e);
      return e.status === 0 && e.error === 'temporarily_unavailable';
    });
  });

  test("the token service's error JSON becomes a typed error", async () => {
    const cases: Array<[Record<string, unknown>, new (...a: never[]) => OboError]> = [
      [{ error: 'invalid_grant', error_description: 'AADSTS65001: The user or administrator has not consented.', error_codes: [65001], suberror: 'consent_required' }, ConsentRequiredError],
      [{ error: 'invalid_grant', error_description: 'AADSTS65001: no consent', error_codes: [65001] }, ConsentRequiredError],
      [{ error: 'interaction_required', error_description: 'AADSTS50076: MFA required.', error_codes: [50076], claims: '{"access_token":{"capolids":{"essential":true,"values":["p1"]}}}' }, InteractionRequiredError],
      [{ error: 'invalid_grant', error_description: 'AADSTS500133: Assertion is not within its valid time range.', error_codes: [500133] }, InvalidGrantError],
      [{ error: 'invalid_client', error_description: 'AADSTS7000215: Invalid client secret provided.', error_codes: [7000215] }, OboError],
    ];
    for (const [body, type] of cases) {
      ts.respond = () => ({ status: body.error === 'invalid_client' ? 401 : 400, body: { ...body, trace_id: 't-1', correlation_id: 'c-1' } });
      await assert.rejects(client({ retry: { retries: 0 } }).onBehalfOf(alice, DOCS, { forceRefresh: true }), (e: OboError) => {
        assert.ok(e instanceof type, `${String(body.error)} → ${type.name}, got ${e.name}`);
        assert.equal(e.error, body.error);
        assert.deepEqual(e.errorCodes, body.error_codes);
        assert.equal(e.traceId, 't-1');
        assert.equal(e.correlationId, 'c-1');
        if (e instanceof InteractionRequiredError) assert.equal(e.claims, body.claims);
        assertClean(e);
        return true;
      });
    }
  });

  test('a malformed success answer is an error, not a token', async () => {
    ts.respond = () => ({ body: { token_type: 'pop', access_token: 'x', expires_in: 10 } });
    await assert.rejects(client().onBehalfOf(alice, DOCS), (e: OboError) => e.error === 'server_error');
    ts.respond = () => ({ body: { token_type: 'Bearer', expires_in: 10 } });
    await assert.rejects(client().onBehalfOf(bob, DOCS), (e: OboError) => e.error === 'server_error');
  });
});

describe('confused deputy', () => {
  test('appToken() outside a request: client credentials', async () => {
    const t = await client().appToken(['api://docs/.default']);
    assert.match(t.accessToken, /client_credentials$/);
    assert.deepEqual(ts.requests[0]?.form, { grant_type: 'client_credentials', scope: 'api://docs/.default' });
    assert.equal((await client().appToken(['api://docs/.default'])).fromCache, false, 'another client instance, another cache');
  });

  test('appToken() inside a user request throws ConfusedDeputyError unless asApplication with a reason, which is logged', async () => {
    const logged: Array<[string, Record<string, unknown> | undefined]> = [];
    const obo = client({ logger: { info: () => {}, warn: (m, f) => logged.push([m, f]) } });
    await runWithPrincipal(alice, async () => {
      await assert.rejects(obo.appToken(['api://docs/.default']), ConfusedDeputyError);
      await assert.rejects(obo.appToken(['api://docs/.default'], { asApplication: true }), ConfusedDeputyError);
      await assert.rejects(obo.appToken(['api://docs/.default'], { asApplication: true, reason: '   ' }), ConfusedDeputyError);
      await assert.rejects(obo.appToken(['api://docs/.default'], { reason: 'no flag' } as never), ConfusedDeputyError);
      assert.equal(ts.requests.length, 0);
      const t = await obo.appToken(['api://docs/.default'], { asApplication: true, reason: 'nightly re-index of shared documents' });
      assert.ok(t.accessToken);
    });
    assert.equal(logged.length, 1);
    assert.equal(logged[0]?.[1]?.reason, 'nightly re-index of shared documents');
    assert.equal(logged[0]?.[1]?.callerClientId, 'tasks-web');
    assert.ok(!JSON.stringify(logged).includes(alice.token));
    // The same holds when the caller is itself an application.
    await runWithPrincipal(daemon, () => assert.rejects(obo.appToken(['api://docs/.default']), ConfusedDeputyError));
  });
});

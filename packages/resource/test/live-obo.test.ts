/**
 * The OBO client against a live Baton's token endpoint, counting what reaches the token service by
 * its audit feed (one event per exchange decided):
 * - client_secret and private_key_jwt (a public key registered for tasks-api);
 * - the cache HITs (no new exchange) and EXPIREs (a new exchange once the margin before `exp` is
 *   reached: the Docs API's tokens live 300 s, so they are renewed after 150 s);
 * - concurrent identical requests collapse into one exchange;
 * - Baton's real error bodies become typed errors;
 * - each exchange is correlated: the audit event carries the request's `traceparent` and the
 *   client's `client-request-id`.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import {
  ConfusedDeputyError,
  ConsentRequiredError,
  createGuard,
  createOboClient,
  InteractionRequiredError,
  InvalidGrantError,
  OboError,
  runWithPrincipal,
  type FetchLike,
  type Guard,
  type OboClientOptions,
  type Principal,
} from '../src/index.ts';
import { newTraceparent, payloadOf, quietLogger, secretOf, startLiveBaton, type LiveBaton } from './fixtures/live-baton.ts';

const KEY_ID = 'tasks-api-live-1';
const clientKey = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const DOCS_READ = ['api://docs/Docs.Read'];

let baton: LiveBaton;
let tasksGuard: Guard;
let docsGuard: Guard;
let alice: Principal;

before(async () => {
  baton = await startLiveBaton({
    configure(raw) {
      const apps = raw.tenants[0].applications;
      apps.find((a: any) => a.clientId === 'tasks-api').jwks = [{ ...clientKey.publicKey.export({ format: 'jwk' }), kid: KEY_ID, use: 'sig' }];
      apps.find((a: any) => a.clientId === 'docs-api').accessTokenLifetimeSeconds = 300;
    },
  });
  tasksGuard = createGuard({ authority: baton.authority, audience: ['tasks-api', 'api://tasks'] });
  docsGuard = createGuard({ authority: baton.authority, audience: ['docs-api', 'api://docs'] });
  alice = await tasksGuard.verify(await baton.userToken());
});

after(async () => {
  await baton?.close();
});

const secret = { clientSecret: secretOf('tasks-api') };
const keyCredential = { privateKey: clientKey.privateKey, keyId: KEY_ID };

function client(overrides: Partial<OboClientOptions> = {}) {
  return createOboClient({ authority: baton.authority, clientId: 'tasks-api', credential: secret, logger: quietLogger(), ...overrides });
}

/** Exchanges Baton allowed for tasks-api since the last reset. */
const allowed = () => baton.exchanges((e) => e.caller === 'tasks-api' && e.decision === 'allow').length;

/** A fresh user token (so no other test's cache entry can answer). */
async function freshAlice(options: Parameters<LiveBaton['userToken']>[0] = {}): Promise<Principal> {
  return tasksGuard.verify(await baton.userToken(options));
}

describe('client authentication against Baton', () => {
  for (const [name, credential] of [
    ['client_secret_basic', secret],
    ['client_secret_post', { ...secret, method: 'client_secret_post' as const }],
    ['private_key_jwt', keyCredential],
  ] as const) {
    test(`${name}: one exchange, the token is addressed to the Docs API and names the chain; the next acquire is a cache HIT`, async () => {
      baton.reset();
      const obo = client({ credential });
      const first = await obo.onBehalfOf(alice, DOCS_READ);
      assert.equal(first.fromCache, false);
      assert.equal(allowed(), 1);
      const docs = await docsGuard.verify(first.accessToken);
      assert.equal(docs.userId, alice.userId);
      assert.equal(docs.clientId, 'tasks-api');
      assert.deepEqual(docs.scopes, ['Docs.Read']);
      assert.deepEqual(docs.chain.map((a) => a.client_id), ['tasks-api']);
      assert.deepEqual(first.scopes, DOCS_READ);

      const second = await obo.onBehalfOf(alice, DOCS_READ);
      assert.equal(second.fromCache, true);
      assert.equal(second.accessToken, first.accessToken);
      assert.equal(allowed(), 1, 'served from the cache: nothing reached the token service');
      await obo.close();
    });
  }

  test("RFC 8693 form: Baton's token-exchange grant, same rules", async () => {
    baton.reset();
    const obo = client({ form: 'rfc8693' });
    const t = await obo.acquire({ assertion: alice.token, scopes: DOCS_READ });
    assert.equal((await docsGuard.verify(t.accessToken)).clientId, 'tasks-api');
    const events = baton.exchanges();
    assert.equal(events.length, 1);
    assert.equal(events[0]?.form, 'token_exchange');
  });

  test('a wrong client secret → OboError invalid_client, never the secret in the error', async () => {
    const obo = client({ credential: { clientSecret: 'not-the-secret' } });
    const error = await obo.onBehalfOf(alice, DOCS_READ).then(
      () => assert.fail('expected a refusal'),
      (e: unknown) => e,
    );
    assert.ok(error instanceof OboError);
    assert.equal(error.error, 'invalid_client');
    assert.ok(!JSON.stringify({ m: error.message, d: error.description }).includes('not-the-secret'));
  });
});

describe('single flight against Baton', () => {
  test('ten concurrent identical requests → one exchange, one token', async () => {
    baton.reset();
    const obo = client();
    const user = await freshAlice();
    const results = await Promise.all(Array.from({ length: 10 }, () => obo.onBehalfOf(user, DOCS_READ)));
    assert.equal(allowed(), 1);
    assert.equal(new Set(results.map((r) => r.accessToken)).size, 1);
  });

  test('different users or scopes are different exchanges', async () => {
    baton.reset();
    const obo = client();
    const [a, b] = [await freshAlice(), await freshAlice({ username: 'bob@contoso.test' })];
    await Promise.all([obo.onBehalfOf(a, DOCS_READ), obo.onBehalfOf(b, DOCS_READ), obo.onBehalfOf(a, ['api://docs/Docs.Read', 'api://docs/Docs.Write']).catch(() => undefined)]);
    assert.equal(baton.exchanges((e) => e.caller === 'tasks-api').length, 3);
  });
});

describe("Baton's errors → typed errors", () => {
  test('no consent (reports-api) → ConsentRequiredError (invalid_grant, consent_required, AADSTS65001)', async () => {
    const error = await client().onBehalfOf(alice, ['api://reports/Reports.Read']).catch((e: unknown) => e);
    assert.ok(error instanceof ConsentRequiredError, String(error));
    assert.ok(error instanceof InvalidGrantError);
    assert.equal(error.status, 400);
    assert.equal(error.error, 'invalid_grant');
    assert.equal(error.suberror, 'consent_required');
    assert.deepEqual(error.errorCodes, [65001]);
    assert.match(error.description, /adminconsent\?client_id=tasks-api/);
  });

  test('Docs.Write without MFA → InteractionRequiredError with the claims challenge', async () => {
    const error = await client().onBehalfOf(alice, ['api://docs/Docs.Write']).catch((e: unknown) => e);
    assert.ok(error instanceof InteractionRequiredError, String(error));
    assert.equal(error.error, 'interaction_required');
    assert.deepEqual(error.errorCodes, [50076]);
    assert.deepEqual(JSON.parse(error.claims ?? 'null'), { access_token: { amr: { essential: true, values: ['mfa'] } } });
    // With MFA in the original sign-in, the same exchange is allowed.
    const mfa = await freshAlice({ amr: ['pwd', 'mfa'] });
    const t = await client().onBehalfOf(mfa, ['api://docs/Docs.Write']);
    assert.deepEqual((await docsGuard.verify(t.accessToken)).scopes, ['Docs.Write']);
  });

  test('a claims challenge passed on (onBehalfOf { claims }) is applied by Baton: InteractionRequiredError for a step-up the sign-in lacks', async () => {
    baton.reset();
    const acrs = '{"access_token":{"acrs":{"essential":true,"value":"c1"}}}';
    const error = await client().onBehalfOf(await freshAlice(), DOCS_READ, { claims: acrs }).catch((e: unknown) => e);
    assert.ok(error instanceof InteractionRequiredError, String(error));
    assert.deepEqual(error.errorCodes, [50076]);
    assert.equal(error.claims, acrs);
    assert.equal(baton.exchanges((e) => e.rule === 'claims-challenge' && e.decision === 'refuse').length, 1);
    // After an MFA sign-in the challenge is met.
    const t = await client().onBehalfOf(await freshAlice({ amr: ['pwd', 'mfa'] }), DOCS_READ, { claims: acrs });
    assert.deepEqual((await docsGuard.verify(t.accessToken)).scopes, ['Docs.Read']);
  });

  test('an assertion addressed to another API → InvalidGrantError (AADSTS50013), not a consent error', async () => {
    const docsToken = await baton.userToken({ api: 'api://docs', scopes: ['Docs.Read'] });
    const error = await client().acquire({ assertion: docsToken, scopes: ['api://audit/Audit.Write'] }).catch((e: unknown) => e);
    assert.ok(error instanceof InvalidGrantError, String(error));
    assert.ok(!(error instanceof ConsentRequiredError));
    assert.equal(error.error, 'invalid_grant');
    assert.deepEqual(error.errorCodes, [50013]);
  });

  test('refusals are not cached: asking again reaches the token service again', async () => {
    baton.reset();
    const obo = client();
    await obo.onBehalfOf(alice, ['api://reports/Reports.Read']).catch(() => undefined);
    await obo.onBehalfOf(alice, ['api://reports/Reports.Read']).catch(() => undefined);
    assert.deepEqual(baton.exchanges().map((e) => [e.decision, e.rule]), [['refuse', 'consent'], ['refuse', 'consent']]);
  });
});

describe('correlation with the token service', () => {
  test("inside a request: Baton's audit event carries its traceparent and the client's client-request-id", async () => {
    baton.reset();
    const sent: Array<string | null> = [];
    const recording: FetchLike = (input, init) => {
      sent.push(new Headers(init?.headers).get('client-request-id'));
      return globalThis.fetch(input, init);
    };
    const obo = client({ fetch: recording });
    const user = await freshAlice();
    const traceparent = newTraceparent();
    await runWithPrincipal(user, () => obo.onBehalfOf(user, DOCS_READ), { traceparent });
    const [event] = baton.exchanges();
    assert.equal(event?.traceparent, traceparent);
    const tokenRequests = sent.filter((id) => id !== null);
    assert.equal(tokenRequests.length, 1, 'discovery carries no client-request-id; the token request does');
    assert.match(tokenRequests[0] as string, /^[0-9a-f-]{36}$/);
    assert.equal(event?.correlationId, tokenRequests[0]);

    // A refusal names the same id in its body, so the API's log line and Baton's audit event meet.
    const error = await runWithPrincipal(user, () => obo.onBehalfOf(user, ['api://reports/Reports.Read']), { traceparent }).catch((e: unknown) => e);
    assert.ok(error instanceof ConsentRequiredError);
    const refused = baton.exchanges().at(-1);
    assert.equal(refused?.traceparent, traceparent);
    assert.equal(error.correlationId, refused?.correlationId);
    assert.equal(error.correlationId, sent.at(-1));
  });
});

describe('the confused deputy, against Baton', () => {
  const indexer = () => createOboClient({ authority: baton.authority, clientId: 'indexer', credential: { clientSecret: secretOf('indexer') }, logger: quietLogger() });

  test('outside a request, an app-only token is fine (the indexer, Docs.ReadAll)', async () => {
    const t = await indexer().appToken(['api://docs/.default']);
    const p = await docsGuard.verify(t.accessToken);
    assert.equal(p.appOnly, true);
    assert.deepEqual(p.roles, ['Docs.ReadAll']);
  });

  test('inside a user request it throws ConfusedDeputyError before anything is sent; { asApplication, reason } is logged', async () => {
    let requests = 0;
    const logger = quietLogger();
    const counting: FetchLike = (input, init) => {
      requests++;
      return globalThis.fetch(input, init);
    };
    const obo = createOboClient({ authority: baton.authority, clientId: 'indexer', credential: { clientSecret: secretOf('indexer') }, logger, fetch: counting });
    await assert.rejects(runWithPrincipal(alice, () => obo.appToken(['api://docs/.default'])), ConfusedDeputyError);
    await assert.rejects(runWithPrincipal(alice, () => obo.appToken(['api://docs/.default'], { asApplication: true })), ConfusedDeputyError, 'a reason is required');
    assert.equal(requests, 0);
    const t = await runWithPrincipal(alice, () => obo.appToken(['api://docs/.default'], { asApplication: true, reason: 'nightly re-index' }));
    assert.equal((await docsGuard.verify(t.accessToken)).clientId, 'indexer');
    assert.ok(logger.lines.some((l) => l.includes('nightly re-index')));
    assert.ok(!logger.lines.some((l) => l.includes(t.accessToken) || l.includes(alice.token)));
  });
});

// Last: moves the token service's clock forward.
describe('cache expiry against Baton (runs last: it moves the clocks)', () => {
  test('renewed once the margin before exp is reached: HIT at +100 s, a new exchange at +151 s (private_key_jwt)', async () => {
    baton.reset();
    let offsetMs = 0;
    const obo = client({ credential: keyCredential, clock: () => Date.now() + offsetMs });
    const user = await freshAlice();
    const first = await obo.onBehalfOf(user, DOCS_READ);
    const lifetime = first.expiresAt - (payloadOf(first.accessToken).iat as number);
    assert.equal(lifetime, 300, "the Docs API's tokens live 300 s");
    assert.equal(allowed(), 1);

    offsetMs = 100_000;
    baton.server.advance(100);
    assert.equal((await obo.onBehalfOf(user, DOCS_READ)).fromCache, true);
    assert.equal(allowed(), 1, 'still within exp − margin (margin = half of a 300 s lifetime)');

    offsetMs = 151_000;
    baton.server.advance(51);
    const renewed = await obo.onBehalfOf(user, DOCS_READ);
    assert.equal(renewed.fromCache, false);
    assert.notEqual(renewed.accessToken, first.accessToken);
    assert.equal(allowed(), 2, 'expired from the cache: a second exchange');
    assert.equal((await obo.onBehalfOf(user, DOCS_READ)).fromCache, true);
    assert.equal(allowed(), 2);
  });
});

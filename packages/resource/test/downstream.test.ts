/**
 * downstream(principal).fetch: OBO then the call; claims challenges from the downstream API and
 * from the token service become the caller's 401; traceparent passed on. Ends with the whole
 * picture over HTTP: Client → Express API (guard + downstream) → Downstream API, with the
 * step-up challenge arriving at the client as MSAL expects it.
 */
import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import {
  ClaimsChallengeError,
  ConsentRequiredError,
  createDownstream,
  createGuard,
  createOboClient,
  refuseTokenPassthrough,
  runWithPrincipal,
  TokenPassthroughError,
  type Principal,
} from '../src/index.ts';
import { authErrorHandler, requireAuth } from '../src/express.ts';
import { startIssuer, type TestIssuer } from './fixtures/issuer.ts';
import { startTokenEndpoint, type TokenEndpoint } from './fixtures/token-endpoint.ts';

const SECRET = 'tasks-api-Test-secret-1';
const DOCS = ['api://docs/Docs.Read'];
const STEP_UP = '{"access_token":{"acrs":{"essential":true,"value":"c1"}}}';
const STEP_UP_B64 = Buffer.from(STEP_UP).toString('base64');

let issuer: TestIssuer;
let ts: TokenEndpoint;
let alice: Principal;
let api: Server;
let apiBase: string;
const seen: IncomingHttpHeaders[] = [];
/** Tokens the downstream API accepts without a claims challenge; undefined = all. */
let accepted: ((token: string) => boolean) | undefined;

before(async () => {
  issuer = await startIssuer();
  ts = await startTokenEndpoint({ secrets: { 'tasks-api': SECRET } });
  alice = await createGuard({ authority: issuer.authority, audience: issuer.audience }).verify(issuer.token());
  api = createServer((req, res) => {
    seen.push(req.headers);
    const token = (req.headers.authorization ?? '').replace(/^Bearer /, '');
    if (accepted && !accepted(token)) {
      res.writeHead(401, { 'www-authenticate': `Bearer realm="", authorization_uri="https://login.example/common/oauth2/authorize", error="insufficient_claims", claims="${STEP_UP_B64}"` }).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ path: req.url, method: req.method }));
  });
  await new Promise<void>((r) => api.listen(0, '127.0.0.1', r));
  apiBase = `http://127.0.0.1:${(api.address() as AddressInfo).port}`;
});
after(async () => {
  api.closeAllConnections();
  await new Promise<void>((r) => api.close(() => r()));
  await ts.close();
  await issuer.close();
});
beforeEach(() => {
  seen.length = 0;
  ts.requests.length = 0;
  ts.respond = undefined;
  accepted = undefined;
});

const obo = () => createOboClient({ clientId: 'tasks-api', tokenEndpoint: ts.tokenEndpoint, credential: { clientSecret: SECRET }, logger: { info() {}, warn() {} } });

describe('downstream fetch', () => {
  test('OBO token (never the caller’s), relative URL, traceparent passed on', async () => {
    const docs = createDownstream({ obo: obo(), scopes: DOCS, baseUrl: apiBase });
    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    const res = await runWithPrincipal(alice, () => docs().fetch('/documents/1'), { traceparent, tracestate: ['a=1', 'b=2'] });
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { path: '/documents/1', method: 'GET' });
    assert.match(seen[0]?.authorization ?? '', /^Bearer at-1-jwt-bearer$/);
    assert.ok(!(seen[0]?.authorization ?? '').includes(alice.token));
    assert.equal(seen[0]?.traceparent, traceparent);
    assert.equal(seen[0]?.tracestate, 'a=1,b=2');
    assert.equal(ts.requests[0]?.form.assertion, alice.token);
    // Cached: the next call makes no token request.
    await runWithPrincipal(alice, () => docs().fetch('/documents/2', { method: 'POST', body: 'x' }));
    assert.equal(ts.requests.length, 1);
    // Explicit principal, outside any request: works, without trace headers.
    await docs(alice).fetch('/documents/3');
    assert.equal(seen[2]?.traceparent, undefined);
  });

  test('programmer mistakes: no caller, foreign origin, own Authorization header', async () => {
    const docs = createDownstream({ obo: obo(), scopes: DOCS, baseUrl: apiBase });
    assert.throws(() => docs(), TypeError);
    await assert.rejects(docs(alice).fetch('https://evil.example/steal'), TypeError);
    await assert.rejects(docs(alice).fetch('/x', { headers: { authorization: 'Bearer mine' } }), TypeError);
    assert.equal(seen.length, 0);
    assert.throws(() => createDownstream({ obo: obo(), scopes: [] }), TypeError);
    await runWithPrincipal(alice, async () => {
      // An invalid traceparent is not passed on.
      assert.ok(docs());
    }, { traceparent: '00-00000000000000000000000000000000-00f067aa0ba902b7-01' });
  });

  test("the downstream API's claims challenge is satisfied by OBO with the claims when the token service can", async () => {
    ts.respond = (r) => (r.form.claims ? { body: { token_type: 'Bearer', access_token: 'with-acrs-c1', expires_in: 3600 } } : undefined);
    accepted = (t) => t === 'with-acrs-c1';
    const docs = createDownstream({ obo: obo(), scopes: DOCS, baseUrl: apiBase });
    const res = await docs(alice).fetch('/documents/1');
    assert.equal(res.status, 200);
    assert.equal(ts.requests.length, 2);
    assert.equal(ts.requests[1]?.form.claims, STEP_UP);
    assert.equal(seen.length, 2);
  });

  test("…and becomes a ClaimsChallengeError when the user must step up (token service: interaction_required)", async () => {
    accepted = () => false;
    ts.respond = (r) =>
      r.form.claims
        ? { status: 400, body: { error: 'interaction_required', error_description: 'AADSTS50076: MFA required.', error_codes: [50076], claims: '{"access_token":{"acrs":{"essential":true,"value":"c1"}},"x":1}' } }
        : undefined;
    const docs = createDownstream({ obo: obo(), scopes: DOCS, baseUrl: apiBase });
    await assert.rejects(docs(alice).fetch('/documents/1'), (e: ClaimsChallengeError) => {
      assert.ok(e instanceof ClaimsChallengeError);
      assert.equal(e.claims, '{"access_token":{"acrs":{"essential":true,"value":"c1"}},"x":1}', "the token service's claims win");
      assert.equal(e.status, 401);
      return true;
    });
  });

  test('interaction_required on the first exchange, and a second challenge after the retry', async () => {
    ts.respond = () => ({ status: 400, body: { error: 'interaction_required', error_description: 'AADSTS50076', claims: STEP_UP } });
    const docs = createDownstream({ obo: obo(), scopes: DOCS, baseUrl: apiBase });
    await assert.rejects(docs(alice).fetch('/a'), (e: ClaimsChallengeError) => e instanceof ClaimsChallengeError && e.claims === STEP_UP);
    assert.equal(seen.length, 0);

    ts.respond = undefined;
    accepted = () => false; // the API keeps refusing
    await assert.rejects(createDownstream({ obo: obo(), scopes: DOCS, baseUrl: apiBase })(alice).fetch('/b'), (e: ClaimsChallengeError) => e.claims === STEP_UP);
    assert.equal(seen.length, 2, 'exactly one retry');
  });

  test('consent_required propagates as ConsentRequiredError', async () => {
    ts.respond = () => ({ status: 400, body: { error: 'invalid_grant', suberror: 'consent_required', error_codes: [65001], error_description: 'AADSTS65001: consent' } });
    await assert.rejects(createDownstream({ obo: obo(), scopes: DOCS, baseUrl: apiBase })(alice).fetch('/c'), ConsentRequiredError);
  });
});

test('end to end: client → Express API → downstream API; the step-up challenge reaches the client', async () => {
  accepted = () => false;
  ts.respond = (r) => (r.form.claims ? { status: 400, body: { error: 'interaction_required', error_description: 'AADSTS50076', claims: STEP_UP } } : undefined);
  const guard = createGuard({ authority: issuer.authority, audience: issuer.audience });
  const docs = createDownstream({ obo: obo(), scopes: DOCS, baseUrl: apiBase });
  const app = express();
  app.get('/tasks/:id/document', requireAuth(guard, { scopes: { any: ['Tasks.Read'] } }), async (req, res) => {
    const r = await docs().fetch(`/documents/${req.params.id}`);
    res.status(r.status).send(await r.text());
  });
  app.use(authErrorHandler());
  const server = app.listen(0, '127.0.0.1');
  await new Promise<void>((r) => server.once('listening', r));
  try {
    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    const res = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/tasks/7/document`, {
      headers: { authorization: `Bearer ${issuer.token()}`, traceparent },
    });
    assert.equal(res.status, 401);
    assert.match(res.headers.get('www-authenticate') ?? '', new RegExp(`^Bearer realm="", error="insufficient_claims", error_description="[^"]+", claims="${STEP_UP_B64.replace(/[+/=]/g, '\\$&')}"$`));
    assert.equal(seen[0]?.traceparent, traceparent, 'the inbound trace reached the downstream API');
    const body = (await res.json()) as { claims: string };
    assert.equal(body.claims, STEP_UP);

    accepted = undefined;
    ts.respond = undefined;
    const ok = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/tasks/8/document`, { headers: { authorization: `Bearer ${issuer.token()}` } });
    assert.equal(ok.status, 200);
    assert.deepEqual(await ok.json(), { path: '/documents/8', method: 'GET' });
  } finally {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  }
});

describe('passthrough guard', () => {
  test("the caller's own token is never sent on: as the bearer, in another header, in the URL or in the body; nothing leaves", async () => {
    const docs = createDownstream({ obo: obo(), scopes: DOCS, baseUrl: apiBase });
    const attempts: Array<[string, RequestInit | undefined, string]> = [
      ['/documents', { headers: { authorization: `Bearer ${alice.token}` } }, 'as the bearer'],
      ['/documents', { headers: { 'x-user-token': alice.token } }, 'in the x-user-token header'],
      [`/documents?access_token=${alice.token}`, undefined, 'in the URL'],
      ['/documents', { method: 'POST', body: JSON.stringify({ token: alice.token }) }, 'in the body'],
      ['/documents', { method: 'POST', body: new URLSearchParams({ assertion: alice.token }) }, 'in the body'],
    ];
    for (const [path, init, where] of attempts) {
      await assert.rejects(
        runWithPrincipal(alice, () => docs().fetch(path, init)),
        (error: unknown) => error instanceof TokenPassthroughError && error.message.includes(where) && error.message.includes(new URL(apiBase).origin) && !error.message.includes(alice.token),
        `${path} ${where}`,
      );
    }
    assert.equal(seen.length, 0, 'nothing reached the downstream API');
    assert.equal(ts.requests.length, 0, 'no token was even asked for');
  });

  test('refuseTokenPassthrough, for code that calls fetch itself', () => {
    assert.throws(() => refuseTokenPassthrough(alice, 'https://docs.example/documents', { authorization: `Bearer ${alice.token}` }), TokenPassthroughError);
    assert.throws(() => refuseTokenPassthrough(alice, 'https://docs.example/documents', [['x-forwarded-authorization', alice.token]]), TokenPassthroughError);
    assert.throws(() => refuseTokenPassthrough(alice, `https://docs.example/documents?t=${alice.token}`), TokenPassthroughError);
    // Another token, or none, passes.
    refuseTokenPassthrough(alice, 'https://docs.example/documents', { authorization: 'Bearer at-1-jwt-bearer' }, '{"title":"x"}');
    refuseTokenPassthrough(alice, 'https://docs.example/documents');
  });
});

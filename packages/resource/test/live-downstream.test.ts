/**
 * `downstream(principal).fetch` through two real APIs built with the SDK, against a live Baton:
 *
 *   caller ──▶ Original API (tasks-api; Express, Fastify, Hono and node:http in turn)
 *                 └─ OBO at Baton ─▶ Downstream API (docs-api; node:http)
 *
 * - a normal call: the Downstream API sees the user, `azp` = tasks-api, `act` naming tasks-api, and
 *   the caller's `traceparent` (which Baton's audit event carries too);
 * - `interaction_required` from the token service (Docs.Write, MFA policy) becomes a 401
 *   `insufficient_claims` challenge with Baton's claims, to the original caller;
 * - a 401 `insufficient_claims` challenge from the Downstream API is tried once more against the
 *   token service (OBO with the claims, which Baton applies to the sign-in), then handed to the
 *   original caller as the same challenge.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type ServerResponse } from 'node:http';
import express from 'express';
import Fastify from 'fastify';
import { Hono } from 'hono';
import { claimsChallenge, createDownstream, createGuard, createOboClient, type Downstream, type OboClient } from '../src/index.ts';
import { authErrorHandler, requireAuth as expressAuth } from '../src/express.ts';
import { batonAuth, requireAuth as fastifyAuth } from '../src/fastify.ts';
import { authErrorResponse, requireAuth as honoAuth, type AuthEnv } from '../src/hono.ts';
import { protect } from '../src/node.ts';
import { challengeClaims, closeServer, listenLoopback, serveLoopback, newTraceparent, payloadOf, quietLogger, secretOf, startLiveBaton, type LiveBaton } from './fixtures/live-baton.ts';

const SENSITIVE_CLAIMS = { access_token: { acrs: { essential: true, value: 'c1' } } };
const MFA_CLAIMS = { access_token: { amr: { essential: true, values: ['mfa'] } } };

let baton: LiveBaton;
let downstreamUrl: string;
/** The `traceparent` each request to the Downstream API carried. */
const seenTraceparents: Array<string | undefined> = [];
const bases: Record<string, string> = {};
const closers: Array<() => Promise<void>> = [];
let obo: OboClient;

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}

/** The Downstream API (docs-api), on node:http. */
async function startDownstream(): Promise<void> {
  const guard = createGuard({ authority: baton.authority, audience: ['docs-api', 'api://docs'] });
  const read = { scopes: { any: ['Docs.Read'] } };
  const routes: Record<string, ReturnType<typeof protect>> = {
    'GET /documents': protect(guard, read, (_req, res, p) => json(res, 200, { user: p.userId, clientId: p.clientId, scopes: p.scopes, chain: p.chain.map((a) => a.client_id) })),
    'POST /documents': protect(guard, { scopes: { all: ['Docs.Write'] } }, (_req, res) => json(res, 201, { id: 'doc-1' })),
    // An operation that needs an authentication context this token lacks: a claims challenge.
    'GET /sensitive': protect(guard, read, (_req, _res, p) => {
      if (p.claims.acrs === undefined) throw claimsChallenge(SENSITIVE_CLAIMS);
    }),
  };
  const server = createServer((req, res) => {
    const tp = req.headers.traceparent;
    seenTraceparents.push(typeof tp === 'string' ? tp : undefined);
    const route = routes[`${req.method} ${req.url}`];
    if (route) void route(req, res);
    else res.writeHead(404).end();
  });
  downstreamUrl = await listenLoopback(server);
  closers.push(() => closeServer(server));
}

/** What each Original API route does, whatever the framework: call the Downstream API for the user. */
async function callDocs(docs: Downstream, path: string, init?: RequestInit): Promise<{ status: number; body: unknown }> {
  const r = await docs().fetch(path, init);
  return { status: r.status, body: await r.json() };
}

before(async () => {
  baton = await startLiveBaton();
  await startDownstream();
  obo = createOboClient({ authority: baton.authority, clientId: 'tasks-api', credential: { clientSecret: secretOf('tasks-api') }, logger: quietLogger() });
  const docsRead = createDownstream({ obo, scopes: ['api://docs/Docs.Read'], baseUrl: downstreamUrl });
  const docsWrite = createDownstream({ obo, scopes: ['api://docs/Docs.Write'], baseUrl: downstreamUrl });
  const calls: Record<string, () => Promise<{ status: number; body: unknown }>> = {
    '/read': () => callDocs(docsRead, '/documents'),
    '/write': () => callDocs(docsWrite, '/documents', { method: 'POST' }),
    '/sensitive': () => callDocs(docsRead, '/sensitive'),
  };
  const guard = () => createGuard({ authority: baton.authority, audience: ['tasks-api', 'api://tasks'] });
  const need = { scopes: { any: ['Tasks.ReadWrite'] } };

  {
    const app = express();
    const auth = expressAuth(guard(), need);
    for (const [path, call] of Object.entries(calls)) {
      app.get(path, auth, async (_req, res) => {
        const r = await call();
        res.status(r.status).json(r.body);
      });
    }
    app.use(authErrorHandler());
    const server = createServer(app);
    bases.express = await listenLoopback(server);
    closers.push(() => closeServer(server));
  }
  {
    const g = guard();
    const app = Fastify({ logger: false });
    await app.register(batonAuth, { guard: g });
    for (const [path, call] of Object.entries(calls)) {
      app.get(path, { onRequest: fastifyAuth(g, need) }, async (_request, reply) => {
        const r = await call();
        return reply.code(r.status).send(r.body);
      });
    }
    bases.fastify = await app.listen({ port: 0, host: '127.0.0.1' });
    closers.push(() => app.close());
  }
  {
    const app = new Hono<AuthEnv>();
    const auth = honoAuth(guard(), need);
    for (const [path, call] of Object.entries(calls)) {
      app.get(path, auth, async (c) => {
        const r = await call();
        return c.json(r.body as object, r.status as 200);
      });
    }
    app.onError((error, c) => authErrorResponse(error) ?? c.text('Internal Server Error', 500));
    const hono = await serveLoopback(app.fetch);
    bases.hono = hono.base;
    closers.push(() => closeServer(hono.server));
  }
  {
    const g = guard();
    const server = createServer(
      protect(g, need, async (req, res) => {
        const call = calls[req.url ?? ''];
        if (!call) return void res.writeHead(404).end();
        const r = await call();
        json(res, r.status, r.body);
      }),
    );
    bases.node = await listenLoopback(server);
    closers.push(() => closeServer(server));
  }
});

after(async () => {
  for (const close of closers.reverse()) await close();
  await obo?.close();
  await baton?.close();
});

for (const adapter of ['express', 'fastify', 'hono', 'node'] as const) {
  describe(`Original API on ${adapter} → Downstream API, against a live Baton`, () => {
    const call = (path: string, token: string, traceparent?: string) =>
      fetch(`${bases[adapter]}${path}`, { headers: { authorization: `Bearer ${token}`, ...(traceparent ? { traceparent } : {}) } });

    test(`${adapter}: the call reaches the Downstream API on behalf of the user, traceparent passed on`, async () => {
      const token = await baton.userToken();
      const traceparent = newTraceparent();
      baton.reset();
      seenTraceparents.length = 0;
      const res = await call('/read', token, traceparent);
      assert.equal(res.status, 200);
      assert.deepEqual(await res.json(), { user: payloadOf(token).oid, clientId: 'tasks-api', scopes: ['Docs.Read'], chain: ['tasks-api'] });
      assert.deepEqual(seenTraceparents, [traceparent]);
      const [exchange, ...more] = baton.exchanges();
      assert.equal(more.length, 0);
      assert.equal(exchange?.decision, 'allow');
      assert.equal(exchange?.traceparent, traceparent, "Baton's audit event is in the same trace");
    });

    test(`${adapter}: interaction_required from Baton (Docs.Write needs MFA) → 401 insufficient_claims with Baton's claims`, async () => {
      const token = await baton.userToken(); // password only
      baton.reset();
      seenTraceparents.length = 0;
      const res = await call('/write', token);
      assert.equal(res.status, 401);
      const header = res.headers.get('www-authenticate');
      assert.match(header ?? '', /^Bearer realm="", error="insufficient_claims", error_description="[^"]+", claims="[A-Za-z0-9+/]+=*"$/);
      assert.deepEqual(challengeClaims(header), MFA_CLAIMS);
      assert.equal(res.headers.get('cache-control'), 'no-store');
      assert.deepEqual(seenTraceparents, [], 'the Downstream API was never called');
      assert.deepEqual(baton.exchanges().map((e) => [e.decision, e.rule]), [['refuse', 'conditional-access']]);

      // After the step-up (a token whose sign-in had MFA), the same call goes through.
      const stepped = await baton.userToken({ amr: ['pwd', 'mfa'] });
      const again = await call('/write', stepped);
      assert.equal(again.status, 201);
    });

    test(`${adapter}: a claims challenge from the Downstream API → retried once at Baton, which applies it, then the same 401 to the caller`, async () => {
      // Password only: Baton applies the challenge passed on (rule claims-challenge) and refuses the
      // retry, so the Downstream API is called once and the caller gets the challenge to step up with.
      const token = await baton.userToken();
      baton.reset();
      seenTraceparents.length = 0;
      const res = await call('/sensitive', token);
      assert.equal(res.status, 401);
      const header = res.headers.get('www-authenticate');
      assert.match(header ?? '', /error="insufficient_claims"/);
      assert.deepEqual(challengeClaims(header), SENSITIVE_CLAIMS);
      assert.equal(seenTraceparents.length, 1, 'the Downstream API was called once: Baton refused the token asked for with the claims');
      assert.deepEqual(baton.exchanges().map((e) => [e.decision, e.rule]), [['allow', 'issue'], ['refuse', 'claims-challenge']]);

      // After an MFA sign-in Baton meets the challenge and issues a fresh token (forceRefresh with the
      // claims); this Downstream API still wants an acrs claim no Baton token carries: the same 401.
      const stepped = await baton.userToken({ amr: ['pwd', 'mfa'] });
      baton.reset();
      seenTraceparents.length = 0;
      const again = await call('/sensitive', stepped);
      assert.equal(again.status, 401);
      assert.deepEqual(challengeClaims(again.headers.get('www-authenticate')), SENSITIVE_CLAIMS);
      assert.equal(seenTraceparents.length, 2, 'the Downstream API was called twice: once, then with a token asked for with the claims');
      assert.equal(baton.exchanges((e) => e.decision === 'allow').length, 2, 'the first token, then a fresh one (forceRefresh with the claims)');
    });
  });
}

/**
 * Every adapter (Express, Fastify, Hono, node:http) against a live Baton, over real HTTP, with
 * tokens Baton minted: a user's token exchanged On-Behalf-Of by the Tasks API (so it carries `act`),
 * a token addressed to another API, and an app-only token from client credentials (the indexer).
 *
 * Each adapter serves the same small Docs-API-like app (audience `docs-api` / `api://docs`):
 *
 *   GET /me     scopes any Docs.Read                          → the Principal, as JSON
 *   GET /write  scopes all Docs.Write
 *   GET /index  app role Docs.ReadAll, allowAppOnly (applications only)
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import express from 'express';
import Fastify, { type FastifyInstance } from 'fastify';
import { Hono } from 'hono';
import { createGuard, currentPrincipal, type Principal, type Requirement } from '../src/index.ts';
import { getAuth, requireAuth as expressAuth } from '../src/express.ts';
import { batonAuth, requireAuth as fastifyAuth } from '../src/fastify.ts';
import { requireAuth as honoAuth, type AuthEnv } from '../src/hono.ts';
import { protect } from '../src/node.ts';
import { obo } from '../../server/test/obo-fixtures.ts';
import { closeServer, listenLoopback, serveLoopback, payloadOf, startLiveBaton, type LiveBaton } from './fixtures/live-baton.ts';

const AUDIENCE = ['docs-api', 'api://docs'];
const ROUTES: Record<'me' | 'write' | 'index', Requirement> = {
  me: { scopes: { any: ['Docs.Read'] } },
  write: { scopes: { all: ['Docs.Write'] } },
  index: { roles: { any: ['Docs.ReadAll'] }, allowAppOnly: true },
};

function describePrincipal(p: Principal | null | undefined): Record<string, unknown> {
  return {
    userId: p?.userId,
    tenantId: p?.tenantId,
    subject: p?.subject,
    clientId: p?.clientId,
    scopes: p?.scopes,
    roles: p?.roles,
    appOnly: p?.appOnly,
    chain: p?.chain,
    // The AsyncLocalStorage context downstream() and the confused-deputy check rely on.
    context: currentPrincipal()?.userId ?? null,
  };
}

let baton: LiveBaton;
const bases: Record<string, string> = {};
const closers: Array<() => Promise<void>> = [];

/** Tokens minted by Baton. */
let alice: { tasks: string; docsViaObo: string; docsSignIn: string; indexer: string };

before(async () => {
  baton = await startLiveBaton();
  const tasks = await baton.userToken();
  const exchanged = await obo(baton.server, 'tasks-api', tasks, 'api://docs/Docs.Read');
  assert.equal(exchanged.status, 200, JSON.stringify(exchanged.body));
  alice = {
    tasks,
    docsViaObo: exchanged.body.access_token,
    // As if alice had signed in to a client of the Docs API directly: no `act`.
    docsSignIn: await baton.userToken({ api: 'api://docs', clientId: 'tasks-web', scopes: ['Docs.Read', 'Docs.Write'] }),
    indexer: await baton.appToken('indexer', 'api://docs/.default'),
  };
  const guard = () => createGuard({ authority: baton.authority, audience: AUDIENCE });

  // Express
  {
    const app = express();
    app.get('/me', expressAuth(guard(), ROUTES.me), (req, res) => void res.json(describePrincipal(getAuth(req))));
    app.get('/write', expressAuth(guard(), ROUTES.write), (_req, res) => void res.json({ ok: true }));
    app.get('/index', expressAuth(guard(), ROUTES.index), (req, res) => void res.json(describePrincipal(getAuth(req))));
    const server = createServer(app);
    bases.express = await listenLoopback(server);
    closers.push(() => closeServer(server));
  }
  // Fastify
  {
    const g = guard();
    const app: FastifyInstance = Fastify({ logger: false });
    await app.register(batonAuth, { guard: g });
    app.get('/me', { onRequest: fastifyAuth(g, ROUTES.me) }, async (request) => describePrincipal(request.auth));
    app.get('/write', { onRequest: app.requireAuth(ROUTES.write) }, async () => ({ ok: true }));
    app.get('/index', { onRequest: fastifyAuth(g, ROUTES.index) }, async (request) => describePrincipal(request.auth));
    bases.fastify = await app.listen({ port: 0, host: '127.0.0.1' });
    closers.push(() => app.close());
  }
  // Hono
  {
    const app = new Hono<AuthEnv>();
    app.get('/me', honoAuth(guard(), ROUTES.me), (c) => c.json(describePrincipal(c.get('auth'))));
    app.get('/write', honoAuth(guard(), ROUTES.write), (c) => c.json({ ok: true }));
    app.get('/index', honoAuth(guard(), ROUTES.index), (c) => c.json(describePrincipal(c.get('auth'))));
    const hono = await serveLoopback(app.fetch);
    bases.hono = hono.base;
    closers.push(() => closeServer(hono.server));
  }
  // node:http
  {
    const g = guard();
    const json = (res: import('node:http').ServerResponse, body: unknown) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    const handlers: Record<string, ReturnType<typeof protect>> = {
      '/me': protect(g, ROUTES.me, (_req, res, p) => json(res, describePrincipal(p))),
      '/write': protect(g, ROUTES.write, (_req, res) => json(res, { ok: true })),
      '/index': protect(g, ROUTES.index, (_req, res, p) => json(res, describePrincipal(p))),
    };
    const server = createServer((req, res) => {
      const handler = handlers[req.url ?? ''];
      if (handler) void handler(req, res);
      else res.writeHead(404).end();
    });
    bases.node = await listenLoopback(server);
    closers.push(() => closeServer(server));
  }
});

after(async () => {
  for (const close of closers.reverse()) await close();
  await baton?.close();
});

const get = (base: string, path: string, token?: string) => fetch(`${base}${path}`, token === undefined ? {} : { headers: { authorization: `Bearer ${token}` } });

for (const adapter of ['express', 'fastify', 'hono', 'node'] as const) {
  describe(`${adapter} against a live Baton`, () => {
    const base = () => bases[adapter] as string;

    test(`${adapter}: a token Baton exchanged On-Behalf-Of → 200 with the right Principal`, async () => {
      const res = await get(base(), '/me', alice.docsViaObo);
      assert.equal(res.status, 200);
      const body = (await res.json()) as Record<string, unknown>;
      const user = payloadOf(alice.tasks);
      const docs = payloadOf(alice.docsViaObo);
      assert.deepEqual(body, {
        userId: user.oid,
        tenantId: user.tid,
        subject: docs.sub,
        clientId: 'tasks-api',
        scopes: ['Docs.Read'],
        roles: [],
        appOnly: false,
        chain: [{ sub: 'tasks-api', client_id: 'tasks-api' }],
        context: user.oid,
      });
      // Pairwise subjects: the Docs API sees another `sub` than the Tasks API for the same user.
      assert.notEqual(docs.sub, user.sub);
    });

    test(`${adapter}: a token from a sign-in (no exchange) → 200, empty chain, the signing-in client`, async () => {
      const res = await get(base(), '/me', alice.docsSignIn);
      assert.equal(res.status, 200);
      const body = (await res.json()) as Record<string, unknown>;
      assert.equal(body.clientId, 'tasks-web');
      assert.deepEqual(body.scopes, ['Docs.Read', 'Docs.Write']);
      assert.deepEqual(body.chain, []);
    });

    test(`${adapter}: a token addressed to another API (the Tasks API's) → 401 invalid_token`, async () => {
      const res = await get(base(), '/me', alice.tasks);
      assert.equal(res.status, 401);
      const challenge = res.headers.get('www-authenticate') ?? '';
      assert.match(challenge, /^Bearer realm="docs-api", error="invalid_token", error_description="[^"]*audience/i);
      assert.equal(((await res.json()) as { error: string }).error, 'invalid_token');
    });

    test(`${adapter}: no token → 401 with a bare challenge (RFC 6750 §3.1)`, async () => {
      const res = await get(base(), '/me');
      assert.equal(res.status, 401);
      assert.equal(res.headers.get('www-authenticate'), 'Bearer realm="docs-api"');
    });

    test(`${adapter}: Docs.Read where Docs.Write is required → 403 insufficient_scope with scope=`, async () => {
      const res = await get(base(), '/write', alice.docsViaObo);
      assert.equal(res.status, 403);
      assert.equal(res.headers.get('www-authenticate'), 'Bearer realm="docs-api", error="insufficient_scope", error_description="The token lacks every scope of: Docs.Write.", scope="Docs.Write"');
      assert.deepEqual(await res.json(), { error: 'insufficient_scope', error_description: 'The token lacks every scope of: Docs.Write.', scope: 'Docs.Write' });
      // The sign-in token holds Docs.Write.
      assert.equal((await get(base(), '/write', alice.docsSignIn)).status, 200);
    });

    test(`${adapter}: the indexer's app-only token (client credentials) is refused on a user's route`, async () => {
      const res = await get(base(), '/me', alice.indexer);
      assert.equal(res.status, 403);
      assert.match(res.headers.get('www-authenticate') ?? '', /error="insufficient_scope", error_description="This endpoint acts for a signed-in user; an app-only token is not accepted\."/);
    });

    test(`${adapter}: …and accepted where allowAppOnly with the app role Docs.ReadAll; a user is refused there`, async () => {
      const res = await get(base(), '/index', alice.indexer);
      assert.equal(res.status, 200);
      const body = (await res.json()) as Record<string, unknown>;
      assert.equal(body.appOnly, true);
      assert.equal(body.clientId, 'indexer');
      assert.deepEqual(body.roles, ['Docs.ReadAll']);
      assert.deepEqual(body.scopes, []);
      assert.deepEqual(body.chain, []);
      const user = await get(base(), '/index', alice.docsViaObo);
      assert.equal(user.status, 403);
      assert.match(user.headers.get('www-authenticate') ?? '', /a delegated token is not accepted/);
    });
  });
}

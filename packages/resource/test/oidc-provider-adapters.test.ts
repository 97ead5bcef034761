/**
 * Every adapter (Express, Fastify, Hono, node:http) against an independent issuer, over real HTTP:
 * panva's oidc-provider started on 127.0.0.1 (fixtures/oidc-provider.ts), issuing RFC 9068 JWT access
 * tokens to the `indexer` client by client credentials, with resource indicators.
 *
 * oidc-provider's client-credentials tokens are app-only (`sub` is the client) and carry the granted
 * permissions in `scope`, not in app roles. The SDK reads them as application permissions: a route
 * states them with `roles` and `allowAppOnly: true`, and for an app-only token `roles` is satisfied
 * by its granted `scope` (guard.ts, `authorize`). Each adapter serves the same small API (audience
 * `https://api.test/tasks`):
 *
 *   GET /read   app permission any api:read, allowAppOnly   → the Principal, as JSON
 *   GET /write  app permission all api:write, allowAppOnly  → the Principal, as JSON
 *   GET /user   scopes any api:read (a user's route, app-only tokens refused)
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type ServerResponse } from 'node:http';
import express from 'express';
import Fastify, { type FastifyInstance } from 'fastify';
import { Hono } from 'hono';
import { createGuard, currentPrincipal, runWithPrincipal, type Principal, type Requirement } from '../src/index.ts';
import { getAuth, requireAuth as expressAuth } from '../src/express.ts';
import { batonAuth, requireAuth as fastifyAuth } from '../src/fastify.ts';
import { requireAuth as honoAuth, type AuthEnv } from '../src/hono.ts';
import { authenticate } from '../src/node.ts';
import { closeServer, listenLoopback, serveLoopback } from './fixtures/live-baton.ts';
import { CLIENT_ID, OTHER_RESOURCE, RESOURCE, startOidcProvider, type OidcProviderIssuer } from './fixtures/oidc-provider.ts';

const REALM = `Bearer realm="${RESOURCE}"`;
const ROUTES: Record<'read' | 'write' | 'user', Requirement> = {
  read: { roles: { any: ['api:read'] }, allowAppOnly: true },
  write: { roles: { all: ['api:write'] }, allowAppOnly: true },
  user: { scopes: { any: ['api:read'] } },
};

function describePrincipal(p: Principal | null | undefined): Record<string, unknown> {
  return {
    subject: p?.subject,
    clientId: p?.clientId,
    tenantId: p?.tenantId ?? null,
    scopes: p?.scopes,
    roles: p?.roles,
    appOnly: p?.appOnly,
    chain: p?.chain,
    // The AsyncLocalStorage context downstream() relies on.
    context: currentPrincipal()?.clientId ?? null,
  };
}

let op: OidcProviderIssuer;
const bases: Record<string, string> = {};
const closers: Array<() => Promise<void>> = [];

/** Tokens minted by oidc-provider. */
let tokens: { read: string; readWrite: string; otherResource: string };

before(async () => {
  op = await startOidcProvider();
  closers.push(() => op.close());
  tokens = {
    read: await op.token('api:read'),
    readWrite: await op.token('api:read api:write'),
    // Signed by the same issuer with the same key, but addressed to another API.
    otherResource: await op.token('api:read api:write', OTHER_RESOURCE),
  };
  const guard = () => createGuard({ authority: op.issuer, audience: RESOURCE });

  // Express
  {
    const app = express();
    for (const route of ['read', 'write', 'user'] as const) {
      app.get(`/${route}`, expressAuth(guard(), ROUTES[route]), (req, res) => void res.json(describePrincipal(getAuth(req))));
    }
    const server = createServer(app);
    bases.express = await listenLoopback(server);
    closers.push(() => closeServer(server));
  }
  // Fastify
  {
    const g = guard();
    const app: FastifyInstance = Fastify({ logger: false });
    await app.register(batonAuth, { guard: g });
    app.get('/read', { onRequest: fastifyAuth(g, ROUTES.read) }, async (request) => describePrincipal(request.auth));
    app.get('/write', { onRequest: app.requireAuth(ROUTES.write) }, async (request) => describePrincipal(request.auth));
    app.get('/user', { onRequest: app.requireAuth(ROUTES.user) }, async (request) => describePrincipal(request.auth));
    bases.fastify = await app.listen({ port: 0, host: '127.0.0.1' });
    closers.push(() => app.close());
  }
  // Hono
  {
    const app = new Hono<AuthEnv>();
    for (const route of ['read', 'write', 'user'] as const) {
      app.get(`/${route}`, honoAuth(guard(), ROUTES[route]), (c) => c.json(describePrincipal(c.get('auth'))));
    }
    const hono = await serveLoopback(app.fetch);
    bases.hono = hono.base;
    closers.push(() => closeServer(hono.server));
  }
  // node:http, with authenticate() (which writes the refusals itself)
  {
    const g = guard();
    const json = (res: ServerResponse, body: unknown) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    const server = createServer((req, res) => {
      const route = (req.url ?? '').slice(1);
      const requirement = Object.hasOwn(ROUTES, route) ? ROUTES[route as keyof typeof ROUTES] : undefined;
      if (!requirement) return void res.writeHead(404).end();
      void (async () => {
        const principal = await authenticate(req, res, g, requirement);
        if (principal === undefined) return;
        runWithPrincipal(principal, () => json(res, describePrincipal(principal)));
      })().catch(() => {
        if (!res.headersSent) res.writeHead(500).end();
      });
    });
    bases.node = await listenLoopback(server);
    closers.push(() => closeServer(server));
  }
});

after(async () => {
  for (const close of closers.reverse()) await close();
});

const get = (base: string, path: string, token?: string) => fetch(`${base}${path}`, token === undefined ? {} : { headers: { authorization: `Bearer ${token}` } });

for (const adapter of ['express', 'fastify', 'hono', 'node'] as const) {
  describe(`${adapter} against oidc-provider`, () => {
    const base = () => bases[adapter] as string;

    test(`${adapter}: an oidc-provider client-credentials token on an allowAppOnly route → 200 with the Principal`, async () => {
      const res = await get(base(), '/read', tokens.read);
      assert.equal(res.status, 200);
      assert.deepEqual(await res.json(), {
        subject: CLIENT_ID,
        clientId: CLIENT_ID,
        tenantId: null,
        scopes: ['api:read'],
        roles: [],
        appOnly: true,
        chain: [],
        context: CLIENT_ID,
      });
      // A token granted both permissions passes the route requiring api:write.
      const write = await get(base(), '/write', tokens.readWrite);
      assert.equal(write.status, 200);
      assert.deepEqual(((await write.json()) as { scopes: string[] }).scopes, ['api:read', 'api:write']);
    });

    test(`${adapter}: no token → 401 with a bare challenge`, async () => {
      const res = await get(base(), '/read');
      assert.equal(res.status, 401);
      assert.equal(res.headers.get('www-authenticate'), REALM);
    });

    test(`${adapter}: a token oidc-provider signed for another resource → 401 invalid_token`, async () => {
      const res = await get(base(), '/read', tokens.otherResource);
      assert.equal(res.status, 401);
      assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer realm="https:\/\/api\.test\/tasks", error="invalid_token", error_description="[^"]*audience/i);
      assert.equal(((await res.json()) as { error: string }).error, 'invalid_token');
    });

    test(`${adapter}: api:read where api:write is required → 403 insufficient_scope`, async () => {
      const res = await get(base(), '/write', tokens.read);
      assert.equal(res.status, 403);
      const description = 'The application lacks an app role this endpoint requires (api:write).';
      assert.equal(res.headers.get('www-authenticate'), `${REALM}, error="insufficient_scope", error_description="${description}"`);
      assert.deepEqual(await res.json(), { error: 'insufficient_scope', error_description: description });
    });

    test(`${adapter}: the app-only token on a user's route (scopes, no allowAppOnly) → 403 insufficient_scope`, async () => {
      const res = await get(base(), '/user', tokens.readWrite);
      assert.equal(res.status, 403);
      assert.match(res.headers.get('www-authenticate') ?? '', /error="insufficient_scope", error_description="This endpoint acts for a signed-in user; an app-only token is not accepted\."/);
    });
  });
}

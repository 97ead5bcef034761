/** Hono middleware over real HTTP (@hono/node-server). */
import { after, before, describe } from 'node:test';
import type { AddressInfo } from 'node:net';
import { serve, type ServerType } from '@hono/node-server';
import { Hono } from 'hono';
import { createGuard, type Principal } from '../src/index.ts';
import { requireAuth, type AuthEnv } from '../src/hono.ts';
import { adapterSuite, describePrincipal, routes, throwChallenge } from './fixtures/adapter-suite.ts';
import { startIssuer, type TestIssuer } from './fixtures/issuer.ts';

let issuer: TestIssuer;
let server: ServerType;
let base: string;

before(async () => {
  issuer = await startIssuer();
  const guard = createGuard({ authority: issuer.authority, audience: issuer.audience });
  const app = new Hono<AuthEnv>();
  app.get('/me', requireAuth(guard, routes.me), (c) => {
    const auth: Principal = c.get('auth'); // typed through AuthEnv
    return c.json(describePrincipal(auth));
  });
  app.get('/admin', requireAuth(guard, routes.admin), (c) => c.json({ ok: true }));
  app.get('/docs', requireAuth(guard, routes.docs), (c) => c.json(describePrincipal(c.get('auth'))));
  app.post('/echo', requireAuth(guard, routes.echo), async (c) => {
    const body: unknown = await c.req.json();
    return c.json({ body, context: describePrincipal(c.get('auth')).context });
  });
  app.get('/challenge', requireAuth(guard, routes.challenge), () => throwChallenge());
  app.onError((_err, c) => c.text('Internal Server Error', 500)); // quiet: the middleware answers GuardErrors
  await new Promise<void>((resolve) => {
    server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1', overrideGlobalObjects: false }, () => resolve());
  });
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(async () => {
  await new Promise<void>((r) => server.close(() => r()));
  await issuer.close();
});

describe('hono', () => adapterSuite('hono', () => issuer, () => base));

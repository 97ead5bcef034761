/** Express adapter over real HTTP. */
import { after, before, describe } from 'node:test';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import express from 'express';
import { createGuard } from '../src/index.ts';
import { authErrorHandler, getAuth, requireAuth } from '../src/express.ts';
import { adapterSuite, describePrincipal, routes, throwChallenge } from './fixtures/adapter-suite.ts';
import { startIssuer, type TestIssuer } from './fixtures/issuer.ts';

let issuer: TestIssuer;
let server: Server;
let base: string;

before(async () => {
  issuer = await startIssuer();
  const guard = createGuard({ authority: issuer.authority, audience: issuer.audience });
  const app = express();
  app.use(express.json());
  app.get('/me', requireAuth(guard, routes.me), (req, res) => {
    res.json(describePrincipal(getAuth(req)));
  });
  app.get('/admin', requireAuth(guard, routes.admin), (_req, res) => {
    res.json({ ok: true });
  });
  app.get('/docs', requireAuth(guard, routes.docs), (req, res) => {
    res.json(describePrincipal(getAuth(req)));
  });
  app.post('/echo', requireAuth(guard, routes.echo), (req, res) => {
    res.json({ body: req.body, context: describePrincipal(getAuth(req)).context });
  });
  app.get('/challenge', requireAuth(guard, routes.challenge), async () => {
    await Promise.resolve();
    throwChallenge();
  });
  app.use(authErrorHandler());
  server = app.listen(0, '127.0.0.1');
  await new Promise<void>((r) => server.once('listening', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(async () => {
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
  await issuer.close();
});

describe('express', () => adapterSuite('express', () => issuer, () => base));

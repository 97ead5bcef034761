/** Fastify plugin and hook over real HTTP. */
import { after, before, describe } from 'node:test';
import Fastify, { type FastifyInstance } from 'fastify';
import { createGuard } from '../src/index.ts';
import { batonAuth, requireAuth } from '../src/fastify.ts';
import { adapterSuite, describePrincipal, routes, throwChallenge } from './fixtures/adapter-suite.ts';
import { startIssuer, type TestIssuer } from './fixtures/issuer.ts';

let issuer: TestIssuer;
let app: FastifyInstance;
let base: string;

before(async () => {
  issuer = await startIssuer();
  const guard = createGuard({ authority: issuer.authority, audience: issuer.audience });
  app = Fastify({ logger: false });
  await app.register(batonAuth, { guard });
  // Routes registered in an encapsulated child context still see the decoration and the hook.
  await app.register(async (child) => {
    child.get('/me', { onRequest: child.requireAuth(routes.me) }, async (request) => describePrincipal(request.auth));
    child.get('/admin', { onRequest: requireAuth(guard, routes.admin) }, async () => ({ ok: true }));
    child.get('/docs', { onRequest: requireAuth(guard, routes.docs) }, async (request) => describePrincipal(request.auth));
    child.post('/echo', { onRequest: requireAuth(guard, routes.echo) }, async (request) => ({ body: request.body, context: describePrincipal(request.auth).context }));
    child.get('/challenge', { onRequest: requireAuth(guard, routes.challenge) }, async () => throwChallenge());
  });
  base = await app.listen({ port: 0, host: '127.0.0.1' });
});

after(async () => {
  await app.close();
  await issuer.close();
});

describe('fastify', () => adapterSuite('fastify', () => issuer, () => base));

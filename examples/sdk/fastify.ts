// An Original API on Fastify: accepts the user's token and calls the Docs API on the user's behalf.
import Fastify from 'fastify';
import { createDownstream, createGuard, createOboClient } from '@baton/resource';
import { batonAuth, requireAuth } from '@baton/resource/fastify';

const authority = process.env.AUTHORITY ?? 'https://localhost:8443/contoso/v2.0';
// Accepts only tokens the tenant issued for this API (its client id or its identifier URI).
const guard = createGuard({ authority, audience: ['tasks-api', 'api://tasks'] });
// On-Behalf-Of: trades the caller's token for one addressed to the Docs API (cached, single flight).
const obo = createOboClient({ authority, clientId: 'tasks-api', credential: { clientSecret: process.env.CLIENT_SECRET ?? '' } });
const docs = createDownstream({ obo, scopes: ['api://docs/Docs.Read'], baseUrl: process.env.DOCS_URL ?? 'http://127.0.0.1:7002' });

const app = Fastify();
await app.register(batonAuth, { guard }); // request.auth, and the request context downstream() uses
app.get('/documents', { onRequest: requireAuth(guard, { scopes: { any: ['Tasks.ReadWrite'] } }) }, async (request, reply) => {
  const upstream = await docs().fetch('/documents'); // on behalf of this request's caller
  return reply.code(upstream.ok ? 200 : 502).send({ user: request.auth?.userId, documents: await upstream.json() });
});
await app.listen({ port: Number(process.env.PORT ?? 3000), host: '127.0.0.1' });

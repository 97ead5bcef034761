// An Original API on Hono: accepts the user's token and calls the Docs API on the user's behalf.
import { serve } from '@hono/node-server';
import { Hono } from 'hono';
import { createDownstream, createGuard, createOboClient } from '@baton/resource';
import { authErrorResponse, requireAuth, type AuthEnv } from '@baton/resource/hono';

const authority = process.env.AUTHORITY ?? 'https://localhost:8443/contoso/v2.0';
// Accepts only tokens the tenant issued for this API (its client id or its identifier URI).
const guard = createGuard({ authority, audience: ['tasks-api', 'api://tasks'] });
// On-Behalf-Of: trades the caller's token for one addressed to the Docs API (cached, single flight).
const obo = createOboClient({ authority, clientId: 'tasks-api', credential: { clientSecret: process.env.CLIENT_SECRET ?? '' } });
const docs = createDownstream({ obo, scopes: ['api://docs/Docs.Read'], baseUrl: process.env.DOCS_URL ?? 'http://127.0.0.1:7002' });

const app = new Hono<AuthEnv>();
app.get('/documents', requireAuth(guard, { scopes: { any: ['Tasks.ReadWrite'] } }), async (c) => {
  const upstream = await docs().fetch('/documents'); // on behalf of this request's caller
  return c.json({ user: c.get('auth').userId, documents: await upstream.json() }, upstream.ok ? 200 : 502);
});
app.onError((error, c) => authErrorResponse(error) ?? c.text('Internal Server Error', 500)); // claims challenges → 401
serve({ fetch: app.fetch, port: Number(process.env.PORT ?? 3000), hostname: '127.0.0.1' });

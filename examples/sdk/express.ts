// An Original API on Express: accepts the user's token and calls the Docs API on the user's behalf.
import express from 'express';
import { createDownstream, createGuard, createOboClient } from '@baton/resource';
import { authErrorHandler, getAuth, requireAuth } from '@baton/resource/express';

const authority = process.env.AUTHORITY ?? 'https://localhost:8443/contoso/v2.0';
// Accepts only tokens the tenant issued for this API (its client id or its identifier URI).
const guard = createGuard({ authority, audience: ['tasks-api', 'api://tasks'] });
// On-Behalf-Of: trades the caller's token for one addressed to the Docs API (cached, single flight).
const obo = createOboClient({ authority, clientId: 'tasks-api', credential: { clientSecret: process.env.CLIENT_SECRET ?? '' } });
const docs = createDownstream({ obo, scopes: ['api://docs/Docs.Read'], baseUrl: process.env.DOCS_URL ?? 'http://127.0.0.1:7002' });

const app = express();
app.get('/documents', requireAuth(guard, { scopes: { any: ['Tasks.ReadWrite'] } }), async (req, res) => {
  const upstream = await docs().fetch('/documents'); // on behalf of this request's caller
  res.status(upstream.ok ? 200 : 502).json({ user: getAuth(req).userId, documents: await upstream.json() });
});
app.use(authErrorHandler()); // a claims challenge from downstream → the 401 the client steps up with
app.listen(Number(process.env.PORT ?? 3000), '127.0.0.1');

// An Original API on plain node:http: accepts the user's token and calls the Docs API on the user's behalf.
import { createServer } from 'node:http';
import { createDownstream, createGuard, createOboClient } from '@baton/resource';
import { protect } from '@baton/resource/node';

const authority = process.env.AUTHORITY ?? 'https://localhost:8443/contoso/v2.0';
// Accepts only tokens the tenant issued for this API (its client id or its identifier URI).
const guard = createGuard({ authority, audience: ['tasks-api', 'api://tasks'] });
// On-Behalf-Of: trades the caller's token for one addressed to the Docs API (cached, single flight).
const obo = createOboClient({ authority, clientId: 'tasks-api', credential: { clientSecret: process.env.CLIENT_SECRET ?? '' } });
const docs = createDownstream({ obo, scopes: ['api://docs/Docs.Read'], baseUrl: process.env.DOCS_URL ?? 'http://127.0.0.1:7002' });

// protect() answers 401/403 itself, and turns a claims challenge thrown by the handler into a 401.
const server = createServer(protect(guard, { scopes: { any: ['Tasks.ReadWrite'] } }, async (req, res, principal) => {
  if (req.method !== 'GET' || req.url !== '/documents') return void res.writeHead(404).end();
  const upstream = await docs().fetch('/documents'); // on behalf of this request's caller
  res.writeHead(upstream.ok ? 200 : 502, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ user: principal.userId, documents: await upstream.json() }));
}));
server.listen(Number(process.env.PORT ?? 3000), '127.0.0.1');

/**
 * A two-API chain for the chain section, built only from the resource SDK's public API, each API
 * a plain `node:http` server (the SDK's `protect` adapter), both in this process:
 *
 *   client ──► Tasks API ──► Docs API
 *
 * Three routes on Tasks API, each calling the same route on Docs API over a keep-alive connection:
 *   /off/documents    no authentication anywhere: the baseline
 *   /warm/documents   guard (Tasks.ReadWrite) → OBO for api://docs/Docs.Read from the client's
 *                     cache → Docs API's guard (Docs.Read)
 *   /cold/documents   the same with `forceRefresh`: a real exchange at the token service per call
 *
 * Why not the demo (examples/chain): it has no way to switch authentication off, and a baseline
 * without auth is what the per-hop overhead is measured against. These APIs do nothing but the auth
 * work and a small JSON answer, so the difference is the SDK's cost.
 *
 * Options (JSON in argv[2]): { authority, ca }. Ready: { tasks, docs } base URLs.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Agent, request } from 'node:http';
import { createGuard, createOboClient } from '@baton/resource';
import { protect } from '@baton/resource/node';
import { installControl } from './control.ts';

interface ChainOptions {
  authority: string;
  ca: string;
}

const options = JSON.parse(process.argv[2] ?? '{}') as ChainOptions;
const servers: ReturnType<typeof createServer>[] = [];
installControl(() => {
  for (const server of servers) server.closeAllConnections();
  process.exit(0);
});

const DOCUMENTS = JSON.stringify({ documents: [{ id: 'd1', title: 'Quarterly plan' }, { id: 'd2', title: 'Team notes' }] });
const agent = new Agent({ keepAlive: true, maxSockets: 64 });

/** GET on the Docs API over the keep-alive agent; resolves with the status and body. */
function get(url: string, authorization?: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent, headers: authorization ? { authorization } : {} }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

function send(res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
}

function listen(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<string> {
  const server = createServer({ keepAliveTimeout: 72_000 }, handler);
  servers.push(server);
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}`)));
}

async function main(): Promise<void> {
  const tls = { ca: options.ca };
  const docsGuard = createGuard({ authority: options.authority, audience: ['docs-api', 'api://docs'], ...tls });
  const tasksGuard = createGuard({ authority: options.authority, audience: ['tasks-api', 'api://tasks'], ...tls });
  const obo = createOboClient({ authority: options.authority, clientId: 'tasks-api', credential: { clientSecret: 'tasks-api-demo-secret-for-local-use-only' }, ...tls });
  await Promise.all([docsGuard.ready(), tasksGuard.ready()]);

  const docsProtected = protect(docsGuard, { scopes: { all: ['Docs.Read'] } }, (_req, res) => send(res, 200, DOCUMENTS));
  const docs = await listen((req, res) => {
    if (req.url === '/off/documents') return send(res, 200, DOCUMENTS);
    if (req.url === '/on/documents') return void docsProtected(req, res);
    send(res, 404, '{}');
  });

  const downstream = (forceRefresh: boolean) =>
    protect(tasksGuard, { scopes: { all: ['Tasks.ReadWrite'] } }, async (_req, res, principal) => {
      const token = await obo.onBehalfOf(principal, ['api://docs/Docs.Read'], forceRefresh ? { forceRefresh: true } : {});
      const answer = await get(`${docs}/on/documents`, `Bearer ${token.accessToken}`);
      send(res, answer.status === 200 ? 200 : 502, answer.body);
    });
  const warm = downstream(false);
  const cold = downstream(true);
  const tasks = await listen((req, res) => {
    if (req.url === '/off/documents') {
      get(`${docs}/off/documents`).then(
        (answer) => send(res, answer.status === 200 ? 200 : 502, answer.body),
        () => send(res, 502, '{}'),
      );
      return;
    }
    if (req.url === '/warm/documents') return void warm(req, res);
    if (req.url === '/cold/documents') return void cold(req, res);
    send(res, 404, '{}');
  });
  process.stdout.write(`${JSON.stringify({ ready: { tasks, docs } })}\n`);
}

main().catch((error: Error) => {
  process.stdout.write(`${JSON.stringify({ error: error.stack ?? error.message })}\n`);
  process.exit(1);
});

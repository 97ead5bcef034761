/** node:http helpers over real HTTP. */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createGuard, runWithPrincipal, type Guard } from '../src/index.ts';
import { authenticate, protect } from '../src/node.ts';
import { adapterSuite, describePrincipal, routes, throwChallenge } from './fixtures/adapter-suite.ts';
import { startIssuer, type TestIssuer } from './fixtures/issuer.ts';

let issuer: TestIssuer;
let guard: Guard;
let server: Server;
let base: string;

async function readBody(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

before(async () => {
  issuer = await startIssuer();
  guard = createGuard({ authority: issuer.authority, audience: issuer.audience });
  const json = (res: import('node:http').ServerResponse, body: unknown) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  const handlers: Record<string, (req: IncomingMessage, res: import('node:http').ServerResponse) => unknown> = {
    // authenticate(): the handler runs the rest inside runWithPrincipal itself.
    'GET /me': async (req, res) => {
      const principal = await authenticate(req, res, guard, routes.me);
      if (!principal) return;
      runWithPrincipal(principal, () => json(res, describePrincipal(principal)));
    },
    'GET /admin': protect(guard, routes.admin, (_req, res) => json(res, { ok: true })),
    'GET /docs': protect(guard, routes.docs, (_req, res, principal) => json(res, describePrincipal(principal))),
    'POST /echo': protect(guard, routes.echo, async (req, res, principal) => {
      const body = await readBody(req);
      json(res, { body, context: describePrincipal(principal).context });
    }),
    'GET /challenge': protect(guard, routes.challenge, async () => {
      await Promise.resolve();
      throwChallenge();
    }),
  };
  // A larger header limit than Node's 16 KiB default, so the guard's own 16 KiB check is what answers.
  server = createServer({ maxHeaderSize: 64 * 1024 }, (req, res) => {
    const handler = handlers[`${req.method} ${req.url}`];
    if (handler) void handler(req, res);
    else res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(async () => {
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
  await issuer.close();
});

describe('node:http', () => {
  adapterSuite('node:http', () => issuer, () => base);

  test('node:http: an Authorization header over 16 KiB → 400 without parsing', async () => {
    const res = await fetch(`${base}/me`, { headers: { authorization: `Bearer ${'a'.repeat(17 * 1024)}` } });
    assert.equal(res.status, 400);
    assert.match(res.headers.get('www-authenticate') ?? '', /error="invalid_request", error_description="The Authorization header is longer than 16384 bytes\."/);
  });

  test("node:http: behind Node's default header limit the same request gets 431 from Node itself", async () => {
    const plain = createServer(protect(guard, {}, (_req, res) => res.end('unreachable')));
    await new Promise<void>((r) => plain.listen(0, '127.0.0.1', r));
    try {
      const res = await fetch(`http://127.0.0.1:${(plain.address() as AddressInfo).port}/`, { headers: { authorization: `Bearer ${'a'.repeat(17 * 1024)}` } });
      assert.equal(res.status, 431);
    } finally {
      plain.closeAllConnections();
      await new Promise<void>((r) => plain.close(() => r()));
    }
  });
});

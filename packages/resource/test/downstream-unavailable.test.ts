/**
 * A downstream API that does not answer: `docs().fetch` throws `DownstreamUnavailableError`, and
 * each adapter answers the caller 502 with an RFC 9457 problem+json body (not Express's HTML 500
 * page, not Fastify's error JSON, not a bare 500), saying nothing of the internal address.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import Fastify from 'fastify';
import { Hono } from 'hono';
import { serve, type ServerType } from '@hono/node-server';
import { createDownstream, createGuard, createOboClient, DownstreamUnavailableError, runWithPrincipal, type Principal } from '../src/index.ts';
import { authErrorHandler, requireAuth as expressAuth } from '../src/express.ts';
import { batonAuth, requireAuth as fastifyAuth } from '../src/fastify.ts';
import { authErrorResponse, requireAuth as honoAuth, type AuthEnv } from '../src/hono.ts';
import { protect } from '../src/node.ts';
import { startIssuer, type TestIssuer } from './fixtures/issuer.ts';
import { startTokenEndpoint, type TokenEndpoint } from './fixtures/token-endpoint.ts';

const SECRET = 'tasks-api-Test-secret-1';
const PROBLEM = { type: 'about:blank', title: 'Bad Gateway', status: 502, detail: 'An API this request depends on did not answer. Try again later.' };

let issuer: TestIssuer;
let ts: TokenEndpoint;
let downUrl: string;

before(async () => {
  issuer = await startIssuer();
  ts = await startTokenEndpoint({ secrets: { 'tasks-api': SECRET } });
  // A port that was just free: nothing listens there.
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  downUrl = `http://127.0.0.1:${(probe.address() as AddressInfo).port}`;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
});
after(async () => {
  await ts.close();
  await issuer.close();
});

const setup = () => {
  const guard = createGuard({ authority: issuer.authority, audience: issuer.audience });
  const obo = createOboClient({ clientId: 'tasks-api', tokenEndpoint: ts.tokenEndpoint, credential: { clientSecret: SECRET }, logger: { info() {}, warn() {} } });
  const docs = createDownstream({ obo, scopes: ['api://docs/Docs.Read'], baseUrl: downUrl });
  return { guard, docs };
};

test('fetch throws DownstreamUnavailableError with the origin and cause for the log', async () => {
  const { guard, docs } = setup();
  const alice: Principal = await guard.verify(`Bearer ${issuer.token()}`);
  const error = await runWithPrincipal(alice, () => docs().fetch('/documents')).then(
    () => assert.fail('answered'),
    (e: unknown) => e,
  );
  assert.ok(error instanceof DownstreamUnavailableError);
  assert.equal(error.origin, downUrl);
  assert.ok(error.cause instanceof Error);
  assert.deepEqual(error.toProblem(), PROBLEM);
  assert.doesNotMatch(JSON.stringify(error.toProblem()), /127\.0\.0\.1/);
});

async function expect502(url: string): Promise<void> {
  const res = await fetch(url, { headers: { authorization: `Bearer ${issuer.token()}` } });
  assert.equal(res.status, 502);
  assert.match(res.headers.get('content-type') ?? '', /^application\/problem\+json(; charset=utf-8)?$/);
  assert.equal(res.headers.get('cache-control'), 'no-store');
  assert.deepEqual(await res.json(), PROBLEM);
}

const listen = async (server: Server): Promise<string> => {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
};

test('Express: 502 problem+json through authErrorHandler', async () => {
  const { guard, docs } = setup();
  const app = express();
  app.get('/documents', expressAuth(guard), async (_req, res) => {
    res.json(await (await docs().fetch('/documents')).json());
  });
  app.use(authErrorHandler());
  const server = createServer(app);
  try {
    await expect502(`${await listen(server)}/documents`);
  } finally {
    server.close();
  }
});

test('Fastify: 502 problem+json from the plugin, for async and reply-style handlers', async () => {
  const { guard, docs } = setup();
  const app = Fastify();
  await app.register(batonAuth, { guard });
  app.get('/documents', { onRequest: fastifyAuth(guard) }, async () => (await docs().fetch('/documents')).json());
  app.get('/reply', { onRequest: fastifyAuth(guard) }, (_request, reply) => {
    docs().fetch('/documents').then((r) => reply.send(r.status), (e: unknown) => reply.send(e));
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  try {
    const base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
    await expect502(`${base}/documents`);
    // An error handed to reply.send goes through Fastify's own error handling, with the status it carries.
    const viaReply = await fetch(`${base}/reply`, { headers: { authorization: `Bearer ${issuer.token()}` } });
    assert.equal(viaReply.status, 502);
    await viaReply.body?.cancel();
  } finally {
    await app.close();
  }
});

test('Hono: 502 problem+json from requireAuth and from authErrorResponse', async () => {
  const { guard, docs } = setup();
  const app = new Hono<AuthEnv>();
  app.get('/documents', honoAuth(guard), async (c) => c.json(await (await docs().fetch('/documents')).json()));
  app.onError((error, c) => authErrorResponse(error) ?? c.text('Internal Server Error', 500));
  let server: ServerType | undefined;
  const port = await new Promise<number>((resolve) => {
    server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1', overrideGlobalObjects: false }, (info) => resolve(info.port));
  });
  try {
    await expect502(`http://127.0.0.1:${port}/documents`);
  } finally {
    server?.close();
  }
});

test('node:http: 502 problem+json from protect', async () => {
  const { guard, docs } = setup();
  const server = createServer(
    protect(guard, {}, async (_req, res) => {
      res.end(await (await docs().fetch('/documents')).text());
    }),
  );
  try {
    await expect502(`${await listen(server)}/documents`);
  } finally {
    server.close();
  }
});

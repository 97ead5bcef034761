/**
 * DPoP at the API (RFC 9449 §7), against a live Baton: an independent DPoP client (openid-client,
 * its own key pair and proofs) gets a bound token and calls a guarded API through every adapter
 * (Express, Fastify, Hono, node:http); then each refusal with its exact error and challenge — a
 * token replayed from another key, a replayed proof, a proof for another URL or method, a stale
 * proof, a bound token presented as Bearer, an unbound token on a DPoP-required route — and the
 * API's own server nonces, and the replay cache shared by two replicas through Redis.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import express from 'express';
import Fastify, { type FastifyInstance } from 'fastify';
import { Hono } from 'hono';
import * as oidc from 'openid-client';
import { Redis } from 'ioredis';
import { createDpopProver, type DpopProver } from '@baton/core';
import { createGuard, type GuardOptions, type Principal, type Requirement } from '../src/index.ts';
import { getAuth, requireAuth as expressAuth } from '../src/express.ts';
import { requireAuth as fastifyAuth } from '../src/fastify.ts';
import { requireAuth as honoAuth, type AuthEnv } from '../src/hono.ts';
import { protect } from '../src/node.ts';
import { RedisDpopReplayCache } from '../src/redis.ts';
import { closeServer, listenLoopback, serveLoopback, startLiveBaton, secretOf, quietLogger, type LiveBaton } from './fixtures/live-baton.ts';

const AUDIENCE = ['docs-api', 'api://docs'];
const ROUTES: Record<'allowed' | 'required', Requirement> = {
  allowed: { roles: { any: ['Docs.ReadAll'] }, allowAppOnly: true },
  required: { roles: { any: ['Docs.ReadAll'] }, allowAppOnly: true, dpop: 'required' },
};
const ec = () => generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;

let baton: LiveBaton;
const bases: Record<string, string> = {};
const closers: Array<() => Promise<void>> = [];
/** The indexer's DPoP key and its bound token, obtained by this test (not openid-client). */
let indexerKey: DpopProver;
let bound: string;
let bearer: string;

function mountAll(guardOptions: Partial<GuardOptions> = {}) {
  const guard = () => createGuard({ authority: baton.authority, audience: AUDIENCE, ...guardOptions });
  const describeP = (p: Principal) => ({ clientId: p.clientId, jkt: (p.claims.cnf as { jkt?: string } | undefined)?.jkt ?? null });
  return (async () => {
    const out: Record<string, string> = {};
    {
      const app = express();
      const g = guard();
      app.get('/allowed', expressAuth(g, ROUTES.allowed), (req, res) => void res.json(describeP(getAuth(req))));
      app.post('/required', expressAuth(g, ROUTES.required), (req, res) => void res.json(describeP(getAuth(req))));
      // Mounted under a prefix: the proof is for the URL the client used.
      const outer = express();
      outer.use('/v1', app);
      const server = createServer(outer);
      out.express = `${await listenLoopback(server)}/v1`;
      closers.push(() => closeServer(server));
    }
    {
      const g = guard();
      const app: FastifyInstance = Fastify({ logger: false });
      app.get('/allowed', { onRequest: fastifyAuth(g, ROUTES.allowed) }, async (request) => describeP(request.auth!));
      app.post('/required', { onRequest: fastifyAuth(g, ROUTES.required) }, async (request) => describeP(request.auth!));
      out.fastify = await app.listen({ port: 0, host: '127.0.0.1' });
      closers.push(() => app.close());
    }
    {
      const g = guard();
      const app = new Hono<AuthEnv>();
      app.get('/allowed', honoAuth(g, ROUTES.allowed), (c) => c.json(describeP(c.get('auth'))));
      app.post('/required', honoAuth(g, ROUTES.required), (c) => c.json(describeP(c.get('auth'))));
      const hono = await serveLoopback(app.fetch);
      out.hono = hono.base;
      closers.push(() => closeServer(hono.server));
    }
    {
      const g = guard();
      const json = (res: import('node:http').ServerResponse, body: unknown) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
      const handlers: Record<string, ReturnType<typeof protect>> = {
        'GET /allowed': protect(g, ROUTES.allowed, (_req, res, p) => json(res, describeP(p))),
        'POST /required': protect(g, ROUTES.required, (_req, res, p) => json(res, describeP(p))),
      };
      const server = createServer((req, res) => {
        const handler = handlers[`${req.method} ${(req.url ?? '').split('?')[0]}`];
        if (handler) void handler(req, res);
        else res.writeHead(404).end();
      });
      out.node = await listenLoopback(server);
      closers.push(() => closeServer(server));
    }
    return out;
  })();
}

before(async () => {
  baton = await startLiveBaton();
  indexerKey = createDpopProver(ec());
  const r = await baton.server.post('/contoso/oauth2/v2.0/token', { grant_type: 'client_credentials', scope: 'api://docs/.default', client_id: 'indexer', client_secret: secretOf('indexer') }, { dpop: indexerKey.prove('POST', baton.tokenEndpoint) });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  bound = r.body.access_token;
  bearer = await baton.appToken('indexer', 'api://docs/.default');
  Object.assign(bases, await mountAll());
});

after(async () => {
  for (const close of closers.reverse()) await close();
  await baton?.close();
});

/** A call with `Authorization: <scheme> <token>` and the given proof. */
function call(url: string, init: { method?: string; scheme?: string; token?: string; dpop?: string } = {}) {
  const headers: Record<string, string> = {};
  if (init.token !== undefined) headers.authorization = `${init.scheme ?? 'DPoP'} ${init.token}`;
  if (init.dpop !== undefined) headers.dpop = init.dpop;
  return fetch(url, { method: init.method ?? 'GET', headers });
}

async function refused(response: Response, error: string, reasonPattern: RegExp): Promise<void> {
  assert.equal(response.status, 401, await response.clone().text());
  const challenge = response.headers.get('www-authenticate') ?? '';
  assert.match(challenge, new RegExp(`^DPoP .*error="${error}"`), challenge);
  assert.match(challenge, /algs="ES256 RS256 PS256 EdDSA Ed25519"/);
  const body = (await response.json()) as { error: string; error_description: string };
  assert.equal(body.error, error);
  assert.match(body.error_description, reasonPattern);
}

describe('openid-client, its own DPoP key, against every adapter', () => {
  test('gets a bound token from Baton and calls the guarded API with fetchProtectedResource', async () => {
    const config = await oidc.discovery(new URL(baton.authority), 'indexer', undefined, oidc.ClientSecretBasic(secretOf('indexer')), { execute: [oidc.allowInsecureRequests] });
    const keyPair = await oidc.randomDPoPKeyPair('ES256');
    const DPoP = oidc.getDPoPHandle(config, keyPair);
    const tokens = await oidc.clientCredentialsGrant(config, { scope: 'api://docs/.default' }, { DPoP });
    assert.equal(tokens.token_type, 'dpop');
    for (const adapter of ['express', 'fastify', 'hono', 'node']) {
      for (const [path, method] of [['/allowed?x=1', 'GET'], ['/required', 'POST']] as const) {
        const response = await oidc.fetchProtectedResource(config, tokens.access_token, new URL(`${bases[adapter]}${path}`), method, method === 'POST' ? '' : null, undefined, { DPoP });
        assert.equal(response.status, 200, `${adapter} ${path}: ${await response.clone().text()}`);
        const body = (await response.json()) as { clientId: string; jkt: string };
        assert.equal(body.clientId, 'indexer');
        assert.match(body.jkt, /^[A-Za-z0-9_-]{43}$/);
      }
    }
  });
});

for (const adapter of ['express', 'fastify', 'hono', 'node'] as const) {
  describe(`${adapter}: each refusal with its exact error`, () => {
    const url = (path: string) => `${bases[adapter]}${path}`;

    test('the bound token with a proof of its key → 200; a bearer token on an allowed route → 200', async () => {
      const ok = await call(url('/allowed'), { token: bound, dpop: indexerKey.prove('GET', url('/allowed'), { accessToken: bound }) });
      assert.equal(ok.status, 200, await ok.clone().text());
      assert.equal(((await ok.json()) as { jkt: string }).jkt, indexerKey.jkt);
      assert.equal((await call(url('/allowed'), { scheme: 'Bearer', token: bearer })).status, 200);
    });

    test('a token replayed from another key → invalid_dpop_proof', async () => {
      const thief = createDpopProver(ec());
      await refused(await call(url('/allowed'), { token: bound, dpop: thief.prove('GET', url('/allowed'), { accessToken: bound }) }), 'invalid_dpop_proof', /another key/);
    });

    test('a replayed proof → invalid_dpop_proof', async () => {
      const proof = indexerKey.prove('GET', url('/allowed'), { accessToken: bound });
      assert.equal((await call(url('/allowed'), { token: bound, dpop: proof })).status, 200);
      await refused(await call(url('/allowed'), { token: bound, dpop: proof }), 'invalid_dpop_proof', /already used/);
    });

    test('a proof for another URL or method, a stale proof, no ath → invalid_dpop_proof', async () => {
      await refused(await call(url('/allowed'), { token: bound, dpop: indexerKey.prove('GET', url('/other'), { accessToken: bound }) }), 'invalid_dpop_proof', /another URI/);
      await refused(await call(url('/allowed'), { token: bound, dpop: indexerKey.prove('POST', url('/allowed'), { accessToken: bound }) }), 'invalid_dpop_proof', /method POST/);
      const stale = indexerKey.prove('GET', url('/allowed'), { accessToken: bound, now: Math.floor(Date.now() / 1000) - 3600 });
      await refused(await call(url('/allowed'), { token: bound, dpop: stale }), 'invalid_dpop_proof', /iat/);
      await refused(await call(url('/allowed'), { token: bound, dpop: indexerKey.prove('GET', url('/allowed')) }), 'invalid_dpop_proof', /ath/);
      await refused(await call(url('/allowed'), { token: bound }), 'invalid_dpop_proof', /no DPoP proof/);
    });

    test('a bound token presented as Bearer → invalid_token (DPoP challenge)', async () => {
      await refused(await call(url('/allowed'), { scheme: 'Bearer', token: bound }), 'invalid_token', /DPoP-bound/);
    });

    test('an unbound token on a DPoP-required route → invalid_token; with the DPoP scheme → invalid_token', async () => {
      await refused(await call(url('/required'), { method: 'POST', scheme: 'Bearer', token: bearer }), 'invalid_token', /only DPoP-bound/);
      await refused(await call(url('/required'), { method: 'POST', token: bearer, dpop: indexerKey.prove('POST', url('/required'), { accessToken: bearer }) }), 'invalid_token', /not DPoP-bound/);
      const none = await call(url('/required'), { method: 'POST' });
      assert.equal(none.status, 401);
      assert.match(none.headers.get('www-authenticate') ?? '', /^DPoP realm="docs-api", algs="ES256 RS256 PS256 EdDSA Ed25519"$/);
    });
  });
}

describe('server nonces at the API, and the replay cache shared by two replicas through Redis', () => {
  test('use_dpop_nonce with DPoP-Nonce, then accepted', async () => {
    const secret = randomBytes(32);
    const base = (await mountAll({ dpop: { nonce: { secret } } })).node as string;
    const first = await call(`${base}/allowed`, { token: bound, dpop: indexerKey.prove('GET', `${base}/allowed`, { accessToken: bound }) });
    const nonce = first.headers.get('dpop-nonce');
    await refused(first, 'use_dpop_nonce', /nonce/);
    assert.match(nonce ?? '', /^[A-Za-z0-9_-]{43}$/);
    const second = await call(`${base}/allowed`, { token: bound, dpop: indexerKey.prove('GET', `${base}/allowed`, { accessToken: bound, nonce: nonce! }) });
    assert.equal(second.status, 200, await second.clone().text());
  });

  test('a proof accepted by one replica is refused by the other', async () => {
    const redis = new Redis('redis://127.0.0.1:6379', { lazyConnect: false, maxRetriesPerRequest: 1 });
    const prefix = `baton:test:dpop:${randomBytes(6).toString('hex')}:`;
    const replicas = [new RedisDpopReplayCache({ redis, prefix, logger: quietLogger() }), new RedisDpopReplayCache({ redis, prefix, logger: quietLogger() })];
    try {
      assert.ok(await replicas[0]!.ready());
      // Two replicas behind one public origin (dpop.origin): the proof names that origin.
      const origin = 'https://docs.example';
      const [a, b] = await Promise.all(replicas.map(async (replay) => (await mountAll({ dpop: { replay, origin } })).node as string));
      const proof = indexerKey.prove('GET', `${origin}/allowed`, { accessToken: bound });
      assert.equal((await call(`${a}/allowed`, { token: bound, dpop: proof })).status, 200);
      await refused(await call(`${b}/allowed`, { token: bound, dpop: proof }), 'invalid_dpop_proof', /already used/);
      // A proof for the replica's own address is for another URI than the public one.
      await refused(await call(`${b}/allowed`, { token: bound, dpop: indexerKey.prove('GET', `${b}/allowed`, { accessToken: bound }) }), 'invalid_dpop_proof', /another URI/);
    } finally {
      redis.disconnect();
    }
  });
});

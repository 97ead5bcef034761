/**
 * A DPoP-bound hop through the chain with the SDK, against a live Baton: the client's bound token
 * reaches Tasks API (Express, its guard checking the client's proof); Tasks API exchanges it with
 * its own DPoP key (`createOboClient({ dpop })`: a proof per token request, the service's nonce
 * retried by itself) and calls Docs API (node:http, `dpop: 'required'`, its own server nonces) with
 * `createDownstream`, which signs a proof per call with `ath`. Docs API sees a token bound to Tasks
 * API's key, never to the client's. The cache keeps tokens per key; a hop token replayed by anyone
 * without Tasks API's key is refused at Docs API.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import express from 'express';
import { createDpopProver, type DpopProver } from '@baton/core';
import { createDownstream, createGuard, createOboClient, MemoryTokenCacheStore, type OboClient } from '../src/index.ts';
import { getAuth, requireAuth } from '../src/express.ts';
import { protect } from '../src/node.ts';
import { closeServer, listenLoopback, payloadOf, quietLogger, secretOf, startLiveBaton, type LiveBaton } from './fixtures/live-baton.ts';

const ec = () => generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
const tasksKey = generateKeyPairSync('ec', { namedCurve: 'P-256' });

let baton: LiveBaton;
let clientKey: DpopProver;
let userToken: string;
let tasksUrl: string;
let docsUrl: string;
let obo: OboClient;
/** What Docs API saw: the token it was called with. */
const seenAtDocs: string[] = [];
const closers: Array<() => Promise<void>> = [];

before(async () => {
  baton = await startLiveBaton({
    configure(raw) {
      // The token service hands out nonces; Docs API takes only bound tokens.
      raw.tenants[0].dpop = { nonce: 'required' };
      raw.tenants[0].applications.find((a: any) => a.clientId === 'docs-api').dpop = { incoming: 'required' };
    },
  });
  clientKey = createDpopProver(ec());
  // The user's token for Tasks API, bound to the client's key (minted as a sign-in with a proof would be).
  userToken = await baton.userToken();
  const directory = (await baton.server.ctx.directories.get('contoso'))!;
  const user = (await baton.server.ctx.store.getUserByName('contoso', 'alice@contoso.test'))!;
  const { issueDelegatedToken } = await import('../../server/src/tokens/issue.ts');
  userToken = (await issueDelegatedToken(baton.server.ctx, { directory, user, clientId: 'tasks-web', api: directory.api('api://tasks')!, scopes: ['Tasks.ReadWrite'], auth: { amr: ['pwd'], acr: '1', authTime: baton.server.ctx.now() }, jkt: clientKey.jkt })).token;

  // Docs API: node:http, DPoP required, its own nonces.
  const docsGuard = createGuard({ authority: baton.authority, audience: ['docs-api', 'api://docs'], dpop: { mode: 'required', nonce: { secret: randomBytes(32) } } });
  const docs = createServer(
    protect(docsGuard, { scopes: { any: ['Docs.Read'] } }, (_req, res, principal) => {
      seenAtDocs.push(principal.token);
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ jkt: (principal.claims.cnf as { jkt: string }).jkt, chain: principal.chain.map((a) => a.client_id) }));
    }),
  );
  docsUrl = await listenLoopback(docs);
  closers.push(() => closeServer(docs));

  // Tasks API: Express, its guard checks the client's proof; its OBO client holds its own key.
  obo = createOboClient({ authority: baton.authority, clientId: 'tasks-api', credential: { clientSecret: secretOf('tasks-api') }, dpop: { key: tasksKey.privateKey }, logger: quietLogger() });
  const docsApi = createDownstream({ obo, scopes: ['api://docs/Docs.Read'], baseUrl: docsUrl });
  const tasksGuard = createGuard({ authority: baton.authority, audience: ['tasks-api', 'api://tasks'], dpop: { mode: 'required' } });
  const app = express();
  app.get('/tasks/1/doc', requireAuth(tasksGuard, { scopes: { any: ['Tasks.ReadWrite'] } }), async (req, res, next) => {
    try {
      const r = await docsApi().fetch('/documents/1?x=1');
      res.status(r.status).json({ docs: await r.json(), caller: (getAuth(req).claims.cnf as { jkt: string }).jkt });
    } catch (error) {
      next(error);
    }
  });
  const tasks = createServer(app);
  tasksUrl = await listenLoopback(tasks);
  closers.push(() => closeServer(tasks));
});

after(async () => {
  for (const close of closers.reverse()) await close();
  await obo?.close();
  await baton?.close();
});

const callTasks = () =>
  fetch(`${tasksUrl}/tasks/1/doc`, { headers: { authorization: `DPoP ${userToken}`, dpop: clientKey.prove('GET', `${tasksUrl}/tasks/1/doc`, { accessToken: userToken }) } });

test("client → Tasks API → Docs API: each hop bound to its own holder's key, nonces retried by the SDK", async () => {
  const res = await callTasks();
  const body = (await res.json()) as { docs: { jkt: string; chain: string[] }; caller: string };
  assert.equal(res.status, 200, JSON.stringify(body));
  assert.equal(body.caller, clientKey.jkt, "Tasks API's token is bound to the client's key");
  assert.equal(body.docs.jkt, obo.dpop!.jkt, "Docs API's token is bound to Tasks API's key");
  assert.notEqual(body.docs.jkt, clientKey.jkt);
  assert.deepEqual(body.docs.chain, ['tasks-api']);
  // The token Docs API saw says so too, and its response type was DPoP.
  assert.equal((payloadOf(seenAtDocs[0]!) as { cnf: { jkt: string } }).cnf.jkt, obo.dpop!.jkt);

  // Again: the OBO token comes from the cache; the downstream call makes a fresh proof (new jti).
  baton.reset();
  const again = await callTasks();
  assert.equal(again.status, 200);
  assert.equal(baton.exchanges().length, 0, 'served from the OBO cache');
});

test('a hop token replayed from another key is refused at Docs API (invalid_dpop_proof)', async () => {
  const hop = seenAtDocs[0]!;
  const thief = createDpopProver(ec());
  const res = await fetch(`${docsUrl}/documents/1`, { headers: { authorization: `DPoP ${hop}`, dpop: thief.prove('GET', `${docsUrl}/documents/1`, { accessToken: hop }) } });
  assert.equal(res.status, 401);
  // Docs API asks for its nonce first; with it, the key mismatch stands.
  const nonce = res.headers.get('dpop-nonce');
  const retried = nonce
    ? await fetch(`${docsUrl}/documents/1`, { headers: { authorization: `DPoP ${hop}`, dpop: thief.prove('GET', `${docsUrl}/documents/1`, { accessToken: hop, nonce }) } })
    : res;
  assert.equal(retried.status, 401);
  assert.match(retried.headers.get('www-authenticate') ?? '', /^DPoP .*error="invalid_dpop_proof"/);
  assert.match(((await retried.json()) as { error_description: string }).error_description, /another key/);
  // As Bearer: refused too.
  const asBearer = await fetch(`${docsUrl}/documents/1`, { headers: { authorization: `Bearer ${hop}` } });
  assert.equal(asBearer.status, 401);
  assert.match(asBearer.headers.get('www-authenticate') ?? '', /error="invalid_token"/);
});

test('tokens are cached per DPoP key: another key never gets the first key\'s token', async () => {
  const cache = new MemoryTokenCacheStore();
  const principal = await createGuard({ authority: baton.authority, audience: ['tasks-api', 'api://tasks'] }).verify(`DPoP ${userToken}`, { method: 'GET', url: `${tasksUrl}/x`, dpop: clientKey.prove('GET', `${tasksUrl}/x`, { accessToken: userToken }) });
  const a = createOboClient({ authority: baton.authority, clientId: 'tasks-api', credential: { clientSecret: secretOf('tasks-api') }, dpop: { key: ec() }, cache, logger: quietLogger() });
  const b = createOboClient({ authority: baton.authority, clientId: 'tasks-api', credential: { clientSecret: secretOf('tasks-api') }, dpop: { key: ec() }, cache, logger: quietLogger() });
  const ta = await a.onBehalfOf(principal, ['api://docs/Docs.Read']);
  const tb = await b.onBehalfOf(principal, ['api://docs/Docs.Read']);
  assert.equal(ta.tokenType, 'DPoP');
  assert.equal(tb.fromCache, false);
  assert.equal((payloadOf(ta.accessToken) as { cnf: { jkt: string } }).cnf.jkt, a.dpop!.jkt);
  assert.equal((payloadOf(tb.accessToken) as { cnf: { jkt: string } }).cnf.jkt, b.dpop!.jkt);
  assert.equal((await a.onBehalfOf(principal, ['api://docs/Docs.Read'])).fromCache, true);
});

test('without its DPoP key, Tasks API cannot exchange the bound token (9100013)', async () => {
  const principal = await createGuard({ authority: baton.authority, audience: ['tasks-api', 'api://tasks'] }).verify(`DPoP ${userToken}`, { method: 'GET', url: `${tasksUrl}/y`, dpop: clientKey.prove('GET', `${tasksUrl}/y`, { accessToken: userToken }) });
  const plain = createOboClient({ authority: baton.authority, clientId: 'tasks-api', credential: { clientSecret: secretOf('tasks-api') }, logger: quietLogger(), retry: { retries: 0 } });
  await assert.rejects(plain.onBehalfOf(principal, ['api://docs/Docs.Read']), (error: any) => error.error === 'invalid_dpop_proof' && error.errorCodes[0] === 9100013);
});

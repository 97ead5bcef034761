/**
 * The Original API snippets of docs/sdk.md (examples/sdk/<framework>.ts) really work: each is
 * started as its own process, exactly as written, against a live Baton (dev TLS, its CA trusted
 * through NODE_EXTRA_CA_CERTS) and a small Downstream API, and makes one real call through it on
 * behalf of alice. The doc embeds each file's text verbatim.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { createGuard } from '@baton/resource';
import { protect } from '@baton/resource/node';
import { auditLogOf, type ExchangeAuditEvent } from '@baton/server';
import { startTestServer, type TestServer } from '../../../packages/server/test/harness.ts';
import { userToken } from '../../../packages/server/test/obo-fixtures.ts';
import { freePort } from '../../../packages/server/test/free-port.ts';

const FRAMEWORKS = ['express', 'fastify', 'hono', 'node'] as const;
const fileOf = (framework: string) => fileURLToPath(new URL(`../${framework}.ts`, import.meta.url));
const DOC = fileURLToPath(new URL('../../../docs/sdk.md', import.meta.url));

let baton: TestServer;
let downstream: Server;
let downstreamUrl: string;
const events: ExchangeAuditEvent[] = [];
let stopAudit: () => void;

before(async () => {
  baton = await startTestServer({ tls: 'dev' });
  stopAudit = auditLogOf(baton.ctx).subscribe((e) => events.push(e));
  // The Downstream API: the Docs API's audience, Docs.Read, answers with what it was given.
  const guard = createGuard({ authority: `${baton.url}/contoso/v2.0`, audience: 'docs-api' });
  downstream = createServer(
    protect(guard, { scopes: { any: ['Docs.Read'] } }, (req, res, p) => {
      if (req.url !== '/documents') return void res.writeHead(404).end();
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ for: p.userId, from: p.clientId, chain: p.chain.map((a) => a.client_id), items: [{ id: 'doc-1' }] }));
    }),
  );
  await new Promise<void>((resolve) => downstream.listen(0, '127.0.0.1', resolve));
  downstreamUrl = `http://127.0.0.1:${(downstream.address() as AddressInfo).port}`;
});

after(async () => {
  stopAudit?.();
  downstream?.closeAllConnections();
  await new Promise<void>((resolve) => (downstream ? downstream.close(() => resolve()) : resolve()));
  await baton?.close();
});

/** Starts a snippet; resolves once it answers (401 to a request without a token). */
async function startSnippet(framework: string): Promise<{ url: string; child: ChildProcess; output: () => string }> {
  const port = await freePort();
  const child = spawn(process.execPath, [fileOf(framework)], {
    env: {
      PATH: process.env.PATH ?? '',
      // The repository runs the snippets against the SDK's sources (test/packaging.test.ts runs
      // them against the packed SDK).
      NODE_OPTIONS: '--conditions=baton-source',
      AUTHORITY: `${baton.url}/contoso/v2.0`,
      CLIENT_SECRET: 'tasks-api-demo-secret-for-local-use-only',
      DOCS_URL: downstreamUrl,
      PORT: String(port),
      NODE_EXTRA_CA_CERTS: baton.caPath ?? '',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 200; i++) {
    if (child.exitCode !== null) break;
    const res = await fetch(`${url}/documents`).catch(() => undefined);
    if (res !== undefined) {
      await res.body?.cancel();
      if (res.status === 401) return { url, child, output: () => output };
    }
    await sleep(50);
  }
  child.kill();
  throw new Error(`${framework}.ts did not start: ${output}`);
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  await exited;
}

describe('docs/sdk.md Original API snippets, each against a live Baton', () => {
  for (const framework of FRAMEWORKS) {
    test(`${framework}.ts: validates the caller's token and calls the Downstream API on behalf of the user`, async () => {
      const { url, child, output } = await startSnippet(framework);
      try {
        const alice = await userToken(baton);
        const aliceOid = JSON.parse(Buffer.from(alice.split('.')[1] as string, 'base64url').toString()).oid as string;
        events.length = 0;

        const res = await fetch(`${url}/documents`, { headers: { authorization: `Bearer ${alice}` } });
        assert.equal(res.status, 200, output());
        assert.deepEqual(await res.json(), {
          user: aliceOid,
          documents: { for: aliceOid, from: 'tasks-api', chain: ['tasks-api'], items: [{ id: 'doc-1' }] },
        });
        assert.deepEqual(events.map((e) => [e.caller, e.api, e.decision]), [['tasks-api', 'docs-api', 'allow']], 'one On-Behalf-Of exchange at Baton');

        // The second call is served from the OBO cache: no new exchange.
        const again = await fetch(`${url}/documents`, { headers: { authorization: `Bearer ${alice}` } });
        assert.equal(again.status, 200);
        await again.body?.cancel();
        assert.equal(events.length, 1);

        // A token for another API is refused by the guard, with the RFC 6750 challenge.
        const docsToken = await userToken(baton, { api: 'api://docs', scopes: ['Docs.Read'] });
        const wrong = await fetch(`${url}/documents`, { headers: { authorization: `Bearer ${docsToken}` } });
        assert.equal(wrong.status, 401);
        assert.match(wrong.headers.get('www-authenticate') ?? '', /error="invalid_token"/);
        await wrong.body?.cancel();
        assert.doesNotMatch(output(), /eyJ/, 'no token in the output');
      } finally {
        await stop(child);
      }
    });
  }

  test('docs/sdk.md embeds each snippet verbatim, each under 30 lines', () => {
    const doc = readFileSync(DOC, 'utf8');
    for (const framework of FRAMEWORKS) {
      const text = readFileSync(fileOf(framework), 'utf8').trimEnd();
      assert.ok(text.split('\n').length < 30, `${framework}.ts has ${text.split('\n').length} lines`);
      assert.ok(doc.includes(`\`\`\`ts\n${text}\n\`\`\``), `docs/sdk.md must contain examples/sdk/${framework}.ts verbatim`);
    }
  });
});

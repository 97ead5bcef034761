/**
 * Self-signed TLS (what `baton serve --tls-dev` produces): the guard trusts the issuer only when
 * given its CA; `fetchWithCa` carries forms, headers and statuses like fetch.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createGuard, fetchWithCa, GuardError } from '../src/index.ts';
import { startIssuer, type TestIssuer } from './fixtures/issuer.ts';

let dir: string;
let tls: { key: Buffer; cert: Buffer };
let issuer: TestIssuer;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'baton-tls-'));
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1',
    '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
    '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'),
  ], { stdio: 'ignore' });
  tls = { key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) };
  issuer = await startIssuer({ tls });
});

after(async () => {
  await issuer.close();
  rmSync(dir, { recursive: true, force: true });
});

test('the guard verifies against an https issuer with a self-signed certificate when given its CA', async () => {
  assert.match(issuer.authority, /^https:\/\/127\.0\.0\.1:/);
  const guard = createGuard({ authority: issuer.authority, audience: issuer.audience, ca: tls.cert });
  const principal = await guard.verify(`Bearer ${issuer.token()}`);
  assert.equal(principal.tenantId, issuer.tid);

  // Without the CA, the certificate is not trusted: the keys cannot be fetched (503, fail closed).
  const untrusting = createGuard({ authority: issuer.authority, audience: issuer.audience });
  await assert.rejects(untrusting.verify(issuer.token()), (e: GuardError) => e.status === 503 && e.reason === 'ERR_JWKS_UNAVAILABLE');
});

test('fetchWithCa: form bodies, headers, status, no redirect following, abort', async () => {
  const server = createServer({ key: tls.key, cert: tls.cert }, (req, res) => {
    if (req.url === '/redirect') return res.writeHead(302, { location: '/elsewhere' }).end();
    if (req.url === '/slow') return setTimeout(() => res.end('late'), 500);
    if (req.url === '/empty') return res.writeHead(204).end();
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      res.writeHead(201, { 'content-type': 'application/json', 'x-multi': ['a', 'b'] });
      res.end(JSON.stringify({ method: req.method, type: req.headers['content-type'], auth: req.headers.authorization, body: Buffer.concat(chunks).toString() }));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const base = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    const f = fetchWithCa(tls.cert);
    const res = await f(`${base}/token`, { method: 'POST', headers: { authorization: 'Basic eDp5' }, body: new URLSearchParams({ grant_type: 'client_credentials', scope: 'a b' }) });
    assert.equal(res.status, 201);
    assert.equal(res.headers.get('x-multi'), 'a, b');
    assert.deepEqual(await res.json(), { method: 'POST', type: 'application/x-www-form-urlencoded;charset=UTF-8', auth: 'Basic eDp5', body: 'grant_type=client_credentials&scope=a+b' });
    const redirect = await f(`${base}/redirect`);
    assert.equal(redirect.status, 302);
    assert.equal(redirect.headers.get('location'), '/elsewhere');
    assert.equal((await f(`${base}/empty`)).status, 204);
    await assert.rejects(f(`${base}/slow`, { signal: AbortSignal.timeout(50) }));
    await assert.rejects(fetchWithCa([])(`${base}/token`), 'an empty trust list trusts nothing');
  } finally {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  }
});

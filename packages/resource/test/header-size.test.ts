/**
 * docs/sdk.md's promise about oversized `Authorization` headers, as it really happens: on Node's
 * default settings the HTTP server refuses headers over 16 KiB in total with 431 before any adapter
 * runs; with a larger `maxHeaderSize`, the SDK refuses an `Authorization` over 16 KiB with 400
 * `invalid_request` without parsing it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createGuard, MAX_AUTHORIZATION_LENGTH } from '@baton/resource';
import { protect } from '@baton/resource/node';

// Never fetched: the header is refused before any key is needed.
const guard = createGuard({ issuer: 'https://issuer.example', jwksUri: 'https://issuer.example/keys', audience: 'api' });

async function listen(server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

/** A raw request (fetch's own limits must not decide the outcome). */
function get(port: number, authorization: string): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/', headers: { authorization }, maxHeaderSize: 64 * 1024 }, (res) => {
      let body = '';
      res.on('data', (chunk) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

const oversized = `Bearer ${'a'.repeat(MAX_AUTHORIZATION_LENGTH)}`;

test('on default settings Node answers 431 for headers over 16 KiB, before the SDK sees them', async () => {
  const server = createServer(protect(guard, {}, (_req, res) => void res.end('reached')));
  try {
    const res = await get(await listen(server), oversized);
    assert.equal(res.status, 431);
    assert.notEqual(res.body, 'reached');
  } finally {
    server.close();
  }
});

test('with a larger maxHeaderSize, the SDK refuses an Authorization over 16 KiB with 400 invalid_request', async () => {
  const server = createServer({ maxHeaderSize: 64 * 1024 }, protect(guard, {}, (_req, res) => void res.end('reached')));
  try {
    const res = await get(await listen(server), oversized);
    assert.equal(res.status, 400);
    assert.match(String(res.headers['www-authenticate']), /^Bearer realm="api", error="invalid_request", error_description="[^"]+"$/);
    assert.equal(JSON.parse(res.body).error, 'invalid_request');
    // Just under the limit the header is parsed (and refused for what it is: not a valid token).
    const under = await get((server.address() as AddressInfo).port, `Bearer ${'a'.repeat(MAX_AUTHORIZATION_LENGTH - 'Bearer '.length)}`);
    assert.equal(under.status, 401);
  } finally {
    server.close();
  }
});

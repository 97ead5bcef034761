/** RFC 9728 protected resource metadata, served over real HTTP. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { protectedResourceMetadata } from '../src/index.ts';

test('the document, its well-known path, and the node handler', async () => {
  const meta = protectedResourceMetadata({
    resource: 'http://127.0.0.1:8443/tasks',
    authorizationServers: ['https://login.example/contoso/v2.0'],
    scopesSupported: ['api://tasks/Tasks.Read', 'api://tasks/Tasks.Write'],
    resourceName: 'Tasks API',
  });
  assert.equal(meta.path, '/.well-known/oauth-protected-resource/tasks');
  assert.equal(meta.url, 'http://127.0.0.1:8443/.well-known/oauth-protected-resource/tasks');
  assert.deepEqual(meta.document, {
    resource: 'http://127.0.0.1:8443/tasks',
    authorization_servers: ['https://login.example/contoso/v2.0'],
    bearer_methods_supported: ['header'],
    scopes_supported: ['api://tasks/Tasks.Read', 'api://tasks/Tasks.Write'],
    resource_name: 'Tasks API',
  });
  assert.equal(protectedResourceMetadata({ resource: 'https://tasks.example', authorizationServers: ['https://as.example'] }).path, '/.well-known/oauth-protected-resource');

  const server = createServer((req, res) => (req.url === meta.path ? meta.handler(req, res) : res.writeHead(404).end()));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const res = await fetch(`${base}${meta.path}`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'application/json');
    assert.match(res.headers.get('cache-control') ?? '', /max-age=3600/);
    assert.deepEqual(await res.json(), meta.document);
    assert.equal((await fetch(`${base}${meta.path}`, { method: 'POST' })).status, 405);
    const fetchStyle = meta.toResponse();
    assert.deepEqual(await fetchStyle.json(), meta.document);
  } finally {
    await new Promise<void>((r) => server.close(() => r()));
  }
});

test('bad options are TypeErrors', () => {
  assert.throws(() => protectedResourceMetadata({ resource: 'api://tasks', authorizationServers: ['https://as.example'] }), TypeError);
  assert.throws(() => protectedResourceMetadata({ resource: 'https://tasks.example/?q=1', authorizationServers: ['https://as.example'] }), TypeError);
  assert.throws(() => protectedResourceMetadata({ resource: 'https://tasks.example', authorizationServers: [] }), TypeError);
  assert.throws(() => protectedResourceMetadata({ resource: 'https://tasks.example', authorizationServers: ['http://as.example'] }), TypeError);
  assert.throws(() => protectedResourceMetadata({ resource: 'https://tasks.example', authorizationServers: ['https://as.example'], scopesSupported: ['a b'] }), TypeError);
});

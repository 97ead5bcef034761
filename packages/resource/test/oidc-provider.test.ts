/**
 * Interop with an independent issuer: panva's oidc-provider (the certified Node.js OpenID Provider),
 * started on 127.0.0.1 with a resource indicator issuing RFC 9068 JWT access tokens. A real
 * client-credentials token from it must pass the guard, typ check included.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createGuard, GuardError } from '../src/index.ts';

const RESOURCE = 'https://api.test/tasks';

interface ProviderLike {
  callback(): (req: IncomingMessage, res: ServerResponse) => void;
}
type ProviderCtor = new (issuer: string, configuration: Record<string, unknown>) => ProviderLike;

let server: Server;
let issuer: string;

before(async () => {
  // oidc-provider ships no type declarations; a non-literal specifier keeps tsc out of it.
  const specifier: string = 'oidc-provider';
  const { default: Provider } = (await import(specifier)) as { default: ProviderCtor };
  server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const es = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
  const rs = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
  const provider = new Provider(issuer, {
    clients: [
      { client_id: 'indexer', client_secret: 'indexer-secret-for-tests-only', grant_types: ['client_credentials'], redirect_uris: [], response_types: [], scope: 'api:read' },
    ],
    jwks: { keys: [{ ...es, kid: 'es-1', alg: 'ES256', use: 'sig' }, { ...rs, kid: 'rs-1', alg: 'RS256', use: 'sig' }] },
    scopes: ['api:read', 'api:write'],
    ttl: { ClientCredentials: 300 },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => RESOURCE,
        useGrantedResource: () => true,
        getResourceServerInfo: () => ({ scope: 'api:read api:write', audience: RESOURCE, accessTokenTTL: 300, accessTokenFormat: 'jwt', jwt: { sign: { alg: 'ES256' } } }),
      },
    },
  });
  server.on('request', provider.callback());
});

after(() => new Promise<void>((r) => server.close(() => r())));

async function clientCredentialsToken(scope: string): Promise<string> {
  const res = await fetch(`${issuer}/token`, {
    method: 'POST',
    headers: { authorization: `Basic ${Buffer.from('indexer:indexer-secret-for-tests-only').toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'client_credentials', scope, resource: RESOURCE }),
  });
  const body = (await res.json()) as { access_token?: string; token_type?: string; error?: string };
  assert.equal(res.status, 200, JSON.stringify(body));
  assert.equal(body.token_type, 'Bearer');
  assert.ok(body.access_token);
  return body.access_token;
}

test('a client-credentials JWT access token from oidc-provider passes the guard (typ at+jwt required)', async () => {
  const token = await clientCredentialsToken('api:read');
  const header = JSON.parse(Buffer.from(token.split('.')[0] as string, 'base64url').toString()) as Record<string, unknown>;
  assert.equal(header.typ, 'at+jwt');

  const guard = createGuard({ authority: issuer, audience: RESOURCE });
  const principal = await guard.verify(`Bearer ${token}`);
  assert.equal(principal.clientId, 'indexer');
  assert.equal(principal.subject, 'indexer');
  assert.equal(principal.appOnly, true, 'RFC 9068: sub is the client for client credentials');
  assert.deepEqual(principal.scopes, ['api:read']);
  assert.equal(principal.tenantId, undefined);
  assert.equal(guard.issuer, issuer);

  // App-only: refused by default, accepted when the route allows applications holding the permission.
  assert.throws(() => guard.authorize(principal, { scopes: { any: ['api:read'] } }), { reason: 'ERR_APP_ONLY_REFUSED' });
  guard.authorize(principal, { roles: { any: ['api:read'] }, allowAppOnly: true });
  assert.throws(() => guard.authorize(principal, { roles: { all: ['api:write'] }, allowAppOnly: true }), { reason: 'ERR_ROLE_INSUFFICIENT' });
});

test('the same token is refused by a guard for another audience, issuer or algorithm set', async () => {
  const token = await clientCredentialsToken('api:read');
  await assert.rejects(createGuard({ authority: issuer, audience: 'https://api.test/other' }).verify(token), (e: GuardError) => e.reason === 'ERR_JWT_AUDIENCE_INVALID');
  await assert.rejects(createGuard({ issuer: 'https://someone.else', jwksUri: `${issuer}/jwks`, audience: RESOURCE }).verify(token), (e: GuardError) => e.reason === 'ERR_JWT_ISSUER_INVALID');
  await assert.rejects(createGuard({ authority: issuer, audience: RESOURCE, algorithms: ['RS256'] }).verify(token), (e: GuardError) => e.reason === 'ERR_JOSE_ALG_NOT_ALLOWED');
});

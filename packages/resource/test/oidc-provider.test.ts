/**
 * Interop with an independent issuer: panva's oidc-provider (the certified Node.js OpenID Provider),
 * started on 127.0.0.1 with a resource indicator issuing RFC 9068 JWT access tokens. A real
 * client-credentials token from it must pass the guard, typ check included.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createGuard, GuardError } from '../src/index.ts';
import { RESOURCE, startOidcProvider, type OidcProviderIssuer } from './fixtures/oidc-provider.ts';

let op: OidcProviderIssuer;
let issuer: string;

before(async () => {
  op = await startOidcProvider();
  issuer = op.issuer;
});

after(() => op?.close());

const clientCredentialsToken = (scope: string): Promise<string> => op.token(scope);

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

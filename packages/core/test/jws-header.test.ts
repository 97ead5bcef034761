/**
 * The one JWS header policy (jws-header.ts): every rule, for each of the three built-in policies.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { ACCESS_TOKEN_HEADER, CLIENT_ASSERTION_HEADER, ID_TOKEN_HEADER, JwtError, checkJwsHeader, type JwsHeader, type JwsHeaderPolicy } from '../src/index.ts';

function refused(header: Record<string, unknown>, policy: JwsHeaderPolicy, code: string): void {
  assert.throws(() => checkJwsHeader(header as JwsHeader, policy), (error: unknown) => error instanceof JwtError && error.code === code, JSON.stringify(header));
}

describe('checkJwsHeader', () => {
  test('crit in any form is refused first (RFC 7515 §4.1.11: Baton understands no extension)', () => {
    for (const crit of [['urn:example:ext'], [], 'exp', ['b64'], null, 0]) {
      for (const policy of [CLIENT_ASSERTION_HEADER, ACCESS_TOKEN_HEADER, ID_TOKEN_HEADER]) {
        // Even with an otherwise refused alg: crit is judged before anything else.
        refused({ alg: 'HS256', kid: 'k', typ: 'at+jwt', crit }, policy, 'ERR_JOSE_CRIT_UNSUPPORTED');
      }
    }
  });

  test('alg from the allow-list only: none, HMAC, unknown, non-string refused', () => {
    for (const alg of ['none', 'HS256', 'HS512', 'RSA-OAEP', 'es256', '', 42, undefined]) {
      refused({ alg, kid: 'k', typ: 'at+jwt' }, ACCESS_TOKEN_HEADER, 'ERR_JOSE_ALG_NOT_ALLOWED');
      refused({ alg, kid: 'k' }, CLIENT_ASSERTION_HEADER, 'ERR_JOSE_ALG_NOT_ALLOWED');
    }
    // Client assertions may use any asymmetric algorithm; Baton's own tokens only the three it signs with.
    assert.equal(checkJwsHeader({ alg: 'PS512' }, CLIENT_ASSERTION_HEADER).alg, 'PS512');
    refused({ alg: 'PS512', kid: 'k', typ: 'at+jwt' }, ACCESS_TOKEN_HEADER, 'ERR_JOSE_ALG_NOT_ALLOWED');
  });

  test('typ per use (RFC 8725 §3.11), case-insensitive, application/ prefix optional', () => {
    assert.equal(checkJwsHeader({ alg: 'ES256', kid: 'k', typ: 'application/AT+JWT' }, ACCESS_TOKEN_HEADER).typ, 'application/AT+JWT');
    refused({ alg: 'ES256', kid: 'k' }, ACCESS_TOKEN_HEADER, 'ERR_JWT_TYP_INVALID');
    refused({ alg: 'ES256', kid: 'k', typ: 'JWT' }, ACCESS_TOKEN_HEADER, 'ERR_JWT_TYP_INVALID');
    refused({ alg: 'ES256', kid: 'k', typ: 'at+jwt' }, ID_TOKEN_HEADER, 'ERR_JWT_TYP_INVALID');
    refused({ alg: 'ES256', typ: 'at+jwt' }, CLIENT_ASSERTION_HEADER, 'ERR_JWT_TYP_INVALID');
    refused({ alg: 'ES256', typ: ['JWT'] }, CLIENT_ASSERTION_HEADER, 'ERR_JWT_TYP_INVALID');
    for (const typ of [undefined, 'JWT', 'jwt', 'application/jwt', 'client-authentication+jwt']) {
      assert.doesNotThrow(() => checkJwsHeader({ alg: 'ES256', ...(typ === undefined ? {} : { typ }) }, CLIENT_ASSERTION_HEADER));
    }
    assert.doesNotThrow(() => checkJwsHeader({ alg: 'ES256', kid: 'k' }, ID_TOKEN_HEADER));
  });

  test('jku, x5u and jwk refused (RFC 8725 §3.10); x5t, x5t#S256 and x5c are hints, accepted', () => {
    for (const name of ['jku', 'x5u', 'jwk']) {
      for (const policy of [CLIENT_ASSERTION_HEADER, ACCESS_TOKEN_HEADER, ID_TOKEN_HEADER]) {
        refused({ alg: 'ES256', kid: 'k', typ: policy === ACCESS_TOKEN_HEADER ? 'at+jwt' : 'JWT', [name]: name === 'jwk' ? { kty: 'EC' } : 'https://evil.example/' }, policy, 'ERR_JOSE_KEY_REFERENCE');
      }
    }
    assert.doesNotThrow(() => checkJwsHeader({ alg: 'RS256', x5t: 'abc', 'x5t#S256': 'def', x5c: ['MIIB'] }, CLIENT_ASSERTION_HEADER));
  });

  test('kid: a short non-empty string; required for tokens Baton issued', () => {
    for (const kid of ['', 42, ['k'], { k: 1 }, 'k'.repeat(257)]) refused({ alg: 'ES256', kid }, CLIENT_ASSERTION_HEADER, 'ERR_JWS_INVALID');
    refused({ alg: 'ES256', typ: 'at+jwt' }, ACCESS_TOKEN_HEADER, 'ERR_JWS_INVALID');
    refused({ alg: 'ES256' }, ID_TOKEN_HEADER, 'ERR_JWS_INVALID');
    assert.deepEqual(checkJwsHeader({ alg: 'ES256', kid: 'k1', typ: 'at+jwt' }, ACCESS_TOKEN_HEADER), { alg: 'ES256', kid: 'k1', typ: 'at+jwt' });
  });

  test('messages name what was refused and never echo header values', () => {
    try {
      checkJwsHeader({ alg: 'ES256', jku: 'https://attacker.example/<script>' }, CLIENT_ASSERTION_HEADER);
      assert.fail('not refused');
    } catch (error) {
      assert.ok(error instanceof JwtError);
      assert.doesNotMatch(error.message, /attacker|script/);
    }
  });
});

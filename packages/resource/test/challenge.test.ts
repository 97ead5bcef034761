/**
 * WWW-Authenticate: what we write (RFC 6750 §3 quoting, Entra claims challenges as MSAL parses
 * them, RFC 9470 step-up) and what we read from downstream APIs (RFC 7235 §4.1).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  bearerChallenge,
  bearerChallengeOf,
  claimsChallenge,
  ClaimsChallengeError,
  decodeClaimsChallenge,
  encodeClaimsChallenge,
  errorResponse,
  GuardError,
  insufficientUserAuthentication,
  parseChallenges,
} from '../src/index.ts';

test('quoting: realm escaped, error_description and scope restricted to the RFC 6750 character set', () => {
  const h = bearerChallenge([
    ['realm', 'a "quoted" \\ realm\r\nInjected: yes'],
    ['error', 'invalid_token'],
    ['error_description', 'bad "thing" \\ here\r\nX: y é'],
    ['scope', 'a"b c\\d'],
  ]);
  assert.equal(h, 'Bearer realm="a \\"quoted\\" \\\\ realm??Injected: yes", error="invalid_token", error_description="bad \'thing\' ? here??X: y ?", scope="a\'b c?d"');
  assert.ok(!/[\r\n]/.test(h));
  // And it reads back.
  const [c] = parseChallenges(h);
  assert.equal(c?.params.realm, 'a "quoted" \\ realm??Injected: yes');
  assert.throws(() => bearerChallenge([['bad name', 'x']]), TypeError);
});

test('claims challenge: 401, realm="", insufficient_claims, claims in padded standard base64 (what MSAL.NET decodes)', () => {
  const claims = { access_token: { acrs: { essential: true, value: 'c1' } } };
  const err = claimsChallenge(claims);
  assert.ok(err instanceof ClaimsChallengeError && err instanceof GuardError);
  assert.equal(err.status, 401);
  assert.equal(err.claims, '{"access_token":{"acrs":{"essential":true,"value":"c1"}}}');
  // Entra's documented example value for exactly this JSON.
  assert.equal(
    err.wwwAuthenticate,
    'Bearer realm="", error="insufficient_claims", error_description="Additional claims are required: sign in again with the claims in this challenge.", claims="eyJhY2Nlc3NfdG9rZW4iOnsiYWNycyI6eyJlc3NlbnRpYWwiOnRydWUsInZhbHVlIjoiYzEifX19"',
  );
  // MSAL.NET's GetJsonFragment: decodes only when length % 4 == 0 and Convert.FromBase64String accepts it.
  for (const json of ['{"a":1}', '{"access_token":{"xms_cc":{"values":["cp1"]}}}', '{"id_token":{"auth_time":{"essential":true}},"x":"ÿ~~~"}']) {
    const value = encodeClaimsChallenge(json);
    assert.equal(value.length % 4, 0);
    assert.match(value, /^[A-Za-z0-9+/]+={0,2}$/);
    assert.equal(Buffer.from(value, 'base64').toString('utf8'), json);
  }
  // String input is validated and minified; not-JSON is a programmer mistake.
  assert.equal(claimsChallenge('{ "access_token" : { } }').claims, '{"access_token":{}}');
  assert.throws(() => claimsChallenge('nope'), TypeError);
  assert.throws(() => claimsChallenge('[1]'), TypeError);
  // authorization_uri (MSAL reads the authority from it).
  const withUri = claimsChallenge(claims, { authorizationUri: 'https://login.example/contoso/oauth2/v2.0/authorize' });
  assert.match(withUri.wwwAuthenticate ?? '', /^Bearer realm="", error="insufficient_claims", error_description="[^"]+", authorization_uri="https:\/\/login\.example\/contoso\/oauth2\/v2\.0\/authorize", claims="/);
  const r = errorResponse(err);
  assert.equal(r?.status, 401);
  assert.deepEqual(JSON.parse(r?.body ?? ''), { error: 'insufficient_claims', error_description: err.description, claims: err.claims });
});

test('RFC 9470 step-up challenge', () => {
  const e = insufficientUserAuthentication({ acrValues: ['urn:baton:mfa', 'c2'], maxAge: 300, realm: 'api' });
  assert.equal(e.status, 401);
  assert.equal(e.wwwAuthenticate, 'Bearer realm="api", error="insufficient_user_authentication", error_description="A stronger authentication is required.", acr_values="urn:baton:mfa c2", max_age="300"');
  assert.throws(() => insufficientUserAuthentication({}), TypeError);
  assert.throws(() => insufficientUserAuthentication({ acrValues: ['a b'] }), TypeError);
  assert.throws(() => insufficientUserAuthentication({ maxAge: 1.5 }), TypeError);
});

test('parsing downstream challenges: several schemes, joined headers, escapes, token68', () => {
  const entra =
    'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", error="insufficient_claims", claims="eyJhY2Nlc3NfdG9rZW4iOnsiYWNycyI6eyJlc3NlbnRpYWwiOnRydWUsInZhbHVlIjoiYzEifX19"';
  const c = bearerChallengeOf(entra);
  assert.equal(c?.params.error, 'insufficient_claims');
  assert.equal(decodeClaimsChallenge(c?.params.claims ?? ''), '{"access_token":{"acrs":{"essential":true,"value":"c1"}}}');

  const many = parseChallenges('Basic realm="files", Newauth realm="apps", type=1, title="Login to \\"apps\\"", Bearer error=invalid_token, DPoP algs="ES256 PS256"');
  assert.deepEqual(
    many.map((x) => x.scheme),
    ['basic', 'newauth', 'bearer', 'dpop'],
  );
  assert.equal(many[1]?.params.title, 'Login to "apps"');
  assert.equal(many[1]?.params.type, '1');
  assert.equal(many[2]?.params.error, 'invalid_token');
  assert.deepEqual(parseChallenges('Negotiate abc==, Bearer'), [
    { scheme: 'negotiate', params: {}, token68: 'abc==' },
    { scheme: 'bearer', params: {} },
  ]);
  assert.equal(bearerChallengeOf(null), undefined);
  assert.equal(bearerChallengeOf('Basic realm="x"'), undefined);

  // Unpadded base64url and raw JSON are read too; garbage is not a challenge.
  assert.equal(decodeClaimsChallenge(Buffer.from('{"a":"b?>"}').toString('base64url')), '{"a":"b?>"}');
  assert.equal(decodeClaimsChallenge('{"a":1}'), '{"a":1}');
  assert.equal(decodeClaimsChallenge('!!!'), undefined);
  assert.equal(decodeClaimsChallenge(Buffer.from('[1,2]').toString('base64')), undefined);
});

/**
 * Property-based fuzzing of the SDK's input parsers (fast-check, fixed seeds): the bearer parser,
 * the guard (generated Authorization values and JWS segments, some signed with the issuer's real
 * key), and claims-challenge parsing. Invariant: every input either succeeds or fails with the
 * SDK's typed error (GuardError) at a 4xx status — never another exception, never a 5xx, never a
 * hang — and a header value the SDK writes never carries a raw quote or line break from the input.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { createGuard, GuardError, type Guard } from '../src/index.ts';
import { bearerToken } from '../src/bearer.ts';
import { bearerChallengeOf, decodeClaimsChallenge, parseChallenges } from '../src/challenge.ts';
import { generateTestKey, signRaw, startIssuer, type TestIssuer } from './fixtures/issuer.ts';

let issuer: TestIssuer;
let guard: Guard;

before(async () => {
  issuer = await startIssuer({ keys: [generateTestKey('ES256')] });
  guard = createGuard({ authority: issuer.authority, audience: issuer.audience });
});
after(() => issuer.close());

const b64u = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');

/** Header values as Node and the adapters hand them over: a string, undefined, or an array of strings. */
const isHeaderShape = (input: unknown) => input === undefined || input === null || typeof input === 'string' || (Array.isArray(input) && input.every((v) => typeof v === 'string'));

/**
 * A typed, client-side (4xx) refusal with a header that cannot be split or broken out of. A value
 * no HTTP stack produces (a number, an object, an array holding one) is a programmer error: a
 * TypeError, as jose does for its own misuse.
 */
function assertTypedRefusal(error: unknown, input?: unknown): void {
  if (arguments.length > 1 && !isHeaderShape(input)) {
    assert.ok(error instanceof TypeError && /Authorization input must be/.test(error.message), `not the TypeError: ${String(error)}`);
    return;
  }
  assert.ok(error instanceof GuardError, `not a GuardError: ${String(error)}`);
  assert.ok(error.status >= 400 && error.status < 500, `status ${error.status}`);
  if (error.wwwAuthenticate !== undefined) assert.doesNotMatch(error.wwwAuthenticate, /[\r\n]/);
}

const header = fc.record(
  {
    alg: fc.constantFrom('ES256', 'RS256', 'HS256', 'none', '', 'ES384'),
    typ: fc.constantFrom('at+jwt', 'JWT', 'application/at+jwt', 'id+jwt'),
    kid: fc.oneof(fc.string({ maxLength: 20 }), fc.integer(), fc.constant(undefined)),
    crit: fc.constantFrom(['exp'], [], 'x'),
    jku: fc.webUrl(),
    jwk: fc.constant({ kty: 'EC' }),
    x5c: fc.constant(['MIIB']),
  },
  { requiredKeys: ['alg'] },
);
const claims = fc.record(
  {
    iss: fc.oneof(fc.webUrl(), fc.string()),
    aud: fc.oneof(fc.string(), fc.array(fc.string(), { maxLength: 3 }), fc.integer()),
    exp: fc.oneof(fc.integer(), fc.double(), fc.string()),
    nbf: fc.oneof(fc.integer(), fc.string()),
    sub: fc.oneof(fc.string(), fc.integer()),
    scp: fc.oneof(fc.string(), fc.array(fc.string())),
    roles: fc.oneof(fc.array(fc.string()), fc.string(), fc.jsonValue({ maxDepth: 2 })),
    tid: fc.oneof(fc.string(), fc.integer()),
    act: fc.jsonValue({ maxDepth: 4 }),
    may_act: fc.jsonValue({ maxDepth: 3 }),
  },
  { requiredKeys: [] },
);

/** Authorization values: garbage, near-valid JWS, and JWS signed by the trusted key with generated claims or header. */
function authorizations(): fc.Arbitrary<unknown> {
  const key = issuer.keys[0]!;
  const signedClaims = claims.map((c) => `Bearer ${signRaw({ alg: 'ES256', typ: 'at+jwt', kid: key.kid }, { ...issuer.claims(), ...c }, key.privateKey)}`);
  // ES256 signatures with a generated header (signRaw cannot make HS256/none with an EC key: those go unsigned).
  const signedHeader = header.map((h) => `Bearer ${signRaw({ kid: key.kid, typ: 'at+jwt', ...h, alg: 'ES256' }, issuer.claims(), key.privateKey)}`);
  const unsigned = fc.tuple(header, claims, fc.string({ maxLength: 40 })).map(([h, c, s]) => `Bearer ${b64u(h)}.${b64u(c)}.${s}`);
  return fc.oneof(
    signedClaims,
    signedHeader,
    unsigned,
    fc.string({ maxLength: 200 }).map((s) => `Bearer ${s}`),
    fc.string({ maxLength: 200 }),
    fc.constantFrom('Bearer', 'Bearer  ', 'bearer a.b.c', 'Basic abc', `Bearer ${'a'.repeat(17000)}`, 'Bearer a,Bearer b', 'Bearer "x"'),
    fc.array(fc.string({ maxLength: 50 }), { maxLength: 3 }),
    fc.constantFrom(null, undefined, 42, {}, ['Bearer a.b.c', 'Bearer a.b.c']),
  );
}

test('guard.verify: a Principal or a typed 4xx GuardError for any Authorization value', async () => {
  await fc.assert(
    fc.asyncProperty(authorizations(), async (authorization) => {
      try {
        const principal = await guard.verify(authorization as string);
        assert.equal(typeof principal, 'object');
      } catch (error) {
        assertTypedRefusal(error, authorization);
      }
    }),
    { seed: 1204, numRuns: 600 },
  );
});

test('guard.verify: crit, jku, jwk, alg none/HS256 are refused even when the signature is genuine', async () => {
  const key = issuer.keys[0]!;
  await fc.assert(
    fc.asyncProperty(
      fc.constantFrom<Record<string, unknown>>({ crit: ['exp'] }, { crit: [] }, { jku: 'http://127.0.0.1:1/' }, { jwk: { kty: 'EC' } }, { x5u: 'http://127.0.0.1:1/' }),
      async (extra) => {
        const token = signRaw({ alg: 'ES256', typ: 'at+jwt', kid: key.kid, ...extra }, issuer.claims(), key.privateKey);
        await assert.rejects(guard.verify(`Bearer ${token}`), (error: unknown) => error instanceof GuardError && error.status === 401);
      },
    ),
    { seed: 7, numRuns: 20 },
  );
});

test('bearerToken: a token or a typed 4xx refusal for any input', () => {
  fc.assert(
    fc.property(fc.oneof(fc.string({ maxLength: 300 }), fc.array(fc.string({ maxLength: 60 }), { maxLength: 4 }), fc.constantFrom(null, undefined, 1, {}, [1])), (input) => {
      try {
        const token = bearerToken(input as string, { realm: 'api' });
        assert.match(token, /^[A-Za-z0-9\-._~+/]+=*$/);
      } catch (error) {
        assertTypedRefusal(error, input);
      }
    }),
    { seed: 42, numRuns: 3000 },
  );
});

test('claims challenges: parsing any WWW-Authenticate value never throws, and a decoded challenge is JSON', () => {
  const challengeHeader = fc.oneof(
    fc.string({ maxLength: 400 }),
    fc.array(fc.tuple(fc.constantFrom('Bearer', 'Basic', 'DPoP', 'x'), fc.array(fc.tuple(fc.constantFrom('error', 'claims', 'realm', '__proto__', 'constructor', 'a'), fc.string({ maxLength: 40 })), { maxLength: 4 })), { maxLength: 3 }).map((list) =>
      list.map(([scheme, params]) => `${scheme} ${params.map(([k, v]) => `${k}="${v.replace(/["\\]/g, '\\$&')}"`).join(', ')}`).join(', '),
    ),
  );
  fc.assert(
    fc.property(challengeHeader, (value) => {
      const all = parseChallenges(value);
      for (const challenge of all) for (const v of Object.values(challenge.params)) assert.equal(typeof v, 'string');
      const bearer = bearerChallengeOf(value);
      const claimsParam = bearer?.params.claims;
      if (claimsParam !== undefined) {
        const decoded = decodeClaimsChallenge(claimsParam);
        if (decoded !== undefined) assert.doesNotThrow(() => JSON.parse(decoded));
      }
    }),
    { seed: 99, numRuns: 3000 },
  );
  fc.assert(
    fc.property(fc.string({ maxLength: 200 }), (value) => {
      const decoded = decodeClaimsChallenge(value);
      if (decoded !== undefined) assert.doesNotThrow(() => JSON.parse(decoded));
    }),
    { seed: 100, numRuns: 3000 },
  );
});

/**
 * The issuer's JWKS endpoint down (issue 12, "no fetch storm"): the guard keeps validating tokens
 * signed with keys it holds, refuses unknown kids, and asks the endpoint again at most once per
 * cooldown — for the max-age background refresh as for unknown kids — however many requests arrive.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createGuard, GuardError } from '../src/index.ts';
import { generateTestKey, startIssuer, type TestIssuer } from './fixtures/issuer.ts';

let issuer: TestIssuer;
before(async () => {
  issuer = await startIssuer({ keys: [generateTestKey('ES256')] });
});
after(() => issuer.close());

test('JWKS down past max age: known keys keep validating, unknown kids refused, one fetch per cooldown', async () => {
  let now = Date.now();
  const guard = createGuard({ authority: issuer.authority, audience: issuer.audience, cacheSize: 0, clock: () => now, jwks: { maxAge: 2_000, cooldown: 1_000 } });
  await guard.verify(`Bearer ${issuer.token()}`);
  const stranger = generateTestKey('ES256');
  issuer.failWith = 503;
  try {
    const before = issuer.counts.jwks;
    // 10 simulated seconds, 100 requests each, half with a kid the guard does not know.
    for (let second = 0; second < 10; second++) {
      for (let i = 0; i < 50; i++) {
        now += 10;
        const principal = await guard.verify(`Bearer ${issuer.token()}`);
        assert.equal(typeof principal, 'object');
        await assert.rejects(guard.verify(`Bearer ${issuer.token({}, { key: stranger })}`), (error: unknown) => error instanceof GuardError && error.status === 401);
      }
    }
    const fetches = issuer.counts.jwks - before;
    assert.ok(fetches >= 1, 'the outage was noticed');
    assert.ok(fetches <= 11, `at most one fetch per cooldown (1 s) over 10 s, got ${fetches}`);
  } finally {
    issuer.failWith = undefined;
  }
});

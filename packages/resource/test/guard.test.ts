/**
 * The guard against a real issuer (node:http on 127.0.0.1, keys generated per run): valid tokens,
 * every kind of bad input the resource SDK issue lists, the JWKS cache's behaviour counted at the
 * issuer, the verified-token cache, and authorization rules.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createGuard, GuardError, RemoteJwks, type Guard, type GuardOptions, type Principal } from '../src/index.ts';
import { generateTestKey, signRaw, startIssuer, type TestIssuer } from './fixtures/issuer.ts';

let issuer: TestIssuer;

before(async () => {
  issuer = await startIssuer({ keys: [generateTestKey('ES256'), generateTestKey('RS256'), generateTestKey('PS256')] });
});
after(() => issuer.close());

function guardFor(overrides: Partial<GuardOptions> = {}): Guard {
  return createGuard({ authority: issuer.authority, audience: issuer.audience, ...overrides });
}

/** Asserts a GuardError with the given fields, and that the token appears nowhere in it. */
async function rejects(
  promise: Promise<unknown>,
  expected: { status: number; error?: string | undefined; reason: string },
  token?: string,
): Promise<GuardError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof GuardError, `expected a GuardError, got ${String(error)}`);
    assert.equal(error.status, expected.status, error.message);
    assert.equal(error.error, 'error' in expected ? expected.error : error.error);
    assert.equal(error.reason, expected.reason, error.message);
    if (token) {
      for (const text of [error.message, error.description, error.wwwAuthenticate ?? '', JSON.stringify(error.toJSON() ?? {}), String(error.stack)]) {
        assert.ok(!text.includes(token), 'the token must never appear in an error');
        const signature = token.split('.')[2];
        if (signature && signature.length > 8) assert.ok(!text.includes(signature), 'not even its signature');
      }
    }
    return error;
  }
  assert.fail('expected a rejection');
}

describe('valid tokens', () => {
  test('ES256 via discovery: the principal', async () => {
    const guard = guardFor();
    const act = { sub: 'docs-sp', client_id: 'docs-api', act: { sub: 'tasks-sp', client_id: 'tasks-api' } };
    const token = issuer.token({ act, roles: ['Reader'] });
    const p = await guard.verify(`Bearer ${token}`);
    assert.equal(p.userId, '00000000-0000-0000-0000-0000000a11ce');
    assert.equal(p.tenantId, issuer.tid);
    assert.equal(p.subject, 'pairwise-sub-alice');
    assert.equal(p.clientId, 'tasks-web');
    assert.deepEqual(p.scopes, ['Tasks.Read', 'Tasks.Write']);
    assert.deepEqual(p.roles, ['Reader']);
    assert.equal(p.appOnly, false);
    assert.deepEqual(p.chain, [
      { sub: 'docs-sp', client_id: 'docs-api' },
      { sub: 'tasks-sp', client_id: 'tasks-api' },
    ]);
    assert.deepEqual(p.mayAct, []);
    assert.equal(p.token, token);
    assert.equal(p.claims.iss, issuer.issuer);
    assert.ok(Object.isFrozen(p) && Object.isFrozen(p.claims) && Object.isFrozen(p.scopes) && Object.isFrozen(p.claims.act));
    assert.equal(guard.issuer, issuer.issuer);
  });

  test('the full chain with each actor’s iss, and may_act (one object, or an array) as lists, outermost actor first', async () => {
    const guard = guardFor();
    const act = { sub: 'docs-sp', iss: issuer.issuer, client_id: 'docs-api', act: { sub: 'tasks-api', client_id: 'tasks-api', act: { sub: 'web-bff' } } };
    const p = await guard.verify(issuer.token({ act, may_act: { sub: 'audit-api', client_id: 'audit-api' } }));
    assert.deepEqual(p.chain, [
      { sub: 'docs-sp', client_id: 'docs-api', iss: issuer.issuer },
      { sub: 'tasks-api', client_id: 'tasks-api' },
      { sub: 'web-bff', client_id: undefined },
    ]);
    assert.deepEqual(p.mayAct, [{ sub: 'audit-api', client_id: 'audit-api' }]);
    assert.ok(Object.isFrozen(p.mayAct) && Object.isFrozen(p.mayAct[0]) && Object.isFrozen(p.chain[0]));
    const several = await guard.verify(issuer.token({ may_act: [{ sub: 'a', client_id: 'a' }, { sub: 'b', iss: issuer.issuer }] }));
    assert.deepEqual(several.mayAct, [{ sub: 'a', client_id: 'a' }, { sub: 'b', client_id: undefined, iss: issuer.issuer }]);
  });

  test('RS256 and PS256, bare token, lower-case scheme, array of one header', async () => {
    const guard = guardFor();
    const rs = issuer.token({}, { key: issuer.keys[1] });
    const ps = issuer.token({}, { key: issuer.keys[2] });
    assert.equal((await guard.verify(rs)).subject, 'pairwise-sub-alice');
    assert.equal((await guard.verify(`bearer ${ps}`)).subject, 'pairwise-sub-alice');
    assert.equal((await guard.verify([`Bearer ${issuer.token()}`])).subject, 'pairwise-sub-alice');
  });

  test('issuer + jwksUri: no discovery', async () => {
    const before = issuer.counts.discovery;
    const guard = createGuard({ issuer: issuer.issuer, jwksUri: issuer.jwksUri, audience: issuer.audience });
    await guard.verify(issuer.token());
    assert.equal(issuer.counts.discovery, before);
  });

  test('several audiences: any one matches', async () => {
    const guard = guardFor({ audience: ['tasks-api', 'api://tasks'] });
    assert.ok(await guard.verify(issuer.token({ aud: 'tasks-api' })));
    assert.ok(await guard.verify(issuer.token({ aud: ['other', 'api://tasks'] })));
  });

  test('app-only tokens: idtyp app, or no delegated scope; clientId falls back to client_id, then appid', async () => {
    const guard = guardFor();
    const app = await guard.verify(issuer.token({ idtyp: 'app', scp: undefined, roles: ['Docs.ReadAll'], azp: 'indexer', client_id: 'indexer', oid: 'sp-indexer' }));
    assert.equal(app.appOnly, true);
    assert.equal(app.userId, 'sp-indexer');
    assert.deepEqual(app.roles, ['Docs.ReadAll']);
    const noScp = await guard.verify(issuer.token({ scp: undefined, azp: undefined, client_id: 'indexer' }));
    assert.equal(noScp.appOnly, true);
    assert.equal(noScp.clientId, 'indexer');
    const v1 = await guard.verify(issuer.token({ scp: undefined, azp: undefined, client_id: undefined, appid: 'legacy-app' }));
    assert.equal(v1.clientId, 'legacy-app');
    // RFC 9068 style: `scope` with sub = client → app-only; `scope` with a user sub → delegated.
    const rfc9068App = await guard.verify(issuer.token({ scp: undefined, scope: 'api:read', sub: 'indexer', azp: undefined, client_id: 'indexer' }));
    assert.equal(rfc9068App.appOnly, true);
    const rfc9068User = await guard.verify(issuer.token({ scp: undefined, scope: 'api:read', oid: undefined }));
    assert.equal(rfc9068User.appOnly, false);
    assert.equal(rfc9068User.userId, 'pairwise-sub-alice', 'sub when the issuer has no oid');
    assert.deepEqual(rfc9068User.scopes, ['api:read']);
  });

  test('ready() prefetches discovery and keys once', async () => {
    const d = issuer.counts.discovery;
    const j = issuer.counts.jwks;
    const guard = guardFor();
    await guard.ready();
    await guard.verify(issuer.token());
    assert.equal(issuer.counts.discovery - d, 1);
    assert.equal(issuer.counts.jwks - j, 1);
  });

  test('one discovery and one JWKS fetch for 50 concurrent first requests', async () => {
    const d = issuer.counts.discovery;
    const j = issuer.counts.jwks;
    const guard = guardFor();
    const results = await Promise.all(Array.from({ length: 50 }, () => guard.verify(issuer.token())));
    assert.equal(results.length, 50);
    assert.equal(issuer.counts.discovery - d, 1);
    assert.equal(issuer.counts.jwks - j, 1);
  });
});

describe('bad input', () => {
  test('alg: none', async () => {
    const guard = guardFor();
    const token = signRaw({ alg: 'none', typ: 'at+jwt', kid: issuer.keys[0]?.kid }, issuer.claims(), null);
    await rejects(guard.verify(`Bearer ${token}`), { status: 401, error: 'invalid_token', reason: 'ERR_JOSE_ALG_NOT_ALLOWED' }, token);
    const noSig = token.replace(/\.$/, '.AAAA');
    await rejects(guard.verify(noSig), { status: 401, error: 'invalid_token', reason: 'ERR_JOSE_ALG_NOT_ALLOWED' });
  });

  test('HS256 signed with the public key as the HMAC secret (algorithm confusion)', async () => {
    const guard = guardFor();
    for (const key of [issuer.keys[0], issuer.keys[1]]) {
      assert.ok(key);
      const secrets = [
        Buffer.from(key.publicKey.export({ type: 'spki', format: 'pem' }) as string),
        key.publicKey.export({ type: 'spki', format: 'der' }),
        Buffer.from(JSON.stringify(key.publicJwk)),
      ];
      for (const secret of secrets) {
        const token = signRaw({ alg: 'HS256', typ: 'at+jwt', kid: key.kid }, issuer.claims(), secret);
        await rejects(guard.verify(`Bearer ${token}`), { status: 401, error: 'invalid_token', reason: 'ERR_JOSE_ALG_NOT_ALLOWED' }, token);
      }
    }
    assert.throws(() => guardFor({ algorithms: ['HS256' as never] }), TypeError);
    assert.throws(() => guardFor({ algorithms: ['none' as never] }), TypeError);
  });

  test('a storm of 200 unknown kids: the JWKS is fetched at most once per cooldown', async () => {
    let now = Date.now();
    const guard = guardFor({ clock: () => now, jwks: { cooldown: 30_000 } });
    const attacker = generateTestKey('ES256', 'attacker');
    const storm = () =>
      Promise.allSettled(
        Array.from({ length: 200 }, () => {
          const token = signRaw({ alg: 'ES256', typ: 'at+jwt', kid: `forged-${randomUUID()}` }, issuer.claims(), attacker.privateKey);
          return guard.verify(`Bearer ${token}`);
        }),
      );
    const j = issuer.counts.jwks;
    // Cold: the first fetch is shared by all 200, and the cooldown forbids another.
    let results = await storm();
    assert.ok(results.every((r) => r.status === 'rejected' && (r.reason as GuardError).reason === 'ERR_JWKS_NO_MATCHING_KEY'));
    assert.equal(issuer.counts.jwks - j, 1);
    // Warm, within the cooldown: no fetch at all.
    now += 10_000;
    results = await storm();
    assert.equal(issuer.counts.jwks - j, 1);
    // After the cooldown: exactly one more, shared by the whole storm.
    now += 30_000;
    results = await storm();
    assert.ok(results.every((r) => r.status === 'rejected'));
    assert.equal(issuer.counts.jwks - j, 2);
  });

  test('jku, x5u and jwk headers are refused (never fetched nor trusted); x5c is never trusted', async () => {
    const attacker = generateTestKey('ES256', 'attacker-kid');
    let hits = 0;
    const evil: Server = createServer((_req, res) => {
      hits++;
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [attacker.publicJwk] }));
    });
    await new Promise<void>((r) => evil.listen(0, '127.0.0.1', r));
    const evilBase = `http://127.0.0.1:${(evil.address() as AddressInfo).port}`;
    try {
      const guard = guardFor();
      const claims = issuer.claims();
      const headers = [
        { alg: 'ES256', typ: 'at+jwt', kid: 'attacker-kid', jku: `${evilBase}/jwks` },
        { alg: 'ES256', typ: 'at+jwt', kid: 'attacker-kid', x5u: `${evilBase}/cert.pem` },
        { alg: 'ES256', typ: 'at+jwt', jku: `${evilBase}/jwks`, x5u: `${evilBase}/cert.pem` },
      ];
      for (const header of headers) {
        const token = signRaw(header, claims, attacker.privateKey);
        // RFC 8725 §3.10: a token naming its own key is refused outright (core's checkJwsHeader).
        const err = await rejects(guard.verify(`Bearer ${token}`), { status: 401, error: 'invalid_token', reason: 'ERR_JOSE_KEY_REFERENCE' }, token);
        assert.ok(err);
      }
      const genuineKid = issuer.keys[0]?.kid;
      const embeddedJwk = signRaw({ alg: 'ES256', typ: 'at+jwt', kid: genuineKid, jwk: attacker.publicJwk }, claims, attacker.privateKey);
      await rejects(guard.verify(`Bearer ${embeddedJwk}`), { status: 401, error: 'invalid_token', reason: 'ERR_JOSE_KEY_REFERENCE' }, embeddedJwk);
      // A certificate chain (x5c) beside a genuine kid is only a hint: the genuine key is used, the signature fails.
      const embedded = signRaw({ alg: 'ES256', typ: 'at+jwt', kid: genuineKid, x5c: ['MIIB'] }, claims, attacker.privateKey);
      await rejects(guard.verify(`Bearer ${embedded}`), { status: 401, error: 'invalid_token', reason: 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED' }, embedded);
      assert.equal(hits, 0, 'the URLs in the header were never fetched');
    } finally {
      await new Promise<void>((r) => evil.close(() => r()));
    }
  });

  test('wrong typ', async () => {
    const guard = guardFor();
    for (const typ of ['JWT', 'id_token+jwt', 'dpop+jwt']) {
      const token = issuer.token({}, { typ });
      await rejects(guard.verify(`Bearer ${token}`), { status: 401, error: 'invalid_token', reason: 'ERR_JWT_TYP_INVALID' }, token);
    }
    const noTyp = signRaw({ alg: 'ES256', kid: issuer.keys[0]?.kid }, issuer.claims(), issuer.keys[0]!.privateKey);
    await rejects(guard.verify(noTyp), { status: 401, error: 'invalid_token', reason: 'ERR_JWT_TYP_INVALID' });
    assert.ok(await guard.verify(issuer.token({}, { typ: 'application/at+jwt' })));
    // Opt-out for issuers that do not type their access tokens: plain JWT passes, other types still do not.
    const lax = guardFor({ requireTyp: false });
    assert.ok(await lax.verify(issuer.token({}, { typ: 'JWT' })));
    assert.ok(await lax.verify(noTyp));
    await rejects(lax.verify(issuer.token({}, { typ: 'dpop+jwt' })), { status: 401, error: 'invalid_token', reason: 'ERR_JWT_TYP_INVALID' });
  });

  test('another audience', async () => {
    const token = issuer.token({ aud: 'api://docs' });
    const err = await rejects(guardFor().verify(`Bearer ${token}`), { status: 401, error: 'invalid_token', reason: 'ERR_JWT_AUDIENCE_INVALID' }, token);
    assert.match(err.wwwAuthenticate ?? '', /^Bearer realm="api:\/\/tasks", error="invalid_token", error_description="The token is addressed to another audience\."$/);
  });

  test('another tenant', async () => {
    const guard = guardFor({ tenants: [issuer.tid] });
    assert.ok(await guard.verify(issuer.token()));
    const token = issuer.token({ tid: '72f988bf-86f1-41af-91ab-2d7cd011db47' });
    await rejects(guard.verify(`Bearer ${token}`), { status: 401, error: 'invalid_token', reason: 'ERR_JWT_TENANT_INVALID' }, token);
    await rejects(guard.verify(issuer.token({ tid: undefined })), { status: 401, error: 'invalid_token', reason: 'ERR_JWT_TENANT_INVALID' });
  });

  test('another issuer', async () => {
    const token = issuer.token({ iss: `${issuer.base}/fabrikam/v2.0` });
    await rejects(guardFor().verify(token), { status: 401, error: 'invalid_token', reason: 'ERR_JWT_ISSUER_INVALID' }, token);
  });

  test('expired (beyond the skew), accepted within it', async () => {
    const now = Math.floor(Date.now() / 1000);
    const guard = guardFor();
    const token = issuer.token({ iat: now - 3600, nbf: now - 3600, exp: now - 61 });
    await rejects(guard.verify(`Bearer ${token}`), { status: 401, error: 'invalid_token', reason: 'ERR_JWT_EXPIRED' }, token);
    assert.ok(await guard.verify(issuer.token({ iat: now - 3600, nbf: now - 3600, exp: now - 30 })));
    const strict = guardFor({ clockTolerance: 0 });
    await rejects(strict.verify(issuer.token({ exp: now - 1 })), { status: 401, error: 'invalid_token', reason: 'ERR_JWT_EXPIRED' });
  });

  test('nbf in the future', async () => {
    const now = Math.floor(Date.now() / 1000);
    const token = issuer.token({ nbf: now + 300 });
    await rejects(guardFor().verify(`Bearer ${token}`), { status: 401, error: 'invalid_token', reason: 'ERR_JWT_NOT_YET_VALID' }, token);
  });

  test('missing bearer: 401 with only the realm (RFC 6750 §3.1)', async () => {
    const guard = guardFor();
    for (const input of [undefined, null, '', '   ', []]) {
      const err = await rejects(guard.verify(input as never), { status: 401, error: undefined, reason: 'ERR_BEARER_MISSING' });
      assert.equal(err.wwwAuthenticate, 'Bearer realm="api://tasks"');
      assert.equal(err.toJSON(), undefined);
    }
  });

  test('malformed bearer: Basic, Bearer without token, Bearer with two tokens', async () => {
    const guard = guardFor();
    await rejects(guard.verify([issuer.token()]), { status: 400, error: 'invalid_request', reason: 'ERR_BEARER_MALFORMED' });
    for (const input of ['Basic x', 'Basic dXNlcjpwYXNz', 'Bearer', 'Bearer ', 'Bearer a b', `Bearer ${issuer.token()} extra`, 'Token a.b.c', 'Bearer a*b.c.d', 'Bearer\ta.b.c']) {
      const err = await rejects(guard.verify(input), { status: 400, error: 'invalid_request', reason: 'ERR_BEARER_MALFORMED' });
      assert.match(err.wwwAuthenticate ?? '', /^Bearer realm="api:\/\/tasks", error="invalid_request", error_description="[^"]+"$/);
    }
  });

  test('two Authorization headers (as Node keeps them, and as Fetch joins them)', async () => {
    const guard = guardFor();
    const a = issuer.token();
    const b = issuer.token();
    await rejects(guard.verify([`Bearer ${a}`, `Bearer ${b}`]), { status: 400, error: 'invalid_request', reason: 'ERR_BEARER_DUPLICATE' }, a);
    await rejects(guard.verify(`Bearer ${a}, Bearer ${b}`), { status: 400, error: 'invalid_request', reason: 'ERR_BEARER_DUPLICATE' }, a);
    await rejects(guard.verify(`Bearer ${a}, Basic eA==`), { status: 400, error: 'invalid_request', reason: 'ERR_BEARER_DUPLICATE' }, a);
  });

  test('non-base64url segments and other malformed JWS', async () => {
    const guard = guardFor();
    const good = issuer.token();
    const [h, p, s] = good.split('.') as [string, string, string];
    const cases = [
      `${h}.${p.slice(0, 10)}+${p.slice(11)}.${s}`, // '+' is b64token but not base64url
      `${h}.${p}.${s.slice(0, 10)}/${s.slice(11)}`,
      `${h}.${p}.${s}=`, // padding
      `${h}.${p}.${s}.${s}`, // four segments
      `${h}.${p}`, // two
      `${Buffer.from('[1]').toString('base64url')}.${p}.${s}`, // header not an object
      `${h}.${Buffer.from('not json').toString('base64url')}.${s}`,
      `${h}.${p}.${s}abc`, // signature of impossible length (4n+1 characters)
    ];
    for (const token of cases) {
      const err = await rejects(guard.verify(`Bearer ${token}`), { status: 401, error: 'invalid_token', reason: 'ERR_JWS_INVALID' }, token);
      assert.equal(err.description, 'The token is not a well-formed signed JWT.');
    }
  });

  test('an Authorization header over 16 KiB: 400 before parsing, no fetch', async () => {
    const d = issuer.counts.discovery;
    const j = issuer.counts.jwks;
    const guard = guardFor();
    const huge = `Bearer ${'a'.repeat(16 * 1024)}.b.c`;
    const start = process.hrtime.bigint();
    await rejects(guard.verify(huge), { status: 400, error: 'invalid_request', reason: 'ERR_BEARER_TOO_LARGE' });
    await rejects(guard.verify([huge]), { status: 400, error: 'invalid_request', reason: 'ERR_BEARER_TOO_LARGE' });
    await rejects(guard.verify(huge.slice(7)), { status: 400, error: 'invalid_request', reason: 'ERR_BEARER_TOO_LARGE' });
    assert.ok(process.hrtime.bigint() - start < 50_000_000n);
    assert.equal(issuer.counts.discovery - d, 0);
    assert.equal(issuer.counts.jwks - j, 0);
  });

  test('crit header, tampered payload, foreign key under a genuine kid, alg/key mismatch', async () => {
    const guard = guardFor();
    const key = issuer.keys[0]!;
    const crit = signRaw({ alg: 'ES256', typ: 'at+jwt', kid: key.kid, crit: ['exp'], exp: 1 }, issuer.claims(), key.privateKey);
    await rejects(guard.verify(crit), { status: 401, error: 'invalid_token', reason: 'ERR_JOSE_CRIT_UNSUPPORTED' }, crit);

    const good = issuer.token();
    const [h, , s] = good.split('.');
    const forgedPayload = Buffer.from(JSON.stringify({ ...issuer.claims(), scp: 'Tasks.Admin' })).toString('base64url');
    const tampered = `${h}.${forgedPayload}.${s}`;
    await rejects(guard.verify(tampered), { status: 401, error: 'invalid_token', reason: 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED' }, tampered);

    const foreign = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    const impostor = signRaw({ alg: 'ES256', typ: 'at+jwt', kid: key.kid }, issuer.claims(), foreign);
    await rejects(guard.verify(impostor), { status: 401, error: 'invalid_token', reason: 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED' }, impostor);

    // The header names RS256 but the kid is the EC key: no key fits, nothing is verified.
    const rsaKey = issuer.keys[1]!;
    const mismatch = signRaw({ alg: 'RS256', typ: 'at+jwt', kid: key.kid }, issuer.claims(), rsaKey.privateKey);
    await rejects(guard.verify(mismatch), { status: 401, error: 'invalid_token', reason: 'ERR_JWKS_NO_MATCHING_KEY' }, mismatch);
    // An allowed algorithm the guard was not configured for.
    const esOnly = guardFor({ algorithms: ['ES256'] });
    await rejects(esOnly.verify(issuer.token({}, { key: rsaKey })), { status: 401, error: 'invalid_token', reason: 'ERR_JOSE_ALG_NOT_ALLOWED' });
  });

  test('missing sub, malformed act, non-numeric exp', async () => {
    const guard = guardFor();
    await rejects(guard.verify(issuer.token({ sub: undefined })), { status: 401, error: 'invalid_token', reason: 'ERR_JWT_CLAIM_MISSING' });
    await rejects(guard.verify(issuer.token({ act: 'tasks-api' })), { status: 401, error: 'invalid_token', reason: 'ERR_JWT_CLAIM_INVALID' });
    await rejects(guard.verify(issuer.token({ act: { client_id: 'x' } })), { status: 401, error: 'invalid_token', reason: 'ERR_JWT_CLAIM_INVALID' });
    await rejects(guard.verify(issuer.token({ act: { sub: 'x', iss: 7 } })), { status: 401, error: 'invalid_token', reason: 'ERR_JWT_CLAIM_INVALID' });
    for (const mayAct of ['tasks-api', [], [{ client_id: 'tasks-api' }], { sub: 'tasks-api', client_id: 1 }, null]) {
      await rejects(guard.verify(issuer.token({ may_act: mayAct })), { status: 401, error: 'invalid_token', reason: 'ERR_JWT_CLAIM_INVALID' }, JSON.stringify(mayAct));
    }
    await rejects(guard.verify(issuer.token({ exp: String(Math.floor(Date.now() / 1000) + 60) })), { status: 401, error: 'invalid_token', reason: 'ERR_JWT_CLAIM_INVALID' });
  });
});

describe('verified-token cache', () => {
  test('a repeated token is served from the cache (same principal object); disabled with cacheSize 0', async () => {
    const guard = guardFor();
    const token = issuer.token();
    const a = await guard.verify(`Bearer ${token}`);
    const b = await guard.verify(token);
    assert.equal(a, b);
    const uncached = guardFor({ cacheSize: 0 });
    assert.notEqual(await uncached.verify(token), await uncached.verify(token));
  });

  test('entries leave at exp minus the skew; after exp (+ skew) the token is refused', async () => {
    const t0 = Math.floor(Date.now() / 1000);
    let now = t0 * 1000;
    const guard = guardFor({ clock: () => now, clockTolerance: 60 });
    const token = issuer.token({ iat: t0, nbf: t0, exp: t0 + 300 });
    const first = await guard.verify(token);
    now = (t0 + 239) * 1000;
    assert.equal(await guard.verify(token), first, 'still cached just before exp - skew');
    now = (t0 + 241) * 1000;
    const second = await guard.verify(token);
    assert.notEqual(second, first, 're-verified after exp - skew');
    now = (t0 + 361) * 1000;
    await rejects(guard.verify(token), { status: 401, error: 'invalid_token', reason: 'ERR_JWT_EXPIRED' }, token);
  });

  test('bounded: the least recently used token leaves first', async () => {
    const guard = guardFor({ cacheSize: 2 });
    const [t1, t2, t3] = [issuer.token(), issuer.token(), issuer.token()];
    const p1 = await guard.verify(t1);
    await guard.verify(t2);
    assert.equal(await guard.verify(t1), p1); // t1 now most recent
    await guard.verify(t3); // evicts t2
    assert.equal(await guard.verify(t1), p1);
    const p2 = await guard.verify(t2);
    assert.notEqual(await guard.verify(t3), undefined);
    assert.ok(p2);
  });

  test('failures are not cached; a cached token whose key is withdrawn is re-verified and refused', async () => {
    let now = Date.now();
    const guard = guardFor({ clock: () => now, jwks: { maxAge: 60_000, cooldown: 30_000 } });
    const good = issuer.token();
    const [h, p] = good.split('.');
    const bad = `${h}.${p}.${'A'.repeat(86)}`;
    await rejects(guard.verify(bad), { status: 401, error: 'invalid_token', reason: 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED' });
    await guard.verify(good);
    await rejects(guard.verify(bad), { status: 401, error: 'invalid_token', reason: 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED' });

    // The issuer withdraws the key (compromise): after the next refresh, the cached verification no longer stands.
    const withdrawn = issuer.keys[0]!;
    issuer.published = issuer.keys.filter((k) => k !== withdrawn);
    try {
      now += 61_000;
      await guard.verify(issuer.token({}, { key: issuer.keys[1] })); // triggers the background refresh
      // The refresh runs in the background: wait for its effect (bounded), not for a fixed time, which a
      // loaded machine overruns.
      for (let i = 0; i < 100 && (await guard.verify(good).then(() => true, () => false)); i++) await new Promise((r) => setTimeout(r, 50));
      await rejects(guard.verify(good), { status: 401, error: 'invalid_token', reason: 'ERR_JWKS_NO_MATCHING_KEY' }, good);
    } finally {
      issuer.published = undefined;
    }
  });
});

describe('JWKS cache', () => {
  test('served from cache while the JWKS endpoint is down (including past max age)', async () => {
    let now = Date.now();
    const errors: string[] = [];
    const guard = guardFor({ clock: () => now, jwks: { maxAge: 60_000 }, onError: (e) => errors.push(e.message) });
    await guard.ready();
    issuer.failWith = 503;
    try {
      assert.ok(await guard.verify(issuer.token()));
      now += 120_000; // stale: a background refresh starts and fails
      assert.ok(await guard.verify(issuer.token()));
      // Wait for the background refresh to fail (bounded), not for a fixed time a loaded machine overruns.
      for (let i = 0; i < 100 && !errors.some((m) => m.includes('503')); i++) await new Promise((r) => setTimeout(r, 50));
      assert.ok(await guard.verify(issuer.token({}, { key: issuer.keys[1] })));
      assert.ok(errors.some((m) => m.includes('503')));
    } finally {
      issuer.failWith = undefined;
    }
  });

  test('down with nothing cached: 503 temporarily_unavailable, no challenge', async () => {
    issuer.failWith = 500;
    try {
      const token = issuer.token();
      const err = await rejects(guardFor().verify(token), { status: 503, error: 'temporarily_unavailable', reason: 'ERR_JWKS_UNAVAILABLE' }, token);
      assert.equal(err.wwwAuthenticate, undefined);
      const direct = createGuard({ issuer: issuer.issuer, jwksUri: issuer.jwksUri, audience: issuer.audience });
      await rejects(direct.verify(token), { status: 503, error: 'temporarily_unavailable', reason: 'ERR_JWKS_UNAVAILABLE' }, token);
    } finally {
      issuer.failWith = undefined;
    }
  });

  test('timeout', async () => {
    issuer.jwksDelay = 500;
    try {
      const guard = createGuard({ issuer: issuer.issuer, jwksUri: issuer.jwksUri, audience: issuer.audience, jwks: { timeout: 100 } });
      const start = Date.now();
      await rejects(guard.verify(issuer.token()), { status: 503, error: 'temporarily_unavailable', reason: 'ERR_JWKS_UNAVAILABLE' });
      assert.ok(Date.now() - start < 400);
    } finally {
      issuer.jwksDelay = 0;
    }
  });

  test('a new kid (rotation) is fetched, but only outside the cooldown', async () => {
    let now = Date.now();
    const guard = guardFor({ clock: () => now, jwks: { cooldown: 30_000 } });
    await guard.ready();
    const next = generateTestKey('ES256', 'next-key');
    issuer.keys = [...issuer.keys, next];
    try {
      const token = issuer.token({}, { key: next });
      await rejects(guard.verify(token), { status: 401, error: 'invalid_token', reason: 'ERR_JWKS_NO_MATCHING_KEY' });
      now += 31_000;
      assert.ok(await guard.verify(token));
    } finally {
      issuer.keys = issuer.keys.filter((k) => k !== next);
    }
  });

  test('max age: a background refresh while the cached keys keep serving', async () => {
    let now = Date.now();
    const guard = guardFor({ clock: () => now, jwks: { maxAge: 60_000 } });
    await guard.ready();
    const j = issuer.counts.jwks;
    now += 61_000;
    assert.ok(await guard.verify(issuer.token()));
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(issuer.counts.jwks - j, 1);
    assert.ok(await guard.verify(issuer.token()));
    assert.equal(issuer.counts.jwks - j, 1);
  });

  test('a newer key set is never overwritten by an older, late one', async () => {
    const keyA = generateTestKey('ES256', 'old-a');
    const keyB = generateTestKey('ES256', 'new-b');
    let call = 0;
    const fetchFn = async () => {
      call++;
      // The first answer is slow and ignores the abort signal; the second is quick.
      if (call === 1) await new Promise((r) => setTimeout(r, 300));
      const body = JSON.stringify({ keys: [(call === 1 ? keyA : keyB).publicJwk] });
      return new Response(body, { status: 200, headers: { 'content-type': 'application/json' } });
    };
    const jwks = new RemoteJwks('https://issuer.test/keys', { fetch: fetchFn, timeout: 100, cooldown: 0 });
    await assert.rejects(jwks.reload(), /timed out/);
    await jwks.reload();
    assert.ok(jwks.has('new-b'));
    await new Promise((r) => setTimeout(r, 350)); // the old answer lands now
    assert.ok(jwks.has('new-b'));
    assert.ok(!jwks.has('old-a'));
    assert.equal((await jwks.candidates('new-b', 'ES256')).length, 1);
  });

  test('keys are imported once and reused across refreshes', async () => {
    const guard = guardFor();
    await guard.ready();
    const jwks = new RemoteJwks(issuer.jwksUri, { fetch: globalThis.fetch, cooldown: 0 });
    await jwks.reload();
    const [k1] = await jwks.candidates(issuer.keys[0]!.kid, 'ES256');
    await jwks.reload();
    const [k2] = await jwks.candidates(issuer.keys[0]!.kid, 'ES256');
    assert.ok(k1 && k1 === k2);
  });

  test('private or symmetric JWKs in the set are refused', async () => {
    const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const privateJwk = { ...(pair.privateKey.export({ format: 'jwk' }) as object), kid: 'leaky', alg: 'ES256' };
    const fetchFn = async () => new Response(JSON.stringify({ keys: [privateJwk, { kty: 'oct', k: 'c2VjcmV0', kid: 'sym' }, { kty: 'EC', kid: 'enc', use: 'enc', ...(pair.publicKey.export({ format: 'jwk' }) as object) }] }), { status: 200 });
    const jwks = new RemoteJwks('https://issuer.test/keys', { fetch: fetchFn });
    await jwks.reload();
    assert.ok(!jwks.has('leaky') && !jwks.has('sym') && !jwks.has('enc'));
  });

  test('a discovery document naming another issuer is refused (mix-up)', async () => {
    const liar = await startIssuer({ discoveryIssuer: issuer.issuer });
    try {
      const guard = createGuard({ authority: liar.authority, audience: 'api://tasks' });
      await rejects(guard.verify(liar.token()), { status: 503, error: 'temporarily_unavailable', reason: 'ERR_JWKS_UNAVAILABLE' });
    } finally {
      await liar.close();
    }
  });
});

describe('authorize', () => {
  let guard: Guard;
  let user: Principal;
  let app: Principal;
  before(async () => {
    guard = guardFor();
    user = await guard.verify(issuer.token({ roles: ['Approver'] }));
    app = await guard.verify(issuer.token({ idtyp: 'app', scp: undefined, roles: ['Docs.ReadAll'], azp: 'indexer' }));
  });

  test('scopes any/all', () => {
    guard.authorize(user, { scopes: { any: ['Tasks.Read', 'Tasks.Admin'] } });
    guard.authorize(user, { scopes: { all: ['Tasks.Read', 'Tasks.Write'] } });
    const err = (() => {
      try {
        guard.authorize(user, { scopes: { all: ['Tasks.Read', 'Tasks.Admin'] } });
      } catch (e) {
        return e as GuardError;
      }
      return undefined;
    })();
    assert.ok(err instanceof GuardError);
    assert.equal(err.status, 403);
    assert.equal(err.error, 'insufficient_scope');
    assert.equal(err.scope, 'Tasks.Read Tasks.Admin');
    assert.equal(err.wwwAuthenticate, 'Bearer realm="api://tasks", error="insufficient_scope", error_description="The token lacks every scope of: Tasks.Read Tasks.Admin.", scope="Tasks.Read Tasks.Admin"');
    assert.throws(() => guard.authorize(user, { scopes: { any: ['Tasks.Admin'] } }), { reason: 'ERR_SCOPE_INSUFFICIENT' });
  });

  test('app-only refused unless allowed with an app role', () => {
    assert.throws(() => guard.authorize(app, { scopes: { any: ['Tasks.Read'] } }), { status: 403, error: 'insufficient_scope', reason: 'ERR_APP_ONLY_REFUSED' });
    assert.throws(() => guard.authorize(app), { reason: 'ERR_APP_ONLY_REFUSED' });
    guard.authorize(app, { scopes: { any: ['Tasks.Read'] }, roles: { any: ['Docs.ReadAll'] }, allowAppOnly: true });
    assert.throws(() => guard.authorize(app, { roles: { all: ['Docs.WriteAll'] }, allowAppOnly: true }), { status: 403, reason: 'ERR_ROLE_INSUFFICIENT' });
    // The same route for a user: scopes apply, app roles do not.
    guard.authorize(user, { scopes: { any: ['Tasks.Read'] }, roles: { any: ['Docs.ReadAll'] }, allowAppOnly: true });
    // A route for applications only refuses users.
    assert.throws(() => guard.authorize(user, { roles: { any: ['Docs.ReadAll'] }, allowAppOnly: true }), { status: 403, reason: 'ERR_DELEGATED_REFUSED' });
  });

  test('user roles', () => {
    guard.authorize(user, { userRoles: { any: ['Approver'] } });
    assert.throws(() => guard.authorize(user, { userRoles: { any: ['Admin'] } }), { status: 403, reason: 'ERR_ROLE_INSUFFICIENT' });
  });

  test('RFC 9470 step-up: acr and max_age', async () => {
    guard.authorize(user, { acrValues: ['1'], maxAge: 300 });
    assert.throws(() => guard.authorize(user, { acrValues: ['c1', 'urn:mfa'] }), (e: GuardError) => {
      assert.equal(e.status, 401);
      assert.equal(e.error, 'insufficient_user_authentication');
      assert.equal(e.wwwAuthenticate, 'Bearer realm="api://tasks", error="insufficient_user_authentication", error_description="A stronger authentication is required.", acr_values="c1 urn:mfa"');
      return true;
    });
    const old = await guard.verify(issuer.token({ auth_time: Math.floor(Date.now() / 1000) - 600 }));
    assert.throws(() => guard.authorize(old, { maxAge: 300, acrValues: ['1'] }), (e: GuardError) => {
      assert.match(e.wwwAuthenticate ?? '', /error_description="A more recent authentication is required\.", max_age="300"$/);
      assert.doesNotMatch(e.wwwAuthenticate ?? '', /acr_values/);
      return true;
    });
  });

  test('programmer mistakes in a requirement are TypeErrors', () => {
    assert.throws(() => guard.authorize(user, { roles: { any: ['Docs.ReadAll'] } }), TypeError);
    assert.throws(() => guard.authorize(app, { allowAppOnly: true }), TypeError);
    assert.throws(() => guard.authorize(user, { scopes: {} }), TypeError);
    assert.throws(() => guard.authorize(user, { scopes: { any: [] } }), TypeError);
    assert.throws(() => guard.authorize(user, { scopes: ['Tasks.Read'] as never }), TypeError);
    assert.throws(() => guard.authorize(user, { maxAge: -1 }), TypeError);
  });

  test('check() = verify + authorize', async () => {
    const p = await guard.check(`Bearer ${issuer.token()}`, { scopes: { any: ['Tasks.Read'] } });
    assert.equal(p.subject, 'pairwise-sub-alice');
    await rejects(guard.check(`Bearer ${issuer.token()}`, { scopes: { any: ['Nope'] } }), { status: 403, error: 'insufficient_scope', reason: 'ERR_SCOPE_INSUFFICIENT' });
  });
});

describe('createGuard options', () => {
  test('programmer mistakes throw TypeError at construction', () => {
    const base = { authority: 'https://login.example/contoso/v2.0', audience: 'api://tasks' };
    assert.throws(() => createGuard({ ...base, audience: '' }), TypeError);
    assert.throws(() => createGuard({ ...base, audience: [] }), TypeError);
    assert.throws(() => createGuard({ authority: 'http://login.example/contoso/v2.0', audience: 'x' }), /https/);
    assert.throws(() => createGuard({ authority: 'not a url', audience: 'x' }), TypeError);
    assert.throws(() => createGuard({ ...base, issuer: 'https://x', jwksUri: 'https://x/keys' }), TypeError);
    assert.throws(() => createGuard({ audience: 'x' } as GuardOptions), TypeError);
    assert.throws(() => createGuard({ issuer: 'https://x', audience: 'x' }), TypeError);
    assert.throws(() => createGuard({ ...base, algorithms: [] }), TypeError);
    assert.throws(() => createGuard({ ...base, algorithms: ['HS384' as never] }), /never 'none' or HMAC/);
    assert.throws(() => createGuard({ ...base, clockTolerance: -1 }), TypeError);
    assert.throws(() => createGuard({ ...base, cacheSize: 1.5 }), TypeError);
    assert.throws(() => createGuard({ ...base, tenants: [] }), TypeError);
    assert.throws(() => createGuard({ ...base, fetch: globalThis.fetch, ca: 'pem' }), /either 'fetch' or 'ca'/);
    assert.throws(() => createGuard({ ...base, jwks: { cooldown: -5 } }), TypeError);
    assert.ok(createGuard({ ...base, algorithms: ['ES256', 'EdDSA'] }));
  });

  test('realm and resource_metadata in challenges', async () => {
    const guard = guardFor({ realm: 'tasks "api"', resourceMetadata: 'https://tasks.example/.well-known/oauth-protected-resource' });
    const err = await rejects(guard.verify(undefined), { status: 401, error: undefined, reason: 'ERR_BEARER_MISSING' });
    assert.equal(err.wwwAuthenticate, 'Bearer realm="tasks \\"api\\"", resource_metadata="https://tasks.example/.well-known/oauth-protected-resource"');
    // A scope challenge names the metadata too (RFC 9728 §5.1; the MCP authorization specification's step-up).
    const principal = await guard.verify(issuer.token({ scp: 'Tasks.Read' }));
    assert.throws(() => guard.authorize(principal, { scopes: { any: ['Tasks.Write'] } }), (e: any) => e.status === 403 && e.wwwAuthenticate.includes('error="insufficient_scope"') && e.wwwAuthenticate.includes('scope="Tasks.Write"') && e.wwwAuthenticate.endsWith('resource_metadata="https://tasks.example/.well-known/oauth-protected-resource"'));
  });
});

import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createPrivateKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLocalJWKSet, jwtVerify } from 'jose';
import { decodeJws, jwkThumbprint, verifyJwsSignature, SIGNING_ALGS, type SigningAlg, type SigningKeyRecord } from '@baton/core';
import { openStore } from '../src/store/index.ts';
import type { Store } from '../src/store/types.ts';
import { loadKek, type Kek } from '../src/crypto/kek.ts';
import { Keyring, type KeyringOptions } from '../src/keys/keyring.ts';

const TENANT = 'contoso';
const DAY = 24 * 3600;
const quiet = () => undefined;

const temporaryDirs: string[] = [];
after(async () => {
  await Promise.all(temporaryDirs.map((dir) => rm(dir, { recursive: true, force: true })));
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'baton-keyring-'));
  temporaryDirs.push(dir);
  return dir;
}

const newKek = (raw = randomBytes(32)) => loadKek({ env: raw.toString('base64url'), dev: false, warn: quiet });

async function seed(store: Store, ...tenants: string[]): Promise<void> {
  for (const id of tenants.length ? tenants : [TENANT]) {
    await store.putTenant({ id, tid: `00000000-0000-4000-8000-${id.padEnd(12, '0').slice(0, 12)}`, name: id, maxDelegationDepth: 3 });
  }
}

/** A clock the test moves. */
function clock(start = 1_900_000_000) {
  let t = start;
  return { now: () => t, advance: (seconds: number) => (t += seconds) };
}

async function memoryKeyring(options: KeyringOptions = {}) {
  const store = await openStore({ url: 'sqlite::memory:' });
  await seed(store);
  const kek = await newKek();
  const time = clock();
  const keyring = new Keyring(store, kek, { now: time.now, ...options });
  return { store, kek, time, keyring, async close() { keyring.close(); await store.close(); } };
}

/** A token whose own lifetime is not what the test is about (jose checks exp with the real clock). */
function claims(extra: Record<string, unknown> = {}) {
  const iat = Math.floor(Date.now() / 1000);
  return { iss: `https://localhost/${TENANT}/v2.0`, aud: 'api://docs', sub: 'alice', iat, exp: iat + 3600, ...extra };
}

function byAlg(records: SigningKeyRecord[], alg: SigningAlg) {
  const mine = records.filter((r) => r.alg === alg);
  return {
    current: mine.filter((r) => r.status === 'current'),
    next: mine.filter((r) => r.status === 'next'),
    retired: mine.filter((r) => r.status === 'retired'),
  };
}

async function eventually(check: () => Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe('Keyring', () => {
  it('ensure creates one current and one next key per algorithm, kid = RFC 7638 thumbprint', async () => {
    const { store, keyring, close } = await memoryKeyring();
    try {
      for (const alg of SIGNING_ALGS) await keyring.ensure(TENANT, alg);
      for (const alg of SIGNING_ALGS) await keyring.ensure(TENANT, alg); // idempotent
      const records = await store.listSigningKeys(TENANT);
      assert.equal(records.length, 6);
      for (const alg of SIGNING_ALGS) {
        const { current, next } = byAlg(records, alg);
        assert.equal(current.length, 1, `${alg} current`);
        assert.equal(next.length, 1, `${alg} next`);
        for (const record of [...current, ...next]) {
          assert.equal(record.kid, jwkThumbprint(record.publicJwk));
          assert.equal(record.publicJwk.kid, record.kid);
          assert.equal(record.publicJwk.alg, alg);
          assert.equal(record.publicJwk.use, 'sig');
          assert.equal(record.publicJwk.kty, alg === 'ES256' ? 'EC' : 'RSA');
          assert.equal('d' in record.publicJwk, false);
        }
      }
      assert.equal(new Set(records.map((r) => r.kid)).size, 6, 'separate keys per algorithm');
    } finally {
      await close();
    }
  });

  for (const alg of SIGNING_ALGS) {
    it(`${alg}: tokens verify with jose against the keyring's JWKS`, async () => {
      const { keyring, close } = await memoryKeyring();
      try {
        await keyring.ensure(TENANT, alg);
        const signer = await keyring.signer(TENANT, alg);
        const token = signer.sign(claims(), 'at+jwt');
        const jwks = await keyring.jwks(TENANT);
        assert.equal(jwks.keys.length, 2, 'current + next');
        const { payload, protectedHeader } = await jwtVerify(token, createLocalJWKSet(jwks as Parameters<typeof createLocalJWKSet>[0]), {
          algorithms: [alg],
          issuer: `https://localhost/${TENANT}/v2.0`,
          audience: 'api://docs',
          typ: 'at+jwt',
        });
        assert.equal(payload.sub, 'alice');
        assert.equal(protectedHeader.kid, signer.kid);
        assert.equal(protectedHeader.alg, alg);

        // And with the service's own verifier over publicKey(), as OBO assertions are checked.
        const found = await keyring.publicKey(TENANT, signer.kid);
        assert.ok(found);
        assert.equal(found.alg, alg);
        assert.equal(verifyJwsSignature(decodeJws(token), found.key, alg), true);
        assert.equal(await keyring.publicKey(TENANT, 'no-such-kid'), undefined);
        assert.equal(await keyring.publicKey('fabrikam', signer.kid), undefined);
      } finally {
        await close();
      }
    });
  }

  it('signer() creates the keys on first use and decrypts once, not per token', async () => {
    const { store, kek, time } = await memoryKeyring();
    let decryptions = 0;
    const counting: Kek = { ...kek, decrypt: (token: string, aad: string) => (decryptions++, kek.decrypt(token, aad)) };
    const keyring = new Keyring(store, counting, { now: time.now });
    try {
      const first = await keyring.signer(TENANT, 'ES256');
      const afterFirst = decryptions;
      assert.ok(afterFirst >= 1);
      for (let i = 0; i < 200; i++) (await keyring.signer(TENANT, 'ES256')).sign(claims({ n: i }));
      assert.equal(await keyring.signer(TENANT, 'ES256'), first, 'the same signer object');
      await keyring.jwks(TENANT);
      await keyring.publicKey(TENANT, first.kid);
      assert.equal(decryptions, afterFirst);
    } finally {
      keyring.close();
      await store.close();
    }
  });

  it('rotation: old tokens verify until removeAfter, then not; prune deletes the old key', async () => {
    const { store, time, keyring, close } = await memoryKeyring({ retireGraceSeconds: 2 * DAY });
    try {
      await keyring.ensure(TENANT, 'ES256');
      const before = await keyring.signer(TENANT, 'ES256');
      const nextKid = byAlg(await store.listSigningKeys(TENANT), 'ES256').next[0]!.kid;
      const oldToken = before.sign(claims());

      time.advance(60);
      assert.equal(await keyring.rotate(TENANT, 'ES256'), true);
      const afterRotation = await keyring.signer(TENANT, 'ES256');
      assert.equal(afterRotation.kid, nextKid, 'the published next key is promoted');
      const records = byAlg(await store.listSigningKeys(TENANT), 'ES256');
      assert.equal(records.current.length, 1);
      assert.equal(records.next.length, 1);
      assert.equal(records.retired.length, 1);
      assert.equal(records.retired[0]!.kid, before.kid);
      assert.equal(records.retired[0]!.removeAfter, time.now() + 2 * DAY);

      const newToken = afterRotation.sign(claims());
      let jwks = await keyring.jwks(TENANT);
      assert.deepEqual(jwks.keys.map((k) => k.kid).sort(), [before.kid, nextKid, records.next[0]!.kid].sort());
      for (const token of [oldToken, newToken]) await jwtVerify(token, createLocalJWKSet(jwks as never), { algorithms: ['ES256'] });

      time.advance(2 * DAY - 1);
      jwks = await keyring.jwks(TENANT);
      await jwtVerify(oldToken, createLocalJWKSet(jwks as never), { algorithms: ['ES256'] });
      assert.ok(await keyring.publicKey(TENANT, before.kid));

      time.advance(1); // now == removeAfter: gone from the JWKS
      jwks = await keyring.jwks(TENANT);
      assert.equal(jwks.keys.some((k) => k.kid === before.kid), false);
      await assert.rejects(jwtVerify(oldToken, createLocalJWKSet(jwks as never), { algorithms: ['ES256'] }), { code: 'ERR_JWKS_NO_MATCHING_KEY' });
      await jwtVerify(newToken, createLocalJWKSet(jwks as never), { algorithms: ['ES256'] });
      assert.equal(await keyring.publicKey(TENANT, before.kid), undefined);

      time.advance(1);
      assert.equal(await keyring.prune(TENANT), 1);
      assert.equal((await store.listSigningKeys(TENANT)).some((r) => r.kid === before.kid), false);
    } finally {
      await close();
    }
  });

  it('rotates by itself once the current key is older than rotateAfterSeconds', async () => {
    const { store, time, keyring, close } = await memoryKeyring({ rotateAfterSeconds: 30 * DAY });
    try {
      const first = await keyring.signer(TENANT, 'ES256');
      time.advance(30 * DAY - 1);
      assert.equal((await keyring.signer(TENANT, 'ES256')).kid, first.kid);
      time.advance(1);
      const second = await keyring.signer(TENANT, 'ES256');
      assert.notEqual(second.kid, first.kid);
      const records = byAlg(await store.listSigningKeys(TENANT), 'ES256');
      assert.equal(records.current.length, 1);
      assert.equal(records.current[0]!.kid, second.kid);
      assert.deepEqual(records.retired.map((r) => r.kid), [first.kid]);
    } finally {
      await close();
    }
  });

  it('stores private keys only encrypted under the KEK, bound to their row', async () => {
    const dir = await tempDir();
    const store = await openStore({ dataDir: dir });
    await seed(store, TENANT, 'fabrikam');
    const kek = await newKek();
    const keyring = new Keyring(store, kek);
    try {
      for (const alg of SIGNING_ALGS) await keyring.ensure(TENANT, alg);
      const records = await store.listSigningKeys(TENANT);
      // Everything SQLite wrote (database, WAL) — not one private key in any encoding.
      const files = await Promise.all((await readdir(dir)).map((name) => readFile(join(dir, name))));
      const disk = Buffer.concat(files);
      assert.equal(disk.includes('PRIVATE KEY'), false);
      for (const record of records) {
        assert.match(record.encryptedPrivateKey, /^v1\.[A-Za-z0-9_-]{16}\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]+$/);
        const der = kek.decrypt(record.encryptedPrivateKey, `${TENANT}|${record.kid}`);
        assert.equal(createPrivateKey({ key: der, format: 'der', type: 'pkcs8' }).asymmetricKeyType, record.alg === 'ES256' ? 'ec' : 'rsa');
        for (const form of [der, Buffer.from(der.toString('base64')), Buffer.from(der.toString('base64url')), Buffer.from(der.toString('hex'))]) {
          assert.equal(disk.includes(form), false, `${record.kid}: private key found on disk`);
        }
        // The AAD binds the ciphertext to tenant and kid.
        assert.throws(() => kek.decrypt(record.encryptedPrivateKey, `fabrikam|${record.kid}`));
      }
    } finally {
      keyring.close();
      await store.close();
    }
  });

  it('a ciphertext copied to another row, or a public key swapped in the database, is not trusted', async () => {
    const { store, kek, time, keyring, close } = await memoryKeyring();
    await seed(store, 'fabrikam');
    const warnings: string[] = [];
    const watched = new Keyring(store, kek, { now: time.now, warn: (m) => warnings.push(m) });
    try {
      await keyring.ensure(TENANT, 'ES256');
      const { current, next } = byAlg(await store.listSigningKeys(TENANT), 'ES256');
      const original = current[0]!;

      // 1. Somebody with write access to the database (but not the KEK) replaces the published key.
      const attacker = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      const attackerJwk = { ...attacker.publicKey.export({ format: 'jwk' }), kid: next[0]!.kid, alg: 'ES256', use: 'sig' };
      await store.putSigningKey({ ...next[0]!, publicJwk: attackerJwk });
      const published = (await watched.jwks(TENANT)).keys.find((k) => k.kid === next[0]!.kid);
      assert.ok(published);
      assert.notEqual(published.x, attackerJwk.x, 'the JWKS is derived from the encrypted private key');

      // 2. The tenant's ciphertext copied into another tenant's row: does not decrypt, is skipped.
      await store.putSigningKey({ ...original, tenantId: 'fabrikam' });
      assert.deepEqual((await watched.jwks('fabrikam')).keys, []);
      assert.equal(await watched.publicKey('fabrikam', original.kid), undefined);
      assert.ok(warnings.some((w) => w.includes(original.kid) && w.includes('fabrikam')));
      for (const w of warnings) assert.ok(!w.includes(original.encryptedPrivateKey.split('.')[3]!));
    } finally {
      watched.close();
      await close();
    }
  });

  it('under another KEK it refuses to sign, and does not replace the keys', async () => {
    const { store, time, keyring, close } = await memoryKeyring();
    try {
      await keyring.ensure(TENANT, 'ES256');
      const before = await store.listSigningKeys(TENANT);
      const stranger = new Keyring(store, await newKek(), { now: time.now });
      try {
        await assert.rejects(stranger.signer(TENANT, 'ES256'), /does not decrypt with this key-encryption key/);
        await assert.rejects(stranger.ensure(TENANT, 'ES256'), /does not decrypt with this key-encryption key/);
        assert.deepEqual((await stranger.jwks(TENANT)).keys, []);
      } finally {
        stranger.close();
      }
      assert.deepEqual(await store.listSigningKeys(TENANT), before, 'nothing written');
    } finally {
      await close();
    }
  });

  it('two instances ensuring at once leave exactly one current key per algorithm', async () => {
    const dir = await tempDir();
    const raw = randomBytes(32);
    const [storeA, storeB] = [await openStore({ dataDir: dir }), await openStore({ dataDir: dir })];
    await seed(storeA);
    const [a, b] = [new Keyring(storeA, await newKek(raw)), new Keyring(storeB, await newKek(raw))];
    try {
      await Promise.all(SIGNING_ALGS.flatMap((alg) => [a.ensure(TENANT, alg), b.ensure(TENANT, alg), a.ensure(TENANT, alg)]));
      const records = await storeA.listSigningKeys(TENANT);
      for (const alg of SIGNING_ALGS) {
        const { current, next } = byAlg(records, alg);
        assert.equal(current.length, 1, `${alg}: one current`);
        assert.ok(next.length >= 1, `${alg}: a next key`);
        assert.equal((await a.signer(TENANT, alg)).kid, current[0]!.kid);
        assert.equal((await b.signer(TENANT, alg)).kid, current[0]!.kid);
      }
      // Rotating at once: one wins, the other learns of it.
      const results = await Promise.all([a.rotate(TENANT, 'ES256'), b.rotate(TENANT, 'ES256')]);
      assert.deepEqual(results.sort(), [false, true]);
      const { current } = byAlg(await storeB.listSigningKeys(TENANT), 'ES256');
      assert.equal(current.length, 1);
      assert.equal((await a.signer(TENANT, 'ES256')).kid, current[0]!.kid);
      assert.equal((await b.signer(TENANT, 'ES256')).kid, current[0]!.kid);
    } finally {
      a.close();
      b.close();
      await storeA.close();
      await storeB.close();
    }
  });

  it('a key rotated by another instance on the same SQLite file is served here after invalidation', async () => {
    const dir = await tempDir();
    const raw = randomBytes(32);
    const [storeA, storeB] = [await openStore({ dataDir: dir }), await openStore({ dataDir: dir })];
    await seed(storeA);
    const [a, b] = [new Keyring(storeA, await newKek(raw)), new Keyring(storeB, await newKek(raw))];
    try {
      await a.ensure(TENANT, 'RS256');
      const before = await b.signer(TENANT, 'RS256');
      const jwksBefore = await b.jwks(TENANT);
      assert.equal((await a.signer(TENANT, 'RS256')).kid, before.kid);

      assert.equal(await a.rotate(TENANT, 'RS256'), true);
      const rotated = await a.signer(TENANT, 'RS256');
      assert.notEqual(rotated.kid, before.kid);

      // B learns through the store's change notification (SQLite: data_version polling), not by asking.
      await eventually(async () => (await b.signer(TENANT, 'RS256')).kid === rotated.kid);
      const jwksAfter = await b.jwks(TENANT);
      assert.notDeepEqual(jwksAfter, jwksBefore);
      assert.deepEqual(jwksAfter, await a.jwks(TENANT));
      // A token A signs now verifies against B's JWKS and B's publicKey (the OBO path).
      const token = rotated.sign(claims(), 'at+jwt');
      await jwtVerify(token, createLocalJWKSet(jwksAfter as never), { algorithms: ['RS256'] });
      const key = await b.publicKey(TENANT, rotated.kid);
      assert.ok(key && verifyJwsSignature(decodeJws(token), key.key, 'RS256'));
    } finally {
      a.close();
      b.close();
      await storeA.close();
      await storeB.close();
    }
  });
});

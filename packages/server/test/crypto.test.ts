import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigurationError } from '@baton/core';
import { hashPassword, isPasswordHash, needsRehash, passwordHashLoad, SCRYPT_SLOTS, verifyAgainstDummy, verifyPassword } from '../src/crypto/passwords.ts';
import { createSigner } from '@baton/core';
import {
  generateClientSecret,
  hashClientSecret,
  isClientSecretHash,
  secretHint,
  secretStrengthWarning,
  verifyClientSecret,
} from '../src/crypto/secrets.ts';
import { KekDecryptError, loadKek, type LoadKekOptions } from '../src/crypto/kek.ts';

async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'baton-crypto-'));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const quiet = () => undefined;
const kekFrom = (env: string, extra: Partial<LoadKekOptions> = {}) => loadKek({ env, dev: false, warn: quiet, ...extra });

describe('passwords', () => {
  it('hashes in the documented format and verifies the right password only', async () => {
    const stored = await hashPassword('correct horse battery staple');
    assert.match(stored, /^scrypt\$32768\$8\$1\$[A-Za-z0-9_-]{22}\$[A-Za-z0-9_-]{43}$/);
    assert.equal(await verifyPassword('correct horse battery staple', stored), true);
    assert.equal(await verifyPassword('correct horse battery stapler', stored), false);
    assert.equal(await verifyPassword('', stored), false);
    assert.equal(needsRehash(stored), false);
    assert.equal(isPasswordHash(stored), true);
  });

  it('salts: the same password hashes differently each time', async () => {
    const [a, b] = await Promise.all([hashPassword('pw'), hashPassword('pw')]);
    assert.notEqual(a, b);
    assert.equal(await verifyPassword('pw', a), true);
    assert.equal(await verifyPassword('pw', b), true);
  });

  it('compares Unicode passwords after NFC normalisation', async () => {
    const stored = await hashPassword('caf\u00e9');
    assert.equal(await verifyPassword('cafe\u0301', stored), true);
  });

  it('verifies hashes made with other accepted parameters and asks for a rehash', async () => {
    const stored = await hashPassword('pw');
    // Re-derive with N=2^14 by hand: same format, lower cost.
    const { scryptSync } = await import('node:crypto');
    const salt = randomBytes(16);
    const older = `scrypt$16384$8$1$${salt.toString('base64url')}$${scryptSync('pw', salt, 32, { N: 16384, r: 8, p: 1 }).toString('base64url')}`;
    assert.equal(await verifyPassword('pw', older), true);
    assert.equal(needsRehash(older), true);
    assert.equal(needsRehash(stored), false);
  });

  it('answers false, never throws, for hostile or damaged stored values', async () => {
    const good = await hashPassword('pw');
    const [, , , , salt, hash] = good.split('$');
    const hostile: unknown[] = [
      '',
      'pw',
      'plain:pw',
      'scrypt',
      'scrypt$$$$$',
      `scrypt$1073741824$8$1$${salt}$${hash}`, // N = 2^30: would allocate a gigabyte
      `scrypt$32767$8$1$${salt}$${hash}`, // N not a power of two
      `scrypt$32768$1000$1$${salt}$${hash}`,
      `scrypt$32768$8$99$${salt}$${hash}`,
      `scrypt$32768$8$1$${salt}$`,
      `scrypt$32768$8$1$$${hash}`,
      `scrypt$32768$8$1$${salt}$${hash}$extra`,
      `scrypt$32768$8$1$${salt}$${hash}==`,
      `scrypt$-32768$8$1$${salt}$${hash}`,
      `scrypt$3.2e4$8$1$${salt}$${hash}`,
      `bcrypt$32768$8$1$${salt}$${hash}`,
      'x'.repeat(100_000),
      null,
      undefined,
      42,
      { toString: () => good },
    ];
    for (const stored of hostile) {
      assert.equal(await verifyPassword('pw', stored as string), false, `stored ${String(stored).slice(0, 40)}`);
      assert.equal(needsRehash(stored as string), true);
      assert.equal(isPasswordHash(stored), false);
    }
    assert.equal(await verifyPassword(undefined as unknown as string, good), false);
  });

  it('verifyAgainstDummy returns false after work comparable to a real check', async () => {
    const stored = await hashPassword('pw');
    // Warm up both paths once.
    await verifyPassword('wrong', stored);
    await verifyAgainstDummy('wrong');
    const time = async (fn: () => Promise<unknown>) => {
      const start = process.hrtime.bigint();
      for (let i = 0; i < 3; i++) await fn();
      return Number(process.hrtime.bigint() - start) / 1e6;
    };
    const real = await time(() => verifyPassword('wrong', stored));
    const dummy = await time(() => verifyAgainstDummy('wrong'));
    assert.equal(await verifyAgainstDummy('pw'), false);
    // Behaviour, not a benchmark: the dummy must do scrypt-sized work, not return at once.
    assert.ok(dummy > real / 4, `dummy ${dummy.toFixed(1)} ms vs real ${real.toFixed(1)} ms`);
    assert.ok(dummy < real * 4, `dummy ${dummy.toFixed(1)} ms vs real ${real.toFixed(1)} ms`);
  });

  it('hashes at most half the thread pool at a time, so token signatures are never queued behind a burst', async () => {
    const stored = await hashPassword('pw');
    const signer = createSigner(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey, 'k1', 'ES256');
    const order: string[] = [];
    const burst = Array.from({ length: 8 }, (_, i) =>
      (i % 2 === 0 ? verifyPassword('wrong', stored) : verifyAgainstDummy('x')).then(() => order.push(`hash ${i}`)),
    );
    assert.equal(passwordHashLoad().running, SCRYPT_SLOTS);
    assert.equal(passwordHashLoad().waiting, 8 - SCRYPT_SLOTS);
    // Let the running hashes reach the pool first (each submits after a microtask).
    await new Promise((resolve) => setImmediate(resolve));
    // A signature on the pool while eight hashes are pending: it finds a free thread at once.
    const signed = signer.signAsync({ a: 1 }, 'at+jwt').then(() => order.push('signature'));
    await Promise.all([...burst, signed]);
    assert.equal(order[0], 'signature', order.join(', '));
    assert.equal(order.length, 9);
    assert.deepEqual(passwordHashLoad(), { running: 0, waiting: 0 });
    // All of them still answered correctly.
    assert.equal(await verifyPassword('pw', stored), true);
  });
});

describe('client secrets', () => {
  const pepper = randomBytes(32);

  it('hashes with HMAC-SHA-256 under the pepper and verifies', () => {
    const secret = generateClientSecret();
    const stored = hashClientSecret(secret, pepper);
    assert.match(stored, /^hmac-sha256\$[A-Za-z0-9_-]{43}$/);
    assert.equal(isClientSecretHash(stored), true);
    assert.equal(hashClientSecret(secret, pepper), stored, 'deterministic for a given pepper');
    assert.equal(verifyClientSecret(secret, stored, pepper), true);
    assert.equal(verifyClientSecret(`${secret}x`, stored, pepper), false);
    assert.equal(verifyClientSecret(secret.slice(1), stored, pepper), false);
  });

  it('fails under a different pepper', () => {
    const secret = generateClientSecret();
    const stored = hashClientSecret(secret, pepper);
    assert.equal(verifyClientSecret(secret, stored, randomBytes(32)), false);
  });

  it('answers false, never throws, for hostile input', () => {
    const secret = generateClientSecret();
    const stored = hashClientSecret(secret, pepper);
    const badStored: unknown[] = ['', secret, 'hmac-sha256$', 'hmac-sha256$abc', `${stored}=`, stored.replace('hmac-sha256', 'hmac-sha1'), `${stored}AAAA`, null, 7];
    for (const s of badStored) assert.equal(verifyClientSecret(secret, s as string, pepper), false);
    assert.equal(verifyClientSecret('', stored, pepper), false);
    assert.equal(verifyClientSecret('x'.repeat(10_000), stored, pepper), false);
    assert.equal(verifyClientSecret(null as unknown as string, stored, pepper), false);
    assert.equal(verifyClientSecret(secret, stored, Buffer.alloc(0)), false);
    assert.equal(verifyClientSecret(secret, stored, 'pepper' as unknown as Buffer), false);
  });

  it('generates 256-bit base64url secrets', () => {
    const a = generateClientSecret();
    assert.match(a, /^[A-Za-z0-9_-]{43}$/);
    assert.equal(Buffer.from(a, 'base64url').length, 32);
    assert.notEqual(a, generateClientSecret());
    assert.equal(secretStrengthWarning(a), undefined);
  });

  it('warns about weak configured secrets without repeating them', () => {
    const weak = ['', 'tasks-web-secret', 'a'.repeat(40), 'passwordpasswordpasswordpassword', 'abcdefghijkl'.repeat(3), '0101010101010101010101010101010101'];
    for (const secret of weak) {
      const warning = secretStrengthWarning(secret);
      assert.ok(warning, `expected a warning for a weak secret of length ${secret.length}`);
      if (secret.length > 3) assert.ok(!warning.includes(secret), 'the warning must not contain the secret');
    }
    assert.equal(secretStrengthWarning(randomBytes(16).toString('hex')), undefined, '32 hex characters are fine');
  });

  it('hints with the first three characters', () => {
    assert.equal(secretHint('tasks-secret'), 'tas');
    assert.equal(secretHint('ab'), 'ab');
  });
});

describe('key-encryption key', () => {
  const raw = randomBytes(32);

  it('accepts 32 bytes as base64, base64url (padded or not) and hex', async () => {
    const forms = [raw.toString('base64'), raw.toString('base64url'), raw.toString('base64').replace(/=+$/, ''), raw.toString('hex'), raw.toString('hex').toUpperCase(), ` ${raw.toString('base64url')}\n`];
    const kek = await kekFrom(forms[0]!);
    const sealed = kek.encrypt(Buffer.from('hello'), 't|k');
    for (const form of forms) {
      const other = await kekFrom(form);
      assert.equal(other.source, 'env');
      assert.equal(other.id, kek.id, 'same key, same fingerprint');
      assert.equal(other.decrypt(sealed, 't|k').toString(), 'hello');
      assert.deepEqual(other.derive('pairwise-sub'), kek.derive('pairwise-sub'));
    }
  });

  it('refuses malformed BATON_KEK with a ConfigurationError that does not echo the value', async () => {
    const bad = ['short', raw.subarray(0, 16).toString('base64url'), randomBytes(48).toString('base64'), raw.toString('hex').slice(2), `${raw.toString('hex')}00`, 'z'.repeat(64), `${raw.toString('base64url')}!`];
    for (const value of bad) {
      await assert.rejects(kekFrom(value), (error: unknown) => {
        assert.ok(error instanceof ConfigurationError);
        assert.match(error.message, /BATON_KEK/);
        assert.ok(!error.message.includes(value), 'the message must not contain the value');
        return true;
      });
    }
  });

  it('refuses to start outside development without a key', async () => {
    await assert.rejects(loadKek({ dev: false, warn: quiet }), (error: unknown) => error instanceof ConfigurationError && /BATON_KEK/.test(error.message));
    await assert.rejects(loadKek({ env: '', dev: false, warn: quiet, dataDir: tmpdir() }), ConfigurationError);
  });

  it('reads a key file (text or 32 raw bytes), and reports an unreadable one', async () => {
    await withTempDir(async (dir) => {
      const text = join(dir, 'kek.txt');
      const binary = join(dir, 'kek.bin');
      await writeFile(text, `${raw.toString('hex')}\n`, { mode: 0o600 });
      await writeFile(binary, raw, { mode: 0o600 });
      const a = await loadKek({ file: text, dev: false, warn: quiet });
      const b = await loadKek({ file: binary, dev: false, warn: quiet });
      assert.equal(a.source, 'file');
      assert.equal(a.id, b.id);
      assert.equal(a.id, (await kekFrom(raw.toString('base64'))).id);
      await assert.rejects(loadKek({ file: join(dir, 'missing'), dev: false, warn: quiet }), ConfigurationError);
      await writeFile(text, 'not a key', { mode: 0o600 });
      await assert.rejects(loadKek({ file: text, dev: false, warn: quiet }), ConfigurationError);
    });
  });

  it('warns about a key file others can read, and that BATON_KEK wins over --kek-file', async () => {
    await withTempDir(async (dir) => {
      const file = join(dir, 'kek');
      await writeFile(file, raw.toString('base64url'), { mode: 0o644 });
      const warnings: string[] = [];
      await loadKek({ file, dev: false, warn: (m) => warnings.push(m) });
      assert.ok(warnings.some((w) => /readable by other users/.test(w)));
      warnings.length = 0;
      const kek = await loadKek({ env: randomBytes(32).toString('base64url'), file, dev: false, warn: (m) => warnings.push(m) });
      assert.equal(kek.source, 'env');
      assert.ok(warnings.some((w) => /ignored/.test(w)));
    });
  });

  it('in development generates <dataDir>/kek (0600) once, with a warning, and reuses it', async () => {
    await withTempDir(async (dir) => {
      const dataDir = join(dir, 'data');
      const warnings: string[] = [];
      const first = await loadKek({ dataDir, dev: true, warn: (m) => warnings.push(m) });
      assert.equal(first.source, 'dev');
      const file = join(dataDir, 'kek');
      const info = await stat(file);
      if (process.platform !== 'win32') assert.equal(info.mode & 0o777, 0o600);
      const content = (await readFile(file, 'utf8')).trim();
      assert.match(content, /^[A-Za-z0-9_-]{43}$/);
      assert.ok(warnings.some((w) => /DEVELOPMENT/.test(w) && w.includes(file)));
      assert.ok(!warnings.some((w) => w.includes(content)), 'the key itself is never logged');

      const sealed = first.encrypt(Buffer.from('kept'), 'a|b');
      const second = await loadKek({ dataDir, dev: true, warn: quiet });
      assert.equal(second.id, first.id);
      assert.equal(second.decrypt(sealed, 'a|b').toString(), 'kept');
      assert.equal((await readFile(file, 'utf8')).trim(), content, 'not regenerated');
    });
  });

  it('two processes creating the development key at once end up with one key', async () => {
    await withTempDir(async (dir) => {
      const kekss = await Promise.all(Array.from({ length: 8 }, () => loadKek({ dataDir: dir, dev: true, warn: quiet })));
      assert.equal(new Set(kekss.map((k) => k.id)).size, 1);
    });
  });

  it('encrypts with AES-256-GCM in the v1 format and binds the ciphertext to its AAD', async () => {
    const kek = await kekFrom(raw.toString('base64url'));
    const plaintext = randomBytes(100);
    const sealed = kek.encrypt(plaintext, 'contoso|kid1');
    const parts = sealed.split('.');
    assert.equal(parts.length, 4);
    assert.equal(parts[0], 'v1');
    assert.equal(Buffer.from(parts[1]!, 'base64url').length, 12);
    assert.equal(Buffer.from(parts[2]!, 'base64url').length, 16);
    assert.equal(Buffer.from(parts[3]!, 'base64url').length, 100);
    assert.notEqual(kek.encrypt(plaintext, 'contoso|kid1'), sealed, 'random iv');
    assert.deepEqual(kek.decrypt(sealed, 'contoso|kid1'), plaintext);

    // Moved to another row, or altered anywhere: refused.
    assert.throws(() => kek.decrypt(sealed, 'fabrikam|kid1'), KekDecryptError);
    assert.throws(() => kek.decrypt(sealed, 'contoso|kid2'), KekDecryptError);
    const flip = (i: number) => {
      const bytes = Buffer.from(parts[i]!, 'base64url');
      bytes[0]! ^= 1;
      const copy = [...parts];
      copy[i] = bytes.toString('base64url');
      return copy.join('.');
    };
    for (const i of [1, 2, 3]) assert.throws(() => kek.decrypt(flip(i), 'contoso|kid1'), KekDecryptError);
    for (const bad of ['', 'v2.a.b.c', 'v1.a.b', `${sealed}.x`, sealed.replace('v1.', 'v1.!'), 'v1....']) {
      assert.throws(() => kek.decrypt(bad, 'contoso|kid1'), KekDecryptError);
    }
    // Under another KEK: refused, and the message carries no data.
    const other = await kekFrom(randomBytes(32).toString('base64url'));
    assert.throws(
      () => other.decrypt(sealed, 'contoso|kid1'),
      (error: unknown) => error instanceof KekDecryptError && !error.message.includes(parts[3]!),
    );
  });

  it('derives independent 32-byte sub-keys per label', async () => {
    const kek = await kekFrom(raw.toString('base64url'));
    const labels = ['client-secret-pepper', 'pairwise-sub', 'totp'];
    const keys = labels.map((l) => kek.derive(l));
    for (const key of keys) assert.equal(key.length, 32);
    assert.equal(new Set(keys.map((k) => k.toString('hex'))).size, 3);
    assert.ok(!keys.some((k) => k.equals(raw)), 'never the KEK itself');
    assert.deepEqual(kek.derive('totp'), keys[2]);
    const other = await kekFrom(randomBytes(32).toString('base64url'));
    assert.notDeepEqual(other.derive('totp'), keys[2]);
  });

  it('does not expose the key through inspection or serialisation', async () => {
    const kek = await kekFrom(raw.toString('base64url'));
    const { inspect } = await import('node:util');
    const shown = `${inspect(kek, { showHidden: true, depth: 5 })} ${JSON.stringify(kek)}`;
    for (const encoding of ['hex', 'base64', 'base64url'] as const) assert.ok(!shown.includes(raw.toString(encoding)));
  });
});

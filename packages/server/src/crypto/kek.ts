/**
 * The key-encryption key (KEK): the one secret an operator configures. Everything else secret
 * at rest is protected by it or derived from it:
 *
 * - signing keys are stored AES-256-GCM-encrypted under it (`encrypt`/`decrypt`), with the row's
 *   identity as additional authenticated data, so a ciphertext copied to another row (another
 *   tenant, another kid) does not decrypt;
 * - the client-secret pepper, the pairwise-`sub` key and the TOTP-secret key are HKDF sub-keys
 *   (`derive(label)`, RFC 5869), so one secret configures all and no two purposes share a key.
 *
 * Sources, in order: `BATON_KEK` (32 bytes as base64, base64url or 64 hex digits), a file
 * (`--kek-file`, same encodings or 32 raw bytes), and in development only a generated
 * `<dataDir>/kek`. Outside development without a KEK the server refuses to start.
 *
 * The raw key lives only in this module's closures: the `Kek` object has no property holding it,
 * so it cannot leak through `console.log`, `JSON.stringify` or an error serializer.
 */
import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes } from 'node:crypto';
import { chmod, link, mkdir, readFile, stat, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ConfigurationError } from '@baton/core';

export interface Kek {
  /** Where the key came from (for the start-up log). */
  readonly source: 'env' | 'file' | 'dev';
  /**
   * A short fingerprint that identifies the key without revealing it (HKDF output, not a hash of
   * the key), so operators can tell whether two instances share one KEK.
   */
  readonly id: string;
  /**
   * AES-256-GCM under a KEK-derived key; `aad` binds the ciphertext to where it is stored
   * (`${tenantId}|${kid}`). Output `v1.<iv>.<tag>.<ciphertext>`, base64url parts.
   */
  encrypt(plaintext: Buffer, aad: string): string;
  /** Inverse of `encrypt`; throws `KekDecryptError` when the key, the AAD or the bytes differ. */
  decrypt(token: string, aad: string): Buffer;
  /** A 32-byte sub-key for one purpose (`client-secret-pepper`, `pairwise-sub`, `totp`, …). */
  derive(label: string): Buffer;
}

/** A ciphertext did not decrypt. The message says why in general terms and never includes data. */
export class KekDecryptError extends Error {
  override name = 'KekDecryptError';
}

export interface LoadKekOptions {
  /** The value of `BATON_KEK` (pass `process.env.BATON_KEK`). Empty counts as unset. */
  env?: string | undefined;
  /** `--kek-file`. */
  file?: string | undefined;
  /** Where the development KEK is kept (`<dataDir>/kek`). */
  dataDir?: string | undefined;
  /** Development mode: without a configured KEK, generate and keep one under `dataDir`. */
  dev: boolean;
  warn: (message: string) => void;
}

const KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const VERSION = 'v1';
const HKDF_SALT = Buffer.from('baton/kek/v1', 'utf8');
const ENCRYPTION_INFO = 'baton/kek/v1/aes-256-gcm';
const ENCODING_HELP = '32 bytes as base64, base64url or 64 hexadecimal digits (generate one with `openssl rand -base64 32`)';

/**
 * Loads the KEK from the first source configured; see the module comment.
 *
 * @example
 * const kek = await loadKek({ env: process.env.BATON_KEK, file: flags.kekFile, dataDir, dev, warn: log.warn });
 * const pepper = kek.derive('client-secret-pepper');
 */
export async function loadKek(options: LoadKekOptions): Promise<Kek> {
  const env = options.env?.trim();
  if (env) {
    if (options.file) options.warn('BATON_KEK is set: --kek-file is ignored');
    const key = parseKey(env);
    if (key === undefined) throw new ConfigurationError([`BATON_KEK: must be ${ENCODING_HELP}`]);
    return createKek(key, 'env');
  }
  if (options.file) {
    const key = await readKeyFile(options.file, options.warn, `--kek-file ${options.file}`);
    return createKek(key, 'file');
  }
  if (!options.dev) {
    throw new ConfigurationError([
      `no key-encryption key: set BATON_KEK to ${ENCODING_HELP}, or pass --kek-file with a file holding one`,
    ]);
  }
  if (!options.dataDir) throw new ConfigurationError(['no key-encryption key and no data directory to keep a development key in']);
  const path = join(options.dataDir, 'kek');
  const created = await createDevKeyFile(options.dataDir, path);
  const key = await readKeyFile(path, options.warn, `development key file ${path}`);
  options.warn(
    `${created ? 'generated' : 'using'} a DEVELOPMENT key-encryption key at ${path}; ` +
      'anyone who can read that file can decrypt the signing keys. Set BATON_KEK (or --kek-file) outside development.',
  );
  return createKek(key, 'dev');
}

/** Parses 32 bytes from base64 / base64url (padded or not) or 64 hex digits. */
function parseKey(text: string): Buffer | undefined {
  if (/^[0-9a-fA-F]{64}$/.test(text)) return Buffer.from(text, 'hex');
  // 32 bytes are 43 base64 characters (+ one '=' when padded).
  if (/^[A-Za-z0-9+/_-]{43}={0,1}$/.test(text)) {
    const key = Buffer.from(text.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
    if (key.length === KEY_BYTES) return key;
  }
  return undefined;
}

async function readKeyFile(path: string, warn: (message: string) => void, what: string): Promise<Buffer> {
  let content: Buffer;
  try {
    content = await readFile(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    throw new ConfigurationError([`${what}: cannot read the key-encryption key (${code})`]);
  }
  if (process.platform !== 'win32') {
    const mode = (await stat(path)).mode & 0o777;
    if ((mode & 0o077) !== 0) warn(`${what} is readable by other users (mode ${mode.toString(8)}); chmod 600 it`);
  }
  // 32 raw bytes cannot be confused with text: text encodings of 32 bytes are 43+ characters.
  if (content.length === KEY_BYTES) return Buffer.from(content);
  const key = parseKey(content.toString('utf8').trim());
  if (key === undefined) throw new ConfigurationError([`${what}: must hold ${ENCODING_HELP}, or 32 raw bytes`]);
  return key;
}

/**
 * Creates `<dataDir>/kek` unless it exists. The key is written to a private temporary file and
 * then hard-linked into place: `link` fails if the name exists, so two processes starting at once
 * cannot overwrite each other's key, and nobody ever reads a half-written file.
 */
async function createDevKeyFile(dataDir: string, path: string): Promise<boolean> {
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const temporary = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  await writeFile(temporary, `${randomBytes(KEY_BYTES).toString('base64url')}\n`, { mode: 0o600, flag: 'wx' });
  try {
    await chmod(temporary, 0o600);
    await link(temporary, path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  } finally {
    await unlink(temporary).catch(() => undefined);
  }
}

function createKek(key: Buffer, source: Kek['source']): Kek {
  const ikm = Buffer.from(key);
  key.fill(0);
  const hkdf = (info: string, length = KEY_BYTES): Buffer => Buffer.from(hkdfSync('sha256', ikm, HKDF_SALT, info, length));
  // The raw KEK is only ever HKDF input: encryption and each derived purpose get their own key.
  const encryptionKey = hkdf(ENCRYPTION_INFO);
  const id = createHmac('sha256', hkdf('baton/kek/v1/fingerprint')).update('kek-id').digest('base64url').slice(0, 12);

  return Object.freeze({
    source,
    id,
    encrypt(plaintext: Buffer, aad: string): string {
      if (!Buffer.isBuffer(plaintext)) throw new TypeError('plaintext must be a Buffer');
      if (typeof aad !== 'string' || aad.length === 0) throw new TypeError('aad must be a non-empty string');
      const iv = randomBytes(IV_BYTES);
      const cipher = createCipheriv('aes-256-gcm', encryptionKey, iv, { authTagLength: TAG_BYTES });
      cipher.setAAD(Buffer.from(aad, 'utf8'));
      const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
      const tag = cipher.getAuthTag();
      return [VERSION, iv.toString('base64url'), tag.toString('base64url'), ciphertext.toString('base64url')].join('.');
    },
    decrypt(token: string, aad: string): Buffer {
      if (typeof token !== 'string' || typeof aad !== 'string') throw new KekDecryptError('ciphertext and aad must be strings');
      const parts = token.split('.');
      if (parts.length !== 4 || parts[0] !== VERSION) throw new KekDecryptError(`not a ${VERSION} ciphertext`);
      const [, ivText, tagText, ctText] = parts as [string, string, string, string];
      if (![ivText, tagText, ctText].every((p) => /^[A-Za-z0-9_-]*$/.test(p))) throw new KekDecryptError('ciphertext is not base64url');
      const iv = Buffer.from(ivText, 'base64url');
      const tag = Buffer.from(tagText, 'base64url');
      if (iv.length !== IV_BYTES || tag.length !== TAG_BYTES) throw new KekDecryptError('ciphertext has a malformed iv or tag');
      try {
        const decipher = createDecipheriv('aes-256-gcm', encryptionKey, iv, { authTagLength: TAG_BYTES });
        decipher.setAAD(Buffer.from(aad, 'utf8'));
        decipher.setAuthTag(tag);
        return Buffer.concat([decipher.update(Buffer.from(ctText, 'base64url')), decipher.final()]);
      } catch {
        throw new KekDecryptError(
          'ciphertext does not decrypt under this key-encryption key: wrong KEK, or the value was altered or moved to another row',
        );
      }
    },
    derive(label: string): Buffer {
      if (typeof label !== 'string' || label.length === 0) throw new TypeError('label must be a non-empty string');
      return hkdf(`baton/kek/v1/derive/${label}`);
    },
  });
}

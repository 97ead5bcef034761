/**
 * A local certificate authority and a `localhost` certificate for `baton dev` / `--tls-dev`,
 * so the token service runs on HTTPS (OAuth 2.0 requires TLS: RFC 6749 §3.1, §10.9) without a
 * developer having to click through a browser warning or disable verification.
 *
 * Files, in `dir` (`DIR/tls/` by contract):
 * - `ca.pem`             the CA certificate — what clients trust (`NODE_EXTRA_CA_CERTS`, a browser)
 * - `ca-key.pem`         its private key (0600)
 * - `localhost.pem`      the server certificate: DNS:localhost, IP:127.0.0.1, IP:::1
 * - `localhost-key.pem`  its private key (0600)
 *
 * The CA is created once (10 years); the server certificate (1 year) is re-issued by the same CA
 * when it is within 30 days of expiry, so trust set up once keeps working.
 *
 * The CA carries a critical name-constraints extension (RFC 5280 §4.2.1.10) that limits it to
 * `localhost` and loopback addresses: a developer who adds `ca.pem` to a system trust store has
 * not thereby handed whoever reads `ca-key.pem` the power to impersonate any other site.
 */
import { X509Certificate as NodeX509Certificate, createPrivateKey, generateKeyPairSync, randomBytes, webcrypto, type KeyObject } from 'node:crypto';
import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type * as X509 from '@peculiar/x509';

export interface DevTls {
  /** PEM of the `localhost` certificate (for `https.createServer({ cert })`). */
  cert: string;
  /** PEM (PKCS#8) of its private key. */
  key: string;
  /** PEM of the CA certificate, for clients (`ca` option, `NODE_EXTRA_CA_CERTS`). */
  ca: string;
  /** Absolute path of `ca.pem`. */
  caPath: string;
  /** True when this call created a new CA (clients must trust the new `ca.pem`). */
  created: boolean;
  /** True when this call issued a new `localhost` certificate (always true when `created`). */
  renewed: boolean;
}

export interface DevTlsOptions {
  /** Clock, for tests. */
  now?: () => Date;
}

const DAY_MS = 24 * 3600 * 1000;
const CA_LIFETIME_MS = 3650 * DAY_MS;
const LEAF_LIFETIME_MS = 365 * DAY_MS;
const RENEW_BEFORE_MS = 30 * DAY_MS;
/** Tolerate a little clock skew between the machine that issues and the one that checks. */
const BACKDATE_MS = 3600 * 1000;
const EC_ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIGNING_ALGORITHM = { name: 'ECDSA', hash: 'SHA-256' } as const;

const crypto: webcrypto.Crypto = webcrypto;

let x509Module: Promise<typeof X509> | undefined;

/**
 * @peculiar/x509 v2 resolves its algorithms through tsyringe, which needs the Reflect metadata API
 * (`reflect-metadata`). Both are loaded on first use only: a server without `--tls-dev` never pays
 * for them.
 */
function loadX509(): Promise<typeof X509> {
  x509Module ??= import('reflect-metadata').then(() => import('@peculiar/x509'));
  return x509Module;
}

/**
 * Creates (once) or reuses the development CA and `localhost` certificate under `dir`.
 *
 * @example
 * const tls = await ensureDevTls(join(dataDir, 'tls'));
 * https.createServer({ cert: tls.cert, key: tls.key }, handler);
 * // clients: NODE_EXTRA_CA_CERTS=<tls.caPath>
 */
export async function ensureDevTls(dir: string, options: DevTlsOptions = {}): Promise<DevTls> {
  const now = options.now?.() ?? new Date();
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const paths = {
    ca: join(dir, 'ca.pem'),
    caKey: join(dir, 'ca-key.pem'),
    leaf: join(dir, 'localhost.pem'),
    leafKey: join(dir, 'localhost-key.pem'),
  };

  let ca = await readPair(paths.ca, paths.caKey);
  let created = false;
  if (ca === undefined || !ca.cert.ca || !ca.cert.checkPrivateKey(ca.key) || ca.cert.validToDate.getTime() - now.getTime() < RENEW_BEFORE_MS) {
    ca = await createCa(now);
    // Key first: a certificate on disk always has its key beside it.
    await writeAtomic(paths.caKey, ca.keyPem, 0o600);
    await writeAtomic(paths.ca, ca.certPem, 0o644);
    created = true;
  }

  let leaf = created ? undefined : await readPair(paths.leaf, paths.leafKey);
  let renewed = false;
  if (leaf === undefined || !leafIsUsable(leaf, ca, now)) {
    leaf = await createLeaf(ca, now);
    await writeAtomic(paths.leafKey, leaf.keyPem, 0o600);
    await writeAtomic(paths.leaf, leaf.certPem, 0o644);
    renewed = true;
  }

  return { cert: leaf.certPem, key: leaf.keyPem, ca: ca.certPem, caPath: paths.ca, created, renewed };
}

interface Pair {
  cert: NodeX509Certificate;
  certPem: string;
  key: KeyObject;
  keyPem: string;
}

/** Reads a certificate and its key; undefined when either is missing or unreadable. */
async function readPair(certPath: string, keyPath: string): Promise<Pair | undefined> {
  try {
    const [certPem, keyPem] = await Promise.all([readFile(certPath, 'utf8'), readFile(keyPath, 'utf8')]);
    return { cert: new NodeX509Certificate(certPem), certPem, key: createPrivateKey(keyPem), keyPem };
  } catch {
    return undefined;
  }
}

function leafIsUsable(leaf: Pair, ca: Pair, now: Date): boolean {
  return (
    leaf.cert.checkIssued(ca.cert) &&
    leaf.cert.verify(ca.cert.publicKey) &&
    leaf.cert.checkPrivateKey(leaf.key) &&
    leaf.cert.checkHost('localhost') !== undefined &&
    leaf.cert.validToDate.getTime() - now.getTime() >= RENEW_BEFORE_MS
  );
}

function newKeyPair(): { privateKey: KeyObject; publicKey: KeyObject } {
  return generateKeyPairSync('ec', { namedCurve: 'P-256' });
}

function toCryptoKeys(pair: { privateKey: KeyObject; publicKey: KeyObject }): webcrypto.CryptoKeyPair {
  return {
    privateKey: pair.privateKey.toCryptoKey(EC_ALGORITHM, false, ['sign']),
    publicKey: pair.publicKey.toCryptoKey(EC_ALGORITHM, true, ['verify']),
  };
}

/** A positive, non-zero-leading 128-bit serial number (RFC 5280 §4.1.2.2: at most 20 octets). */
function serialNumber(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0]! & 0x7f) | 0x01;
  return bytes.toString('hex');
}

function pemOfKey(key: KeyObject): string {
  return key.export({ format: 'pem', type: 'pkcs8' }).toString();
}

async function createCa(now: Date): Promise<Pair> {
  const x509 = await loadX509();
  const pair = newKeyPair();
  const keys = toCryptoKeys(pair);
  const serial = serialNumber();
  const cert = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: serial,
      // A distinct name per CA, so two of them in one trust store can be told apart.
      name: `CN=Baton development CA ${serial.slice(0, 8)}, O=Baton (local development only)`,
      notBefore: new Date(now.getTime() - BACKDATE_MS),
      notAfter: new Date(now.getTime() + CA_LIFETIME_MS),
      signingAlgorithm: SIGNING_ALGORITHM,
      keys,
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        new x509.Extension('2.5.29.30', true, localhostNameConstraints()),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, crypto),
      ],
    },
    crypto,
  );
  const certPem = cert.toString('pem');
  return { cert: new NodeX509Certificate(certPem), certPem, key: pair.privateKey, keyPem: pemOfKey(pair.privateKey) };
}

async function createLeaf(ca: Pair, now: Date): Promise<Pair> {
  const x509 = await loadX509();
  const pair = newKeyPair();
  const keys = toCryptoKeys(pair);
  const caSigningKey = ca.key.toCryptoKey(EC_ALGORITHM, false, ['sign']);
  const caPublicKey = ca.cert.publicKey.toCryptoKey(EC_ALGORITHM, true, ['verify']);
  const cert = await x509.X509CertificateGenerator.create(
    {
      serialNumber: serialNumber(),
      subject: 'CN=localhost',
      // The CA's subject exactly as encoded, so chain building matches issuer to subject byte for byte.
      issuer: new x509.X509Certificate(ca.certPem).subjectName,
      notBefore: new Date(now.getTime() - BACKDATE_MS),
      notAfter: new Date(Math.min(now.getTime() + LEAF_LIFETIME_MS, ca.cert.validToDate.getTime())),
      signingAlgorithm: SIGNING_ALGORITHM,
      publicKey: keys.publicKey,
      signingKey: caSigningKey,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
        new x509.SubjectAlternativeNameExtension([
          { type: 'dns', value: 'localhost' },
          { type: 'ip', value: '127.0.0.1' },
          { type: 'ip', value: '::1' },
        ]),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, crypto),
        await x509.AuthorityKeyIdentifierExtension.create(caPublicKey, false, crypto),
      ],
    },
    crypto,
  );
  const certPem = cert.toString('pem');
  return { cert: new NodeX509Certificate(certPem), certPem, key: pair.privateKey, keyPem: pemOfKey(pair.privateKey) };
}

/**
 * DER of NameConstraints { permittedSubtrees: dNSName localhost, iPAddress 127.0.0.0/8, ::1/128 }.
 * Built here because @peculiar/x509 has no class for this extension; the encoding is fixed and
 * small, and the TLS test proves OpenSSL reads it and enforces it.
 */
function localhostNameConstraints(): Buffer {
  const subtree = (generalName: Buffer) => der(0x30, generalName);
  const loopback6 = Buffer.alloc(16);
  loopback6[15] = 1;
  const permitted = Buffer.concat([
    subtree(der(0x82, Buffer.from('localhost', 'ascii'))), // [2] dNSName
    subtree(der(0x87, Buffer.from([127, 0, 0, 0, 255, 0, 0, 0]))), // [7] iPAddress: address + mask
    subtree(der(0x87, Buffer.concat([loopback6, Buffer.alloc(16, 0xff)]))),
  ]);
  return der(0x30, der(0xa0, permitted)); // NameConstraints ::= SEQUENCE { permittedSubtrees [0] }
}

/** One DER TLV with definite length (contents here are far below 64 KiB). */
function der(tag: number, content: Buffer): Buffer {
  const length = content.length;
  const header =
    length < 0x80 ? Buffer.from([tag, length]) : length < 0x100 ? Buffer.from([tag, 0x81, length]) : Buffer.from([tag, 0x82, length >> 8, length & 0xff]);
  return Buffer.concat([header, content]);
}

async function writeAtomic(path: string, content: string, mode: number): Promise<void> {
  const temporary = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  await writeFile(temporary, content, { mode, flag: 'wx' });
  await chmod(temporary, mode);
  await rename(temporary, path);
}

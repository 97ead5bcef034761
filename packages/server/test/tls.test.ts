import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey, generateKeyPairSync, webcrypto } from 'node:crypto';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { createServer, get, type Server, type ServerOptions } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureDevTls, type DevTls } from '../src/tls/dev-ca.ts';

async function listen(options: ServerOptions, host = '127.0.0.1'): Promise<{ server: Server; port: number }> {
  const server = createServer(options, (_request, response) => {
    response.setHeader('content-type', 'text/plain');
    response.end('ok');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, resolve);
  });
  return { server, port: (server.address() as AddressInfo).port };
}

function httpsGet(url: string, ca?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const request = get(url, { ...(ca !== undefined ? { ca } : {}), agent: false }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      response.on('end', () => resolve(body));
    });
    request.on('error', reject);
  });
}

const close = (server: Server) => new Promise<void>((resolve) => server.close(() => resolve()));

describe('development TLS', () => {
  let dir: string;
  let tls: DevTls;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'baton-tls-'));
    tls = await ensureDevTls(join(dir, 'tls'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('creates a CA and a localhost certificate, keys readable by the owner only', async () => {
    assert.equal(tls.created, true);
    assert.equal(tls.renewed, true);
    assert.equal(tls.caPath, join(dir, 'tls', 'ca.pem'));
    assert.equal(await readFile(tls.caPath, 'utf8'), tls.ca);
    assert.equal(await readFile(join(dir, 'tls', 'localhost.pem'), 'utf8'), tls.cert);
    assert.equal(await readFile(join(dir, 'tls', 'localhost-key.pem'), 'utf8'), tls.key);
    if (process.platform !== 'win32') {
      for (const name of ['ca-key.pem', 'localhost-key.pem']) assert.equal((await stat(join(dir, 'tls', name))).mode & 0o777, 0o600, name);
    }

    const ca = new X509Certificate(tls.ca);
    const leaf = new X509Certificate(tls.cert);
    assert.equal(ca.ca, true);
    assert.equal(leaf.ca, false);
    assert.ok(leaf.checkIssued(ca));
    assert.ok(leaf.verify(ca.publicKey));
    assert.ok(leaf.checkPrivateKey(createPrivateKey(tls.key)));
    assert.equal(ca.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
    assert.equal(leaf.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
    assert.equal(leaf.subjectAltName, 'DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1');
    assert.deepEqual(leaf.keyUsage, ['1.3.6.1.5.5.7.3.1']);
    const day = 24 * 3600 * 1000;
    const caDays = (ca.validToDate.getTime() - Date.now()) / day;
    const leafDays = (leaf.validToDate.getTime() - Date.now()) / day;
    assert.ok(caDays > 3640 && caDays <= 3650, `CA valid for ${caDays} days`);
    assert.ok(leafDays > 360 && leafDays <= 365, `leaf valid for ${leafDays} days`);
  });

  it('reuses the files on later calls', async () => {
    const again = await ensureDevTls(join(dir, 'tls'));
    assert.equal(again.created, false);
    assert.equal(again.renewed, false);
    assert.equal(again.ca, tls.ca);
    assert.equal(again.cert, tls.cert);
    assert.equal(again.key, tls.key);
  });

  it('serves HTTPS that clients trusting ca.pem accept, and others refuse', async () => {
    const { server, port } = await listen({ cert: tls.cert, key: tls.key });
    try {
      assert.equal(await httpsGet(`https://127.0.0.1:${port}/`, tls.ca), 'ok');
      assert.equal(await httpsGet(`https://localhost:${port}/`, tls.ca), 'ok');
      await assert.rejects(httpsGet(`https://127.0.0.1:${port}/`), (error: NodeJS.ErrnoException) => {
        assert.match(String(error.code), /UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED|UNABLE_TO_GET_ISSUER/);
        return true;
      });
      // fetch uses the process-wide trust store: without the CA it must fail too.
      await assert.rejects(fetch(`https://127.0.0.1:${port}/`));
    } finally {
      await close(server);
    }
  });

  it('serves ::1 when IPv6 loopback is available', async (t) => {
    let listening: { server: Server; port: number };
    try {
      listening = await listen({ cert: tls.cert, key: tls.key }, '::1');
    } catch {
      t.skip('no IPv6 loopback');
      return;
    }
    try {
      assert.equal(await httpsGet(`https://[::1]:${listening.port}/`, tls.ca), 'ok');
    } finally {
      await close(listening.server);
    }
  });

  it('the CA cannot vouch for names other than localhost (name constraints)', async () => {
    // Issue, with the CA's own key, a certificate for another site — as someone who stole ca-key.pem would.
    const x509 = await import('@peculiar/x509');
    const caKey = createPrivateKey(await readFile(join(dir, 'tls', 'ca-key.pem'), 'utf8'));
    const leafKeys = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const algorithm = { name: 'ECDSA', namedCurve: 'P-256' } as const;
    const forged = await x509.X509CertificateGenerator.create(
      {
        subject: 'CN=bank.example',
        issuer: new x509.X509Certificate(tls.ca).subjectName,
        notBefore: new Date(Date.now() - 60_000),
        notAfter: new Date(Date.now() + 86_400_000),
        signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
        publicKey: leafKeys.publicKey.toCryptoKey(algorithm, true, ['verify']),
        signingKey: caKey.toCryptoKey(algorithm, false, ['sign']),
        extensions: [
          new x509.SubjectAlternativeNameExtension([{ type: 'dns', value: 'bank.example' }, { type: 'ip', value: '10.0.0.1' }]),
          new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
        ],
      },
      webcrypto,
    );
    const { server, port } = await listen({ cert: forged.toString('pem'), key: leafKeys.privateKey.export({ format: 'pem', type: 'pkcs8' }) });
    try {
      const attempt = new Promise<string>((resolve, reject) => {
        const request = get(
          { host: '127.0.0.1', port, path: '/', ca: tls.ca, servername: 'bank.example', checkServerIdentity: () => undefined, agent: false },
          (response) => {
            response.resume();
            response.on('end', () => resolve('connected'));
          },
        );
        request.on('error', reject);
      });
      await assert.rejects(attempt, (error: NodeJS.ErrnoException) => {
        // OpenSSL's X509_V_ERR_PERMITTED_VIOLATION; Node reports its code as UNSPECIFIED.
        assert.match(`${error.code} ${error.message}`, /PERMITTED_VIOLATION|permitted subtree violation/i);
        return true;
      });
    } finally {
      await close(server);
    }
  });

  it('re-issues the server certificate from the same CA when it expires within 30 days', async () => {
    const later = new Date(Date.now() + 340 * 24 * 3600 * 1000);
    const renewed = await ensureDevTls(join(dir, 'tls'), { now: () => later });
    assert.equal(renewed.created, false);
    assert.equal(renewed.renewed, true);
    assert.equal(renewed.ca, tls.ca, 'the CA clients trust is kept');
    assert.notEqual(renewed.cert, tls.cert);
    const leaf = new X509Certificate(renewed.cert);
    assert.ok(leaf.checkIssued(new X509Certificate(tls.ca)));
    assert.ok(leaf.validToDate.getTime() > later.getTime() + 300 * 24 * 3600 * 1000);
    assert.equal(await readFile(join(dir, 'tls', 'localhost.pem'), 'utf8'), renewed.cert);
  });

  it('replaces a damaged or mismatched server certificate, and a missing CA key means a new CA', async () => {
    const other = await mkdtemp(join(tmpdir(), 'baton-tls-'));
    try {
      const first = await ensureDevTls(other);
      await rm(join(other, 'localhost-key.pem'));
      const second = await ensureDevTls(other);
      assert.equal(second.created, false);
      assert.equal(second.renewed, true);
      assert.equal(second.ca, first.ca);
      await rm(join(other, 'ca-key.pem'));
      const third = await ensureDevTls(other);
      assert.equal(third.created, true);
      assert.notEqual(third.ca, first.ca);
      assert.ok(new X509Certificate(third.cert).checkIssued(new X509Certificate(third.ca)));
    } finally {
      await rm(other, { recursive: true, force: true });
    }
  });
});

/**
 * The `baton` command line, driven as a user drives it: a real process, real flags, real signals.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';

const BIN = new URL('../src/bin.ts', import.meta.url).pathname;
const CONFIG = new URL('../../../examples/chain/baton.json', import.meta.url).pathname;
const run = promisify(execFile);

async function baton(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return run(process.execPath, [BIN, ...args], { env: { ...process.env, ...env } }).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (error: { code: number; stdout: string; stderr: string }) => ({ code: error.code, stdout: error.stdout, stderr: error.stderr }),
  );
}

/** Starts `baton serve …`, resolves with the URL from its `ready` line. */
function serve(args: string[], env: NodeJS.ProcessEnv = {}) {
  const child = spawn(process.execPath, [BIN, 'serve', ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk) => (stderr += chunk));
  const ready = new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (chunk) => {
      out += chunk;
      const match = /^ready (\S+)$/m.exec(out);
      if (match) resolve(match[1]!);
    });
    child.on('exit', (code) => reject(new Error(`exited ${code} before ready: ${stderr}`)));
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, ready, exited, stderr: () => stderr };
}

test('every command has --help', async () => {
  const top = await baton(['--help']);
  assert.equal(top.code, 0);
  for (const command of ['serve', 'dev', 'keys rotate', 'config check', 'secret new']) {
    assert.ok(top.stdout.includes(command), `${command} listed`);
    const help = await baton([...command.split(' '), '--help']);
    assert.equal(help.code, 0, command);
    assert.match(help.stdout, new RegExp(`^Usage: baton ${command}`), command);
  }
});

test('an unknown command or flag exits 2 with the usage', async () => {
  const unknown = await baton(['frobnicate']);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /unknown command 'frobnicate'/);
  const flag = await baton(['serve', '--prot', '1']);
  assert.equal(flag.code, 2);
  assert.match(flag.stderr, /--prot/);
});

test('secret new prints 256 bits of randomness', async () => {
  const { stdout } = await baton(['secret', 'new']);
  assert.match(stdout.trim(), /^[A-Za-z0-9_-]{43}$/);
});

test('config check validates without a store', async () => {
  const ok = await baton(['config', 'check', '--config', CONFIG]);
  assert.equal(ok.code, 0);
  assert.match(ok.stdout, /valid/);
  const missing = await baton(['config', 'check', '--config', '/nonexistent.json']);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /cannot read the file/);
});

test('serve without a key-encryption key outside dev mode refuses to start', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'baton-cli-'));
  try {
    const result = await baton(['serve', '--config', CONFIG, '--data', dir, '--port', '0'], { BATON_KEK: '' });
    assert.equal(result.code, 1);
    assert.match(result.stderr, /no key-encryption key/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('serve prints ready, answers /healthz, stops cleanly on SIGTERM; keys rotate changes the signing key', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'baton-cli-'));
  const env = { BATON_KEK: randomBytes(32).toString('base64') };
  try {
    const server = serve(['--config', CONFIG, '--data', dir, '--port', '0'], env);
    const url = await server.ready;
    assert.equal((await fetch(`${url}/healthz`)).status, 200);
    const kidOf = async () => {
      const response = await fetch(`${url}/contoso/oauth2/v2.0/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from('indexer:indexer-demo-secret-for-local-use-only').toString('base64')}` },
        body: 'grant_type=client_credentials&scope=api%3A%2F%2Fdocs%2F.default',
      });
      const { access_token } = (await response.json()) as { access_token: string };
      return JSON.parse(Buffer.from(access_token.split('.')[0]!, 'base64url').toString()).kid as string;
    };
    const before = await kidOf();
    const rotate = await baton(['keys', 'rotate', '--data', dir, '--tenant', 'contoso'], env);
    assert.equal(rotate.code, 0, rotate.stderr);
    assert.match(rotate.stdout, /contoso ES256: rotated; current key /);
    // The running server hears of the rotation through the store and signs with the new key.
    let after = before;
    for (let i = 0; i < 40 && after === before; i++) {
      await new Promise((r) => setTimeout(r, 100));
      after = await kidOf();
    }
    assert.notEqual(after, before);
    server.child.kill('SIGTERM');
    assert.equal(await server.exited, 0);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('serve --workers 2 shares one port and one store, and stops every worker', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'baton-cli-'));
  try {
    const server = serve(['--config', CONFIG, '--data', dir, '--port', '0', '--workers', '2', '--dev']);
    const url = await server.ready;
    const statuses = await Promise.all(
      Array.from({ length: 20 }, () =>
        fetch(`${url}/contoso/oauth2/v2.0/token`, {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from('indexer:indexer-demo-secret-for-local-use-only').toString('base64')}` },
          body: 'grant_type=client_credentials&scope=api%3A%2F%2Fdocs%2F.default',
        }).then((r) => r.status),
      ),
    );
    assert.deepEqual(new Set(statuses), new Set([200]));
    assert.match(server.stderr(), /2 workers/);
    server.child.kill('SIGTERM');
    assert.equal(await server.exited, 0);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

/**
 * `baton serve` as an operator runs it: options from the environment (flags win), a drained stop on
 * SIGTERM/SIGINT with one `stopped` line, a taken port that says how to move it, configuration
 * errors with line and column, `config check` printing what `serve` warns about, and `token issue`
 * minting for the issuer the service answers as.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect, createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';

const BIN = new URL('../src/bin.ts', import.meta.url).pathname;
const CONFIG = new URL('../../../examples/chain/baton.json', import.meta.url).pathname;

/** The environment of a test run, minus anything of the operator's own that would change the answers. */
function cleanEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const key of Object.keys(env)) if (key.startsWith('BATON_')) delete env[key];
  return { ...env, ...extra };
}

function baton(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { env: cleanEnv(env) }, (error, stdout, stderr) => {
      resolve({ code: error === null ? 0 : Number((error as { code?: number }).code ?? 1), stdout, stderr });
    });
  });
}

function serve(args: string[], env: NodeJS.ProcessEnv = {}) {
  const child = spawn(process.execPath, [BIN, 'serve', ...args], { env: cleanEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stderr.on('data', (chunk) => (stderr += chunk));
  const ready = new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (chunk) => {
      stdout += chunk;
      const match = /^ready (\S+)$/m.exec(stdout);
      if (match) resolve(match[1]!);
    });
    child.on('exit', (code) => reject(new Error(`exited ${code} before ready: ${stderr}`)));
  });
  ready.catch(() => undefined);
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, ready, exited, stdout: () => stdout, stderr: () => stderr };
}

let dir: string;
const kek = { BATON_KEK: randomBytes(32).toString('base64') };
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'baton-serve-ops-'));
});
after(() => rm(dir, { recursive: true, force: true }));

test('serve reads every option from the environment; a flag wins over its variable', async () => {
  const data = join(dir, 'env');
  const server = serve([], { ...kek, BATON_CONFIG: CONFIG, BATON_DATA: data, BATON_PORT: '0', BATON_HOST: '127.0.0.1', BATON_PUBLIC_URL: 'https://login.contoso.test' });
  try {
    const url = await server.ready;
    assert.equal(url, 'https://login.contoso.test');
    assert.match(server.stderr(), /tenant contoso: https:\/\/login\.contoso\.test\/contoso\/v2\.0\/\.well-known\/openid-configuration/);
  } finally {
    server.child.kill('SIGTERM');
    assert.equal(await server.exited, 0);
  }
  // --port 0 wins over a BATON_PORT that could not be used, --public-url over BATON_PUBLIC_URL.
  const flags = serve(['--port', '0', '--public-url', 'https://flag.contoso.test'], { ...kek, BATON_CONFIG: CONFIG, BATON_DATA: data, BATON_PORT: 'not-a-port', BATON_PUBLIC_URL: 'https://env.contoso.test' });
  try {
    assert.equal(await flags.ready, 'https://flag.contoso.test');
  } finally {
    flags.child.kill('SIGINT');
    assert.equal(await flags.exited, 0);
  }
  const bad = await baton(['serve'], { ...kek, BATON_CONFIG: CONFIG, BATON_DATA: data, BATON_TLS_DEV: 'maybe' });
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /^baton serve: BATON_TLS_DEV must be 1 or 0 \(true or false\), not 'maybe'/);
  const help = await baton(['serve', '--help']);
  for (const variable of ['BATON_CONFIG', 'BATON_DATA', 'BATON_STORE', 'BATON_KEK_FILE', 'BATON_PORT', 'BATON_HOST', 'BATON_TLS_DEV', 'BATON_TLS_CERT', 'BATON_TLS_KEY', 'BATON_PUBLIC_URL', 'BATON_TRUST_PROXY', 'BATON_DEV', 'BATON_WORKERS']) {
    assert.match(help.stdout, new RegExp(`env ${variable}\\b`), variable);
  }
});

test('SIGTERM drains a request in flight, prints one stopped line and exits 0', async () => {
  const server = serve(['--config', CONFIG, '--data', join(dir, 'drain'), '--port', '0'], kek);
  const url = new URL(await server.ready);
  // A token request whose body is still arriving when the signal comes.
  const body = 'grant_type=client_credentials&client_id=nobody&client_secret=not-a-secret&scope=api%3A%2F%2Fdocs%2F.default';
  const socket = connect(Number(url.port), url.hostname);
  await once(socket, 'connect');
  let response = '';
  socket.on('data', (chunk) => (response += chunk));
  const closed = once(socket, 'close');
  socket.write(`POST /contoso/oauth2/v2.0/token HTTP/1.1\r\nhost: ${url.host}\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: ${body.length}\r\n\r\n${body.slice(0, 20)}`);
  await new Promise((r) => setTimeout(r, 300));
  server.child.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 500));
  assert.equal(server.child.exitCode, null, 'still draining');
  socket.write(body.slice(20));
  await closed;
  assert.match(response, /^HTTP\/1\.1 400 /); // invalid_client without Basic: 400 (RFC 6749 §5.2)
  assert.match(response, /"error":"invalid_client"/);
  assert.equal(await server.exited, 0);
  assert.equal(server.stdout().match(/^stopped$/gm)?.length, 1, server.stdout());

  const interrupted = serve(['--config', CONFIG, '--data', join(dir, 'drain'), '--port', '0'], kek);
  await interrupted.ready;
  interrupted.child.kill('SIGINT');
  assert.equal(await interrupted.exited, 0);
  assert.match(interrupted.stdout(), /^ready .*\nstopped\n$/);
});

test('a port in use says which flag or variable moves it', async () => {
  const taken = createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  const { port } = taken.address() as AddressInfo;
  try {
    const result = await baton(['serve', '--config', CONFIG, '--data', join(dir, 'port'), '--port', String(port)], kek);
    assert.equal(result.code, 1);
    assert.equal(result.stderr.trim().split('\n').at(-1), `baton: port ${port} on 127.0.0.1 is already in use: choose another with --port N or BATON_PORT=N (0 picks a free port)`);
  } finally {
    taken.close();
  }
});

/** The `metrics: URL` line serve prints on stderr (written before `ready`, on another pipe). */
async function metricsUrl(server: ReturnType<typeof serve>): Promise<string> {
  for (let i = 0; i < 200; i++) {
    const match = /^metrics: (\S+)$/m.exec(server.stderr());
    if (match) return match[1]!;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error(`no metrics line: ${server.stderr()}`);
}

const clientCredentials = (url: string) =>
  fetch(`${url}/contoso/oauth2/v2.0/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from('indexer:indexer-demo-secret-for-local-use-only').toString('base64')}` },
    body: 'grant_type=client_credentials&scope=api%3A%2F%2Fdocs%2F.default',
  });

test('BATON_METRICS_PORT serves /metrics on 127.0.0.1 beside the public port, which has none', async () => {
  const server = serve(['--port', '0'], { ...kek, BATON_CONFIG: CONFIG, BATON_DATA: join(dir, 'metrics'), BATON_METRICS_PORT: '0' });
  try {
    const url = await server.ready;
    const metrics = await metricsUrl(server);
    assert.match(metrics, /^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    assert.equal((await clientCredentials(url)).status, 200);
    const text = await (await fetch(metrics)).text();
    assert.match(text, /^baton_token_requests_total\{tenant="contoso",grant="client_credentials",client="indexer",result="ok"\} 1$/m);
    assert.equal((await fetch(`${url}/metrics`)).status, 404);
  } finally {
    server.child.kill('SIGTERM');
    assert.equal(await server.exited, 0);
  }
  const none = serve(['--port', '0'], { ...kek, BATON_CONFIG: CONFIG, BATON_DATA: join(dir, 'metrics') });
  try {
    await none.ready;
    assert.doesNotMatch(none.stderr(), /^metrics:/m);
  } finally {
    none.child.kill('SIGTERM');
    await none.exited;
  }
});

test('serve --workers 2 --metrics-port: the primary serves the workers\' metrics added up, the store-wide gauges once', async () => {
  const server = serve(['--port', '0', '--workers', '2', '--metrics-port', '0'], { ...kek, BATON_CONFIG: CONFIG, BATON_DATA: join(dir, 'metrics-workers') });
  try {
    const url = await server.ready;
    const metrics = await metricsUrl(server);
    for (let i = 0; i < 6; i++) assert.equal((await clientCredentials(url)).status, 200);
    const text = await (await fetch(metrics)).text();
    assert.match(text, /^baton_token_requests_total\{tenant="contoso",grant="client_credentials",client="indexer",result="ok"\} 6$/m);
    assert.match(text, /^baton_signing_keys\{tenant="contoso",alg="ES256",status="current"\} 1$/m);
  } finally {
    server.child.kill('SIGTERM');
    assert.equal(await server.exited, 0);
  }
});

test('a metrics port in use says which flag or variable moves it', async () => {
  const taken = createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  const { port } = taken.address() as AddressInfo;
  try {
    const result = await baton(['serve', '--config', CONFIG, '--data', join(dir, 'metrics-port'), '--port', '0', '--metrics-port', String(port)], kek);
    assert.equal(result.code, 1);
    assert.equal(result.stderr.trim().split('\n').at(-1), `baton: metrics port ${port} on 127.0.0.1 is already in use: choose another with --metrics-port N or BATON_METRICS_PORT=N (0 picks a free port)`);
    const bad = await baton(['serve', '--config', CONFIG, '--data', join(dir, 'metrics-port'), '--port', '0', '--metrics-port', 'nine'], kek);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /--metrics-port must be a number from 0 to 65535, not 'nine'/);
  } finally {
    taken.close();
  }
});

test('a JSON syntax error in the configuration names its line and column', async () => {
  const file = join(dir, 'broken.json');
  await writeFile(file, '{\n  "tenants": [\n    { "id": "contoso", "name": "Contoso" }\n    { "id": "fabrikam" }\n  ]\n}\n');
  const check = await baton(['config', 'check', '--config', file]);
  assert.equal(check.code, 1);
  assert.equal(check.stderr.trim(), `invalid configuration:\n  ${file}:4:5: not valid JSON at line 4, column 5: ',' expected`);
  const served = await baton(['serve', '--config', file, '--data', join(dir, 'broken'), '--port', '0'], kek);
  assert.equal(served.code, 1);
  assert.match(served.stderr, /broken\.json:4:5: not valid JSON at line 4, column 5: ',' expected/);
});

test('config check prints every warning serve logs', async () => {
  const file = join(dir, 'weak.json');
  const config = {
    tenants: [
      {
        id: 'contoso',
        name: 'Contoso',
        applications: [
          { name: 'Weak', clientId: 'weak', secrets: ['short-secret'] },
          { name: 'Repeated', clientId: 'repeated', secrets: ['abcabcabcabcabcabcabcabcabcabcabcabc'] },
          { name: 'Strong', clientId: 'strong', secrets: [randomBytes(32).toString('base64url')] },
        ],
      },
    ],
  };
  await writeFile(file, JSON.stringify(config));
  const check = await baton(['config', 'check', '--config', file]);
  assert.equal(check.code, 0, check.stderr);
  assert.equal(check.stdout, `${file}: valid (2 warnings)\n`);
  const warnings = check.stderr.trim().split('\n');
  assert.deepEqual(warnings, [
    'warning: tenants[0].applications[0].secrets[0] (weak): the client secret is shorter than 32 characters (12); generate one with `npx baton secret new`',
    'warning: tenants[0].applications[1].secrets[0] (repeated): the client secret uses only 3 different characters; generate one with `npx baton secret new`',
  ]);
  assert.doesNotMatch(check.stderr, /short-secret|abcabc/, 'no secret in a warning');

  // serve logs the same warnings (--dev prints them as `warning: …` lines).
  const server = serve(['--config', file, '--data', join(dir, 'weak'), '--port', '0', '--dev'], kek);
  await server.ready;
  server.child.kill('SIGTERM');
  assert.equal(await server.exited, 0);
  const logged = server.stderr().split('\n').filter((line) => line.startsWith('warning: tenants['));
  assert.deepEqual(logged, warnings);

  const clean = await baton(['config', 'check', '--config', CONFIG]);
  assert.equal(clean.code, 0);
  assert.equal(clean.stdout, `${CONFIG}: valid\n`);
  assert.equal(clean.stderr, '');
});

test('token issue mints for the issuer the running service answers as, and says which', async () => {
  const data = join(dir, 'issuer');
  const server = serve(['--config', CONFIG, '--data', data, '--port', '0'], kek);
  const url = await server.ready;
  // tasks-api holds the demo's tenant-wide consent to the Docs API (Tasks Web's consent is per user, given on its consent page).
  const issue = (...extra: string[]) =>
    baton(['token', 'issue', '--data', data, '--tenant', 'contoso', '--user', 'alice@contoso.test', '--client', 'tasks-api', '--scope', 'api://docs/Docs.Read', ...extra], kek);
  try {
    const recorded = await issue();
    assert.equal(recorded.code, 0, recorded.stderr);
    const claims = JSON.parse(Buffer.from(recorded.stdout.trim().split('.')[1]!, 'base64url').toString()) as { iss: string };
    assert.equal(claims.iss, `${url}/contoso/v2.0`);
    assert.match(recorded.stderr, new RegExp(`^issuer ${url.replace(/[.]/g, '\\.')}/contoso/v2\\.0 \\(recorded by 'baton serve'\\)$`, 'm'));
    // The service's own discovery names the same issuer.
    const discovery = (await (await fetch(`${url}/contoso/v2.0/.well-known/openid-configuration`)).json()) as { issuer: string };
    assert.equal(discovery.issuer, claims.iss);

    const given = await issue('--issuer-base', 'https://login.contoso.test/');
    assert.equal(JSON.parse(Buffer.from(given.stdout.trim().split('.')[1]!, 'base64url').toString()).iss, 'https://login.contoso.test/contoso/v2.0');
    assert.match(given.stderr, /^issuer https:\/\/login\.contoso\.test\/contoso\/v2\.0 \(--issuer-base\)$/m);
  } finally {
    server.child.kill('SIGTERM');
    assert.equal(await server.exited, 0);
  }
  // A store no service has run on: the command says what to do instead of guessing an issuer.
  const fresh = await baton(['token', 'issue', '--config', CONFIG, '--data', join(dir, 'never-served'), '--tenant', 'contoso', '--user', 'alice@contoso.test', '--client', 'tasks-api', '--scope', 'api://docs/Docs.Read'], kek);
  assert.equal(fresh.code, 1);
  assert.match(fresh.stderr, /no issuer recorded for tenant 'contoso' in this store: start 'baton serve' on it once \(it records the base URL it answers as\), or pass --issuer-base URL/);
});

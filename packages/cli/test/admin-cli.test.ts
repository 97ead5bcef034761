/**
 * `baton admin …` against a real `baton serve` process, as an operator drives it: the admin client
 * from the environment, human output and --json, exit codes and problems on stderr.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { chainConfigRaw } from '../../server/test/harness.ts';
import { adminConfigure, OPS_SECRET } from '../../server/test/admin-kit.ts';

const BIN = new URL('../src/bin.ts', import.meta.url).pathname;
const run = promisify(execFile);

let dir: string;
let server: ChildProcess;
let url: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'baton-admin-cli-'));
  const config = join(dir, 'baton.json');
  await writeFile(config, JSON.stringify(chainConfigRaw(adminConfigure)));
  server = spawn(process.execPath, [BIN, 'serve', '--config', config, '--data', join(dir, 'data'), '--port', '0', '--dev'], { env: { ...process.env, BATON_KEK: '' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  server.stderr!.on('data', (chunk) => (stderr += chunk));
  url = await new Promise<string>((resolve, reject) => {
    let out = '';
    server.stdout!.on('data', (chunk) => {
      out += chunk;
      const match = /^ready (\S+)$/m.exec(out);
      if (match) resolve(match[1]!);
    });
    server.on('exit', (code) => reject(new Error(`serve exited ${code}: ${stderr}`)));
  });
});
after(async () => {
  server?.kill('SIGTERM');
  await new Promise((r) => server?.once('exit', r));
  await rm(dir, { recursive: true, force: true });
});

async function baton(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const base = { BATON_URL: url, BATON_TENANT: 'contoso', BATON_ADMIN_CLIENT_ID: 'ops', BATON_ADMIN_CLIENT_SECRET: OPS_SECRET };
  return run(process.execPath, [BIN, 'admin', ...args], { env: { ...process.env, ...base, ...env } }).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (error: { code: number; stdout: string; stderr: string }) => ({ code: error.code, stdout: error.stdout, stderr: error.stderr }),
  );
}

test('baton admin --help lists the commands; a missing argument exits 2', async () => {
  const help = await baton(['--help']);
  assert.equal(help.code, 0);
  for (const name of ['users revoke-sessions USER', 'apps secrets add CLIENT_ID', 'consents grant', 'roles assign', 'policies put NAME']) assert.ok(help.stdout.includes(name), name);
  const missing = await baton(['users', 'disable']);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /expects USER/);
  const unknown = await baton(['users', 'frobnicate']);
  assert.equal(unknown.code, 2);
  // An argument that starts with '-' is a flag before '--' (with a hint saying so), an argument after it.
  const dashed = await baton(['apps', 'show', '-x1']);
  assert.equal(dashed.code, 2);
  assert.match(dashed.stderr, /goes after '--'/);
  const literal = await baton(['apps', 'show', '--', '--help']);
  assert.equal(literal.code, 1, 'not the help: the application named --help, which does not exist');
  assert.match(literal.stderr, /404/);
});

test('users: list, disable, enable, revoke-sessions (human and --json)', async () => {
  const list = await baton(['users', 'list']);
  assert.equal(list.code, 0, list.stderr);
  assert.match(list.stdout, /^alice@contoso\.test {2}[0-9a-f-]{36} {2}enabled {2}mfa$/m);
  const disabled = await baton(['users', 'disable', 'bob@contoso.test', '--json']);
  assert.equal(disabled.code, 0, disabled.stderr);
  assert.equal(JSON.parse(disabled.stdout).enabled, false);
  assert.match((await baton(['users', 'enable', 'bob@contoso.test'])).stdout, /bob@contoso\.test .* enabled/);
  const revoked = await baton(['users', 'revoke-sessions', 'alice@contoso.test']);
  assert.equal(revoked.code, 0, revoked.stderr);
  assert.match(revoked.stdout, /sessions revoked before 20\d\d-/);
  const created = await baton(['users', 'create', 'erin@contoso.test', '--display-name', 'Erin'], { BATON_NEW_USER_PASSWORD: 'erin-Admin-pass-1' });
  assert.equal(created.code, 0, created.stderr);
  assert.ok(!created.stdout.includes('erin-Admin-pass-1'));
});

test('apps: a secret added is printed once and works; revoked, it does not', async () => {
  const added = await baton(['apps', 'secrets', 'add', 'indexer']);
  assert.equal(added.code, 0, added.stderr);
  const secret = added.stdout.trim();
  const id = /^secret (\S+) /.exec(added.stderr)![1]!;
  assert.match(id, /^sec_/, 'an id never starts with a dash, which would read as a flag');
  const token = async () =>
    (await fetch(`${url}/contoso/oauth2/v2.0/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`indexer:${secret}`).toString('base64')}` },
      body: 'grant_type=client_credentials&scope=api%3A%2F%2Fdocs%2F.default',
    })).status;
  assert.equal(await token(), 200);
  assert.ok((await baton(['apps', 'show', 'indexer'])).stdout.includes(id));
  assert.equal((await baton(['apps', 'secrets', 'revoke', 'indexer', '--', id])).code, 0, 'after --, every word is an argument');
  assert.equal(await token(), 401);
  const uris = await baton(['apps', 'redirect-uris', 'set', 'tasks-web', 'http://127.0.0.1:7000/callback', 'https://tasks.example/cb']);
  assert.equal(uris.code, 0, uris.stderr);
  assert.match(uris.stdout, /redirect https:\/\/tasks\.example\/cb/);
  const bad = await baton(['apps', 'redirect-uris', 'set', 'tasks-web', 'http://evil.example/cb']);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /400 The request body is invalid: redirectUris\.0/);
});

test('consents, roles and policies', async () => {
  const granted = await baton(['consents', 'grant', '--client', 'tasks-api', '--resource', 'api://reports', '--scopes', 'Reports.Read', '--for', 'alice@contoso.test', '--json']);
  assert.equal(granted.code, 0, granted.stderr);
  const id = JSON.parse(granted.stdout).id;
  assert.ok((await baton(['consents', 'list', '--client', 'tasks-api'])).stdout.includes(id));
  assert.equal((await baton(['consents', 'revoke', id])).code, 0);
  assert.ok(!(await baton(['consents', 'list', '--client', 'tasks-api'])).stdout.includes(id));

  const roles = JSON.parse((await baton(['roles', 'list', '--client', 'indexer', '--json'])).stdout);
  assert.deepEqual(roles.map((r: any) => r.roles), [['Docs.ReadAll']]);
  assert.equal((await baton(['roles', 'remove', roles[0].id])).code, 0);
  assert.equal((await baton(['roles', 'assign', '--client', 'indexer', '--resource', 'api://docs', '--roles', 'Docs.ReadAll'])).code, 0);

  const file = join(dir, 'policy.json');
  await writeFile(file, JSON.stringify({ resources: ['api://docs'], scopes: ['Docs.Write'], require: { mfa: true, maxAuthAgeSeconds: 3600 } }));
  const put = await baton(['policies', 'put', 'Fresh MFA for writes', '--file', file]);
  assert.equal(put.code, 0, put.stderr);
  assert.match(put.stdout, /^created Fresh MFA for writes/);
  assert.match((await baton(['policies', 'put', 'Fresh MFA for writes', '--file', file])).stdout, /^replaced /);
  assert.ok((await baton(['policies', 'list'])).stdout.includes('Fresh MFA for writes'));
  assert.equal((await baton(['policies', 'delete', 'Fresh MFA for writes'])).code, 0);
  assert.match((await baton(['policies', 'delete', 'Fresh MFA for writes'])).stderr, /404 Not found/);
});

test('a wrong admin secret or a client without the role exits 1 and says why', async () => {
  const wrong = await baton(['users', 'list'], { BATON_ADMIN_CLIENT_SECRET: 'not-the-secret' });
  assert.equal(wrong.code, 1);
  assert.match(wrong.stderr, /no admin token for 'ops': invalid_client/);
  const norole = await baton(['users', 'list'], { BATON_ADMIN_CLIENT_ID: 'indexer', BATON_ADMIN_CLIENT_SECRET: 'indexer-demo-secret-for-local-use-only' });
  assert.equal(norole.code, 1);
  assert.match(norole.stderr, /invalid_scope/);
  const nosecret = await baton(['users', 'list'], { BATON_ADMIN_CLIENT_SECRET: '' });
  assert.equal(nosecret.code, 1);
  assert.match(nosecret.stderr, /--client-secret/);
});

test('baton config plan shows the admin changes; config apply --prune brings the store back to the file', async () => {
  const config = join(dir, 'baton.json');
  const data = join(dir, 'data');
  const config_ = (args: string[]) =>
    run(process.execPath, [BIN, 'config', ...args, '--config', config, '--data', data], { env: { ...process.env, BATON_KEK: '' } }).then(
      ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
      (error: { code: number; stdout: string; stderr: string }) => ({ code: error.code, stdout: error.stdout, stderr: error.stderr }),
    );
  assert.equal((await baton(['users', 'disable', 'carol@contoso.test'])).code, 0); // already disabled in the file: no change
  assert.equal((await baton(['users', 'disable', 'olivia@contoso.test'])).code, 0);
  const plan = await config_(['plan', '--detailed-exitcode']);
  assert.equal(plan.code, 2, plan.stderr);
  assert.match(plan.stdout, /^tenant contoso:$/m);
  assert.match(plan.stdout, /^ {2}~ user olivia@contoso\.test: enabled$/m);
  assert.match(plan.stdout, /^ {2}~ application tasks-web: redirectUris$/m);
  assert.match(plan.stdout, /^ {2}= user erin@contoso\.test {2}\(not in the file\)$/m);
  assert.doesNotMatch(plan.stdout, /carol/);
  assert.match(plan.stdout, /^Plan: 0 to create, \d+ to update, 0 to delete/m);
  assert.doesNotMatch(plan.stdout, /demo-secret|Demo-pass|Admin-secret|hmac|scrypt/);
  const applied = await config_(['apply', '--prune']);
  assert.equal(applied.code, 0, applied.stderr);
  assert.match(applied.stdout, /^Applied: /m);
  const after = await config_(['plan', '--detailed-exitcode']);
  assert.equal(after.code, 0, after.stdout + after.stderr);
  assert.match(after.stdout, /^No changes: the store matches the file/m);
  // The running service follows the store: olivia is enabled again.
  assert.match((await baton(['users', 'show', 'olivia@contoso.test'])).stdout, / enabled/);
});

test('events: the change log, filtered, human and --json; a bad filter exits 1 with the problem', async () => {
  const bob = await baton(['events', '--type', 'user', '--id', 'bob@contoso.test']);
  assert.equal(bob.code, 0, bob.stderr);
  const lines = bob.stdout.trim().split('\n');
  assert.match(lines[0]!, /^\d{4}-\d{2}-\d{2}T\S+Z {2}user\.disable {2}[0-9a-f-]{36} {2}by ops$/);
  assert.match(lines[1]!, /^\S+ {2}user\.enable {2}[0-9a-f-]{36} {2}by ops$/);
  const json = await baton(['events', '--json']);
  assert.equal(json.code, 0, json.stderr);
  const all = JSON.parse(json.stdout);
  assert.ok(all.length >= 3 && all.every((e: any) => e.tenant === 'contoso' && e.actor.clientId === 'ops'));
  assert.ok(!json.stdout.includes('scrypt$'), 'never a hash');
  const one = await baton(['events', '--limit', '1', '--json']);
  assert.deepEqual(JSON.parse(one.stdout), all.slice(0, 1));
  const bad = await baton(['events', '--since', 'yesterday']);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /^baton: 400 A query parameter is invalid: since: /);
});

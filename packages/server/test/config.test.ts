/**
 * Declarative configuration: validation with exact paths, dangling references, idempotent
 * loading, and secrets that never reach the store as given.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile, readdir } from 'node:fs/promises';
import { existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { ConfigurationError } from '@baton/core';
import { parseConfig, configWarnings } from '../src/config/load.ts';
import { CHAIN_CONFIG_PATH, startTestServer } from './harness.ts';

const run = promisify(execFile);
const BIN = new URL('../../cli/src/bin.ts', import.meta.url).pathname;
const chain = () => JSON.parse(readFileSync(CHAIN_CONFIG_PATH, 'utf8'));

function problemsOf(raw: unknown): string[] {
  try {
    parseConfig(JSON.stringify(raw));
  } catch (error) {
    assert.ok(error instanceof ConfigurationError);
    return [...error.issues];
  }
  assert.fail('expected a ConfigurationError');
}

test('the chain configuration loads as it is', () => {
  const config = parseConfig(readFileSync(CHAIN_CONFIG_PATH, 'utf8'));
  assert.equal(config.tenants[0]!.id, 'contoso');
  assert.equal(config.tenants[0]!.applications.length, 6);
  assert.equal(config.tenants[0]!.delegation.maxDepth, 4);
  // Defaults filled in.
  assert.equal(config.tenants[0]!.users[0]!.enabled, true);
  assert.equal(config.tenants[0]!.users[2]!.enabled, false);
});

test('schema errors name the exact path', () => {
  const raw = chain();
  raw.tenants[0].applications[0].redirectUris[0] = 'not a url';
  raw.tenants[0].applications[2].scopes[1].adminConsentRequried = true;
  raw.tenants[0].users[0].totpSecret = 'lowercase!';
  const problems = problemsOf(raw);
  assert.ok(problems.includes('tenants[0].applications[0].redirectUris[0]: must be an absolute URL'), problems.join('\n'));
  assert.ok(problems.some((p) => p.startsWith('tenants[0].applications[2].scopes[1]') && p.includes('adminConsentRequried')), problems.join('\n'));
  assert.ok(problems.some((p) => p.startsWith('tenants[0].users[0].totpSecret:')), problems.join('\n'));
});

test("an API's own delegation.maxDepth: optional, 1-16, nothing else in it", () => {
  const raw = chain();
  assert.equal(parseConfig(JSON.stringify(raw)).tenants[0]!.applications[3]!.delegation, undefined);
  raw.tenants[0].applications[3].delegation = { maxDepth: 2 };
  assert.deepEqual(parseConfig(JSON.stringify(raw)).tenants[0]!.applications[3]!.delegation, { maxDepth: 2 });
  for (const [bad, where] of [[{ maxDepth: 0 }, 'delegation.maxDepth'], [{ maxDepth: 17 }, 'delegation.maxDepth'], [{ maxDepth: 1.5 }, 'delegation.maxDepth'], [{}, 'delegation: must set maxDepth or mayAct'], [{ maxDepth: 2, maxdepth: 1 }, 'delegation']] as const) {
    raw.tenants[0].applications[3].delegation = bad;
    const problems = problemsOf(raw);
    assert.ok(problems.some((p) => p.startsWith(`tenants[0].applications[3].${where}`)), `${JSON.stringify(bad)}: ${problems.join('\n')}`);
  }
});

test("an API's delegation.mayAct (RFC 8693 may_act): middle tiers by client id, downstream APIs by identifier URI or client id, checked against the tenant", () => {
  const raw = chain();
  raw.tenants[0].applications[1].delegation = { mayAct: [{ client: 'tasks-api', downstream: ['api://docs', 'audit-api'] }, { client: 'reports-api' }] };
  assert.deepEqual(parseConfig(JSON.stringify(raw)).tenants[0]!.applications[1]!.delegation, { mayAct: [{ client: 'tasks-api', downstream: ['api://docs', 'audit-api'] }, { client: 'reports-api' }] });
  for (const [bad, where] of [
    [{ mayAct: [] }, 'applications[1].delegation.mayAct: '],
    [{ mayAct: [{ client: 'tasks-api', downstream: [] }] }, 'applications[1].delegation.mayAct[0].downstream'],
    [{ mayAct: [{ client: 'tasks-api', apis: ['api://docs'] }] }, 'applications[1].delegation.mayAct[0]'],
    [{ mayAct: [{ client: 'nobody' }] }, "applications[1].delegation.mayAct[0].client: no application 'nobody'"],
    [{ mayAct: [{ client: 'tasks-web' }] }, "applications[1].delegation.mayAct[0].client: 'tasks-web' is a public client, which cannot exchange tokens"],
    [{ mayAct: [{ client: 'tasks-api', downstream: ['api://nowhere'] }] }, "applications[1].delegation.mayAct[0].downstream[0]: no API 'api://nowhere'"],
  ] as const) {
    raw.tenants[0].applications[1].delegation = bad;
    const problems = problemsOf(raw);
    assert.ok(problems.some((p) => p.startsWith(`tenants[0].${where}`)), `${JSON.stringify(bad)}: ${problems.join('\n')}`);
  }
  raw.tenants[0].applications[1].delegation = undefined;
  raw.tenants[0].applications[4].delegation = { mayAct: [{ client: 'indexer' }] };
  assert.ok(problemsOf(raw).some((p) => p.startsWith('tenants[0].applications[4].delegation.mayAct[0]: only an API')), problemsOf(raw).join('\n'));
});

test('redirect URIs: no plain http off loopback, no fragments, no dot segments, no userinfo', () => {
  for (const [uri, message] of [
    ['http://evil.example/callback', 'plain http is allowed only for loopback'],
    ['https://app.example/cb#frag', 'must not contain a fragment'],
    ['http://127.0.0.1:7000/callback/../x', 'must not contain dot segments'],
    ['https://user:pw@app.example/cb', 'must not contain user information'],
  ] as const) {
    const raw = chain();
    raw.tenants[0].applications[0].redirectUris = [uri];
    const problems = problemsOf(raw);
    assert.ok(problems.some((p) => p.startsWith('tenants[0].applications[0].redirectUris[0]:') && p.includes(message)), `${uri}: ${problems.join('\n')}`);
  }
});

test('dangling references are refused with their path', () => {
  const raw = chain();
  raw.tenants[0].consents.push({ client: 'ghost-app', resource: 'api://docs', scopes: ['Docs.Read'], for: 'all' });
  raw.tenants[0].consents.push({ client: 'tasks-api', resource: 'api://nowhere', scopes: ['X'], for: 'all' });
  raw.tenants[0].consents.push({ client: 'tasks-api', resource: 'api://docs', scopes: ['Docs.Delete'], for: 'nobody@contoso.test' });
  const assignment = raw.tenants[0].appRoleAssignments.length;
  raw.tenants[0].appRoleAssignments.push({ client: 'indexer', resource: 'api://docs', roles: ['Docs.Nothing'] });
  raw.tenants[0].policies.push({ name: 'p', resources: ['api://ghost'], require: { mfa: true } });
  raw.tenants[0].applications[1].knownClientApplications.push('ghost-web');
  const problems = problemsOf(raw);
  for (const expected of [
    "tenants[0].consents[2].client: no application 'ghost-app'",
    "tenants[0].consents[3].resource: no API 'api://nowhere'",
    "tenants[0].consents[4].scopes[0]: 'Docs.Delete' is not a scope of api://docs",
    "tenants[0].consents[4].for: no user 'nobody@contoso.test' (use \"all\" for admin consent)",
    `tenants[0].appRoleAssignments[${assignment}].roles[0]: 'Docs.Nothing' is not a role of api://docs`,
    "tenants[0].policies[1].resources[0]: no API 'api://ghost'",
    "tenants[0].applications[1].knownClientApplications[1]: no application 'ghost-web'",
  ]) {
    assert.ok(problems.some((p) => p.startsWith(expected)), `missing: ${expected}\n got:\n${problems.join('\n')}`);
  }
});

test('duplicates are refused', () => {
  const raw = chain();
  raw.tenants[0].applications.push({ ...raw.tenants[0].applications[1], name: 'Copy' });
  raw.tenants[0].users.push({ ...raw.tenants[0].users[0], username: 'ALICE@contoso.test' });
  const problems = problemsOf(raw);
  assert.ok(problems.some((p) => p.includes("'tasks-api' is defined twice")), problems.join('\n'));
  assert.ok(problems.some((p) => p.includes("is used by two applications")), problems.join('\n'));
  assert.ok(problems.some((p) => p.startsWith(`tenants[0].users[${raw.tenants[0].users.length - 1}].username:`)), problems.join('\n'));
});

test('not JSON is a clear error that names the line and column', () => {
  const issues = (text: string) => {
    try {
      parseConfig(text, 'x.json');
    } catch (e) {
      if (e instanceof ConfigurationError) return e.issues;
    }
    assert.fail('parsed');
  };
  assert.deepEqual(issues('{ "tenants": ['), ["x.json:1:15: not valid JSON at line 1, column 15: ']' expected"]);
  assert.deepEqual(issues('{\n  "tenants": [],\n}'), ['x.json:3:1: not valid JSON at line 3, column 1: a property name in double quotes expected']);
  assert.deepEqual(issues('{\n  "tenants": [] // none\n}'), ['x.json:2:17: not valid JSON at line 2, column 17: comments are not JSON']);
  assert.deepEqual(issues('{\n\t"tenants": tru }'), ['x.json:2:13: not valid JSON at line 2, column 13: unexpected character']);
  assert.deepEqual(issues(''), ['x.json:1:1: not valid JSON at line 1, column 1: a value expected']);
});

test('short client secrets given in the configuration are warned about, without echoing them', () => {
  const raw = JSON.parse(readFileSync(CHAIN_CONFIG_PATH, 'utf8'));
  raw.tenants[0].applications[1].secrets = ['tasks-api-Demo-secret-1'];
  const warnings = configWarnings(parseConfig(JSON.stringify(raw)));
  assert.deepEqual(warnings, ['tenants[0].applications[1].secrets[0] (tasks-api): the client secret is shorter than 32 characters (23); generate one with `npx baton secret new`']);
});

test('the demo chain\'s own configuration passes its own secret rule (npm start prints no warning about it)', () => {
  assert.deepEqual(configWarnings(parseConfig(readFileSync(CHAIN_CONFIG_PATH, 'utf8'))), []);
});

test('baton serve with a dangling reference exits non-zero, names the path, touches no store', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'baton-cfg-'));
  try {
    const raw = chain();
    raw.tenants[0].consents[0].client = 'ghost-app';
    const file = join(dir, 'bad.json');
    await writeFile(file, JSON.stringify(raw));
    const data = join(dir, 'data');
    const result = await run(process.execPath, [BIN, 'serve', '--config', file, '--data', data, '--port', '0']).then(
      () => ({ code: 0, stderr: '' }),
      (error: { code: number; stderr: string }) => error,
    );
    assert.equal(result.code, 1);
    assert.match(result.stderr, /tenants\[0\]\.consents\[0\]\.client: no application 'ghost-app'/);
    assert.equal(existsSync(data), false, 'no data directory was created');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('loading the same file twice changes nothing; passwords and secrets are never stored as given', async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'baton-idem-'));
  const server = await startTestServer({ dataDir });
  const snapshot = async () => {
    const store = server.ctx.store;
    const tenants = await store.listTenants();
    return {
      tenants,
      users: await store.listUsers('contoso'),
      apps: await store.listApplications('contoso'),
      consents: await store.listConsents({ tenantId: 'contoso' }),
      policies: await store.listPolicies('contoso'),
      roles: await store.listRoleAssignments('contoso', 'application', 'indexer'),
    };
  };
  const first = await snapshot();
  await server.close();
  const again = await startTestServer({ dataDir });
  try {
    const store = again.ctx.store;
    const second = {
      tenants: await store.listTenants(),
      users: await store.listUsers('contoso'),
      apps: await store.listApplications('contoso'),
      consents: await store.listConsents({ tenantId: 'contoso' }),
      policies: await store.listPolicies('contoso'),
      roles: await store.listRoleAssignments('contoso', 'application', 'indexer'),
    };
    assert.deepEqual(second, first);
    const bytes = Buffer.concat(await Promise.all((await readdir(dataDir)).filter((f) => f.startsWith('baton.sqlite')).map((f) => readFile(join(dataDir, f)))));
    for (const plain of ['alice-Demo-pass-1', 'tasks-api-demo-secret-for-local-use-only', 'JBSWY3DPEHPK3PXP', ['BEGIN', 'PRIVATE', 'KEY'].join(' ')]) {
      assert.equal(bytes.includes(Buffer.from(plain)), false, `${plain} found in the store`);
    }
  } finally {
    await again.close();
    await rm(dataDir, { recursive: true, force: true });
  }
});

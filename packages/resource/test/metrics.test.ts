/**
 * The SDK's metrics option (metrics.ts) and its prom-client implementation (prometheus.ts): counts
 * land in the application's own registry, a malformed option is a TypeError at construction, and
 * nothing but the `prometheus` subpath loads prom-client (an API without it installed still works).
 * The counts through a real chain and a real Prometheus are in test/prometheus.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { Registry } from 'prom-client';
import { createGuard, createOboClient, createDownstream, GuardError } from '@baton/resource';
import { registerBatonMetrics } from '@baton/resource/prometheus';

const guardOptions = { issuer: 'https://issuer.test/v2.0', jwksUri: 'https://issuer.test/keys', audience: 'api://tasks' };

test('guard results are counted by reason in the application registry, without fetching anything', async () => {
  const registry = new Registry();
  const guard = createGuard({ ...guardOptions, metrics: registerBatonMetrics(registry) });
  await assert.rejects(guard.check(undefined as unknown as string), (e: unknown) => e instanceof GuardError && e.reason === 'ERR_BEARER_MISSING');
  await assert.rejects(guard.check('Bearer not-a-jwt'), (e: unknown) => e instanceof GuardError);
  await assert.rejects(guard.verify(['Bearer a', 'Bearer b']), (e: unknown) => e instanceof GuardError && e.reason === 'ERR_BEARER_DUPLICATE');
  const text = await registry.metrics();
  assert.match(text, /^baton_guard_requests_total\{result="ERR_BEARER_MISSING"\} 1$/m);
  assert.match(text, /^baton_guard_requests_total\{result="ERR_BEARER_DUPLICATE"\} 1$/m);
  assert.doesNotMatch(text, /not-a-jwt/);
});

test('a malformed metrics option is a TypeError when the component is built', () => {
  for (const metrics of [null, {}, { guard() {} }, 'prometheus']) {
    assert.throws(() => createGuard({ ...guardOptions, metrics: metrics as never }), TypeError);
    assert.throws(() => createOboClient({ clientId: 'tasks-api', credential: { clientSecret: 's' }, tokenEndpoint: 'https://issuer.test/token', metrics: metrics as never }), TypeError);
  }
  const obo = createOboClient({ clientId: 'tasks-api', credential: { clientSecret: 's' }, tokenEndpoint: 'https://issuer.test/token' });
  assert.throws(() => createDownstream({ obo, scopes: ['api://docs/Docs.Read'], metrics: 42 as never }), TypeError);
  assert.throws(() => registerBatonMetrics({} as never), TypeError);
});

test('registering twice in one registry is refused by prom-client; two registries are independent', () => {
  const registry = new Registry();
  registerBatonMetrics(registry);
  assert.throws(() => registerBatonMetrics(registry), /already been registered/);
  registerBatonMetrics(new Registry());
});

test('only the prometheus subpath imports prom-client', async () => {
  const dir = new URL('../src/', import.meta.url);
  const importers: string[] = [];
  for (const file of await readdir(dir)) {
    if (file.endsWith('.ts') && /^import [^;]*from 'prom-client'/m.test(await readFile(new URL(file, dir), 'utf8'))) importers.push(file);
  }
  assert.deepEqual(importers, ['prometheus.ts']);
  const manifest = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8'));
  assert.equal(manifest.dependencies['prom-client'], undefined);
  assert.equal(manifest.peerDependenciesMeta['prom-client'].optional, true);
});

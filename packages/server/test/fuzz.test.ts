/**
 * The seeded slice of the HTTP fuzzer (fuzz-kit.ts) that `npm test` runs: a fixed seed, a few
 * hundred generated requests over every endpoint and the admin API (with a real admin token),
 * every invariant checked. `npm run fuzz` runs the
 * same generator for ≥ 100,000 requests against a live `baton serve` (reliability/fuzz.ts).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, basic, type TestServer } from './harness.ts';
import { userToken, secretOf } from './obo-fixtures.ts';
import { runFuzz, type FuzzSeeds } from './fuzz-kit.ts';
import { adminConfigure, adminToken } from './admin-kit.ts';

let server: TestServer;
let seeds: FuzzSeeds;

before(async () => {
  server = await startTestServer({ configure: adminConfigure });
  const appToken = await server.post('/contoso/oauth2/v2.0/token', { grant_type: 'client_credentials', scope: 'api://docs/.default' }, { authorization: basic('indexer', secretOf('indexer')) });
  assert.equal(appToken.status, 200);
  seeds = {
    tokens: [appToken.body.access_token, await userToken(server)],
    secrets: Object.fromEntries(['indexer', 'tasks-api', 'docs-api'].map((id) => [id, secretOf(id)])),
    tenant: 'contoso',
    redirectUri: 'http://127.0.0.1:7000/callback',
    adminTokens: [await adminToken(server)],
  };
});
after(() => server.close());

for (const seed of [12, 1207]) {
  test(`seed ${seed}: 200 generated requests, every invariant holds`, async () => {
    const report = await runFuzz({ baseUrl: server.url, dataDir: server.dataDir, seeds, seed, requests: 200, concurrency: 4, batch: 20 });
    assert.deepEqual(report.violations.map((v) => `${v.invariant} ${v.status ?? ''} ${v.request.method} ${v.request.path.slice(0, 120)} ${v.detail.slice(0, 300)}`), []);
    assert.equal(report.requests, 200);
    // The generator reaches every endpoint and the admin API, and the store comparison actually ran.
    assert.equal(Object.keys(report.byEndpoint).length, 13, JSON.stringify(report.byEndpoint));
    assert.ok((report.byEndpoint.admin ?? 0) >= 20, JSON.stringify(report.byEndpoint));
    assert.ok(report.batchesCompared > 0);
  });
}

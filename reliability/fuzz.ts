/**
 * `npm run fuzz`: the HTTP fuzzer (packages/server/test/fuzz-kit.ts) against a live `baton serve`
 * (the CLI, the demo configuration plus an admin application holding Baton.Admin, SQLite,
 * loopback; the admin API is fuzzed with its token): ≥ 100,000 generated requests by default,
 * every invariant checked, and the server's own log checked for unexpected errors. Writes a JSON
 * report to reliability/results/ and prints the summary that goes into docs/reliability.md.
 *
 *   npm run fuzz                       # 100,000 requests, seed 20261204
 *   npm run fuzz -- --requests 5000 --seed 7
 */
import { parseArgs } from 'node:util';
import { readFile, writeFile, rm, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runFuzz } from '../packages/server/test/fuzz-kit.ts';
import { serve, issueUserToken, SECRETS, CONFIG, writeReport } from './lib/serve.ts';

const { values } = parseArgs({ options: { requests: { type: 'string', default: '100000' }, seed: { type: 'string', default: '20261204' }, concurrency: { type: 'string', default: '16' } } });
const requests = Number(values.requests);
const seed = Number(values.seed);
if (!Number.isInteger(requests) || requests < 1 || !Number.isInteger(seed)) throw new Error('--requests and --seed must be integers');

// The demo configuration plus an administrator, so the admin API is fuzzed with a real admin token.
const ADMIN = { clientId: 'fuzz-admin', secret: 'fuzz-admin-secret-for-local-use-only' };
const configDir = await mkdtemp(join(tmpdir(), 'baton-fuzz-config-'));
const raw = JSON.parse(await readFile(CONFIG, 'utf8'));
raw.tenants[0].applications.push({ name: 'Fuzz Admin', clientId: ADMIN.clientId, secrets: [ADMIN.secret] });
raw.tenants[0].appRoleAssignments.push({ client: ADMIN.clientId, resource: 'api://baton-admin', roles: ['Baton.Admin'] });
const config = join(configDir, 'baton.json');
await writeFile(config, JSON.stringify(raw));
const served = await serve({ config });
try {
  const app = await fetch(`${served.url}/contoso/oauth2/v2.0/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`indexer:${SECRETS.indexer}`).toString('base64')}` },
    body: 'grant_type=client_credentials&scope=api%3A%2F%2Fdocs%2F.default',
  });
  const appToken = ((await app.json()) as { access_token: string }).access_token;
  const adminAnswer = await fetch(`${served.url}/contoso/oauth2/v2.0/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`${ADMIN.clientId}:${ADMIN.secret}`).toString('base64')}` },
    body: 'grant_type=client_credentials&scope=api%3A%2F%2Fbaton-admin%2F.default',
  });
  const adminToken = ((await adminAnswer.json()) as { access_token: string }).access_token;
  const seeds = { tokens: [appToken, await issueUserToken(served)], secrets: SECRETS, tenant: 'contoso', redirectUri: 'http://127.0.0.1:7000/callback', adminTokens: [adminToken] };
  let last = 0;
  const report = await runFuzz({
    baseUrl: served.url,
    dataDir: served.dataDir,
    seeds,
    seed,
    requests,
    concurrency: Number(values.concurrency),
    batch: 64,
    onProgress(done, violations) {
      if (done - last >= 10_000 || done === requests) {
        last = done;
        process.stderr.write(`fuzz: ${done}/${requests} requests, ${violations} violations\n`);
      }
    },
  });
  const unexpected = served.log().split('\n').filter((line) => /unexpected error/.test(line));
  const summary = {
    date: new Date().toISOString(),
    node: process.version,
    ...report,
    serverUnexpectedErrors: unexpected.length,
    violations: report.violations.slice(0, 50),
    violationCount: report.violations.length,
    requestsPerSecond: Math.round(report.requests / report.seconds),
  };
  const file = await writeReport('fuzz', summary, new Date(summary.date));
  process.stdout.write(
    [
      `fuzz: ${report.requests} requests (seed ${seed}) in ${report.seconds} s (${summary.requestsPerSecond}/s) against baton serve (SQLite)`,
      `violations: ${report.violations.length}; server log 'unexpected error' lines: ${unexpected.length}`,
      `store compared after ${report.batchesCompared} batches (${report.batchesSkipped} batches held a request that may write: a sign-in step, a refresh token issued or an accepted admin change)`,
      `by endpoint: ${JSON.stringify(report.byEndpoint)}`,
      `by status: ${JSON.stringify(report.byStatus)}`,
      `by method: ${JSON.stringify(report.byMethod)}`,
      `report: ${file}`,
      ...report.violations.slice(0, 10).map((v) => `  ${v.invariant} ${v.status ?? ''} ${v.request.method} ${v.request.path.slice(0, 120)}: ${v.detail.slice(0, 300)}`),
      ...unexpected.slice(0, 5).map((line) => `  server: ${line.slice(0, 300)}`),
    ].join('\n') + '\n',
  );
  process.exitCode = report.violations.length === 0 && unexpected.length === 0 ? 0 : 1;
} finally {
  await served.stop();
  await rm(served.dataDir, { recursive: true, force: true });
  await rm(configDir, { recursive: true, force: true });
}

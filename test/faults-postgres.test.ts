/**
 * PostgreSQL restarted under two `baton serve` instances with load running (issue 12): while the
 * database is down every request that needs it fails fast with `503 temporarily_unavailable` and
 * `Retry-After` (no 500, no hang), both instances serve again once it is back, and no authorization
 * code or refresh family is lost or usable twice. The scenario is reliability/lib/postgres-restart.ts
 * (also `npm run faults -- postgres-restart`, longer, with figures); it starts its own PostgreSQL.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { postgresBinaries } from '../reliability/lib/postgres.ts';
import { postgresRestart } from '../reliability/lib/postgres-restart.ts';

const unavailable = process.getuid?.() !== 0 ? 'needs root to run its own PostgreSQL as the postgres user' : (await postgresBinaries()) === undefined ? 'no PostgreSQL server binaries' : false;

test('PostgreSQL stopped and started under two instances: 503 + Retry-After while down, service back, nothing lost or usable twice', { skip: unavailable, timeout: 240_000 }, async () => {
  const figures = await postgresRestart({ loadBeforeSeconds: 2, outageSeconds: 3, loadAfterSeconds: 3, workers: 4, held: 4, requestTimeoutMs: 20_000 });
  const report = JSON.stringify(figures);
  assert.equal(figures.violations, 0, `every answer is a 200 or a 503 temporarily_unavailable with Retry-After, none slower than the bound: ${report}`);
  assert.equal(figures.probesWhileDownAll503, true, `a held code and refresh token are refused with a 503 while the database is down: ${report}`);
  assert.ok((figures.failedFast503WhileDown as number) > 0, `the load met the outage: ${report}`);
  assert.equal(figures.readyzWhileDown, '503/503', report);
  assert.ok(!String(figures.readyAfterBackMs).split('/').includes('-1'), `both instances ready again: ${report}`);
  assert.ok(!String(figures.firstGrantAfterBackMs).split('/').includes('-1'), `both instances issue grants again: ${report}`);
  assert.equal(figures.grantsLost, 0, report);
  assert.equal(figures.usableTwice, 0, report);
  assert.ok((figures.loadFamiliesJudged as number) > 0, report);
  assert.equal(figures.ok, true, report);
});

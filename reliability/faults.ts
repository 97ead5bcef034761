/**
 * `npm run faults`: faults injected into real parts while load runs, each with its own service
 * instances on loopback, each bounded in time. Prints one figure line per fault and writes a JSON
 * report to reliability/results/ (figures go into docs/reliability.md).
 *
 *   postgres-restart  two `baton serve` on a PostgreSQL of the run's own, load running, PostgreSQL
 *                 stopped (fast shutdown) and started again: 503 + Retry-After while down, service
 *                 back without a restart, no code or refresh family lost or usable twice.
 *   sqlite-kill   `baton serve` on SQLite, sign-ins and refreshes running, `kill -9` mid-load:
 *                 restart, PRAGMA integrity_check, every acknowledged grant still redeemable.
 *   jwks-down     the guard's issuer answers 503 for its JWKS: known keys keep validating, unknown
 *                 kids are refused without a fetch storm, service resumes when the JWKS is back.
 *   redis-down    two API replicas sharing OBO tokens through their own redis-server: Redis killed
 *                 mid-load and started again; no caller request fails, and tokens are shared again.
 *   key-rotation  `baton keys rotate` (a third process on the database) while two instances on
 *                 PostgreSQL mint tokens and exchange them On-Behalf-Of, each validated by the SDK
 *                 guard: zero failed validations, both instances on the new key after it.
 *   idle-crowd    10,000 idle connections to `baton serve`: others are answered throughout; the idle
 *                 ones are closed by the headers timeout.
 *
 *   npm run faults                      # all of them
 *   npm run faults -- sqlite-kill       # one
 */
import { readFile, rm, writeFile, mkdtemp } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { DatabaseSync } from 'node:sqlite';
import { serve, CONFIG, writeReport, type Served } from './lib/serve.ts';
import { Browser, BOB, authorizeUrl, pkce, runFlow, webParams, WEB } from '../packages/server/test/signin-kit.ts';
import { createGuard, createOboClient } from '../packages/resource/src/index.ts';
import { RedisTokenCacheStore } from '../packages/resource/src/redis.ts';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { postgresRestart } from './lib/postgres-restart.ts';
import { keyRotationUnderLoad } from './lib/key-rotation.ts';
import { issueUserToken, SECRETS } from './lib/serve.ts';
import { freePort } from '../packages/server/test/free-port.ts';
import { generateTestKey, startIssuer } from '../packages/resource/test/fixtures/issuer.ts';

type Figures = Record<string, number | string | boolean>;
const results: Record<string, Figures> = {};
const wanted = new Set(process.argv.slice(2));
const run = (name: string) => wanted.size === 0 || wanted.has(name);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function trustServed(served: Served): Promise<void> {
  const ca = await readFile(join(served.dataDir, 'tls/ca.pem'), 'utf8');
  tls.setDefaultCACertificates([...tls.getCACertificates('default'), ca]);
}

async function form(url: string, body: Record<string, string>): Promise<{ status: number; body: any }> {
  const response = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(body).toString(), signal: AbortSignal.timeout(10_000) });
  const text = await response.text();
  return { status: response.status, body: text.startsWith('{') ? JSON.parse(text) : text };
}

/** sqlite-kill: acknowledged grants survive `kill -9`; the file is intact. */
async function sqliteKill(): Promise<Figures> {
  const dir = await mkdtemp(join(tmpdir(), 'baton-fault-sqlite-'));
  let served = await serve({ dataDir: dir, args: ['--tls-dev'] });
  await trustServed(served);
  const tokenUrl = () => `${served.url}/contoso/oauth2/v2.0/token`;
  /** Per family: the newest refresh token whose response arrived, and whether a request was in flight at the kill. */
  const families: Array<{ token: string; inDoubt: boolean }> = [];
  let killed = false;
  let acknowledged = 0;
  let failedBeforeKill = 0;
  const worker = async () => {
    while (!killed) {
      const { verifier, challenge } = pkce();
      const flow = await runFlow(new Browser(), served as never, authorizeUrl(served as never, webParams(challenge)), { user: BOB }).catch(() => undefined);
      if (killed) return;
      const code = flow?.params?.code;
      if (code === undefined) {
        failedBeforeKill++;
        continue;
      }
      const redeemed = await form(tokenUrl(), { grant_type: 'authorization_code', client_id: WEB.clientId, redirect_uri: WEB.redirectUri, code, code_verifier: verifier }).catch(() => undefined);
      if (redeemed === undefined) return; // the kill
      if (redeemed.status !== 200) {
        failedBeforeKill++;
        continue;
      }
      acknowledged++;
      const family = { token: redeemed.body.refresh_token as string, inDoubt: false };
      families.push(family);
      for (let i = 0; i < 3 && !killed; i++) {
        family.inDoubt = true;
        const refreshed = await form(tokenUrl(), { grant_type: 'refresh_token', client_id: WEB.clientId, refresh_token: family.token }).catch(() => undefined);
        if (refreshed === undefined) return; // in flight at the kill: the rotation may or may not have committed
        family.inDoubt = false;
        if (refreshed.status !== 200) {
          failedBeforeKill++;
          break;
        }
        acknowledged++;
        family.token = refreshed.body.refresh_token;
      }
    }
  };
  const workers = Array.from({ length: 4 }, worker);
  await sleep(15_000);
  killed = true;
  served.child.kill('SIGKILL');
  await Promise.allSettled(workers);
  await new Promise((r) => served.child.once('exit', r)).catch(() => undefined);

  const db = new DatabaseSync(join(dir, 'baton.sqlite'));
  const integrity = (db.prepare('PRAGMA integrity_check').get() as { integrity_check: string }).integrity_check;
  db.close();
  const started = performance.now();
  served = await serve({ dataDir: dir, args: ['--tls-dev'] });
  const restartMs = Math.round(performance.now() - started);
  let present = 0;
  let lost = 0;
  const checked = families.filter((f) => !f.inDoubt);
  for (const family of checked) {
    const refreshed = await form(tokenUrl(), { grant_type: 'refresh_token', client_id: WEB.clientId, refresh_token: family.token });
    if (refreshed.status === 200) present++;
    else lost++;
  }
  await served.stop();
  await rm(dir, { recursive: true, force: true });
  return {
    acknowledgedGrants: acknowledged,
    families: families.length,
    familiesInFlightAtKill: families.length - checked.length,
    checkedAfterRestart: checked.length,
    present,
    lost,
    integrityCheck: integrity,
    restartMs,
    failedBeforeKill,
    ok: integrity === 'ok' && lost === 0 && checked.length > 0 && failedBeforeKill === 0,
  };
}

/** jwks-down: the guard keeps validating with the keys it has; unknown kids cause no fetch storm. */
async function jwksDown(): Promise<Figures> {
  const known = generateTestKey('ES256');
  const unknown = generateTestKey('ES256');
  const issuer = await startIssuer({ keys: [known] });
  const guard = createGuard({ authority: issuer.authority, audience: issuer.audience, cacheSize: 0, jwks: { cooldown: 1_000, maxAge: 2_000 } });
  await guard.verify(`Bearer ${issuer.token()}`);
  issuer.failWith = 503;
  const fetchesBefore = issuer.counts.jwks;
  const started = performance.now();
  let validKnown = 0;
  let failedKnown = 0;
  let refusedUnknown = 0;
  let acceptedUnknown = 0;
  // 5 s of load while the JWKS answers 503: past maxAge (a background refresh fails) and through five cooldowns.
  while (performance.now() - started < 5_000) {
    const batch = await Promise.allSettled([
      ...Array.from({ length: 20 }, () => guard.verify(`Bearer ${issuer.token()}`)),
      ...Array.from({ length: 20 }, () => guard.verify(`Bearer ${issuer.token({}, { key: unknown })}`)),
    ]);
    batch.slice(0, 20).forEach((r) => (r.status === 'fulfilled' ? validKnown++ : failedKnown++));
    batch.slice(20).forEach((r) => (r.status === 'rejected' ? refusedUnknown++ : acceptedUnknown++));
    await sleep(50);
  }
  const fetchesDuringOutage = issuer.counts.jwks - fetchesBefore;
  issuer.failWith = undefined;
  issuer.published = [known, unknown];
  const back = performance.now();
  let recoveredMs = -1;
  while (performance.now() - back < 10_000) {
    try {
      await guard.verify(`Bearer ${issuer.token({}, { key: unknown })}`);
      recoveredMs = Math.round(performance.now() - back);
      break;
    } catch {
      await sleep(100);
    }
  }
  await issuer.close();
  return {
    outageSeconds: 5,
    validKnown,
    failedKnown,
    refusedUnknown,
    acceptedUnknown,
    jwksFetchesDuringOutage: fetchesDuringOutage,
    newKeyAcceptedAfterRecoveryMs: recoveredMs,
    ok: failedKnown === 0 && acceptedUnknown === 0 && fetchesDuringOutage <= 8 && recoveredMs >= 0,
  };
}

function startRedis(port: number): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    child.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      if (/Ready to accept connections/.test(out)) resolve(child);
    });
    child.once('exit', (code) => reject(new Error(`redis-server exited with ${code}`)));
  });
}

/** redis-down: the SDK's OBO cache falls back to memory while its Redis is down; nobody's request fails. */
async function redisDown(): Promise<Figures> {
  const port = await freePort();
  let redis = await startRedis(port);
  const served = await serve();
  const assertions = [await issueUserToken(served, 'alice@contoso.test'), await issueUserToken(served, 'bob@contoso.test')];
  const key = randomBytes(32);
  const quiet = { info() {}, warn() {}, error() {} };
  const replica = () =>
    createOboClient({
      authority: `${served.url}/contoso/v2.0`,
      clientId: 'tasks-api',
      credential: { clientSecret: SECRETS['tasks-api']! },
      cache: new RedisTokenCacheStore({ redis: `redis://127.0.0.1:${port}`, key, logger: quiet as never }),
    });
  const replicas = [replica(), replica()];
  let calls = 0;
  let failures = 0;
  let forced = 0;
  const failureSamples: string[] = [];
  let stop = false;
  const loop = async (i: number) => {
    while (!stop) {
      const obo = replicas[(calls + i) % 2]!;
      const forceRefresh = calls % 10 === 0;
      calls++;
      if (forceRefresh) forced++;
      try {
        await obo.acquire({ assertion: assertions[calls % 2]!, scopes: ['api://docs/Docs.Read'], forceRefresh });
      } catch (error) {
        failures++;
        if (failureSamples.length < 5) failureSamples.push((error as Error).message.slice(0, 200));
      }
      await sleep(5);
    }
  };
  const loops = Array.from({ length: 4 }, (_, i) => loop(i));
  await sleep(3_000);
  const callsBeforeKill = calls;
  redis.kill('SIGKILL');
  await new Promise((r) => redis.once('exit', r));
  const downAt = performance.now();
  await sleep(4_000);
  const callsWhileDown = calls - callsBeforeKill;
  redis = await startRedis(port);
  const downMs = Math.round(performance.now() - downAt);
  await sleep(4_000);
  stop = true;
  await Promise.all(loops);
  // Shared again: a token acquired by one replica after the restart is served to a new replica from Redis.
  let sharedAgain = false;
  for (let attempt = 0; attempt < 20 && !sharedAgain; attempt++) {
    await replicas[0]!.acquire({ assertion: assertions[0]!, scopes: ['api://docs/Docs.Read'], forceRefresh: true });
    const fresh = replica();
    sharedAgain = (await fresh.acquire({ assertion: assertions[0]!, scopes: ['api://docs/Docs.Read'] })).fromCache;
    await fresh.close();
    if (!sharedAgain) await sleep(250);
  }
  for (const r of replicas) await r.close();
  redis.kill('SIGTERM');
  await served.stop();
  await rm(served.dataDir, { recursive: true, force: true });
  return { calls, callsWhileRedisDown: callsWhileDown, forcedRefreshes: forced, failures, redisDownMs: downMs, sharedAgainAfterRestart: sharedAgain, ...(failureSamples.length ? { failureSamples: failureSamples.join(' | ') } : {}), ok: failures === 0 && sharedAgain && callsWhileDown > 0 };
}

/** key-rotation: rotating the signing key under load through two instances (lib/key-rotation.ts). */
function keyRotation(): Promise<Figures> {
  return keyRotationUnderLoad({ loadBeforeSeconds: 3, loadAfterSeconds: 6, workers: 4 });
}

/** idle-crowd: 10,000 idle connections; others are answered; the idle ones are closed by the headers timeout. */
async function idleCrowd(): Promise<Figures> {
  const dir = await mkdtemp(join(tmpdir(), 'baton-fault-idle-'));
  const config = JSON.parse(await readFile(CONFIG, 'utf8'));
  config.http = { headersTimeoutMs: 5_000, requestTimeoutMs: 10_000 };
  await writeFile(join(dir, 'baton.json'), JSON.stringify(config));
  const served = await serve({ config: join(dir, 'baton.json'), dataDir: join(dir, 'data') });
  const port = Number(new URL(served.url).port);
  const sockets: Socket[] = [];
  const closed: Promise<void>[] = [];
  let connectFailures = 0;
  for (let i = 0; i < 10_000; i += 500) {
    await Promise.all(
      Array.from({ length: 500 }, () =>
        new Promise<void>((resolve) => {
          const socket = connect(port, '127.0.0.1');
          socket.resume(); // read what the server sends (its 408), or the close is never seen
          socket.once('connect', () => resolve());
          socket.once('error', () => {
            connectFailures++;
            resolve();
          });
          closed.push(new Promise((r) => socket.once('close', () => r())));
          sockets.push(socket);
        }),
      ),
    );
  }
  const latencies: number[] = [];
  let answered = 0;
  let failed = 0;
  for (let i = 0; i < 50; i++) {
    const t = performance.now();
    try {
      const response = await fetch(`${served.url}/contoso/v2.0/.well-known/openid-configuration`, { signal: AbortSignal.timeout(5_000) });
      await response.arrayBuffer();
      if (response.status === 200) answered++;
      else failed++;
    } catch {
      failed++;
    }
    latencies.push(performance.now() - t);
  }
  const closeStarted = performance.now();
  await Promise.race([Promise.all(closed), sleep(30_000)]);
  const stillOpen = sockets.filter((s) => !s.destroyed).length;
  for (const s of sockets) s.destroy();
  await served.stop();
  await rm(dir, { recursive: true, force: true });
  latencies.sort((a, b) => a - b);
  return {
    idleConnections: sockets.length - connectFailures,
    connectFailures,
    othersAnswered: answered,
    othersFailed: failed,
    p50Ms: Math.round(latencies[Math.floor(latencies.length * 0.5)]!),
    p99Ms: Math.round(latencies[Math.floor(latencies.length * 0.99)]!),
    idleClosedWithinMs: Math.round(performance.now() - closeStarted),
    stillOpenAfter30s: stillOpen,
    ok: failed === 0 && stillOpen === 0 && connectFailures === 0,
  };
}

/** postgres-restart: PostgreSQL stopped and started under two instances with load running (lib/postgres-restart.ts). */
function pgRestart(): Promise<Figures> {
  return postgresRestart({ loadBeforeSeconds: 5, outageSeconds: 5, loadAfterSeconds: 10, workers: 6, held: 10, requestTimeoutMs: 5_000 });
}

const faults: Array<[string, () => Promise<Figures>]> = [
  ['postgres-restart', pgRestart],
  ['sqlite-kill', sqliteKill],
  ['jwks-down', jwksDown],
  ['redis-down', redisDown],
  ['key-rotation', keyRotation],
  ['idle-crowd', idleCrowd],
];
let allOk = true;
for (const [name, fault] of faults) {
  if (!run(name)) continue;
  process.stderr.write(`fault ${name}…\n`);
  try {
    results[name] = await fault();
  } catch (error) {
    results[name] = { ok: false, error: (error as Error).message.slice(0, 500) };
  }
  if (results[name]!.ok !== true) allOk = false;
  process.stdout.write(`${name}: ${JSON.stringify(results[name])}\n`);
}
const file = await writeReport('faults', { date: new Date().toISOString(), node: process.version, results });
process.stdout.write(`report: ${file}\n`);
process.exitCode = allOk ? 0 : 1;

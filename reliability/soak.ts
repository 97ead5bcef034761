/**
 * `npm run soak`: a mixed load against one `baton serve` (SQLite, dev TLS, loopback) for a while —
 * client credentials, On-Behalf-Of, refresh-token rotation and full sign-ins — sampling the server
 * process every 10 s: resident memory, open file descriptors, and per-window latency. Not part of
 * `npm test`.
 *
 *   npm run soak                   # 10 minutes
 *   npm run soak -- --minutes 2    # a short run (or SOAK_MINUTES=2 npm run soak)
 *
 * Reports: RSS growth after warm-up (the first fifth of the run; medians of three windows at each end), descriptors at the start and the
 * end of the measured part, p50/p99 per window, errors. Writes JSON to reliability/results/.
 */
import { parseArgs } from 'node:util';
import { readFile, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import tls from 'node:tls';
import { serve, issueUserToken, SECRETS, writeReport } from './lib/serve.ts';
import { Browser, BOB, authorizeUrl, pkce, runFlow, webParams, WEB } from '../packages/server/test/signin-kit.ts';

const { values } = parseArgs({ options: { minutes: { type: 'string', default: process.env.SOAK_MINUTES ?? '10' } } });
const minutes = Number(values.minutes);
if (!(minutes > 0 && minutes <= 180)) throw new Error('--minutes must be between 0 and 180');
const durationMs = minutes * 60_000;

const served = await serve({ args: ['--tls-dev'] });
tls.setDefaultCACertificates([...tls.getCACertificates('default'), await readFile(join(served.dataDir, 'tls/ca.pem'), 'utf8')]);
const pid = served.child.pid!;
const tokenUrl = `${served.url}/contoso/oauth2/v2.0/token`;
const basicOf = (id: string) => `Basic ${Buffer.from(`${id}:${SECRETS[id]}`).toString('base64')}`;
const userToken = await issueUserToken(served);

type Kind = 'client_credentials' | 'obo' | 'refresh' | 'signin';
interface Window {
  at: number;
  rssMb: number;
  fds: number;
  latencies: Record<Kind, number[]>;
  errors: Record<Kind, number>;
}
const windows: Window[] = [];
const fresh = (): Window => ({ at: 0, rssMb: 0, fds: 0, latencies: { client_credentials: [], obo: [], refresh: [], signin: [] }, errors: { client_credentials: 0, obo: 0, refresh: 0, signin: 0 } });
let current = fresh();
const errorSamples: string[] = [];

async function timed(kind: Kind, run: () => Promise<boolean>): Promise<void> {
  const started = performance.now();
  let ok = false;
  try {
    ok = await run();
  } catch (error) {
    if (errorSamples.length < 10) errorSamples.push(`${kind}: ${(error as Error).message}`);
  }
  current.latencies[kind].push(performance.now() - started);
  if (!ok) current.errors[kind]++;
}

async function post(body: Record<string, string>, authorization?: string): Promise<{ status: number; body: any }> {
  const response = await fetch(tokenUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...(authorization ? { authorization } : {}) },
    body: new URLSearchParams(body).toString(),
    signal: AbortSignal.timeout(15_000),
  });
  const json = (await response.json()) as any;
  if (response.status !== 200 && errorSamples.length < 10) errorSamples.push(`${response.status} ${JSON.stringify(json).slice(0, 200)}`);
  return { status: response.status, body: json };
}

async function signIn(): Promise<string | undefined> {
  const { verifier, challenge } = pkce();
  const flow = await runFlow(new Browser(), served as never, authorizeUrl(served as never, webParams(challenge)), { user: BOB });
  const code = flow.params?.code;
  if (code === undefined) return undefined;
  const redeemed = await post({ grant_type: 'authorization_code', client_id: WEB.clientId, redirect_uri: WEB.redirectUri, code, code_verifier: verifier });
  return redeemed.status === 200 ? (redeemed.body.refresh_token as string) : undefined;
}

const end = Date.now() + durationMs;
const running = () => Date.now() < end;
const loops: Promise<void>[] = [];
for (let i = 0; i < 2; i++) {
  loops.push((async () => {
    while (running()) await timed('client_credentials', async () => (await post({ grant_type: 'client_credentials', scope: 'api://docs/.default' }, basicOf('indexer'))).status === 200);
  })());
  loops.push((async () => {
    while (running()) {
      await timed('obo', async () => (await post({ grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', requested_token_use: 'on_behalf_of', assertion: userToken, scope: 'api://docs/Docs.Read' }, basicOf('tasks-api'))).status === 200);
    }
  })());
}
loops.push((async () => {
  let refresh: string | undefined;
  while (running()) {
    if (refresh === undefined) {
      await timed('signin', async () => (refresh = await signIn()) !== undefined);
      continue;
    }
    await timed('refresh', async () => {
      const rotated = await post({ grant_type: 'refresh_token', client_id: WEB.clientId, refresh_token: refresh! });
      refresh = rotated.status === 200 ? rotated.body.refresh_token : undefined;
      return rotated.status === 200;
    });
    // A new sign-in now and then: sessions, codes and families keep being created, as in production.
    if (Math.random() < 0.02) refresh = undefined;
  }
})());

async function sample(): Promise<void> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  current.rssMb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
  current.fds = (await readdir(`/proc/${pid}/fd`)).length;
  current.at = Math.round((durationMs - (end - Date.now())) / 1000);
  windows.push(current);
  current = fresh();
}
while (running()) {
  await new Promise((r) => setTimeout(r, Math.min(10_000, Math.max(0, end - Date.now()))));
  await sample();
}
await Promise.all(loops);
await served.stop();
await rm(served.dataDir, { recursive: true, force: true });

const pct = (list: number[], p: number) => {
  if (list.length === 0) return 0;
  const sorted = [...list].sort((a, b) => a - b);
  return Math.round(sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]! * 10) / 10;
};
const warm = Math.max(1, Math.floor(windows.length / 5));
const measured = windows.slice(warm);
// RSS moves with every collection: compare the median of the first three measured windows with the
// median of the last three, not two single samples.
const median = (list: number[]) => [...list].sort((x, y) => x - y)[Math.floor(list.length / 2)] ?? 0;
const rssStart = median(measured.slice(0, 3).map((w) => w.rssMb));
const rssEnd = median(measured.slice(-3).map((w) => w.rssMb));
const kinds: Kind[] = ['client_credentials', 'obo', 'refresh', 'signin'];
const summary = {
  date: new Date().toISOString(),
  minutes,
  requests: Object.fromEntries(kinds.map((k) => [k, windows.reduce((n, w) => n + w.latencies[k].length, 0)])),
  errors: Object.fromEntries(kinds.map((k) => [k, windows.reduce((n, w) => n + w.errors[k], 0)])),
  rssMbAfterWarmup: Math.round(rssStart * 10) / 10,
  rssMbAtEnd: Math.round(rssEnd * 10) / 10,
  rssGrowthPercent: rssStart === 0 ? 0 : Math.round(((rssEnd - rssStart) / rssStart) * 1000) / 10,
  fdsAfterWarmup: measured[0]?.fds,
  fdsAtEnd: measured.at(-1)?.fds,
  windows: windows.map((w) => ({ at: w.at, rssMb: Math.round(w.rssMb * 10) / 10, fds: w.fds, ...Object.fromEntries(kinds.map((k) => [k, { n: w.latencies[k].length, p50: pct(w.latencies[k], 0.5), p99: pct(w.latencies[k], 0.99), errors: w.errors[k] }])) })),
  errorSamples,
};
const file = await writeReport('soak', summary, new Date(summary.date));
const p99s = (k: Kind) => measured.map((w) => pct(w.latencies[k], 0.99));
process.stdout.write(
  [
    `soak: ${minutes} min against baton serve (SQLite, TLS); requests ${JSON.stringify(summary.requests)}; errors ${JSON.stringify(summary.errors)}`,
    `RSS after warm-up ${summary.rssMbAfterWarmup} MB -> end ${summary.rssMbAtEnd} MB (medians of 3 windows) (${summary.rssGrowthPercent} %); fds ${summary.fdsAfterWarmup} -> ${summary.fdsAtEnd}`,
    ...kinds.map((k) => `p99 per 10 s window, ${k} (ms): min ${Math.min(...p99s(k))} median ${pct(p99s(k), 0.5)} max ${Math.max(...p99s(k))}`),
    `report: ${file}`,
    ...errorSamples.map((e) => `  ${e}`),
  ].join('\n') + '\n',
);
process.exitCode = Object.values(summary.errors).every((n) => n === 0) ? 0 : 1;

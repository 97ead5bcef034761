/**
 * CAE (issue 17): how long after an administrator disables a user every hop of the demo chain
 * refuses that user's existing tokens, and the OBO caches drop them, by push (RFC 8935) and by
 * poll (RFC 8936).
 *
 * The deployment of the "done when": its own PostgreSQL database on the shared server; two
 * `baton serve` processes on it (the real CLI, one data directory for the dev TLS material and KEK,
 * one public URL: instance 2's, which the APIs talk to); the Tasks, Docs and Audit APIs of
 * examples/chain, each in its own process (bench/servers/cae-api.ts, the demo's `start*Api` with
 * the `signals` option: its own SSF stream). The bench's copy of examples/chain/baton.json adds an
 * admin application (Baton.Admin), the Baton.Signals role for the three APIs, a tenant-wide consent
 * of Tasks Web (so a sign-in is two pages) and drops the MFA policy on Docs.Write (the chain's write
 * path, which reaches the Audit API, would otherwise need a TOTP step per trial).
 *
 * Per trial: a new user is created through the admin API (instance 1); she signs in at instance 2
 * (authorization code + PKCE through the sign-in page, as Tasks Web does); a task and an attached
 * document go through Tasks → Docs → Audit, so the Tasks API holds her token and an OBO token for
 * the Docs API in its cache, and the Docs API one for the Audit API. Then, at t0, she is disabled
 * through the admin API on instance 1, and each hop is asked every 10 ms, with the token it holds,
 * whether it still accepts it: this process asks the Tasks API (her token), the Tasks API's
 * launcher asks the Docs API (its DPoP-bound OBO token), the Docs API's launcher asks the Audit API;
 * the launchers also note when their OBO cache entry is deleted. Times are from t0 (just before
 * the disable request is sent) to the answer that carried the refusal (the CAE claims challenge):
 * upper bounds, within 10 ms plus one round trip.
 *
 * Stops by itself: 50 trials per mode (10 with --quick), every wait bounded; everything on loopback.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { spawnServer, type ServerHandle } from '../lib/proc.ts';
import { basic } from '../lib/servers.ts';
import { fmtMs } from '../lib/stats.ts';
import { skipped, type BenchContext, type Row, type Section, type SectionResult } from '../lib/types.ts';
import type { CaeApiOptions } from '../servers/cae-api.ts';
import { Browser, formOf, pageKind, pkce } from '../../packages/server/test/signin-kit.ts';
import { freePort } from '../../packages/server/test/free-port.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CLI = join(ROOT, 'packages/cli/src/bin.ts');
const CONFIG = join(ROOT, 'examples/chain/baton.json');
const LAUNCHER = join(ROOT, 'bench/servers/cae-api.ts');
/** The target of issue 17's "done when". */
export const CAE_TARGET_MS = 2000;
/** How long a trial waits for every hop before it counts as a miss. */
const WATCH_MS = 15_000;
const PROBE_MS = 10;
const OPS = { clientId: 'bench-ops', secret: randomBytes(24).toString('base64url') };
const WEB = { clientId: 'tasks-web', redirectUri: 'http://127.0.0.1:7000/callback' };
const MODES = ['push', 'poll'] as const;
type Mode = (typeof MODES)[number];

/** What one trial measured, in ms from t0 (null: not within WATCH_MS). */
interface Trial {
  tasksRefuses: number | null;
  docsRefuses: number | null;
  auditRefuses: number | null;
  tasksOboDropped: number | null;
  docsOboDropped: number | null;
}
const MEASURES: Array<{ key: keyof Trial; label: string }> = [
  { key: 'tasksRefuses', label: 'Tasks API refuses her token' },
  { key: 'docsRefuses', label: "Docs API refuses the Tasks API's OBO token" },
  { key: 'auditRefuses', label: "Audit API refuses the Docs API's OBO token" },
  { key: 'tasksOboDropped', label: 'Tasks API OBO cache drops it' },
  { key: 'docsOboDropped', label: 'Docs API OBO cache drops it' },
];

/** Nearest-rank percentile (of 50 trials, p99 is the largest). */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] as number;
}

export interface Summary {
  n: number;
  misses: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
}

/** A miss (null) counts as infinitely late. */
export function summarise(values: ReadonlyArray<number | null>): Summary {
  const sorted = values.map((v) => v ?? Number.POSITIVE_INFINITY).sort((a, b) => a - b);
  return { n: sorted.length, misses: values.filter((v) => v === null).length, p50: percentile(sorted, 50), p95: percentile(sorted, 95), p99: percentile(sorted, 99), max: sorted[sorted.length - 1] ?? Number.NaN };
}

/** The bench's copy of the demo configuration (see the header). */
function benchConfig(text: string): string {
  const raw = JSON.parse(text);
  const contoso = raw.tenants[0];
  contoso.applications.push({ name: 'Bench admin', clientId: OPS.clientId, secrets: [OPS.secret] });
  contoso.appRoleAssignments.push({ client: OPS.clientId, resource: 'api://baton-admin', roles: ['Baton.Admin'] });
  const assignments: Array<{ client: string; resource: string; roles: string[] }> = contoso.appRoleAssignments;
  for (const client of ['tasks-api', 'docs-api', 'audit-api']) {
    if (!assignments.some((a) => a.client === client && a.resource === 'api://baton-admin' && a.roles.includes('Baton.Signals'))) assignments.push({ client, resource: 'api://baton-admin', roles: ['Baton.Signals'] });
  }
  contoso.consents.push({ client: 'tasks-web', resource: 'api://tasks', scopes: ['Tasks.ReadWrite'], for: 'all' });
  contoso.policies = (contoso.policies ?? []).filter((p: { scopes?: string[] }) => !p.scopes?.includes('Docs.Write'));
  return JSON.stringify(raw, null, 2);
}

async function json(url: string, init: RequestInit, expected: number, what: string): Promise<any> {
  const response = await fetch(url, { ...init, signal: AbortSignal.timeout(20_000) });
  const text = await response.text();
  if (response.status !== expected) throw new Error(`${what}: HTTP ${response.status} ${text.slice(0, 300)}`);
  return text === '' ? undefined : JSON.parse(text);
}

/** Signs `username` in to Tasks Web at `base` (authorization code + PKCE); her access token for the Tasks API. */
async function signIn(base: string, username: string, password: string): Promise<string> {
  const browser = new Browser();
  const { verifier, challenge } = pkce();
  const params = new URLSearchParams({ client_id: WEB.clientId, redirect_uri: WEB.redirectUri, response_type: 'code', scope: 'openid profile api://tasks/Tasks.ReadWrite', state: randomBytes(8).toString('hex'), code_challenge: challenge, code_challenge_method: 'S256' });
  let hop = await browser.get(`${base}/contoso/oauth2/v2.0/authorize?${params}`);
  let code: string | undefined;
  for (let i = 0; i < 10 && code === undefined; i++) {
    if (hop.status === 302 || hop.status === 303) {
      const location = hop.location as string;
      if (location.startsWith(WEB.redirectUri)) code = new URL(location).searchParams.get('code') ?? undefined;
      else hop = await browser.get(location);
      continue;
    }
    const kind = pageKind(hop);
    const { action, fields } = formOf(hop);
    if (kind === 'login') hop = await browser.post(action, { ...fields, username, password });
    else if (kind === 'consent') hop = await browser.post(action, { ...fields, decision: 'accept' });
    else throw new Error(`sign-in: unexpected page '${kind}' (HTTP ${hop.status})`);
  }
  if (code === undefined) throw new Error('sign-in: no code');
  const token = await json(
    `${base}/contoso/oauth2/v2.0/token`,
    { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ grant_type: 'authorization_code', client_id: WEB.clientId, redirect_uri: WEB.redirectUri, code, code_verifier: verifier }).toString() },
    200,
    'redeeming the code',
  );
  return token.access_token as string;
}

/** The Tasks API's answer to her token: 200 accepted, 401 + insufficient_claims refused. */
async function askTasks(tasksUrl: string, token: string): Promise<{ status: number; error: string | undefined }> {
  const response = await fetch(`${tasksUrl}/tasks`, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(5000) });
  await response.body?.cancel();
  return { status: response.status, error: /error="([^"]+)"/.exec(response.headers.get('www-authenticate') ?? '')?.[1] };
}

async function watchTasks(tasksUrl: string, token: string, until: number): Promise<number | null> {
  while (Date.now() < until) {
    const answer = await askTasks(tasksUrl, token);
    if (answer.status === 401 && answer.error === 'insufficient_claims') return Date.now();
    if (answer.status !== 200) throw new Error(`the Tasks API answered ${answer.status} ${answer.error ?? ''}`);
    await new Promise((resolve) => setTimeout(resolve, PROBE_MS));
  }
  return null;
}

export const caeSection: Section = {
  name: 'cae',
  title: 'CAE: a disabled user refused at every hop (2 × baton serve on PostgreSQL, 3 API processes, push and poll)',
  async run(ctx: BenchContext): Promise<SectionResult> {
    const trials = ctx.quick ? 10 : 50;
    // Our own database on the shared server.
    const database = `baton_bench_cae_${randomBytes(5).toString('hex')}`;
    const adminDb = new pg.Client({ connectionString: ctx.pgUrl, connectionTimeoutMillis: 3000 });
    try {
      await adminDb.connect();
    } catch (error) {
      return skipped('cae', `PostgreSQL at ${ctx.pgUrl} is not reachable (${(error as Error).message})`);
    }
    const dataDir = await mkdtemp(join(tmpdir(), 'baton-bench-cae-'));
    const handles: ServerHandle<unknown>[] = [];
    const allCpus = ctx.placement.pinned ? Array.from({ length: cpus().length }, (_, i) => i).join(',') : undefined;
    const loadBefore = loadavg();
    try {
      await adminDb.query(`CREATE DATABASE ${database}`);
      const storeUrl = new URL(ctx.pgUrl);
      storeUrl.pathname = `/${database}`;
      const configFile = join(dataDir, 'baton.bench.json');
      await writeFile(configFile, benchConfig(await readFile(CONFIG, 'utf8')));

      // Instance 2's URL is the public one (the issuer, the endpoints the APIs discover, the poll
      // endpoints); the administrator uses instance 1: every event crosses instances through the store.
      const [port1, port2] = [await freePort(), await freePort()];
      const publicUrl = `https://localhost:${port2}`;
      const serve = async (n: number, port: number) => {
        ctx.log(`cae: starting baton serve #${n} on PostgreSQL (${database})`);
        const handle = await spawnServer<string>({
          script: CLI,
          args: ['serve', '--config', configFile, '--data', dataDir, '--store', storeUrl.href, '--tls-dev', '--port', String(port), '--public-url', publicUrl],
          parseReady: (line) => (line.startsWith('ready ') ? `https://localhost:${port}` : undefined),
          cpu: allCpus,
          logPath: join(ctx.tmpDir, `cae-baton-${n}.log`),
          timeoutMs: 120_000,
          env: { BATON_KEK: '' },
        });
        handles.push(handle as ServerHandle<unknown>);
        return handle;
      };
      // One after the other: both apply the configuration to the same store at start.
      const one = await serve(1, port1);
      await serve(2, port2);
      const ca = await readFile(join(dataDir, 'tls', 'ca.pem'), 'utf8');
      // This process's fetch (sign-in, admin calls) trusts the dev CA.
      tls.setDefaultCACertificates([...tls.getCACertificates('default'), ca]);
      const authority = `${publicUrl}/contoso/v2.0`;
      const adminBase = `${one.ready}/contoso/admin/v1`;
      const adminToken = async (): Promise<string> =>
        (await json(`${one.ready}/contoso/oauth2/v2.0/token`, { method: 'POST', headers: { authorization: basic(OPS.clientId, OPS.secret), 'content-type': 'application/x-www-form-urlencoded' }, body: 'grant_type=client_credentials&scope=api%3A%2F%2Fbaton-admin%2F.default' }, 200, 'admin token')).access_token;

      const results: Record<Mode, Trial[]> = { push: [], poll: [] };
      const events: Record<Mode, Record<string, number>> = { push: {}, poll: {} };
      for (const mode of MODES) {
        const apis: Array<ServerHandle<{ url: string }>> = [];
        const launch = async (api: CaeApiOptions['api'], next?: string) => {
          const handle = await spawnServer<{ url: string }>({
            script: LAUNCHER,
            options: { api, authority, ca, delivery: mode, ...(next ? { next } : {}) } satisfies CaeApiOptions,
            cpu: allCpus,
            logPath: join(ctx.tmpDir, `cae-${mode}-${api}-api.log`),
            timeoutMs: 60_000,
          });
          apis.push(handle);
          handles.push(handle as ServerHandle<unknown>);
          return handle;
        };
        try {
          ctx.log(`cae (${mode}): starting the Audit, Docs and Tasks APIs`);
          await launch('audit');
          const docs = await launch('docs', (apis[0] as ServerHandle<{ url: string }>).ready.url);
          const tasks = await launch('tasks', docs.ready.url);
          const tasksUrl = tasks.ready.url;
          let admin = await adminToken();
          let adminAt = Date.now();
          for (let i = 0; i < trials; i++) {
            if (Date.now() - adminAt > 30 * 60_000) [admin, adminAt] = [await adminToken(), Date.now()];
            const username = `cae-${mode}-${i}-${randomBytes(4).toString('hex')}@contoso.test`;
            const password = `${randomBytes(12).toString('base64url')}-Aa1`;
            await json(`${adminBase}/users`, { method: 'POST', headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' }, body: JSON.stringify({ username, displayName: `CAE bench ${i}`, password }) }, 201, 'creating a user');
            const token = await signIn(publicUrl, username, password);
            // Through the whole chain: Tasks → Docs (OBO, Docs.Write) → Audit (OBO, Audit.Write).
            const auth = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
            const task = await json(`${tasksUrl}/tasks`, { method: 'POST', headers: auth, body: JSON.stringify({ title: `trial ${i}` }) }, 201, 'creating a task');
            await json(`${tasksUrl}/tasks/${task.id}/documents`, { method: 'POST', headers: auth, body: JSON.stringify({ title: `doc ${i}`, content: 'x' }) }, 201, 'attaching a document (Tasks → Docs → Audit)');
            // Every hop accepts the token it holds, before.
            const before = [await askTasks(tasksUrl, token), await tasks.command('arm -', 'armed'), await docs.command('arm -', 'armed')];
            if (before[0]?.status !== 200 || before[1]?.status !== 400 || before[2]?.status !== 400) throw new Error(`a hop refused before the revocation: ${JSON.stringify(before.map((b) => b?.status))}`);

            const watching = [tasks.command(`watch ${WATCH_MS}`, 'watched', WATCH_MS + 10_000), docs.command(`watch ${WATCH_MS}`, 'watched', WATCH_MS + 10_000)];
            const t0 = Date.now();
            const tasksRefused = watchTasks(tasksUrl, token, t0 + WATCH_MS);
            await json(`${adminBase}/users/${encodeURIComponent(username)}/disable`, { method: 'POST', headers: { authorization: `Bearer ${admin}` } }, 200, 'disabling the user');
            const [tasksWatch, docsWatch] = (await Promise.all(watching)) as Array<{ refusedAt: number | null; droppedAt: number | null }>;
            const since = (at: number | null | undefined) => (at === null || at === undefined ? null : Math.max(0, at - t0));
            const trial: Trial = {
              tasksRefuses: since(await tasksRefused),
              docsRefuses: since(tasksWatch?.refusedAt),
              auditRefuses: since(docsWatch?.refusedAt),
              tasksOboDropped: since(tasksWatch?.droppedAt),
              docsOboDropped: since(docsWatch?.droppedAt),
            };
            results[mode].push(trial);
            const all = Object.values(trial);
            ctx.log(`cae (${mode}) trial ${i + 1}/${trials}: every hop ${all.includes(null) ? 'MISSED' : fmtMs(Math.max(...(all as number[])))} (${MEASURES.map((m) => `${m.key} ${trial[m.key] ?? '—'}`).join(', ')})`);
          }
          // Each API received the events the way its mode says (none by the other way).
          for (const [name, api] of [['audit', apis[0]], ['docs', docs], ['tasks', tasks]] as const) {
            const received = (await (api as ServerHandle<{ url: string }>).command('events -', 'events')).events as Record<string, number>;
            if (Object.keys(received).some((via) => via !== mode) || !(received[mode]! >= trials)) throw new Error(`the ${name} API received ${JSON.stringify(received)} in ${mode} mode`);
            events[mode] = { ...events[mode], [name]: received[mode]! };
          }
        } finally {
          for (const api of apis.reverse()) await api.stop();
        }
      }

      const loadAfter = loadavg();
      const rows: Row[] = [];
      const summaries: Record<string, Record<string, Summary>> = {};
      const everyHop: Partial<Record<Mode, Summary>> = {};
      for (const mode of MODES) {
        summaries[mode] = {};
        for (const m of MEASURES) {
          const s = summarise(results[mode].map((t) => t[m.key]));
          summaries[mode][m.key] = s;
          rows.push({ section: 'cae', measure: `${mode}: ${m.label}`, p50: s.p50, p99: s.p99, note: `p95 ${fmtMs(s.p95)}, max ${fmtMs(s.max)}, ${s.n} trials${s.misses ? `, ${s.misses} not within ${WATCH_MS / 1000} s` : ''}` });
        }
        const every = summarise(results[mode].map((t) => (Object.values(t).includes(null) ? null : Math.max(...(Object.values(t) as number[])))));
        everyHop[mode] = every;
        summaries[mode].everyHop = every;
        rows.push({ section: 'cae', measure: `${mode}: every hop refuses and both OBO caches dropped`, p50: every.p50, p99: every.p99, note: `p95 ${fmtMs(every.p95)}, max ${fmtMs(every.max)}, ${every.n} trials; t0 = the disable request sent` });
      }
      ctx.shared.cae = { push: everyHop.push?.p99, poll: everyHop.poll?.p99 };
      const load = `load average ${loadBefore.map((l) => l.toFixed(2)).join(' ')} before, ${loadAfter.map((l) => l.toFixed(2)).join(' ')} after`;
      ctx.log(`cae: ${load}`);
      return { name: 'cae', status: 'ran', rows, data: { trials, probeMs: PROBE_MS, summaries, results, events, loadBefore, loadAfter, database: 'dropped after the run' }, profiles: [] };
    } finally {
      for (const handle of handles.reverse()) await handle.stop();
      try {
        await adminDb.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
      } finally {
        await adminDb.end();
        await rm(dataDir, { recursive: true, force: true });
      }
    }
  },
};

/**
 * Starting the servers under test and talking to them outside the load: a probe request that
 * proves the configuration answers what we think before any load is counted, and a profiled load
 * window.
 */
import { request } from 'node:https';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnServer, type ServerHandle } from './proc.ts';
import { runLoad, type LoadSpec } from './load.ts';
import { summariseFile, type ProfileSummary } from './profile.ts';
import type { BenchContext } from './types.ts';
import type { BatonServerOptions, BatonServerReady } from '../servers/baton.ts';
import type { PeerReady } from '../servers/oidc-provider.ts';

const SERVERS = fileURLToPath(new URL('../servers/', import.meta.url));

export interface BatonServer extends ServerHandle<BatonServerReady> {
  assertions: string[];
}

export async function startBaton(ctx: BenchContext, label: string, options: BatonServerOptions, timeoutMs = 60_000): Promise<BatonServer> {
  const handle = await spawnServer<BatonServerReady>({
    script: join(SERVERS, 'baton.ts'),
    options,
    cpu: ctx.placement.serverCpu,
    logPath: join(ctx.tmpDir, `${label}.log`),
    timeoutMs,
  });
  const assertions = JSON.parse(await readFile(handle.ready.assertionsFile, 'utf8')) as string[];
  return { ...handle, assertions };
}

export function startPeer(ctx: BenchContext): Promise<ServerHandle<PeerReady>> {
  return spawnServer<PeerReady>({
    script: join(SERVERS, 'oidc-provider.ts'),
    options: {},
    cpu: ctx.placement.serverCpu,
    logPath: join(ctx.tmpDir, 'oidc-provider.log'),
    timeoutMs: 60_000,
  });
}

export const basic = (id: string, secret: string) => `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`;

export interface ProbeResult {
  status: number;
  body: Record<string, unknown> | string;
}

/** One POST outside the load, verifying the server's certificate against its CA. */
export function probe(url: string, body: string, headers: Record<string, string>, ca: string): Promise<ProbeResult> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      { method: 'POST', ca, servername: 'localhost', headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) }, timeout: 10_000 },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: Record<string, unknown> | string = text;
          try {
            parsed = JSON.parse(text) as Record<string, unknown>;
          } catch {
            // keep the text
          }
          resolve({ status: res.statusCode ?? 0, body: parsed });
        });
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error('probe timed out')));
    req.on('error', reject);
    req.end(body);
  });
}

/** Decodes a JWT's header and payload without verifying (to check a probe answer). */
export function decodeJwt(token: unknown): { header: Record<string, unknown>; payload: Record<string, unknown> } | undefined {
  if (typeof token !== 'string') return undefined;
  const [h, p] = token.split('.');
  try {
    return { header: JSON.parse(Buffer.from(h ?? '', 'base64url').toString()), payload: JSON.parse(Buffer.from(p ?? '', 'base64url').toString()) };
  } catch {
    return undefined;
  }
}

/**
 * A separate load window with V8's sampling profiler running in the server (started and stopped
 * over its control channel), so the measured rounds carry no profiler overhead and the profile
 * holds the load only.
 */
export async function profiledWindow(
  ctx: BenchContext,
  handle: ServerHandle<unknown>,
  spec: LoadSpec,
  name: string,
): Promise<{ file: string; summary: ProfileSummary }> {
  const file = join(ctx.resultsDir, `${name}.cpuprofile`);
  await handle.command('profile start', 'profiling');
  await runLoad({ ...spec, warmupSeconds: 0, rounds: 1, roundSeconds: Math.max(3, ctx.roundSeconds) });
  await handle.command(`profile stop ${file}`, 'profile', 120_000);
  return { file, summary: summariseFile(file, 30) };
}

/**
 * Requests per second through the Baton server's `app.inject` (Fastify + the handler, no TLS, no
 * socket), one at a time, measured inside the server process after a warm-up of the same length.
 */
/**
 * `count` requests through the Baton server's `app.inject`, one at a time, measured inside the
 * server process: the rate and the server's CPU time per request (all its threads: the signatures
 * on libuv's pool and the garbage collector's helpers included), and its main thread's alone.
 */
export async function injectCost(handle: ServerHandle<unknown>, path: string, headers: Record<string, string>, bodies: string[], run: { count: number }): Promise<{ rate: number; cpuMicros: number; mainCpuMicros: number }> {
  const argument = JSON.stringify({ url: path, headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers }, bodies, ms: 0, count: run.count });
  const answer = await handle.command(`inject ${argument}`, 'inject', 300_000);
  return { rate: answer.inject as number, cpuMicros: answer.cpuMicros as number, mainCpuMicros: answer.mainCpuMicros as number };
}

export async function injectRate(handle: ServerHandle<unknown>, path: string, headers: Record<string, string>, bodies: string[], ms: number): Promise<number> {
  const argument = JSON.stringify({ url: path, headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers }, bodies, ms });
  await handle.command(`inject ${argument}`, 'inject', ms + 60_000);
  const answer = await handle.command(`inject ${argument}`, 'inject', ms + 60_000);
  return answer.inject as number;
}

/** Median `durationMs` of the allowed exchanges in a Baton server's audit log (time inside the grant handler). */
export async function auditDurations(logPath: string): Promise<{ p50: number; p99: number; count: number } | undefined> {
  const text = await readFile(logPath, 'utf8');
  const values: number[] = [];
  for (const line of text.split('\n')) {
    if (!line.includes('"durationMs"')) continue;
    try {
      const event = (JSON.parse(line) as { event?: { durationMs?: number; decision?: string } }).event;
      if (event?.decision === 'allow' && typeof event.durationMs === 'number') values.push(event.durationMs);
    } catch {
      // not a JSON line
    }
  }
  if (values.length === 0) return undefined;
  values.sort((a, b) => a - b);
  return { p50: values[values.length >> 1] as number, p99: values[Math.min(values.length - 1, Math.floor(values.length * 0.99))] as number, count: values.length };
}

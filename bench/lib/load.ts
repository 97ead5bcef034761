/**
 * HTTP load with autocannon (programmatic, in this process — the load generator's only job while a
 * server section runs): warm-up, then several fixed-length rounds; each round reports requests/s
 * (2xx only), p50/p99 latency from our own high-resolution samples (autocannon's histogram has
 * 1 ms buckets, too coarse for sub-millisecond answers), and the server's CPU use.
 *
 * Every round is bounded by its duration; a round with a non-2xx answer or an error is reported as
 * such, never silently counted.
 */
import autocannon from 'autocannon';
import { readFileSync } from 'node:fs';
import { cpuSecondsOf } from './proc.ts';
import { median } from './stats.ts';

export interface LoadRequest {
  body: string;
  headers?: Record<string, string>;
  /**
   * Headers made afresh for each request sent (autocannon's `setupRequest`): a DPoP proof is single
   * use, so each request needs its own.
   */
  fresh?: () => Record<string, string>;
}

export interface LoadSpec {
  /** `https://127.0.0.1:port/path`. */
  url: string;
  /** SNI name; the dev certificate is for `localhost` (and 127.0.0.1). */
  servername?: string;
  /** Default POST. */
  method?: 'GET' | 'POST';
  headers: Record<string, string>;
  /** Rotated through by every connection. */
  requests: LoadRequest[];
  connections: number;
  warmupSeconds: number;
  rounds: number;
  roundSeconds: number;
  /** The server's pid, to report its CPU use (fraction of one core). */
  serverPid?: number | undefined;
}

export interface RoundResult {
  rps: number;
  p50: number;
  p99: number;
  ok: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  /** Server CPU during the round, in cores (1.0 = one core busy all the time). */
  serverCores: number | undefined;
  /** CPU the load generator (this process) used, in cores. */
  loadCores: number;
  /** CPU used by everything else on the machine (other processes), in cores: contention. */
  otherCores: number | undefined;
}

export interface LoadResult {
  rps: number;
  p50: number;
  p99: number;
  rounds: RoundResult[];
  /** Status codes other than 2xx seen in any round, with counts. */
  failures: Record<string, number>;
  serverCores: number | undefined;
  otherCores: number | undefined;
  loadCores: number | undefined;
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[index] as number;
}

/** Busy CPU time of the whole machine so far, in seconds (all CPUs; idle and iowait excluded). */
export function machineBusySeconds(): number | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0] as string;
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal
    return ((f[0] ?? 0) + (f[1] ?? 0) + (f[2] ?? 0) + (f[5] ?? 0) + (f[6] ?? 0) + (f[7] ?? 0)) / 100;
  } catch {
    return undefined;
  }
}

/** CPU seconds this process (the load generator) has used. */
const selfSeconds = () => {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1e6;
};

async function once(spec: LoadSpec, seconds: number, record: boolean): Promise<RoundResult & { codes: Record<string, number> }> {
  const samples: number[] = [];
  const cpuBefore = spec.serverPid === undefined ? undefined : cpuSecondsOf(spec.serverPid);
  const busyBefore = machineBusySeconds();
  const selfBefore = selfSeconds();
  const started = performance.now();
  const instance = autocannon({
    url: spec.url,
    ...(spec.servername ? { servername: spec.servername } : {}),
    connections: spec.connections,
    pipelining: 1,
    duration: seconds,
    timeout: 10,
    method: spec.method ?? 'POST',
    headers: spec.headers,
    requests: spec.requests.map((r) => {
      const fresh = r.fresh;
      return {
        method: spec.method ?? 'POST',
        ...(r.body ? { body: r.body } : {}),
        ...(r.headers ? { headers: { ...spec.headers, ...r.headers } } : {}),
        ...(fresh ? { setupRequest: (request: { headers?: Record<string, string> }) => ({ ...request, headers: { ...request.headers, ...fresh() } }) } : {}),
      };
    }),
  });
  if (record) {
    instance.on('response', (_client: unknown, statusCode: number, _bytes: number, responseTime: number) => {
      if (statusCode >= 200 && statusCode < 300) samples.push(responseTime);
    });
  }
  const result = await instance;
  const elapsed = (performance.now() - started) / 1000;
  const cpuAfter = spec.serverPid === undefined ? undefined : cpuSecondsOf(spec.serverPid);
  const busyAfter = machineBusySeconds();
  const loadCores = (selfSeconds() - selfBefore) / elapsed;
  const serverCores = cpuBefore === undefined || cpuAfter === undefined ? undefined : (cpuAfter - cpuBefore) / elapsed;
  const otherCores =
    busyBefore === undefined || busyAfter === undefined ? undefined : Math.max(0, (busyAfter - busyBefore) / elapsed - loadCores - (serverCores ?? 0));
  const sorted = Float64Array.from(samples).sort();
  const codes: Record<string, number> = {};
  for (const [code, { count }] of Object.entries(result.statusCodeStats)) if (!code.startsWith('2')) codes[code] = count;
  return {
    rps: result['2xx'] / (result.duration || elapsed),
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    ok: result['2xx'],
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    serverCores,
    loadCores,
    otherCores,
    codes,
  };
}

function summarize(rounds: (RoundResult & { codes: Record<string, number> })[]): LoadResult {
  const failures: Record<string, number> = {};
  for (const round of rounds) {
    for (const [code, count] of Object.entries(round.codes)) failures[code] = (failures[code] ?? 0) + count;
    if (round.errors > 0) failures.errors = (failures.errors ?? 0) + round.errors;
    if (round.timeouts > 0) failures.timeouts = (failures.timeouts ?? 0) + round.timeouts;
  }
  const med = (pick: (r: RoundResult) => number | undefined) => {
    const values = rounds.map(pick).filter((v): v is number => v !== undefined);
    return values.length ? median(values) : undefined;
  };
  return {
    rps: median(rounds.map((r) => r.rps)),
    p50: median(rounds.map((r) => r.p50)),
    p99: median(rounds.map((r) => r.p99)),
    rounds: rounds.map(({ codes: _codes, ...round }) => round),
    failures,
    serverCores: med((r) => r.serverCores),
    otherCores: med((r) => r.otherCores),
    loadCores: med((r) => r.loadCores),
  };
}

/** The figure if the load got only 2xx answers, else undefined (errors are not a result). */
export function valid(result: LoadResult, pick: (r: LoadResult) => number): number | undefined {
  return Object.keys(result.failures).length === 0 ? pick(result) : undefined;
}

/** Warm-up, then `rounds` rounds; medians across rounds. */
export async function runLoad(spec: LoadSpec): Promise<LoadResult> {
  return (await runInterleaved([spec]))[0] as LoadResult;
}

/**
 * Several loads measured in alternation — A B C, A B C, ... — after a warm-up of each, so that
 * whatever else the machine does at some moment (other processes, a noisy neighbour) weighs on
 * every contender alike. Each spec's own warm-up/rounds/seconds are used; rounds = the first's.
 */
export async function runInterleaved(specs: LoadSpec[]): Promise<LoadResult[]> {
  for (const spec of specs) if (spec.warmupSeconds > 0) await once(spec, spec.warmupSeconds, false);
  const rounds: (RoundResult & { codes: Record<string, number> })[][] = specs.map(() => []);
  const count = specs[0]?.rounds ?? 0;
  for (let i = 0; i < count; i++) {
    for (const [j, spec] of specs.entries()) rounds[j]?.push(await once(spec, spec.roundSeconds, true));
  }
  return rounds.map(summarize);
}

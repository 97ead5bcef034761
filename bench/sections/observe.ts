/**
 * What observability costs the token endpoint (issue 13: "the token endpoint with metrics and
 * tracing on costs ≤ 5 % throughput vs off"): `client_credentials` over HTTPS with keep-alive
 * against one Baton process per variant, all pinned to the same server CPU and loaded in turn,
 * rounds interleaved, so the machine's noise weighs on each alike.
 *
 * The variants are a list: the first is the baseline (everything off). A variant's figure is the
 * median over rounds of its rate divided by the baseline's rate in the same round (paired, so a
 * slow minute of the machine cancels out), with the rounds' spread. `off (another process)` is
 * the baseline's configuration again: its ratio is what this method cannot tell from 100 %.
 * The variant marked `judged` is the one the target judges: the production configuration
 * docs/operations.md recommends (metrics, and traces sampled at 10 % of new traces with a
 * ParentBased sampler). Tracing every request is reported beside it, not judged.
 *
 * Then the handler alone through `app.inject` (no TLS, socket or HTTP parser), one request at a
 * time, in many short batches alternated variant by variant: the server's CPU time per request
 * (all its threads), each batch paired with the baseline's batch beside it — on a machine shared
 * with other work, the figure that moves least. A new kind of instrumentation is one more
 * entry whose `server` options turn it on in bench/servers/baton.ts.
 */
import { runInterleaved, valid, type LoadResult } from '../lib/load.ts';
import { basic, injectCost, probe, startBaton, type BatonServer } from '../lib/servers.ts';
import { median } from '../lib/stats.ts';
import type { BatonServerOptions } from '../servers/baton.ts';
import type { BenchContext, Row, Section, SectionResult } from '../lib/types.ts';
import { loadNote, loadSpec } from './token.ts';

export interface ObserveVariant {
  /** Short id (log file, JSON key). */
  name: string;
  /** The row's measure. */
  measure: string;
  /** What bench/servers/baton.ts turns on for it. */
  server: Partial<BatonServerOptions>;
  /** The configuration the ≤ 5 % target judges (one of the list). */
  judged?: boolean;
}

export const OBSERVE_VARIANTS: readonly ObserveVariant[] = [
  { name: 'off', measure: 'client_credentials, observability off', server: {} },
  { name: 'off-again', measure: 'client_credentials, observability off (another process: the method\'s noise)', server: {} },
  { name: 'metrics', measure: 'client_credentials, Prometheus metrics on (scraped every second)', server: { metrics: true } },
  { name: 'tracing-10%', measure: 'client_credentials, OpenTelemetry tracing, 10 % of new traces sampled (batch export)', server: { tracing: true, sampleRatio: 0.1 } },
  { name: 'metrics+tracing-10%', measure: 'client_credentials, metrics + tracing at 10 % of new traces (production config, judged)', server: { metrics: true, tracing: true, sampleRatio: 0.1 }, judged: true },
  { name: 'metrics+tracing-all', measure: 'client_credentials, metrics + tracing, every request sampled', server: { metrics: true, tracing: true } },
];

/** The most throughput observability may cost (issue 13). */
export const OBSERVE_MAX_COST = 0.05;

/** Rounds this section runs at least: its ratios are a few per cent apart. */
const MIN_ROUNDS = 6;
/** app.inject: batches per variant, requests per batch. */
const INJECT_BATCHES = 30;
const INJECT_BATCH = 300;

const FORM = { 'content-type': 'application/x-www-form-urlencoded' };

export const observeSection: Section = {
  name: 'observe',
  title: 'Token service: client_credentials with observability off / on',
  async run(ctx: BenchContext): Promise<SectionResult> {
    const rows: Row[] = [];
    const data: Record<string, unknown> = {};
    const servers: BatonServer[] = [];
    try {
      for (const variant of OBSERVE_VARIANTS) servers.push(await startBaton(ctx, `baton-observe-${variant.name}`, { store: 'sqlite', assertions: 1, ...variant.server }));
      const body = `grant_type=client_credentials&scope=${encodeURIComponent('api://docs/.default')}`;
      const headers = { authorization: basic('indexer', 'indexer-demo-secret-for-local-use-only') };
      const specs = servers.map((server) => loadSpec(ctx, `${server.ready.url}/contoso/oauth2/v2.0/token`, headers, [body], server.pid));
      for (const [i, server] of servers.entries()) {
        const answer = await probe(`${server.ready.url}/contoso/oauth2/v2.0/token`, body, { ...FORM, ...headers }, server.ready.ca);
        if (answer.status !== 200) throw new Error(`${OBSERVE_VARIANTS[i]!.name}: the probe request failed (${answer.status})`);
      }
      const rounds = Math.max(ctx.rounds, MIN_ROUNDS);
      ctx.log(`observe: ${OBSERVE_VARIANTS.map((v) => v.name).join(' | ')}, ${rounds} rounds interleaved`);
      const results = (await runInterleaved(specs.map((spec) => ({ ...spec, rounds })))) as LoadResult[];
      const baseline = results[0]!;
      const ratios: (number | undefined)[] = [];
      for (const [i, variant] of OBSERVE_VARIANTS.entries()) {
        const result = results[i]!;
        data[variant.name] = result;
        // Paired: this variant's round r against the baseline's round r (run seconds apart).
        const paired = result.rounds.map((round, r) => round.rps / (baseline.rounds[r]?.rps ?? Number.NaN)).filter((x) => Number.isFinite(x) && x > 0);
        const ratio = i > 0 && paired.length > 0 && valid(result, (x) => x.rps) !== undefined ? median(paired) : undefined;
        ratios.push(ratio);
        data[`${variant.name}Ratios`] = paired;
        const spread = paired.length ? ` (rounds ${(Math.min(...paired) * 100).toFixed(0)}–${(Math.max(...paired) * 100).toFixed(0)} %)` : '';
        rows.push({ section: 'observe', measure: variant.measure, rate: result.rps, p50: result.p50, p99: result.p99, note: loadNote(result, ratio === undefined ? '' : `${(ratio * 100).toFixed(1)} % of off${spread}${variant.judged ? ', judged' : ''}`) });
      }
      // The handler alone (app.inject, one request at a time: no TLS, socket or HTTP parser): many
      // short batches, the variants alternated batch by batch, each batch's CPU time per request
      // (every thread of the server) paired with the baseline's batch next to it.
      const batches = ctx.quick ? 10 : INJECT_BATCHES;
      for (const server of servers) await injectCost(server, '/contoso/oauth2/v2.0/token', headers, [body], { count: INJECT_BATCH * 5 });
      const injected: { rate: number; cpuMicros: number }[][] = servers.map(() => []);
      for (let batch = 0; batch < batches; batch++) {
        for (const [i, server] of servers.entries()) injected[i]!.push(await injectCost(server, '/contoso/oauth2/v2.0/token', headers, [body], { count: INJECT_BATCH }));
      }
      const cpuBaseline = injected[0]!.map((x) => x.cpuMicros);
      for (const [i, variant] of OBSERVE_VARIANTS.entries()) {
        const cpu = injected[i]!.map((x) => x.cpuMicros);
        const paired = cpu.map((c, b) => c / (cpuBaseline[b] as number));
        const cost = median(paired) - 1;
        data[`${variant.name}Inject`] = injected[i];
        data[`${variant.name}InjectCost`] = cost;
        rows.push({
          section: 'observe',
          measure: `${variant.name}: via app.inject, 1 at a time, CPU per request`,
          rate: median(injected[i]!.map((x) => x.rate)),
          p50: median(cpu) / 1000,
          note: `${median(cpu).toFixed(0)} µs median, ${Math.min(...cpu).toFixed(0)} µs least (${batches} batches of ${INJECT_BATCH})${i === 0 ? '' : `; ${cost >= 0 ? '+' : ''}${(cost * 100).toFixed(1)} % CPU vs off (median of paired batches)`}`,
        });
      }
      // The traced variants must have recorded the load: the spans their SDK exported.
      for (const [i, variant] of OBSERVE_VARIANTS.entries()) {
        if (!variant.server.tracing) continue;
        const spans = (await servers[i]!.command('spans -', 'spans', 60_000)).spans as number;
        if (!(spans > 0)) throw new Error(`${variant.name}: the SDK exported no span: the load was not traced`);
        data[`${variant.name}Spans`] = spans;
        rows.push({ section: 'observe', measure: `${variant.name}: spans exported`, note: `${spans} spans through the SDK's batch processor (proof the load was traced)` });
      }
      const judged = OBSERVE_VARIANTS.findIndex((v) => v.judged);
      ctx.shared.observeOff = valid(baseline, (r) => r.rps);
      ctx.shared.observeOn = judged < 0 ? undefined : valid(results[judged]!, (r) => r.rps);
      ctx.shared.observeRatio = judged < 0 ? undefined : ratios[judged];
      ctx.shared.observeOnName = OBSERVE_VARIANTS[judged]?.name;
    } finally {
      await Promise.all(servers.map((server) => server.stop()));
    }
    return { name: 'observe', status: 'ran', rows, data, profiles: [] };
  },
};

/**
 * What observability costs the token endpoint (issue 13: "the token endpoint with metrics and
 * tracing on costs ≤ 5 % throughput vs off"): `client_credentials` over HTTPS with keep-alive
 * against one Baton process per variant, all pinned to the same server CPU and loaded in turn
 * (rounds interleaved, as in the token section), so the machine's noise weighs on each alike.
 *
 * The variants are a list: the first is the baseline (everything off); each other row is its
 * throughput as a ratio of the baseline, and the last — the fullest — is the one the target
 * judges. A new kind of instrumentation is one more entry whose `server` options turn it on in
 * bench/servers/baton.ts.
 */
import { runInterleaved, valid, type LoadResult } from '../lib/load.ts';
import { basic, injectRate, probe, startBaton, type BatonServer } from '../lib/servers.ts';
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
}

export const OBSERVE_VARIANTS: readonly ObserveVariant[] = [
  { name: 'off', measure: 'client_credentials, observability off', server: {} },
  { name: 'metrics', measure: 'client_credentials, Prometheus metrics on (scraped every second)', server: { metrics: true } },
  { name: 'tracing', measure: 'client_credentials, OpenTelemetry tracing on (every request sampled, batch export)', server: { tracing: true } },
  { name: 'metrics+tracing-10%', measure: 'client_credentials, metrics + tracing, 10 % of new traces sampled', server: { metrics: true, tracing: true, sampleRatio: 0.1 } },
  { name: 'metrics+tracing', measure: 'client_credentials, metrics + tracing (every request sampled)', server: { metrics: true, tracing: true } },
];

/** The most throughput observability may cost (issue 13). */
export const OBSERVE_MAX_COST = 0.05;

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
      ctx.log(`observe: ${OBSERVE_VARIANTS.map((v) => v.name).join(' | ')}, rounds interleaved`);
      const results = (await runInterleaved(specs)) as LoadResult[];
      const baseline = valid(results[0]!, (r) => r.rps);
      for (const [i, variant] of OBSERVE_VARIANTS.entries()) {
        const result = results[i]!;
        data[variant.name] = result;
        const rate = valid(result, (r) => r.rps);
        const ratio = i > 0 && rate !== undefined && baseline !== undefined ? rate / baseline : undefined;
        rows.push({ section: 'observe', measure: variant.measure, rate: result.rps, p50: result.p50, p99: result.p99, note: loadNote(result, ratio === undefined ? '' : `${(ratio * 100).toFixed(1)} % of off`) });
      }
      // The handler alone (app.inject, one request at a time: no TLS, socket or HTTP parser), the
      // variants alternated round by round: the per-request cost with less of the transport's noise.
      const injected: number[][] = servers.map(() => []);
      for (let round = 0; round < ctx.rounds; round++) {
        for (const [i, server] of servers.entries()) injected[i]!.push(await injectRate(server, '/contoso/oauth2/v2.0/token', headers, [body], ctx.roundSeconds * 500));
      }
      const injectBaseline = median(injected[0]!);
      for (const [i, variant] of OBSERVE_VARIANTS.entries()) {
        const rate = median(injected[i]!);
        data[`${variant.name}Inject`] = injected[i];
        rows.push({ section: 'observe', measure: `${variant.name}: via app.inject, 1 at a time`, rate, p50: 1000 / rate, note: i === 0 ? 'handler only, no transport' : `${((rate / injectBaseline) * 100).toFixed(1)} % of off` });
      }
      // The traced variants must have recorded the load: the spans their SDK exported.
      for (const [i, variant] of OBSERVE_VARIANTS.entries()) {
        if (!variant.server.tracing) continue;
        const spans = (await servers[i]!.command('spans -', 'spans', 60_000)).spans as number;
        if (!(spans > 0)) throw new Error(`${variant.name}: the SDK exported no span: the load was not traced`);
        data[`${variant.name}Spans`] = spans;
        rows.push({ section: 'observe', measure: `${variant.name}: spans exported`, note: `${spans} spans through the SDK's batch processor (proof the load was traced)` });
      }
      const fullest = results.at(-1);
      ctx.shared.observeOff = baseline;
      ctx.shared.observeOn = fullest === undefined || OBSERVE_VARIANTS.length < 2 ? undefined : valid(fullest, (r) => r.rps);
      ctx.shared.observeOnName = OBSERVE_VARIANTS.at(-1)?.name;
    } finally {
      await Promise.all(servers.map((server) => server.stop()));
    }
    return { name: 'observe', status: 'ran', rows, data, profiles: [] };
  },
};

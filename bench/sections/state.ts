/**
 * State: does an exchange slow down as the directory grows? OBO latency with 10^3 and with 10^6
 * users each holding a per-user consent grant (tasks-api → docs-api), on SQLite and on PostgreSQL.
 *
 * The tenant-wide consent tasks-api → api://docs is removed for this section, so every exchange
 * reads its user AND its consent row from the store (the path that could grow with the data).
 * 256 user tokens of users sampled at random rotate, so the reads hit scattered rows, not one hot
 * row. Latency is measured at one connection (no queueing: the time one exchange takes), and the
 * target compares the p50s.
 *
 * PostgreSQL: a throwaway schema on the server given by --pg (127.0.0.1:5432 by default), dropped
 * afterwards. The PostgreSQL server is not pinned: it competes with the load generator for CPU 0.
 */
import pg from 'pg';
import { runInterleaved, valid, type LoadResult } from '../lib/load.ts';
import { startBaton } from '../lib/servers.ts';
import type { BenchContext, Row, Section, SectionResult } from '../lib/types.ts';
import { OBO_HEADERS, oboBody, probeExchange } from './obo.ts';
import { loadNote, loadSpec } from './token.ts';

async function postgresReachable(url: string): Promise<string | undefined> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3000 });
  try {
    await client.connect();
    await client.query('SELECT 1');
    return undefined;
  } catch (error) {
    return `PostgreSQL not reachable at ${new URL(url).host} (${(error as Error).message})`;
  } finally {
    await client.end().catch(() => undefined);
  }
}

export const stateSection: Section = {
  name: 'state',
  title: 'State: OBO latency with 10^3 vs 10^6 grants (SQLite, PostgreSQL)',
  async run(ctx: BenchContext): Promise<SectionResult> {
    const small = 1_000;
    const large = ctx.quick ? 100_000 : 1_000_000;
    const rows: Row[] = [];
    const data: Record<string, unknown> = { small, large };
    ctx.shared.state = {};
    const engines: ('sqlite' | 'postgres')[] = ['sqlite'];
    const pgProblem = await postgresReachable(ctx.pgUrl);
    if (pgProblem) data.postgres_skipped = `skipped: ${pgProblem}`;
    else engines.push('postgres');

    for (const engine of engines) {
      const figures: { small?: number; large?: number; smallN?: number; largeN?: number } = {};
      ctx.shared.state[engine] = figures;
      // Both sizes run side by side (each server idle while the other is measured) and their rounds
      // alternate, so a busy moment on the machine cannot land on one size only.
      ctx.log(`state: ${engine}, seeding ${small.toLocaleString('en-US')} and ${large.toLocaleString('en-US')} users + consents`);
      const servers = await Promise.all(
        [small, large].map((n) => startBaton(ctx, `baton-state-${engine}-${n}`, { store: engine, pgUrl: ctx.pgUrl, seedUsers: n, assertions: 256 }, 15 * 60_000)),
      );
      try {
        let problem: string | undefined;
        for (const server of servers) problem ??= await probeExchange(server);
        if (problem) {
          data[`${engine}_skipped`] = problem;
          rows.push({ section: 'state', measure: engine, note: `skipped: ${problem}` });
          continue;
        }
        ctx.log(`state: ${engine}, OBO at 1 connection, ${small.toLocaleString('en-US')} | ${large.toLocaleString('en-US')} grants, rounds interleaved`);
        const specs = servers.map((server) => ({
          ...loadSpec(ctx, `${server.ready.url}/contoso/oauth2/v2.0/token`, OBO_HEADERS, server.assertions.map((a) => oboBody(a)), server.pid),
          connections: 1,
          warmupSeconds: Math.min(ctx.warmupSeconds, 2),
          roundSeconds: Math.min(ctx.roundSeconds, 3),
        }));
        const results = await runInterleaved(specs);
        for (const [i, n] of [small, large].entries()) {
          const result = results[i] as LoadResult;
          const seed = servers[i]?.ready.seed;
          data[`${engine}_${n}`] = { seed, result };
          if (n === small) {
            figures.small = valid(result, (r) => r.p50);
            figures.smallN = n;
          } else {
            figures.large = valid(result, (r) => r.p50);
            figures.largeN = n;
          }
          rows.push({
            section: 'state',
            measure: `OBO, ${engine}, ${n.toLocaleString('en-US')} users + grants, 1 conn`,
            rate: result.rps,
            p50: result.p50,
            p99: result.p99,
            note: loadNote(result, seed ? `seeded in ${seed.seconds < 1 ? seed.seconds.toFixed(2) : seed.seconds.toFixed(1)} s` : ''),
          });
        }
      } finally {
        await Promise.all(servers.map((server) => server.stop()));
      }
    }
    if (pgProblem) rows.push({ section: 'state', measure: 'postgres', note: `skipped: ${pgProblem}` });
    return { name: 'state', status: 'ran', rows, data, profiles: [] };
  },
};

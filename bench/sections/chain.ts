/**
 * Chain: end-to-end latency of a client's call through Tasks API → Docs API (bench/servers/chain.ts:
 * two node:http APIs on the resource SDK) with the OBO cache warm and cold, against the same chain
 * with authentication switched off. One connection (latency, not throughput), rounds alternating
 * between the three.
 *
 * The per-hop overhead is (p50 warm − p50 off) / 2: two APIs each verify a token (guard, cache hit),
 * Tasks API also finds its downstream token in the OBO cache.
 *
 * The token service and the chain process share the server CPU; the load generator keeps its own.
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runInterleaved, valid, type LoadResult, type LoadSpec } from '../lib/load.ts';
import { spawnServer } from '../lib/proc.ts';
import { startBaton } from '../lib/servers.ts';
import { skipped, type BenchContext, type Section, type SectionResult } from '../lib/types.ts';
import { probeExchange } from './obo.ts';
import { loadNote } from './token.ts';

export const CHAIN_OVERHEAD_TARGET_MS = 0.5;
const SCRIPT = fileURLToPath(new URL('../servers/chain.ts', import.meta.url));

async function loadGuardSdk(): Promise<string | undefined> {
  try {
    const sdk = (await import('@baton/resource')) as Record<string, unknown>;
    if (typeof sdk.createGuard !== 'function' || typeof sdk.createOboClient !== 'function') return '@baton/resource does not export createGuard and createOboClient yet';
    return undefined;
  } catch (error) {
    return `@baton/resource cannot be loaded (${(error as Error).message.split('\n')[0]})`;
  }
}

export const chainSection: Section = {
  name: 'chain',
  title: 'Chain: client → Tasks API → Docs API (resource SDK), latency at 1 connection',
  async run(ctx: BenchContext): Promise<SectionResult> {
    const missing = await loadGuardSdk();
    if (missing) return skipped('chain', missing);
    const baton = await startBaton(ctx, 'baton-chain', { store: 'sqlite', assertions: 256 });
    try {
      const problem = await probeExchange(baton);
      if (problem) return skipped('chain', problem);
      const chain = await spawnServer<{ tasks: string; docs: string }>({
        script: SCRIPT,
        options: { authority: `${baton.ready.publicUrl}/contoso/v2.0`, ca: baton.ready.ca },
        cpu: ctx.placement.serverCpu,
        logPath: join(ctx.tmpDir, 'chain.log'),
        timeoutMs: 60_000,
      });
      try {
        const user = `Bearer ${baton.assertions[0]}`;
        for (const [route, authorization] of [['off', undefined], ['warm', user], ['cold', user]] as const) {
          const response = await fetch(`${chain.ready.tasks}/${route}/documents`, { headers: authorization ? { authorization } : {} });
          const text = await response.text();
          if (response.status !== 200) return skipped('chain', `GET /${route}/documents answered ${response.status}: ${text.slice(0, 200)}`);
        }
        const spec = (route: string, tokens: string[]): LoadSpec => ({
          url: `${chain.ready.tasks}/${route}/documents`,
          method: 'GET',
          headers: {},
          requests: tokens.length ? tokens.map((t) => ({ body: '', headers: { authorization: `Bearer ${t}` } })) : [{ body: '' }],
          connections: 1,
          warmupSeconds: Math.min(ctx.warmupSeconds, 2),
          rounds: ctx.rounds,
          roundSeconds: Math.min(ctx.roundSeconds, 3),
          serverPid: chain.pid,
        });
        ctx.log('chain: auth off | OBO cache warm | OBO cache cold, rounds interleaved');
        const [off, warm, cold] = (await runInterleaved([spec('off', []), spec('warm', [baton.assertions[0] as string]), spec('cold', baton.assertions)])) as [LoadResult, LoadResult, LoadResult];
        const offP50 = valid(off, (r) => r.p50);
        const warmP50 = valid(warm, (r) => r.p50);
        const perHop = offP50 === undefined || warmP50 === undefined ? undefined : (warmP50 - offP50) / 2;
        ctx.shared.chainOverheadMs = perHop;
        const cpu = 'CPU of the chain process';
        return {
          name: 'chain',
          status: 'ran',
          rows: [
            { section: 'chain', measure: 'Tasks → Docs, auth off', rate: off.rps, p50: off.p50, p99: off.p99, note: loadNote(off).replace('server', cpu) },
            { section: 'chain', measure: 'Tasks → Docs, guard + OBO cache warm', rate: warm.rps, p50: warm.p50, p99: warm.p99, note: loadNote(warm).replace('server', cpu) },
            { section: 'chain', measure: 'Tasks → Docs, guard + OBO exchange (cache cold)', rate: cold.rps, p50: cold.p50, p99: cold.p99, note: loadNote(cold, '256 user tokens rotated; forceRefresh').replace('server', cpu) },
            { section: 'chain', measure: 'auth overhead per hop, warm (p50)', p50: perHop, note: '(warm − off) / 2 APIs' },
          ],
          data: { off, warm, cold, perHopMs: perHop },
          profiles: [],
        };
      } finally {
        await chain.stop();
      }
    } finally {
      await baton.stop();
    }
  },
};

/**
 * Instances: `baton serve --workers N` (node:cluster, N processes sharing the port and the store)
 * against one process, both started by the real CLI with the demo configuration, OBO exchanges
 * over HTTPS with keep-alive, rounds alternating between the two.
 *
 * The user tokens are minted beforehand by a token service on the same data directory with the
 * same public URL (`--public-url`), so the CLI's servers accept them as their own.
 *
 * On this 2-core machine the load generator keeps CPU 0 and the servers may use both CPUs: a
 * second worker can only take what the load generator leaves. With N cores to spare, expect
 * closer to N×.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { parseConfig, startServer } from '@baton/server';
import { issueDelegatedToken } from '../../packages/server/src/tokens/issue.ts';
import { runInterleaved, type LoadResult } from '../lib/load.ts';
import { spawnServer, type ServerHandle } from '../lib/proc.ts';
import { probe } from '../lib/servers.ts';
import { skipped, type BenchContext, type Section, type SectionResult } from '../lib/types.ts';
import { OBO_HEADERS, oboBody } from './obo.ts';
import { loadNote, loadSpec } from './token.ts';
import { freePort } from '../../packages/server/test/free-port.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CLI = join(ROOT, 'packages/cli/src/bin.ts');
const CONFIG = join(ROOT, 'examples/chain/baton.json');

async function cliSupportsWorkers(): Promise<boolean> {
  try {
    return /\bworkers\b/.test(await readFile(join(ROOT, 'packages/cli/src/commands.ts'), 'utf8'));
  } catch {
    return false;
  }
}

export const instancesSection: Section = {
  name: 'instances',
  title: 'Instances: baton serve --workers N vs one process (OBO, HTTPS)',
  async run(ctx: BenchContext): Promise<SectionResult> {
    if (!(await cliSupportsWorkers())) return skipped('instances', '`baton serve --workers N` does not exist yet');
    const cores = cpus().length;
    if (cores < 2) return skipped('instances', 'one core: nothing to spread over');
    const workers = Math.min(cores, availableParallelism() > 1 ? availableParallelism() : cores);
    const dataDir = await mkdtemp(join(tmpdir(), 'baton-bench-instances-'));
    const servers: ServerHandle<string>[] = [];
    try {
      // One public URL for both servers and the minting instance: the issuer in every token.
      const publicPort = await freePort();
      const publicUrl = `https://localhost:${publicPort}`;
      const config = parseConfig(await readFile(CONFIG, 'utf8'), CONFIG);
      const minting = await startServer({ config, dataDir, tls: 'dev', dev: true, host: '127.0.0.1', port: 0, publicUrl, env: {}, logger: pino({ level: 'silent' }) });
      const assertions: string[] = [];
      let ca: string;
      try {
        ca = minting.ca as string;
        const directory = await minting.ctx.directories.get('contoso');
        const alice = await minting.ctx.store.getUserByName('contoso', 'alice@contoso.test');
        const api = directory?.api('api://tasks');
        if (!directory || !alice || !api) throw new Error('the demo configuration lacks contoso, alice or api://tasks');
        for (let i = 0; i < 256; i++) {
          const issued = await issueDelegatedToken(minting.ctx, { directory, user: alice, clientId: 'tasks-web', api, scopes: ['Tasks.ReadWrite'], auth: { amr: ['pwd'], acr: '1', authTime: minting.ctx.now() } });
          assertions.push(issued.token);
        }
      } finally {
        await minting.close();
      }

      const start = async (n: number): Promise<ServerHandle<string>> => {
        const port = await freePort();
        const handle = await spawnServer<string>({
          script: CLI,
          args: ['serve', '--config', CONFIG, '--data', dataDir, '--tls-dev', '--port', String(port), '--public-url', publicUrl, '--workers', String(n)],
          parseReady: (line) => (line.startsWith('ready ') ? `https://127.0.0.1:${port}` : undefined),
          cpu: ctx.placement.pinned ? Array.from({ length: cores }, (_, i) => i).join(',') : undefined,
          logPath: join(ctx.tmpDir, `baton-serve-workers-${n}.log`),
          timeoutMs: 120_000,
          env: { BATON_KEK: '', BATON_LOG_LEVEL: 'info' },
        });
        servers.push(handle);
        return handle;
      };
      // One after the other: both apply the configuration to the same store at start.
      ctx.log('instances: starting baton serve --workers 1');
      const one = await start(1);
      ctx.log(`instances: starting baton serve --workers ${workers}`);
      const many = await start(workers);

      const body = oboBody(assertions[0] as string);
      for (const server of [one, many]) {
        const answer = await probe(`${server.ready}/contoso/oauth2/v2.0/token`, body, { 'content-type': 'application/x-www-form-urlencoded', ...OBO_HEADERS }, ca);
        if (answer.status !== 200) return skipped('instances', `one OBO exchange through \`baton serve\` did not succeed (HTTP ${answer.status}: ${JSON.stringify(answer.body).slice(0, 200)})`);
      }
      const bodies = assertions.map((a) => oboBody(a));
      ctx.log(`instances: OBO, 1 worker | ${workers} workers, rounds interleaved`);
      const spec = (server: ServerHandle<string>) => ({ ...loadSpec(ctx, `${server.ready}/contoso/oauth2/v2.0/token`, OBO_HEADERS, bodies, server.pid), roundSeconds: Math.min(ctx.roundSeconds, 3) });
      const [r1, rn] = (await runInterleaved([spec(one), spec(many)])) as [LoadResult, LoadResult];
      const placement = ctx.placement.pinned ? `servers may use CPUs 0-${cores - 1}; the load generator keeps CPU 0` : 'unpinned';
      return {
        name: 'instances',
        status: 'ran',
        rows: [
          { section: 'instances', measure: 'baton serve, 1 process: OBO', rate: r1.rps, p50: r1.p50, p99: r1.p99, note: loadNote(r1, placement) },
          { section: 'instances', measure: `baton serve --workers ${workers}: OBO`, rate: rn.rps, p50: rn.p50, p99: rn.p99, note: loadNote(rn, `${(rn.rps / r1.rps).toFixed(2)}× one process`) },
        ],
        data: { workers, one: r1, many: rn, ratio: rn.rps / r1.rps },
        profiles: [],
      };
    } finally {
      await Promise.all(servers.map((s) => s.stop()));
      await rm(dataDir, { recursive: true, force: true });
    }
  },
};

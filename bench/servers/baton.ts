/**
 * The token service under load, in its own process: `startServer` with the demo chain
 * configuration (examples/chain/baton.json), dev TLS, a temporary data directory, SQLite or a
 * throwaway PostgreSQL schema. Prints `{"ready": {...}}` once it listens; exits (cleaning up) on
 * SIGTERM or when its stdin closes. Options: JSON in argv[2] (see BatonServerOptions).
 *
 * Logging is what `baton serve` does by default: pino JSON lines at `info` on stderr (the bench
 * sends stderr to a file) — each token exchange writes its audit event, as in production.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { createLogger, parseConfig, startServer, type RoutePlugin, type RunningServer } from '@baton/server';
import { decodeJws, verifyJwsSignatureAsync } from '@baton/core';
import { sampleClaims } from '../sections/crypto.ts';
import { issueDelegatedToken } from '../../packages/server/src/tokens/issue.ts';
import { installControl } from './control.ts';
import { installTracing, type BenchTracing } from '../lib/tracing.ts';
import { sampleSqlite, samplePostgres, seedPostgres, seedSqlite, type SeedResult } from '../lib/seed.ts';

export interface BatonServerOptions {
  store: 'sqlite' | 'postgres';
  /** PostgreSQL server; a schema `baton_bench_<random>` is created and dropped. */
  pgUrl?: string;
  /**
   * State section: drop the tenant-wide consent `tasks-api → api://docs`, give alice a per-user
   * consent instead, and bulk-insert this many users with their own consent, so every exchange
   * reads a user and a consent row among this many.
   */
  seedUsers?: number;
  /** How many distinct user tokens (assertions for tasks-api) to mint; users sampled at random when seeded. */
  assertions: number;
  logLevel?: string;
  /**
   * Prometheus metrics on: a listener on 127.0.0.1 (`ready.metricsUrl`), which the bench scrapes
   * from its own process, as Prometheus would from its own (bench/sections/observe.ts).
   */
  metrics?: boolean;
  /** The OpenTelemetry SDK installed in the process before the server starts (bench/lib/tracing.ts). */
  tracing?: boolean;
  /** With `tracing`: sample new traces at this ratio (default: every one). */
  sampleRatio?: number;
}

export interface BatonServerReady {
  /** `https://127.0.0.1:<port>` — what the load generator connects to. */
  url: string;
  /** `https://localhost:<port>` — the issuer's base (certificate name). */
  publicUrl: string;
  ca: string;
  assertionsFile: string;
  seed?: SeedResult;
  /** With `metrics`: the metrics listener's `/metrics` URL. */
  metricsUrl?: string;
}

const CHAIN_CONFIG = new URL('../../examples/chain/baton.json', import.meta.url);

/**
 * The ceilings: two routes of this bench server only (never of Baton itself) that do what a grant
 * must do cryptographically and nothing else, through the same process, TLS, HTTP parser, Fastify
 * hooks and form parser as the token endpoint:
 *
 *   POST /bench/sign          one ES256 signature (a client_credentials grant's crypto)
 *   POST /bench/verify-sign   verify the form's `assertion` with the tenant's key, sign a token
 *                             (an exchange's crypto)
 *
 * No client authentication, no decision, no store, no audit line. What a grant adds to these is
 * Baton's own cost; what these lack against the crypto bound is the transport's.
 */
const ceilingRoutes: RoutePlugin = (app, ctx) => {
  let n = 0;
  const answer = (token: string) => ({ token_type: 'Bearer', expires_in: 3600, ext_expires_in: 3600, access_token: token });
  app.post('/bench/sign', async () => {
    const signer = await ctx.keyring.signer('contoso', 'ES256');
    return answer(await signer.signAsync(sampleClaims(ctx.now(), n++), 'at+jwt'));
  });
  app.post('/bench/verify-sign', async (request, reply) => {
    const assertion = (request.body as Record<string, string> | undefined)?.assertion ?? '';
    let decoded;
    try {
      decoded = decodeJws(assertion);
    } catch {
      return reply.code(400).send({ error: 'invalid_grant' });
    }
    const key = await ctx.keyring.publicKey('contoso', String(decoded.header.kid));
    if (key === undefined || !(await verifyJwsSignatureAsync(decoded, key.key, key.alg))) return reply.code(400).send({ error: 'invalid_grant' });
    const signer = await ctx.keyring.signer('contoso', 'ES256');
    return answer(await signer.signAsync({ ...decoded.payload, ...sampleClaims(ctx.now(), n++) }, 'at+jwt'));
  });
};


const options = JSON.parse(process.argv[2] ?? '{}') as BatonServerOptions;
let dataDir: string | undefined;
let schema: string | undefined;
let server: RunningServer | undefined;
let stopping = false;

/** Closes the server, drops the schema, removes the data directory, exits. */
async function cleanup(code = 0): Promise<void> {
  if (stopping) return;
  stopping = true;
  try {
    await server?.close();
    if (schema !== undefined && options.pgUrl) {
      const client = new pg.Client({ connectionString: options.pgUrl });
      await client.connect();
      await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      await client.end();
    }
  } catch (error) {
    process.stderr.write(`bench server cleanup: ${(error as Error).message}\n`);
  } finally {
    if (dataDir !== undefined) await rm(dataDir, { recursive: true, force: true });
    process.exit(code);
  }
}
/** The SDK, when `options.tracing`: installed at load, before anything of Baton's runs. */
const tracing: BenchTracing | undefined = options.tracing ? installTracing(options.sampleRatio) : undefined;

installControl(() => void cleanup(), {
  /** `spans -`: spans the SDK exported so far → {"spans": n} (0 without tracing): proof the load was traced. */
  async spans() {
    return { spans: tracing === undefined ? 0 : await tracing.exported() };
  },
  /**
   * `inject {"url","headers","bodies","ms"|"count"}`: the same requests through `app.inject` (Fastify and
   * the handler, no TLS, no socket, no HTTP parser), one at a time for `ms` milliseconds or `count`
   * requests → {"inject": requests per second, "cpuMicros": the process's CPU time per request}.
   * The difference from the HTTPS rate is the transport's share.
   */
  async inject(argument) {
    if (!server) throw new Error('not started');
    const { url, headers, bodies, ms, count } = JSON.parse(argument) as { url: string; headers: Record<string, string>; bodies: string[]; ms: number; count?: number };
    const app = server.app;
    let n = 0;
    const cpu = process.cpuUsage();
    const thread = process.threadCpuUsage();
    const started = performance.now();
    let elapsed = 0;
    do {
      const response = await app.inject({ method: 'POST', url, headers, payload: bodies[n % bodies.length] as string });
      if (response.statusCode !== 200) throw new Error(`inject answered ${response.statusCode}: ${response.body.slice(0, 200)}`);
      n++;
      elapsed = performance.now() - started;
    } while (count === undefined ? elapsed < ms : n < count);
    const used = process.cpuUsage(cpu);
    const main = process.threadCpuUsage(thread);
    // CPU time of the whole process (every thread: the signatures on libuv's pool, the garbage
    // collector's helpers) per request: what the machine's other load disturbs least. And the main
    // thread's alone (where Baton, Fastify and the instrumentation run; no signature, no GC helper).
    return { inject: n / (elapsed / 1000), cpuMicros: (used.user + used.system) / n, mainCpuMicros: (main.user + main.system) / n };
  },
});

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'baton-bench-'));
  dataDir = dir;

  const raw = JSON.parse(await readFile(CHAIN_CONFIG, 'utf8'));
  const seeded = options.seedUsers !== undefined;
  if (seeded) {
    const contoso = raw.tenants[0];
    contoso.consents = contoso.consents.filter((c: { client: string; resource: string }) => !(c.client === 'tasks-api' && c.resource === 'api://docs'));
    contoso.consents.push({ client: 'tasks-api', resource: 'api://docs', scopes: ['Docs.Read'], for: 'alice@contoso.test' });
  }
  const config = parseConfig(JSON.stringify(raw), 'examples/chain/baton.json (bench)');

  let storeUrl: string | undefined;
  if (options.store === 'postgres') {
    if (!options.pgUrl) throw new Error('pgUrl is required for the postgres store');
    schema = `baton_bench_${randomBytes(6).toString('hex')}`;
    const client = new pg.Client({ connectionString: options.pgUrl });
    await client.connect();
    await client.query(`CREATE SCHEMA ${schema}`);
    await client.end();
    storeUrl = options.pgUrl;
  }

  server = await startServer({
    config,
    dataDir: dir,
    tls: 'dev',
    dev: true,
    host: '127.0.0.1',
    port: 0,
    env: {},
    ...(storeUrl ? { storeUrl, storeSchema: schema } : {}),
    logger: createLogger(options.logLevel ?? 'info'),
    routes: [ceilingRoutes],
    ...(options.metrics ? { metrics: { port: 0 } } : {}),
  });
  // Scraped by the bench from its own process (a scraper in this process would bill the server for
  // Prometheus' HTTP client): what a scrape costs the server — collection, rendering, the listener's
  // answer — is part of "on".
  const metricsUrl = server.metrics?.url;
  const { ctx } = server;
  const directory = await ctx.directories.get('contoso');
  if (!directory) throw new Error('tenant contoso missing');
  const alice = await ctx.store.getUserByName('contoso', 'alice@contoso.test');
  if (!alice) throw new Error('alice missing');

  let seed: SeedResult | undefined;
  let oids: string[] = [];
  if (seeded && (options.seedUsers as number) > 1) {
    const spec = {
      tenantId: 'contoso',
      users: (options.seedUsers as number) - 1, // alice is the first
      passwordHash: alice.passwordHash,
      consent: { clientId: 'tasks-api', resource: 'docs-api', scopes: ['Docs.Read'] },
      now: ctx.now(),
    };
    const sample = Math.min(options.assertions, spec.users);
    if (options.store === 'postgres') {
      seed = await seedPostgres(options.pgUrl as string, schema as string, spec);
      oids = await samplePostgres(options.pgUrl as string, schema as string, 'contoso', sample);
    } else {
      const file = join(dir, 'baton.sqlite');
      seed = seedSqlite(file, spec);
      oids = sampleSqlite(file, 'contoso', sample);
    }
    seed = { ...seed, users: seed.users + 1, consents: seed.consents + 1 };
  }

  // The user tokens tasks-api received from tasks-web: what it exchanges.
  const api = directory.api('api://tasks');
  if (!api) throw new Error('api://tasks missing');
  const tokens: string[] = [];
  for (let i = 0; i < options.assertions; i++) {
    const oid = oids.length ? oids[i % oids.length] : undefined;
    const user = oid === undefined ? alice : await ctx.store.getUserById('contoso', oid);
    if (!user) throw new Error(`seeded user ${oid} not found`);
    const issued = await issueDelegatedToken(ctx, {
      directory,
      user,
      clientId: 'tasks-web',
      api,
      scopes: ['Tasks.ReadWrite'],
      auth: { amr: ['pwd'], acr: '1', authTime: ctx.now() },
    });
    tokens.push(issued.token);
  }
  const assertionsFile = join(dir, 'assertions.json');
  await writeFile(assertionsFile, JSON.stringify(tokens));

  const port = new URL(server.url).port;
  const ready: BatonServerReady = {
    url: `https://127.0.0.1:${port}`,
    publicUrl: server.url,
    ca: server.ca as string,
    assertionsFile,
    ...(seed ? { seed } : {}),
    ...(metricsUrl !== undefined ? { metricsUrl } : {}),
  };
  process.stdout.write(`${JSON.stringify({ ready })}\n`);
}

main().catch((error: Error) => {
  process.stdout.write(`${JSON.stringify({ error: error.stack ?? error.message })}\n`);
  void cleanup(1);
});

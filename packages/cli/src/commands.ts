/**
 * The commands of `baton`. Flags follow contracts (docs/cli.md); names are never repurposed.
 */
import { resolve } from 'node:path';
import { existsSync } from 'node:fs';
import cluster from 'node:cluster';
import { availableParallelism } from 'node:os';
import { SIGNING_ALGS, type SigningAlg } from '@baton/core';
import { startServer, createLogger, readConfigFile, configWarnings, openStore, loadKek, Keyring, generateClientSecret, listenForMetrics, shareWithPrimary, clusterMetrics, type MetricsOptions } from '@baton/server';
import { dev } from './dev.ts';
import type { Command, OptionSpec } from './command.ts';


const str = (v: string | boolean | undefined): string | undefined => (typeof v === 'string' ? v : undefined);

/** `--trust-proxy`: `true`, or addresses/CIDRs (Fastify's trustProxy). */
function trustProxy(value: string | undefined): boolean | string | undefined {
  if (value === undefined || value === '' || value === 'false') return undefined;
  return value === 'true' ? true : value;
}

function port(value: string | undefined, fallback: number, flag = 'port'): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new Error(`--${flag} must be a number from 0 to 65535, not '${value}'`);
  return n;
}

/** `--metrics-port N` [`--metrics-host ADDR`]: metrics on a listener of their own; absent, none are recorded. */
function metricsOptions(v: Record<string, string | boolean | undefined>): MetricsOptions | undefined {
  const value = str(v['metrics-port']);
  if (value === undefined || value === '') return undefined;
  return { port: port(value, 0, 'metrics-port'), host: str(v['metrics-host']) ?? '127.0.0.1' };
}

const storeOptions: Record<string, OptionSpec> = {
  data: { type: 'string', valueName: 'DIR', description: 'data directory (SQLite file, dev keys, dev TLS)', default: '.baton', env: 'BATON_DATA' },
  store: { type: 'string', valueName: 'URL', description: 'postgres://… to use PostgreSQL instead of SQLite in DIR', env: 'BATON_STORE' },
  'kek-file': { type: 'string', valueName: 'FILE', description: 'key-encryption key file (BATON_KEK in the environment wins)', env: 'BATON_KEK_FILE' },
};

/** How long `serve` waits for in-flight requests after SIGTERM/SIGINT before it closes their connections. */
const DRAIN_MS = 10_000;

/** A port already taken: say which flag or variable moves it. */
function listenError(error: unknown, host: string | undefined, port: number, metrics?: MetricsOptions): unknown {
  if ((error as NodeJS.ErrnoException | undefined)?.code !== 'EADDRINUSE') return error;
  if (metrics !== undefined && (error as { port?: number }).port === metrics.port && metrics.port !== port) {
    return new Error(`metrics port ${metrics.port} on ${metrics.host ?? '127.0.0.1'} is already in use: choose another with --metrics-port N or BATON_METRICS_PORT=N (0 picks a free port)`);
  }
  return new Error(`port ${port} on ${host ?? '127.0.0.1'} is already in use: choose another with --port N or BATON_PORT=N (0 picks a free port)`);
}

/**
 * Waits for SIGINT or SIGTERM, then closes: the listener stops accepting, requests in flight finish
 * (their connections are closed after DRAIN_MS, or at once on a second signal), the store closes.
 * `announce` prints the one `stopped` line.
 */
function untilSignal(close: () => Promise<void>, options: { announce?: boolean; force?: () => void } = {}): Promise<number> {
  return new Promise((resolveExit) => {
    let stopping = false;
    const stop = () => {
      if (stopping) {
        options.force?.();
        return;
      }
      stopping = true;
      const deadline = options.force ? setTimeout(options.force, DRAIN_MS) : undefined;
      deadline?.unref();
      close().then(
        () => {
          clearTimeout(deadline);
          process.off('SIGINT', stop);
          process.off('SIGTERM', stop);
          if (options.announce) process.stdout.write('stopped\n');
          resolveExit(0);
        },
        (error: unknown) => {
          process.stderr.write(`baton: stopping failed: ${(error as Error).message}\n`);
          resolveExit(1);
        },
      );
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
}

const serve: Command = {
  name: 'serve',
  summary: 'Run the token service.',
  options: {
    config: { type: 'string', valueName: 'FILE', description: 'configuration file to load (validated; applied idempotently)', env: 'BATON_CONFIG' },
    ...storeOptions,
    port: { type: 'string', valueName: 'N', description: 'port to listen on', default: '8443', env: 'BATON_PORT' },
    host: { type: 'string', valueName: 'ADDR', description: 'address to bind', default: '127.0.0.1', env: 'BATON_HOST' },
    'tls-dev': { type: 'boolean', description: 'serve HTTPS with a local CA and localhost certificate made once under DIR/tls', env: 'BATON_TLS_DEV' },
    'tls-cert': { type: 'string', valueName: 'FILE', description: 'TLS certificate (PEM)', env: 'BATON_TLS_CERT' },
    'tls-key': { type: 'string', valueName: 'FILE', description: 'TLS private key (PEM)', env: 'BATON_TLS_KEY' },
    'public-url': {
      type: 'string',
      valueName: 'URL',
      description: 'public base URL (the issuer is URL/{tenant}/v2.0): behind a proxy, and the same on every instance of one service',
      env: 'BATON_PUBLIC_URL',
    },
    'trust-proxy': {
      type: 'string',
      valueName: 'ADDRS',
      description: "proxies whose X-Forwarded-For gives the client address: addresses or CIDRs, comma-separated, or 'true' (any)",
      env: 'BATON_TRUST_PROXY',
    },
    dev: { type: 'boolean', description: 'development mode: generate a KEK in DIR if none is configured', env: 'BATON_DEV' },
    workers: { type: 'string', valueName: 'N', description: 'processes sharing the port and the store (one per core: `auto`)', default: '1', env: 'BATON_WORKERS' },
    'metrics-port': {
      type: 'string',
      valueName: 'N',
      description: 'serve Prometheus metrics at /metrics on this port, a listener of its own (never the public port); 0 picks a free one',
      env: 'BATON_METRICS_PORT',
    },
    'metrics-host': { type: 'string', valueName: 'ADDR', description: 'address of the metrics listener', default: '127.0.0.1', env: 'BATON_METRICS_HOST' },
  },
  async run(v) {
    const workers = workerCount(str(v.workers));
    if (workers > 1 || cluster.isWorker) return serveClustered(v, workers);
    const certPath = str(v['tls-cert']);
    const keyPath = str(v['tls-key']);
    if ((certPath === undefined) !== (keyPath === undefined)) throw new Error('--tls-cert and --tls-key go together');
    if (v['tls-dev'] && certPath) throw new Error('use either --tls-dev or --tls-cert/--tls-key');
    const configPath = str(v.config);
    const config = configPath ? await readConfigFile(configPath) : undefined;
    const dataDir = resolve(str(v.data) ?? '.baton');
    const listenPort = port(str(v.port), 8443);
    const metrics = metricsOptions(v);
    const server = await startServer({
      config,
      dataDir,
      storeUrl: str(v.store),
      kekFile: str(v['kek-file']),
      host: str(v.host),
      port: listenPort,
      tls: v['tls-dev'] ? 'dev' : certPath && keyPath ? { certPath, keyPath } : undefined,
      publicUrl: str(v['public-url']),
      trustProxy: trustProxy(str(v['trust-proxy'])),
      dev: Boolean(v.dev) || Boolean(v['tls-dev']),
      logger: createLogger(undefined, process.stderr.isTTY || Boolean(v.dev)),
      metrics,
    }).catch((error: unknown) => {
      throw listenError(error, str(v.host), listenPort, metrics);
    });
    const tenants = await server.ctx.store.listTenants();
    for (const t of tenants) process.stderr.write(`tenant ${t.id}: ${server.url}/${t.id}/v2.0/.well-known/openid-configuration\n`);
    if (server.caPath) process.stderr.write(`TLS: trust the local CA at ${server.caPath} (e.g. NODE_EXTRA_CA_CERTS=${server.caPath})\n`);
    if (server.metrics?.url) process.stderr.write(`metrics: ${server.metrics.url}\n`);
    // Listening for signals before saying `ready`: a supervisor that sends SIGTERM as soon as it reads
    // the line must get a clean stop, not the default action (killed by the signal, no `stopped`).
    const stopped = untilSignal(() => server.close(), { announce: true, force: () => server.app.server.closeAllConnections() });
    process.stdout.write(`ready ${server.url}\n`);
    return stopped;
  },
};

function workerCount(value: string | undefined): number {
  if (value === undefined || value === '1') return 1;
  if (value === 'auto') return availableParallelism();
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 64) throw new Error(`--workers must be a number from 1 to 64 or 'auto', not '${value}'`);
  return n;
}

/** What a worker tells the primary. */
type WorkerMessage = { type: 'ready'; url: string } | { type: 'failed'; message: string };

/**
 * `--workers N`: the primary prepares the data once (configuration, keys, TLS material), then forks
 * N workers that share the listening port (node:cluster) and the store. Nothing a request needs
 * lives only in one worker's memory: single-use values are atomic in the store, and each worker's
 * caches are invalidated through the store's change feed.
 */
async function serveClustered(v: Record<string, string | boolean | undefined>, workers: number): Promise<number> {
  const certPath = str(v['tls-cert']);
  const keyPath = str(v['tls-key']);
  const options = {
    dataDir: resolve(str(v.data) ?? '.baton'),
    storeUrl: str(v.store),
    kekFile: str(v['kek-file']),
    host: str(v.host),
    port: port(str(v.port), 8443),
    tls: v['tls-dev'] ? ('dev' as const) : certPath && keyPath ? { certPath, keyPath } : undefined,
    publicUrl: str(v['public-url']),
    trustProxy: trustProxy(str(v['trust-proxy'])),
    dev: Boolean(v.dev) || Boolean(v['tls-dev']),
  };
  const metrics = metricsOptions(v);
  if (cluster.isWorker) {
    try {
      // Workers record metrics; the primary alone listens and serves their aggregate.
      const server = await startServer({ ...options, logger: createLogger(), metrics: metrics ? { processMetrics: true } : undefined });
      if (server.metrics) shareWithPrimary(server.metrics.registry);
      const stopped = untilSignal(() => server.close(), { force: () => server.app.server.closeAllConnections() });
      process.send?.({ type: 'ready', url: server.url } satisfies WorkerMessage);
      return stopped;
    } catch (error) {
      process.send?.({ type: 'failed', message: (listenError(error, options.host, options.port) as Error).message } satisfies WorkerMessage);
      return 1;
    }
  }
  const configPath = str(v.config);
  const config = configPath ? await readConfigFile(configPath) : undefined;
  const prepared = await startServer({ ...options, config, listen: false, logger: createLogger(undefined, process.stderr.isTTY || Boolean(v.dev)) });
  const caPath = prepared.caPath;
  await prepared.close();

  let stopping = false;
  const urls: string[] = [];
  await new Promise<void>((resolveReady, rejectReady) => {
    const fork = () => {
      const worker = cluster.fork();
      worker.on('message', (message: WorkerMessage) => {
        if (message.type === 'ready') {
          urls.push(message.url);
          if (urls.length === workers) resolveReady();
        } else if (message.type === 'failed') {
          rejectReady(new Error(`a worker failed to start: ${message.message}`));
        }
      });
      worker.on('exit', (code, signal) => {
        if (stopping) return;
        // A worker that died after start is replaced; the others keep serving meanwhile.
        process.stderr.write(`worker ${worker.process.pid} exited (${signal ?? code}); starting another\n`);
        setTimeout(fork, 500).unref();
      });
    };
    for (let i = 0; i < workers; i++) fork();
  });
  if (caPath) process.stderr.write(`TLS: trust the local CA at ${caPath} (e.g. NODE_EXTRA_CA_CERTS=${caPath})\n`);
  process.stderr.write(`${workers} workers\n`);
  const metricsListener = metrics
    ? await listenForMetrics(clusterMetrics(), { port: metrics.port ?? 0, host: metrics.host, warn: (message) => process.stderr.write(`warning: ${message}\n`) }).catch((error: unknown) => {
        stopping = true;
        for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill('SIGTERM');
        throw listenError(error, options.host, options.port, metrics);
      })
    : undefined;
  if (metricsListener) process.stderr.write(`metrics: ${metricsListener.url}\n`);
  const stopped = untilSignal(async () => {
    stopping = true;
    await metricsListener?.close();
    await Promise.all(
      Object.values(cluster.workers ?? {}).map(
        (worker) => new Promise<void>((done) => {
          if (!worker || worker.isDead()) return done();
          worker.once('exit', () => done());
          worker.process.kill('SIGTERM');
        }),
      ),
    );
  }, { announce: true });
  process.stdout.write(`ready ${urls[0]}\n`);
  return stopped;
}

const keysRotate: Command = {
  name: 'keys rotate',
  summary: "Rotate a tenant's signing key: the published next key becomes current; the old one stays in the JWKS for the grace period.",
  options: {
    ...storeOptions,
    tenant: { type: 'string', valueName: 'ID', description: 'tenant id (all tenants when absent)' },
    alg: { type: 'string', valueName: 'ALG', description: `algorithm (${SIGNING_ALGS.join(', ')})`, default: 'ES256' },
  },
  async run(v) {
    const alg = str(v.alg) as SigningAlg;
    if (!SIGNING_ALGS.includes(alg)) throw new Error(`--alg must be one of ${SIGNING_ALGS.join(', ')}`);
    const dataDir = resolve(str(v.data) ?? '.baton');
    if (!str(v.store) && !existsSync(dataDir)) throw new Error(`no data directory at ${dataDir}; pass --data or --store`);
    const store = await openStore({ url: str(v.store), dataDir });
    try {
      const kek = await loadKek({ env: process.env.BATON_KEK, file: str(v['kek-file']), dataDir, dev: true, warn: (m: string) => process.stderr.write(`warning: ${m}\n`) });
      const now = () => Math.floor(Date.now() / 1000);
      const keyring = new Keyring(store, kek, { now });
      const tenants = str(v.tenant) ? [str(v.tenant)!] : (await store.listTenants()).map((t) => t.id);
      if (tenants.length === 0) throw new Error('no tenants in the store');
      for (const tenantId of tenants) {
        if (!(await store.getTenant(tenantId))) throw new Error(`no tenant '${tenantId}'`);
        await keyring.ensure(tenantId, alg);
        const rotated = await keyring.rotate(tenantId, alg);
        const current = (await store.listSigningKeys(tenantId)).find((k) => k.alg === alg && k.status === 'current');
        process.stdout.write(`${tenantId} ${alg}: ${rotated ? 'rotated' : 'another instance rotated first'}; current key ${current?.kid ?? '?'}\n`);
      }
      keyring.close();
      return 0;
    } finally {
      await store.close();
    }
  },
};

const configCheck: Command = {
  name: 'config check',
  summary: 'Validate a configuration file without touching any store; print every warning `serve` would.',
  options: { config: { type: 'string', valueName: 'FILE', description: 'configuration file', env: 'BATON_CONFIG' } },
  async run(v) {
    const path = str(v.config);
    if (!path) throw new Error('--config FILE is required');
    const config = await readConfigFile(path);
    // The same list `serve` logs at start (startServer → configWarnings), so "valid" never hides one.
    const warnings = configWarnings(config);
    for (const warning of warnings) process.stderr.write(`warning: ${warning}\n`);
    process.stdout.write(`${path}: valid${warnings.length > 0 ? ` (${warnings.length} warning${warnings.length === 1 ? '' : 's'})` : ''}\n`);
    return 0;
  },
};

const secretNew: Command = {
  name: 'secret new',
  summary: 'Print a new client secret (256 bits of randomness) to put in a configuration.',
  options: {},
  async run() {
    process.stdout.write(`${generateClientSecret()}\n`);
    return 0;
  },
};

/** `baton dev` lives in dev.ts (the demo chain). */

export const commands: Record<string, Command> = {
  serve,
  dev,
  'keys rotate': keysRotate,
  'config check': configCheck,
  'secret new': secretNew,
  'token issue': (await import('./token-issue.ts')).tokenIssue,
  'config plan': (await import('./config-plan.ts')).configPlan,
  'config apply': (await import('./config-plan.ts')).configApply,
  ...Object.fromEntries((await import('./admin.ts')).adminCommands.map((c) => [c.name, c])),
};

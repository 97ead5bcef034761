/**
 * The commands of `baton`. Flags follow contracts (docs/cli.md); names are never repurposed.
 */
import { resolve } from 'node:path';
import { existsSync } from 'node:fs';
import cluster from 'node:cluster';
import { availableParallelism } from 'node:os';
import { SIGNING_ALGS, type SigningAlg } from '@baton/core';
import { startServer, createLogger, readConfigFile, openStore, loadKek, Keyring, generateClientSecret } from '@baton/server';
import { dev } from './dev.ts';
import type { Command, OptionSpec } from './command.ts';


const str = (v: string | boolean | undefined): string | undefined => (typeof v === 'string' ? v : undefined);

function port(value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new Error(`--port must be a number from 0 to 65535, not '${value}'`);
  return n;
}

const storeOptions: Record<string, OptionSpec> = {
  data: { type: 'string', valueName: 'DIR', description: 'data directory (SQLite file, dev keys, dev TLS)', default: '.baton' },
  store: { type: 'string', valueName: 'URL', description: 'postgres://… to use PostgreSQL instead of SQLite in DIR' },
  'kek-file': { type: 'string', valueName: 'FILE', description: 'key-encryption key file (BATON_KEK in the environment wins)' },
};

/** Waits for SIGINT/SIGTERM, then closes. */
function untilSignal(close: () => Promise<void>): Promise<number> {
  return new Promise((resolveExit) => {
    const stop = () => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      close().then(() => resolveExit(0), () => resolveExit(1));
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
}

const serve: Command = {
  name: 'serve',
  summary: 'Run the token service.',
  options: {
    config: { type: 'string', valueName: 'FILE', description: 'configuration file to load (validated; applied idempotently)' },
    ...storeOptions,
    port: { type: 'string', valueName: 'N', description: 'port to listen on', default: '8443' },
    host: { type: 'string', valueName: 'ADDR', description: 'address to bind', default: '127.0.0.1' },
    'tls-dev': { type: 'boolean', description: 'serve HTTPS with a local CA and localhost certificate made once under DIR/tls' },
    'tls-cert': { type: 'string', valueName: 'FILE', description: 'TLS certificate (PEM)' },
    'tls-key': { type: 'string', valueName: 'FILE', description: 'TLS private key (PEM)' },
    'public-url': { type: 'string', valueName: 'URL', description: 'public base URL when behind a proxy' },
    dev: { type: 'boolean', description: 'development mode: generate a KEK in DIR if none is configured' },
    workers: { type: 'string', valueName: 'N', description: 'processes sharing the port and the store (one per core: `auto`)', default: '1' },
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
    const server = await startServer({
      config,
      dataDir,
      storeUrl: str(v.store),
      kekFile: str(v['kek-file']),
      host: str(v.host),
      port: port(str(v.port), 8443),
      tls: v['tls-dev'] ? 'dev' : certPath && keyPath ? { certPath, keyPath } : undefined,
      publicUrl: str(v['public-url']),
      dev: Boolean(v.dev) || Boolean(v['tls-dev']),
      logger: createLogger(undefined, process.stderr.isTTY || Boolean(v.dev)),
    });
    const tenants = await server.ctx.store.listTenants();
    for (const t of tenants) process.stderr.write(`tenant ${t.id}: ${server.url}/${t.id}/v2.0/.well-known/openid-configuration\n`);
    if (server.caPath) process.stderr.write(`TLS: trust the local CA at ${server.caPath} (e.g. NODE_EXTRA_CA_CERTS=${server.caPath})\n`);
    process.stdout.write(`ready ${server.url}\n`);
    return untilSignal(() => server.close());
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
    dev: Boolean(v.dev) || Boolean(v['tls-dev']),
  };
  if (cluster.isWorker) {
    try {
      const server = await startServer({ ...options, logger: createLogger() });
      process.send?.({ type: 'ready', url: server.url } satisfies WorkerMessage);
      return untilSignal(() => server.close());
    } catch (error) {
      process.send?.({ type: 'failed', message: (error as Error).message } satisfies WorkerMessage);
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
        } else {
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
  process.stdout.write(`ready ${urls[0]}\n`);
  return untilSignal(async () => {
    stopping = true;
    await Promise.all(
      Object.values(cluster.workers ?? {}).map(
        (worker) => new Promise<void>((done) => {
          if (!worker || worker.isDead()) return done();
          worker.once('exit', () => done());
          worker.process.kill('SIGTERM');
        }),
      ),
    );
  });
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
  summary: 'Validate a configuration file without touching any store.',
  options: { config: { type: 'string', valueName: 'FILE', description: 'configuration file' } },
  async run(v) {
    const path = str(v.config);
    if (!path) throw new Error('--config FILE is required');
    await readConfigFile(path);
    process.stdout.write(`${path}: valid\n`);
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
};

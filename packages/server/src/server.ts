/**
 * `startServer`: configuration → store → keys → HTTP. What `baton serve` runs, and what tests start.
 *
 * Order matters: the configuration is parsed and checked before the store is opened, so a bad file
 * exits non-zero having touched nothing.
 */
import { mkdir, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { AddressInfo } from 'node:net';
import { createSecretKey } from 'node:crypto';
import pino, { type DestinationStream, type Logger } from 'pino';
import type { FastifyInstance } from 'fastify';
import { DpopNonces, type SigningAlg } from '@baton/core';
import { openStore } from './store/index.ts';
import type { Store } from './store/types.ts';
import { loadKek, type Kek } from './crypto/kek.ts';
import { Keyring } from './keys/keyring.ts';
import { ensureDevTls } from './tls/dev-ca.ts';
import { applyConfig, compileConfig, configWarnings, readConfigFile } from './config/load.ts';
import type { BatonConfig } from './config/schema.ts';
import { DirectoryCache, type ServerContext } from './context.ts';
import { buildApp, type RoutePlugin } from './http/app.ts';
import { GrantRegistry, type Grant } from './grants/registry.ts';
import { BUILT_IN_GRANTS } from './grants/index.ts';
import { BUILT_IN_ROUTES } from './endpoints/index.ts';
import { recordIssuerBase } from './issuer-record.ts';
import { resolveTokenEndpointLimits } from './limits.ts';
import { resolveMetadataDocumentOptions } from './registration/metadata-document.ts';
import { resolveDynamicRegistrationOptions } from './registration/dynamic.ts';
import { resolveTransportLimits } from './http/transport.ts';
import { activeTraceIds, traceStore } from './observe/tracing.ts';
import { auditLogOf } from './audit.ts';
import { transmitterOf } from './signals/transmitter.ts';
import { ServerMetrics, instrumentStore, listenForMetrics, type MetricsListener, type MetricsOptions } from './observe/metrics.ts';

export interface ServeOptions {
  /** A configuration file, or an already parsed configuration. */
  configPath?: string | undefined;
  config?: BatonConfig | undefined;
  /** Data directory: SQLite file, dev KEK, dev TLS material. */
  dataDir: string;
  /** `postgres://…` selects PostgreSQL; default SQLite in `dataDir`. */
  storeUrl?: string | undefined;
  /** PostgreSQL schema (tests use a throwaway one). */
  storeSchema?: string | undefined;
  host?: string | undefined;
  port?: number | undefined;
  /** `'dev'` makes a local CA + localhost certificate under `dataDir/tls`. */
  tls?: 'dev' | { certPath: string; keyPath: string } | undefined;
  /** Public base URL if it differs from the listen address (behind a proxy). */
  publicUrl?: string | undefined;
  /**
   * Which proxies' `X-Forwarded-For` to believe for the client address (conditional access by IP,
   * audit): Fastify's `trustProxy` — addresses or CIDRs (comma-separated), or `true`
   * (any: only when nothing but the proxy can reach the service). Default: none.
   */
  trustProxy?: boolean | string | undefined;
  /** Development mode: generate a KEK in the data dir if none is configured (with a warning). */
  dev?: boolean | undefined;
  /** KEK file (`--kek-file`); `BATON_KEK` in the environment wins. */
  kekFile?: string | undefined;
  env?: NodeJS.ProcessEnv | undefined;
  /** Epoch seconds; tests inject a clock. */
  now?: (() => number) | undefined;
  logger?: Logger | undefined;
  /** Grace period retired keys stay in the JWKS (seconds). */
  retireGraceSeconds?: number | undefined;
  /**
   * Grants offered beside the built-in ones (`client_credentials`, `authorization_code`,
   * `refresh_token`, On-Behalf-Of, RFC 8693 token exchange) — the public way to add a grant. A
   * grant type offered twice is refused at start (`TypeError`). Discovery lists them all.
   */
  grants?: readonly Grant[] | undefined;
  /** Routes added after the built-in ones (an operator's or a test's own endpoints). */
  routes?: readonly RoutePlugin[] | undefined;
  /**
   * `false`: prepare the data (configuration, keys, TLS material) and return without listening —
   * what the primary of `baton serve --workers N` does before it forks the workers.
   */
  listen?: boolean | undefined;
  /**
   * Prometheus metrics (observe/metrics.ts): recorded in this server's own registry, served on
   * `GET /metrics` of a separate listener when `port` is given (127.0.0.1 unless `host` says
   * otherwise), never on the public port. Absent: nothing is recorded.
   */
  metrics?: MetricsOptions | undefined;
}

export interface RunningServer {
  url: string;
  ctx: ServerContext;
  app: FastifyInstance;
  /** Path of the dev CA certificate clients should trust, when `tls: 'dev'`. */
  caPath?: string | undefined;
  ca?: string | undefined;
  /** With `metrics`: the server's registry, and the `/metrics` URL when it listens for them. */
  metrics?: { registry: ServerMetrics['registry']; url?: string | undefined } | undefined;
  close(): Promise<void>;
}

/**
 * The logger: JSON lines on stderr, with every field that could hold a secret redacted.
 * `pretty` prints `level: message key=value` lines for a person at a terminal instead; `destination`
 * replaces stderr (tests). A line written while a traced request is served carries `trace_id` and
 * `span_id`.
 */
export function createLogger(level = process.env.BATON_LOG_LEVEL ?? 'info', pretty = false, destination?: DestinationStream): Logger {
  const options = {
    level,
    base: { service: 'baton' },
    mixin: activeTraceIds,
    redact: {
      paths: ['*.password', '*.client_secret', '*.assertion', '*.access_token', '*.refresh_token', '*.code', '*.authorization', 'req.headers.authorization', 'req.headers.cookie'],
      censor: '[redacted]',
    },
  };
  if (!pretty) return pino(options, destination ?? pino.destination(2));
  const names: Record<number, string> = { 10: 'trace', 20: 'debug', 30: 'info', 40: 'warning', 50: 'error', 60: 'fatal' };
  return pino(options, {
    write(line: string) {
      const { level: n, msg, time: _t, service: _s, pid: _p, hostname: _h, ...rest } = JSON.parse(line) as Record<string, unknown>;
      const extra = Object.entries(rest).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`).join(' ');
      process.stderr.write(`${names[n as number] ?? 'log'}: ${String(msg ?? '')}${extra ? ` ${extra}` : ''}\n`);
    },
  });
}

/** Signing algorithms a tenant needs keys for: ES256 always, plus those its APIs chose. */
function algorithmsOf(config: BatonConfig, tenantId: string): SigningAlg[] {
  const tenant = config.tenants.find((t) => t.id === tenantId);
  return [...new Set<SigningAlg>(['ES256', ...(tenant?.applications.map((a) => a.signingAlg) ?? [])])];
}

export async function startServer(options: ServeOptions): Promise<RunningServer> {
  const log = options.logger ?? createLogger();
  const now = options.now ?? (() => Math.floor(Date.now() / 1000));
  const dataDir = resolve(options.dataDir);

  // 1. Configuration: parsed and checked before anything is opened.
  const config = options.config ?? (options.configPath ? await readConfigFile(options.configPath) : undefined);
  if (config) for (const warning of configWarnings(config)) log.warn(warning);
  // A grant type offered twice is a programming error: refused before anything is opened.
  const grants = new GrantRegistry([...BUILT_IN_GRANTS, ...(options.grants ?? [])]);

  // 2. Store, KEK, keys.
  await mkdir(dataDir, { recursive: true });
  // Each store call made while serving a traced request is a span (observe/tracing.ts).
  const engineStore: Store = traceStore(await openStore({ url: options.storeUrl, dataDir, schema: options.storeSchema }));
  const metrics = options.metrics ? new ServerMetrics({ store: engineStore, now }, options.metrics) : undefined;
  // Every store call of the service (keys, directory, grants) is timed through this one wrapper.
  const store = metrics ? instrumentStore(engineStore, metrics) : engineStore;
  let metricsListener: MetricsListener | undefined;
  let closed = false;
  try {
    const kek: Kek = await loadKek({
      env: (options.env ?? process.env).BATON_KEK,
      file: options.kekFile,
      dataDir,
      dev: options.dev ?? false,
      warn: (message: string) => log.warn(message),
    });
    const keyring = new Keyring(store, kek, { now, ...(options.retireGraceSeconds !== undefined ? { retireGraceSeconds: options.retireGraceSeconds } : {}) });

    if (config) await applyConfig(store, await compileConfig(config, { pepper: kek.derive('client-secret-pepper'), kek, store, now: now() }));
    for (const tenant of await store.listTenants()) {
      for (const alg of config ? algorithmsOf(config, tenant.id) : (['ES256'] as SigningAlg[])) await keyring.ensure(tenant.id, alg);
    }

    // 3. TLS.
    let https: { key: string; cert: string } | undefined;
    let caPath: string | undefined;
    let ca: string | undefined;
    if (options.tls === 'dev') {
      const tls = await ensureDevTls(join(dataDir, 'tls'));
      https = { key: tls.key, cert: tls.cert };
      caPath = tls.caPath;
      ca = tls.ca;
    } else if (options.tls) {
      https = { key: await readFile(options.tls.keyPath, 'utf8'), cert: await readFile(options.tls.certPath, 'utf8') };
    }

    // 4. HTTP.
    const directories = new DirectoryCache(store, (message) => log.warn(message));
    const ctx: ServerContext = {
      store,
      keyring,
      kek,
      pepper: createSecretKey(kek.derive('client-secret-pepper')),
      pairwiseKey: createSecretKey(kek.derive('pairwise-sub')),
      dpopNonces: new DpopNonces(createSecretKey(kek.derive('dpop-nonce'))),
      log,
      directories,
      grants,
      now,
      baseUrl: options.publicUrl ?? '',
      tokenEndpointLimits: resolveTokenEndpointLimits(config?.limits?.tokenEndpoint),
      metadataDocuments: resolveMetadataDocumentOptions(config?.registration?.metadataDocuments),
      dynamicRegistration: resolveDynamicRegistrationOptions(config?.registration?.dynamic),
      metrics,
    };
    // Exchange decisions are counted from the audit feed: the event already names the deciding rule.
    const stopCountingExchanges = metrics ? auditLogOf(ctx).subscribe((event) => metrics.exchange(event)) : undefined;
    const app = buildApp(ctx, { https, trustProxy: options.trustProxy, routes: [...BUILT_IN_ROUTES, ...(options.routes ?? [])], transport: resolveTransportLimits(config?.http) });
    let sweeper: NodeJS.Timeout | undefined;
    const running: RunningServer = {
      url: '',
      ctx,
      app,
      caPath,
      ca,
      metrics: metrics ? { registry: metrics.registry } : undefined,
      async close() {
        if (closed) return;
        closed = true;
        clearInterval(sweeper);
        stopCountingExchanges?.();
        // First: long polls answer, queued events reach the store, the push worker stops.
        await transmitterOf(ctx).close();
        await Promise.all([app.close(), metricsListener?.close()]);
        directories.close();
        keyring.close();
        await store.close();
      },
    };
    if (options.listen === false) return running;
    // Security events (issue 17): admin changes become SETs; this instance also pushes them.
    transmitterOf(ctx).start({ push: true });

    const host = options.host ?? '127.0.0.1';
    await app.listen({ host, port: options.port ?? 0 });
    const port = (app.server.address() as AddressInfo).port;
    if (!options.publicUrl) ctx.baseUrl = https ? `https://localhost:${port}` : `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
    running.url = ctx.baseUrl;
    await recordIssuerBase(store, ctx.baseUrl, now());
    if (metrics && options.metrics?.port !== undefined) {
      try {
        metricsListener = await listenForMetrics(metrics.registry, { host: options.metrics.host, port: options.metrics.port, warn: (message) => log.warn(message) });
      } catch (error) {
        await app.close();
        throw error;
      }
      running.metrics = { registry: metrics.registry, url: metricsListener.url };
    }

    sweeper = setInterval(() => {
      store.sweep(now()).catch((error: Error) => log.warn({ err: error.message }, 'sweep failed'));
    }, 60_000);
    sweeper.unref();
    return running;
  } catch (error) {
    if (!closed) await store.close();
    throw error;
  }
}

/**
 * `baton dev` (what `npm start` runs): the whole demo chain in one process, visible.
 *
 * - the token service over HTTPS with the local dev CA (`--tls-dev`), SQLite in `.baton/`, loaded
 *   from examples/chain/baton.json (applied idempotently: a second start reuses keys and data);
 * - the example apps (examples/chain): Tasks Web on http://127.0.0.1:7000 (`--web-port`; the redirect
 *   URI it registers follows), Tasks API, Docs API and Audit API on three ports from `--api-port`, the indexer;
 * - the chain view, which reads the token service's audit stream in-process.
 *
 * One process keeps Ctrl-C simple: everything closes in reverse order, then the command returns.
 */
import { join, resolve } from 'node:path';
import { auditLogOf, createLogger, readConfigFile, startServer, type BatonConfig } from '@baton/server';
import type { Command } from './command.ts';

const str = (v: string | boolean | undefined): string | undefined => (typeof v === 'string' ? v : undefined);

/** A port from its flag, else from its environment variable, else the default (flags win, as for every option). */
function portNumber(value: string | undefined, flag: string, env: string, fallback: number, min = 0): number {
  const given = value ?? process.env[env];
  if (given === undefined || given === '') return fallback;
  const n = Number(given);
  if (!Number.isInteger(n) || n < min || n > 65535) throw new Error(`--${flag} (or ${env}) must be a number from ${min} to 65535, not '${given}'`);
  return n;
}

/**
 * What `dev` uses of the demo chain (examples/chain). The demo is private to the repository and not
 * a dependency of the published CLI: it is loaded by dynamic import, only by `dev`, so `serve` and
 * the other commands never need it (packages/cli/test/demo-chain-shape.test.ts checks that the demo
 * still has this shape).
 */
export interface DemoChain<Demo extends { tenant: string } = { tenant: string }> {
  readDemoConfig(path: string): Demo;
  startChain(options: {
    authority: string;
    ca?: string | undefined;
    exchanges?: ReturnType<typeof auditLogOf> | undefined;
    dataDir?: string | undefined;
    ports?: { web?: number | undefined; api?: number | undefined; mcp?: number | undefined } | undefined;
    metricsPort?: number | undefined;
    demo?: Demo | undefined;
    antiPattern?: boolean | undefined;
    indexerIntervalMs?: number | undefined;
    log?: ((line: string) => void) | undefined;
    traceUrl?: string | undefined;
  }): Promise<{
    urls: { web: string; chain: string; tasksApi: string; docsApi: string; auditApi: string; docsMcp?: string | undefined };
    metricsUrls?: { tasksApi: string; docsApi: string; auditApi: string } | undefined;
    antiPattern: { enabled: boolean }; close(): Promise<void> }>;
  /** The demo's OpenTelemetry SDK: installed (OTLP/HTTP) when `OTEL_EXPORTER_OTLP_ENDPOINT` is set; `undefined` otherwise. */
  startTracing(options?: { env?: NodeJS.ProcessEnv | undefined }): { shutdown(): Promise<void> } | undefined;
  /** The configuration with the demo's admin application (`demo-admin`, Baton.Admin) for `baton admin`. */
  withDemoAdmin(config: BatonConfig): BatonConfig;
  /** The configuration with the Docs MCP (an MCP server) registered, its canonical URI on `port`. */
  withDocsMcp?(config: BatonConfig, port: number): BatonConfig;
  /** The configuration with Tasks Web's registered redirect URI moved to its port. */
  withWebPort<T extends { tenants: ReadonlyArray<{ applications: ReadonlyArray<{ clientId: string; redirectUris: readonly string[] }> }> }>(config: T, port: number): T;
  banner(input: {
    tokenServiceUrl: string;
    tenant: string;
    caPath: string | undefined;
    dataDir: string;
    urls: { web: string; chain: string; tasksApi: string; docsApi: string; auditApi: string };
    demo: Demo;
    indexerIntervalMs: number;
    antiPattern: boolean;
    color: boolean;
  }): string;
}

/** The demo chain's package name: a variable, so neither tsc nor a bundler follows it into the CLI. */
const DEMO_CHAIN = '@baton/example-chain';

/** Loads the demo chain, or says where it is when the CLI was installed without the repository. */
export async function loadDemoChain(specifier: string = DEMO_CHAIN): Promise<DemoChain> {
  try {
    return (await import(specifier)) as DemoChain;
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if ((code === 'ERR_MODULE_NOT_FOUND' || code === 'ERR_PACKAGE_PATH_NOT_EXPORTED') && String((error as Error).message).includes(specifier)) {
      throw new Error(
        "'baton dev' runs the demo chain, which lives in Baton's repository (examples/chain) and is not part of @baton/cli. " +
          "Clone the repository and run 'npm start' there; to run the token service for your own APIs, use 'baton serve'.",
      );
    }
    throw error;
  }
}

/** `EADDRINUSE` says which flag moves the port. */
function portTaken(error: unknown, what: string, port: number, flag: string, env: string): Error {
  const e = error as NodeJS.ErrnoException;
  if (e?.code !== 'EADDRINUSE') return error as Error;
  return new Error(`${what}: port ${port} on 127.0.0.1 is already in use (another \`npm start\`?). Stop what uses it, or move it with --${flag} N (or ${env}=N).`);
}

export const dev: Command = {
  name: 'dev',
  summary: 'Run the demo chain: the token service over HTTPS (data in .baton/), Tasks Web, the Tasks, Docs and Audit APIs, the indexer and the chain view (what `npm start` runs).',
  options: {
    data: { type: 'string', valueName: 'DIR', description: 'data directory', default: '.baton' },
    config: { type: 'string', valueName: 'FILE', description: 'configuration', default: 'examples/chain/baton.json' },
    port: { type: 'string', valueName: 'N', description: 'token service port (or BATON_PORT; default 8443)' },
    'web-port': { type: 'string', valueName: 'N', description: 'Tasks Web port (or BATON_WEB_PORT; default 7000); the redirect URI it registers follows' },
    'api-port': { type: 'string', valueName: 'N', description: 'first of three ports for the Tasks, Docs and Audit APIs (or BATON_API_PORT; default 7001; 0 = any free ports)' },
    'anti-pattern': { type: 'boolean', description: 'start with the confused-deputy switch on (the Tasks API tries to act as itself; the SDK refuses); also BATON_DEMO_ANTI_PATTERN=1' },
    'metrics-port': {
      type: 'string',
      valueName: 'N',
      description: "Prometheus metrics on 127.0.0.1: the token service's at N/metrics, the Tasks, Docs and Audit APIs' at N+1..N+3 (or BATON_METRICS_PORT; 0 = free ports)",
    },
    'indexer-interval': { type: 'string', valueName: 'SECONDS', description: 'seconds between indexer runs (0 = only from the chain view)', default: '60' },
  },
  async run(v) {
    const configPath = resolve(str(v.config) ?? 'examples/chain/baton.json');
    const dataDir = resolve(str(v.data) ?? '.baton');
    const port = portNumber(str(v.port), 'port', 'BATON_PORT', 8443);
    // Tasks Web needs a real port: its redirect URI is registered before it listens.
    const webPort = portNumber(str(v['web-port']), 'web-port', 'BATON_WEB_PORT', 7000, 1);
    const apiPort = portNumber(str(v['api-port']), 'api-port', 'BATON_API_PORT', 7001);
    const metricsGiven = str(v['metrics-port']) ?? process.env.BATON_METRICS_PORT;
    const metricsPort = metricsGiven === undefined || metricsGiven === '' ? undefined : portNumber(metricsGiven, 'metrics-port', 'BATON_METRICS_PORT', 0);
    const interval = Number(str(v['indexer-interval']) ?? '60');
    if (!Number.isFinite(interval) || interval < 0) throw new Error(`--indexer-interval must be a number of seconds, not '${str(v['indexer-interval'])}'`);

    // The demo first: without it (the CLI installed on its own) nothing else applies.
    const example = await loadDemoChain();
    // The configuration is checked before anything is opened or started.
    const config = await readConfigFile(configPath);
    const demo = example.readDemoConfig(configPath);

    // The Docs MCP listens on the port after the three APIs (not with --api-port 0: its canonical URI needs a port).
    const mcpPort = apiPort === 0 || example.withDocsMcp === undefined ? undefined : apiPort + 3;
    const mcpOn = (c: BatonConfig): BatonConfig => (mcpPort === undefined || example.withDocsMcp === undefined ? c : example.withDocsMcp(c, mcpPort));
    const color = process.stdout.isTTY === true;
    // Traces over OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT is set: installed before anything starts.
    const tracing = example.startTracing();
    const server = await startServer({
      config: example.withDemoAdmin(mcpOn(example.withWebPort(config, webPort))),
      dataDir,
      port,
      tls: 'dev',
      dev: true,
      logger: createLogger(undefined, true),
      metrics: metricsPort === undefined ? undefined : { port: metricsPort },
    }).catch((error: unknown) => {
      const metricsTaken = metricsPort !== undefined && (error as { port?: number }).port === metricsPort && metricsPort !== port;
      throw metricsTaken ? portTaken(error, 'Token service metrics', metricsPort, 'metrics-port', 'BATON_METRICS_PORT') : portTaken(error, 'Token service', port, 'port', 'BATON_PORT');
    });
    let chain: Awaited<ReturnType<DemoChain['startChain']>>;
    try {
      chain = await example.startChain({
        authority: `${server.url}/${demo.tenant}/v2.0`,
        ca: server.ca,
        exchanges: auditLogOf(server.ctx),
        dataDir: join(dataDir, 'chain'),
        ports: { web: webPort, api: apiPort, mcp: mcpPort },
        metricsPort,
        demo,
        antiPattern: Boolean(v['anti-pattern']) || process.env.BATON_DEMO_ANTI_PATTERN === '1',
        indexerIntervalMs: interval * 1000,
        log: (line) => process.stderr.write(`${line}\n`),
        traceUrl: process.env.BATON_TRACE_URL || undefined,
      });
    } catch (error) {
      await server.close();
      await tracing?.shutdown();
      throw error;
    }

    return new Promise<number>((done) => {
      let stopping = false;
      const stop = () => {
        if (stopping) {
          // A second Ctrl-C: stop waiting for connections to drain.
          process.stderr.write('stopping now\n');
          done(130);
          return;
        }
        stopping = true;
        process.stderr.write('\nstopping: Tasks Web, the APIs, the indexer, the token service…\n');
        chain
          .close()
          .then(() => server.close())
          .then(() => tracing?.shutdown())
          .then(
            () => {
              process.off('SIGINT', stop);
              process.off('SIGTERM', stop);
              process.stderr.write('stopped. Data kept in ' + dataDir + '\n');
              done(0);
            },
            (error: unknown) => {
              process.stderr.write(`baton dev: stopping failed: ${(error as Error).message}\n`);
              done(1);
            },
          );
      };
      // Listening for Ctrl-C before saying `ready`: a signal right after it must stop us cleanly.
      process.on('SIGINT', stop);
      process.on('SIGTERM', stop);
      process.stdout.write(
        `${example.banner({
          tokenServiceUrl: server.url,
          tenant: demo.tenant,
          caPath: server.caPath,
          dataDir,
          urls: chain.urls,
          demo,
          indexerIntervalMs: interval * 1000,
          antiPattern: chain.antiPattern.enabled,
          color,
        })}\n`,
      );
      if (server.metrics?.url && chain.metricsUrls) {
        const m = chain.metricsUrls;
        process.stderr.write(`metrics: token service ${server.metrics.url}, Tasks API ${m.tasksApi}, Docs API ${m.docsApi}, Audit API ${m.auditApi}\n`);
      }
      process.stdout.write(`ready ${chain.urls.web}\n`);
    });
  },
};

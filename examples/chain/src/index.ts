/**
 * The demo chain, started in one process next to a running token service (what `baton dev` does):
 *
 *   Tasks Web (Client App, :7000) → Tasks API (Original API, :7001) → Docs API (Downstream, :7002)
 *     → Audit API (:7003), plus the Indexer (app-only, client credentials) → Docs API,
 *   and an AI agent (any MCP client) → Docs MCP (an MCP server, :7004/mcp) → Docs API → Audit API,
 *
 * and the chain view at http://127.0.0.1:7000/chain, fed by what each API reports and by the token
 * service's audit stream of exchange decisions.
 *
 * @example
 * const server = await startServer({ config, dataDir, tls: 'dev', dev: true });
 * const chain = await startChain({ authority: `${server.url}/contoso/v2.0`, ca: server.ca, exchanges: auditLogOf(server.ctx), dataDir });
 * // … later
 * await chain.close();
 */
import { join } from 'node:path';
import { ChainLog, type ExchangeFeed } from './chain-log.ts';
import { readDemoConfig, totpNow, DEFAULT_CONFIG, type DemoConfig } from './demo-config.ts';
import { AUDIT_API, startAuditApi } from './audit/api.ts';
import { DOCS_API, startDocsApi } from './docs/api.ts';
import { startDocsMcp } from './mcp/server.ts';
import { DOCS_MCP_APP } from './mcp/registration.ts';
import { startTasksApi, TASKS_API, type Switch } from './tasks/api.ts';
import { startIndexer, type Indexer } from './indexer/job.ts';
import { startTasksWeb, TASKS_WEB } from './web/app.ts';
import { stderrWriter, type LineWriter } from './log.ts';
import { serveApiMetrics } from './metrics.ts';
import { createDemoAdmin } from './demo-admin.ts';
import { SignalLog } from './signal-log.ts';
import type { ApiSignalsOptions } from './signals.ts';

export { ChainLog, type RequestView, type HopView, type TokenView, type DecisionView } from './chain-log.ts';
export { readDemoConfig, totpNow, DEFAULT_CONFIG, type DemoConfig } from './demo-config.ts';
export { effectiveAccess, explain } from './docs/permissions.ts';
export { banner, type BannerInput } from './banner.ts';
export { startTracing, type Tracing, type TracingOptions } from './otel.ts';
export { withDemoAdmin, createDemoAdmin, DEMO_ADMIN, DemoAdminError, type DemoAdmin } from './demo-admin.ts';
export { SignalLog, type SignalView, type RevokeView } from './signal-log.ts';
export { startDocsMcp, DOCS_MCP, TOOL_SCOPES, type DocsMcpOptions, type RunningDocsMcp } from './mcp/server.ts';
export { withDocsMcp, docsMcpUri, DOCS_AGENT, DOCS_MCP_APP } from './mcp/registration.ts';
/** baton dev starts the Docs MCP on the port after the three APIs. */
export const MCP_PORT_OFFSET = 3;

/** Tasks Web's default port (its redirect URI in baton.json is http://127.0.0.1:7000/callback; `withWebPort` moves both). */
export const WEB_PORT = 7000;
/** Tasks API, Docs API and Audit API listen on this port and the next two (baton dev: the Docs MCP on the one after). */
export const DEFAULT_API_PORT = 7001;

export interface ChainOptions {
  /** The tenant's authority, e.g. `https://localhost:8443/contoso/v2.0`. */
  authority: string;
  /** The CA (PEM) that signed the token service's certificate, if it is not publicly trusted. */
  ca?: string | undefined;
  /** The token service's exchange decisions (`auditLogOf(server.ctx)`), for the chain view. */
  exchanges?: ExchangeFeed | undefined;
  /** Where the APIs keep their SQLite files (`<dir>/tasks.sqlite` …); in memory when absent. */
  dataDir?: string | undefined;
  /**
   * Ports: `web` (default 7000; the token service must have Tasks Web's redirect URI on it: `withWebPort`),
   * `api` (first of three; default 7001; 0 = any free ports), `mcp` (the Docs MCP, started only with
   * this port: the token service must register its canonical URI on it, `withDocsMcp`).
   */
  ports?: { web?: number | undefined; api?: number | undefined; mcp?: number | undefined } | undefined;
  /**
   * First of three ports on 127.0.0.1 where the Tasks, Docs and Audit APIs serve their SDK
   * metrics at `/metrics` (metrics.ts; 0 = any free ports). Absent: no metrics.
   */
  metricsPort?: number | undefined;
  /** The demo's configuration (default: examples/chain/baton.json). */
  demo?: DemoConfig | undefined;
  /** Start with the anti-pattern switch on. */
  antiPattern?: boolean | undefined;
  /** Milliseconds between indexer runs (default 60 000; 0 = only on demand). */
  indexerIntervalMs?: number | undefined;
  /** First indexer run after this many ms (default 3000; negative = none). */
  indexerFirstRunMs?: number | undefined;
  /** Tasks Web renews the user's access token this long before it expires (default 60 000 ms). */
  refreshMarginMs?: number | undefined;
  log?: LineWriter | undefined;
  /**
   * A trace UI's URL with `{traceId}` (`BATON_TRACE_URL`, e.g. `http://localhost:16686/trace/{traceId}`
   * for Jaeger): the chain view links each hop to its trace there. Absent: the hop shows the trace id.
   */
  traceUrl?: string | undefined;
  /**
   * Continuous access evaluation (docs/cae.md; default on): each API creates its own security event
   * stream at the token service (its application needs `Baton.Signals`, as in baton.json) and polls
   * it; the chain view gets "Revoke Alice's sessions" (the demo admin: the token service needs
   * `withDemoAdmin`) and the events each API received. Off: none of it.
   */
  securityEvents?: boolean | undefined;
}

export interface RunningChain {
  /** `docsMcp`: the MCP server's canonical URI (`http://127.0.0.1:7004/mcp`), when it runs. */
  urls: { web: string; chain: string; tasksApi: string; docsApi: string; auditApi: string; docsMcp?: string | undefined };
  /** The APIs' `/metrics` URLs, with `metricsPort`. */
  metricsUrls?: { tasksApi: string; docsApi: string; auditApi: string } | undefined;
  chain: ChainLog;
  antiPattern: Switch;
  indexer: Indexer;
  demo: DemoConfig;
  /** The security events each API received (absent with `securityEvents: false`). */
  signals?: SignalLog | undefined;
  close(): Promise<void>;
}

/** The configuration as `startServer` takes it, as far as `withWebPort` needs it. */
interface RedirectConfig {
  tenants: ReadonlyArray<{ applications: ReadonlyArray<{ clientId: string; redirectUris: readonly string[] }> }>;
}

/**
 * The token service's configuration with Tasks Web's redirect URIs moved to `port`: a redirect URI
 * must match exactly (RFC 6749 §3.1.2.3, OAuth 2.0 Security BCP), so Tasks Web on another port
 * registers its callback there — what `baton dev --web-port` does. Loopback URIs only; the input is
 * not changed.
 *
 * @example
 * const server = await startServer({ config: withWebPort(await readConfigFile(path), 7100), … });
 * const chain = await startChain({ …, ports: { web: 7100 } });
 */
export function withWebPort<T extends RedirectConfig>(config: T, port: number): T {
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new RangeError(`Tasks Web needs a fixed port (1–65535) for its redirect URI, not ${port}`);
  const move = (uri: string) => {
    const url = new URL(uri);
    if (url.protocol !== 'http:' || url.hostname !== '127.0.0.1') return uri;
    url.port = String(port);
    return url.href;
  };
  return {
    ...config,
    tenants: config.tenants.map((tenant) => ({
      ...tenant,
      applications: tenant.applications.map((app) => (app.clientId === TASKS_WEB ? { ...app, redirectUris: app.redirectUris.map(move) } : app)),
    })),
  };
}

function secretOf(demo: DemoConfig, clientId: string): string {
  const secret = demo.secrets[clientId];
  if (secret === undefined) throw new Error(`no client secret for '${clientId}' in the demo configuration`);
  return secret;
}

/** Whose sessions the chain view's button revokes: the demo's user with a second factor (alice), else its first. */
function revokeTarget(demo: DemoConfig): { username: string; displayName: string } {
  const user = demo.users.find((u) => u.mfa && u.enabled) ?? demo.users[0];
  if (user === undefined) throw new Error('the demo configuration has no user');
  return { username: user.username, displayName: user.displayName };
}

export async function startChain(options: ChainOptions): Promise<RunningChain> {
  const demo = options.demo ?? readDemoConfig(DEFAULT_CONFIG);
  const log = options.log ?? stderrWriter;
  const chain = new ChainLog({ 'tasks-web': 'Tasks Web', ...demo.names });
  if (options.exchanges) chain.attach(options.exchanges);
  const antiPattern: Switch = { enabled: options.antiPattern ?? false };
  const file = (name: string) => (options.dataDir === undefined ? ':memory:' : join(options.dataDir, `${name}.sqlite`));
  const apiPort = options.ports?.api ?? DEFAULT_API_PORT;
  const port = (offset: number) => (apiPort === 0 ? 0 : apiPort + offset);
  const common = { authority: options.authority, ca: options.ca, observer: chain, log };

  const closers: Array<() => Promise<void>> = [];
  const closeAll = async () => {
    for (const close of closers.reverse()) await close().catch(() => {});
    closers.length = 0;
    chain.close();
  };
  try {
    const metricsPort = options.metricsPort;
    const apiMetrics = async (offset: number) => {
      if (metricsPort === undefined) return undefined;
      const served = await serveApiMetrics(metricsPort === 0 ? 0 : metricsPort + offset, log);
      closers.push(served.close);
      return served;
    };
    const [tasksMetrics, docsMetrics, auditMetrics] = [await apiMetrics(1), await apiMetrics(2), await apiMetrics(3)];
    // Each API receives the token service's security events on a stream of its own (polled); the
    // events name the user by her oid (`opaque`), so the chain view shows each user hers.
    const signalLog = options.securityEvents === false ? undefined : new SignalLog();
    const signalsFor = (api: string): ApiSignalsOptions | undefined => (signalLog === undefined ? undefined : { delivery: 'poll', subjectFormat: 'opaque', onEvent: signalLog.receiverFor(api) });
    const audit = await startAuditApi({ ...common, clientSecret: secretOf(demo, 'audit-api'), port: port(2), dataFile: file('audit'), metrics: auditMetrics?.metrics, signals: signalsFor(AUDIT_API) });
    closers.push(audit.close);
    const docs = await startDocsApi({ ...common, clientSecret: secretOf(demo, 'docs-api'), port: port(1), dataFile: file('docs'), auditUrl: audit.url, metrics: docsMetrics?.metrics, signals: signalsFor(DOCS_API) });
    closers.push(docs.close);
    // Docs MCP only on a port given: its canonical URI, registered at the token service (withDocsMcp), names it.
    const mcpPort = options.ports?.mcp;
    const docsMcp = mcpPort === undefined ? undefined : await startDocsMcp({ ...common, clientSecret: DOCS_MCP_APP.secret, port: mcpPort, docsUrl: docs.url, metrics: docsMetrics?.metrics });
    if (docsMcp !== undefined) closers.push(docsMcp.close);
    const tasks = await startTasksApi({ ...common, clientSecret: secretOf(demo, 'tasks-api'), port: port(0), dataFile: file('tasks'), docsUrl: docs.url, antiPattern, metrics: tasksMetrics?.metrics, signals: signalsFor(TASKS_API) });
    closers.push(tasks.close);
    const indexer = startIndexer({
      authority: options.authority,
      ca: options.ca,
      clientSecret: secretOf(demo, 'indexer'),
      docsUrl: docs.url,
      intervalMs: options.indexerIntervalMs ?? 60_000,
      firstRunMs: options.indexerFirstRunMs,
      narrator: chain,
      log,
    });
    closers.push(indexer.close);
    const web = await startTasksWeb({
      authority: options.authority,
      ca: options.ca,
      port: options.ports?.web ?? WEB_PORT,
      tasksApiUrl: tasks.url,
      chain,
      controls: {
        antiPattern,
        indexer,
        auditEntries: () => audit.entries(200),
        revoke: signalLog === undefined ? undefined : { admin: createDemoAdmin({ authority: options.authority, ca: options.ca }), target: revokeTarget(demo), signals: signalLog, receivers: [TASKS_API, DOCS_API, AUDIT_API] },
      },
      chainAdmins: demo.users.filter((u) => u.admin).map((u) => u.username),
      demo: {
        users: demo.users,
        totpSecret: Object.values(demo.totpSecrets)[0],
        totp: (username) => (demo.totpSecrets[username] === undefined ? undefined : totpNow(demo.totpSecrets[username] as string)),
      },
      refreshMarginMs: options.refreshMarginMs,
      traceUrl: options.traceUrl,
      log,
    });
    closers.push(web.close);
    return {
      urls: { web: web.url, chain: `${web.url}/chain`, tasksApi: tasks.url, docsApi: docs.url, auditApi: audit.url, ...(docsMcp === undefined ? {} : { docsMcp: docsMcp.resource }) },
      metricsUrls: tasksMetrics && docsMetrics && auditMetrics ? { tasksApi: tasksMetrics.url, docsApi: docsMetrics.url, auditApi: auditMetrics.url } : undefined,
      chain,
      antiPattern,
      indexer,
      demo,
      signals: signalLog,
      close: closeAll,
    };
  } catch (error) {
    await closeAll();
    throw error;
  }
}

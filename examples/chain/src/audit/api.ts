/**
 * Audit API — the third hop — on Hono. It accepts `Audit.Write` tokens and records who did what:
 * the user (`oid`, name), and the applications that acted for them, read from the `act` chain the
 * token service built (RFC 8693 §4.1): Docs API, on behalf of the Tasks API, on behalf of Tasks Web.
 */
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import { Hono } from 'hono';
import { getRequestListener, type HttpBindings } from '@hono/node-server';
import { createGuard } from '@baton/resource';
import { requireAuth, signalsEndpoint, type AuthVariables } from '@baton/resource/hono';
import type { DatabaseSync } from 'node:sqlite';
import { openDatabase } from '../db.ts';
import { closeServer, errorBody, listen, urlOf, type ApiOptions, type RunningApi } from '../common.ts';
import { exampleLogger } from '../log.ts';
import { hopOf, trackHop } from '../observe.ts';
import { apiSignals, PUSH_PATH } from '../signals.ts';

export const AUDIT_API = 'audit-api';

export interface AuditEntry {
  id: string;
  time: string;
  tid: string;
  /** The user the change was made for. */
  oid: string;
  user: string;
  /** The application that called the Audit API (`azp`). */
  client: string;
  /** The applications that acted for the user, most recent first (from `act`: the caller, then the APIs before it). */
  via: string[];
  action: string;
  target: string;
  title: string;
  details: string | undefined;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS entries (
  id TEXT PRIMARY KEY, time TEXT NOT NULL, tid TEXT NOT NULL, oid TEXT NOT NULL, user TEXT NOT NULL,
  client TEXT NOT NULL, via TEXT NOT NULL, action TEXT NOT NULL, target TEXT NOT NULL, title TEXT NOT NULL, details TEXT
);
`;

function entries(db: DatabaseSync, limit: number): AuditEntry[] {
  const rows = db.prepare('SELECT * FROM entries ORDER BY time DESC LIMIT ?').all(limit) as Array<Record<string, string | null>>;
  return rows.map((r) => ({
    id: r.id as string,
    time: r.time as string,
    tid: r.tid as string,
    oid: r.oid as string,
    user: r.user as string,
    client: r.client as string,
    via: JSON.parse(r.via as string) as string[],
    action: r.action as string,
    target: r.target as string,
    title: r.title as string,
    details: r.details ?? undefined,
  }));
}

const clip = (value: unknown, max: number): string | undefined => (typeof value === 'string' && value.trim() !== '' ? value.trim().slice(0, max) : undefined);

export async function startAuditApi(options: ApiOptions): Promise<RunningApi & { entries(limit?: number): AuditEntry[] }> {
  const log = exampleLogger('audit-api', options.log);
  const db = openDatabase(options.dataFile ?? ':memory:', SCHEMA);
  // Continuous access evaluation (optional): security events for the guard (this API makes no OBO calls).
  const cae = options.signals === undefined ? undefined : await apiSignals(options.signals, { authority: options.authority, ca: options.ca, clientId: AUDIT_API, clientSecret: options.clientSecret, log });
  const guard = createGuard({
    ...(cae === undefined ? {} : { signals: cae.signals }),
    authority: options.authority,
    audience: [AUDIT_API, 'api://audit'],
    ...(options.ca === undefined ? {} : { ca: options.ca }),
    onError: (e) => log.warn('token issuer unreachable', { cause: e.message }),
    metrics: options.metrics,
  });

  const app = new Hono<{ Bindings: HttpBindings; Variables: AuthVariables }>();
  // The RFC 8935 push endpoint, before the chain view's middleware: a push is not a user's hop.
  if (cae?.delivery === 'push') app.post(PUSH_PATH, signalsEndpoint(cae.signals));
  app.use('*', async (c, next) => {
    trackHop(options.observer, AUDIT_API, c.env.incoming, c.env.outgoing);
    await next();
  });

  app.post('/entries', requireAuth(guard, { scopes: { all: ['Audit.Write'] } }), async (c) => {
    const principal = c.get('auth');
    hopOf(c.env.incoming).principal = principal;
    let body: Record<string, unknown>;
    try {
      body = (await c.req.json()) as Record<string, unknown>;
    } catch {
      return c.json(errorBody('invalid_request', 'The body must be JSON.'), 400);
    }
    const action = clip(body.action, 64);
    const target = clip(body.target, 200);
    if (action === undefined || target === undefined) return c.json(errorBody('invalid_request', "An entry needs 'action' and 'target'."), 400);
    const { name, preferred_username: username } = principal.claims;
    const entry: AuditEntry = {
      id: randomUUID(),
      time: new Date().toISOString(),
      tid: principal.tenantId ?? '',
      oid: principal.userId,
      user: typeof name === 'string' ? name : typeof username === 'string' ? username : principal.userId,
      client: principal.clientId ?? '?',
      via: principal.chain.map((a) => a.client_id ?? a.sub),
      action,
      target,
      title: clip(body.title, 200) ?? '',
      details: clip(body.details, 500),
    };
    db.prepare('INSERT INTO entries (id, time, tid, oid, user, client, via, action, target, title, details) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)').run(
      entry.id,
      entry.time,
      entry.tid,
      entry.oid,
      entry.user,
      entry.client,
      JSON.stringify(entry.via),
      entry.action,
      entry.target,
      entry.title,
      entry.details ?? null,
    );
    hopOf(c.env.incoming).reason = `recorded "${action}" for ${entry.user}; acted: ${entry.via.length > 0 ? entry.via.join(' ← ') : entry.client}`;
    return c.json({ id: entry.id }, 201);
  });

  app.notFound((c) => c.json(errorBody('not_found', 'No such endpoint.'), 404));
  app.onError((error, c) => {
    log.error('request failed', { cause: error.message });
    return c.json(errorBody('server_error', 'The Audit API failed.'), 500);
  });

  const server = createServer(getRequestListener(app.fetch, { overrideGlobalObjects: false }));
  await listen(server, options.port ?? 0, options.host ?? '127.0.0.1', 'Audit API');
  await cae?.start(urlOf(server));
  return {
    url: urlOf(server),
    entries: (limit = 50) => entries(db, limit),
    async close() {
      await cae?.close();
      await closeServer(server);
      db.close();
    },
  };
}

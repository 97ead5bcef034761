/**
 * Tasks API — the seed's *Original API* — on Express.
 *
 * It accepts the user's token from Tasks Web (`Tasks.ReadWrite`), keeps the user's tasks, and for
 * anything about documents calls the Docs API **on behalf of the user**: `createDownstream` trades
 * the token it received for one addressed to the Docs API (On-Behalf-Of), with only the scope the
 * operation needs — `Docs.Read` to read, `Docs.Write` to change (which the tenant's policy guards
 * with MFA, so the first attach asks the user to step up).
 *
 * The anti-pattern switch (`antiPattern.enabled`) makes it do what the seed warns against: use its
 * own application identity for a user's request. The SDK refuses (`ConfusedDeputyError`).
 */
import { generateKeyPairSync } from 'node:crypto';
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import express, { type Request, type Response as ExpressResponse } from 'express';
import { ClaimsChallengeError, ConfusedDeputyError, createDownstream, createGuard, createOboClient, OboError } from '@baton/resource';
import { authErrorHandler, getAuth, requireAuth, signalsEndpoint } from '@baton/resource/express';
import type { DatabaseSync } from 'node:sqlite';
import { openDatabase } from '../db.ts';
import { closeServer, errorBody, listen, urlOf, type ApiOptions, type RunningApi } from '../common.ts';
import { exampleLogger } from '../log.ts';
import { hopOf, trackHop } from '../observe.ts';
import { apiSignals, PUSH_PATH } from '../signals.ts';

export const TASKS_API = 'tasks-api';
const MAX_TITLE = 200;

/** A switch flipped at run time (the chain view's toggle). */
export interface Switch {
  enabled: boolean;
}

export interface TasksApiOptions extends ApiOptions {
  /** Where the Docs API lives. */
  docsUrl: string;
  /** When on, document calls use the Tasks API's own identity: the confused deputy. */
  antiPattern?: Switch | undefined;
}

export interface Task {
  id: string;
  title: string;
  done: boolean;
  createdAt: string;
  documents: Array<{ id: string; title: string }>;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS tasks (
  id TEXT PRIMARY KEY, tid TEXT NOT NULL, owner_oid TEXT NOT NULL, title TEXT NOT NULL,
  done INTEGER NOT NULL DEFAULT 0, created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tasks_owner ON tasks (tid, owner_oid);
CREATE TABLE IF NOT EXISTS attachments (
  task_id TEXT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE, doc_id TEXT NOT NULL, title TEXT NOT NULL,
  created_at TEXT NOT NULL, PRIMARY KEY (task_id, doc_id)
);
`;

type Row = Record<string, string | number>;

class TaskStore {
  readonly #db: DatabaseSync;
  constructor(db: DatabaseSync) {
    this.#db = db;
  }
  list(tid: string, oid: string): Task[] {
    const tasks = this.#db.prepare('SELECT * FROM tasks WHERE tid = ? AND owner_oid = ? ORDER BY done, created_at DESC LIMIT 500').all(tid, oid) as Row[];
    const docs = this.#db.prepare('SELECT * FROM attachments WHERE task_id = ? ORDER BY created_at');
    return tasks.map((t) => ({
      id: t.id as string,
      title: t.title as string,
      done: t.done === 1,
      createdAt: t.created_at as string,
      documents: (docs.all(t.id as string) as Row[]).map((d) => ({ id: d.doc_id as string, title: d.title as string })),
    }));
  }
  /** The task if it is this user's. */
  owned(tid: string, oid: string, id: string): Task | undefined {
    return this.list(tid, oid).find((t) => t.id === id);
  }
  create(tid: string, oid: string, title: string): Task {
    const task = { id: randomUUID(), title, done: false, createdAt: new Date().toISOString(), documents: [] };
    this.#db.prepare('INSERT INTO tasks (id, tid, owner_oid, title, done, created_at) VALUES (?, ?, ?, ?, 0, ?)').run(task.id, tid, oid, title, task.createdAt);
    return task;
  }
  update(id: string, change: { title?: string | undefined; done?: boolean | undefined }): void {
    if (change.title !== undefined) this.#db.prepare('UPDATE tasks SET title = ? WHERE id = ?').run(change.title, id);
    if (change.done !== undefined) this.#db.prepare('UPDATE tasks SET done = ? WHERE id = ?').run(change.done ? 1 : 0, id);
  }
  remove(id: string): void {
    this.#db.prepare('DELETE FROM tasks WHERE id = ?').run(id);
  }
  attach(taskId: string, doc: { id: string; title: string }): void {
    this.#db.prepare('INSERT OR IGNORE INTO attachments (task_id, doc_id, title, created_at) VALUES (?, ?, ?, ?)').run(taskId, doc.id, doc.title, new Date().toISOString());
  }
  close(): void {
    this.#db.close();
  }
}

function title(value: unknown): string | undefined {
  if (typeof value !== 'string') return undefined;
  const t = value.trim();
  return t === '' || t.length > MAX_TITLE ? undefined : t;
}

/**
 * The answer to a request the Tasks API refused to serve with its own application identity
 * (RFC 9457 problem details). `error` repeats the code the demo's other answers carry.
 */
export const CONFUSED_DEPUTY_PROBLEM = {
  type: 'tag:baton.dev,2026:problems/confused-deputy',
  title: 'Refused to act without you',
  status: 403,
  detail: 'The Tasks API tried to reach your documents under its own name instead of yours, and refused to go on: the Docs API could no longer tell that it is you asking. Nothing was read or changed.',
  error: 'confused_deputy',
} as const;

/** Sends the Docs API's answer on, as JSON. */
async function relay(res: ExpressResponse, upstream: Response): Promise<void> {
  const body = await upstream.text();
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    json = errorBody('bad_gateway', `The Docs API answered ${upstream.status}.`);
  }
  res.status(upstream.ok ? upstream.status : upstream.status >= 500 ? 502 : upstream.status).json(json);
}

export async function startTasksApi(options: TasksApiOptions): Promise<RunningApi> {
  const log = exampleLogger('tasks-api', options.log);
  const store = new TaskStore(openDatabase(options.dataFile ?? ':memory:', SCHEMA));
  const antiPattern = options.antiPattern ?? { enabled: false };
  const tls = options.ca === undefined ? {} : { ca: options.ca };

  // Continuous access evaluation (optional): security events for the guard and the OBO cache.
  const cae = options.signals === undefined ? undefined : await apiSignals(options.signals, { authority: options.authority, ca: options.ca, clientId: TASKS_API, clientSecret: options.clientSecret, log });
  const signals = cae === undefined ? {} : { signals: cae.signals };
  const guard = createGuard({ authority: options.authority, audience: [TASKS_API, 'api://tasks'], ...tls, onError: (e) => log.warn('token issuer unreachable', { cause: e.message }), metrics: options.metrics, ...signals });
  // This API's own DPoP key (RFC 9449): the tokens it gets On-Behalf-Of are bound to it, and its
  // downstream calls prove it — a hop token copied from here is worthless elsewhere.
  const obo = createOboClient({ authority: options.authority, clientId: TASKS_API, credential: { clientSecret: options.clientSecret }, ...tls, logger: log, metrics: options.metrics, dpop: { key: options.dpopKey ?? generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey }, ...signals, ...(options.oboCache === undefined ? {} : { cache: options.oboCache }) });
  // One downstream per need: reading asks only for Docs.Read, changing only for Docs.Write.
  const docsRead = createDownstream({ obo, scopes: ['api://docs/Docs.Read'], baseUrl: options.docsUrl, metrics: options.metrics });
  const docsWrite = createDownstream({ obo, scopes: ['api://docs/Docs.Write'], baseUrl: options.docsUrl, metrics: options.metrics });

  /**
   * ✗ THE ANTI-PATTERN, on purpose (the chain view's switch): serve a user's request with the Tasks
   * API's *own* application permissions. The Docs API would then see the Tasks API, not the user,
   * and the Tasks API alone would decide which user sees which document — the confused deputy.
   * `appToken()` knows it runs inside a user's request and throws `ConfusedDeputyError`.
   */
  async function docsAsApplication(path: string, init: RequestInit = {}): Promise<Response> {
    const { accessToken, tokenType } = await obo.appToken(['api://docs/.default']);
    const headers = new Headers(init.headers);
    const url = new URL(path, options.docsUrl);
    headers.set('authorization', `${tokenType} ${accessToken}`);
    if (tokenType === 'DPoP' && obo.dpop) headers.set('dpop', obo.dpop.prove(init.method ?? 'GET', url.href, { accessToken }));
    return fetch(url, { ...init, headers });
  }

  /** A call to the Docs API for the user of this request; `undefined` if the answer was already sent. */
  async function docs(req: Request, res: ExpressResponse, need: 'read' | 'write', path: string, init: RequestInit = {}): Promise<Response | undefined> {
    const hop = hopOf(req);
    try {
      if (antiPattern.enabled) return await docsAsApplication(path, init);
      return await (need === 'read' ? docsRead : docsWrite)().fetch(path, init);
    } catch (error) {
      if (error instanceof ConfusedDeputyError) {
        hop.refusals.push({ to: 'docs-api', by: 'sdk', rule: 'confused-deputy (ConfusedDeputyError)', description: error.message, as: 'app' });
        hop.reason = 'the Tasks API tried to act as itself for a user; the SDK refused';
        // A deliberate refusal, not a failure: RFC 9457 problem details for the caller, in words for
        // the person using the app. The developer's explanation (error.message) goes to the log and
        // the chain view only.
        log.warn('refused to call the Docs API with the Tasks API\'s own identity inside a user\'s request (confused deputy)', { cause: error.message });
        res.status(403).type('application/problem+json').json(CONFUSED_DEPUTY_PROBLEM);
        return undefined;
      }
      if (error instanceof ClaimsChallengeError) {
        hop.reason = 'the Docs API needs a stronger sign-in: the claims challenge goes back to Tasks Web';
        throw error; // authErrorHandler answers 401 insufficient_claims with the challenge
      }
      if (error instanceof OboError) {
        hop.reason = `the token service refused the exchange: ${error.error}`;
        res.status(502).json(errorBody(error.error, `The Docs API could not be called for you: ${error.description}`));
        return undefined;
      }
      throw error;
    }
  }

  const app = express();
  app.disable('x-powered-by');
  // The RFC 8935 push endpoint: before the chain view and the user guard (the transmitter authenticates with the stream's authorization header).
  if (cae?.delivery === 'push') app.post(PUSH_PATH, signalsEndpoint(cae.signals));
  app.use((req, res, next) => {
    trackHop(options.observer, TASKS_API, req, res);
    next();
  });
  // Body parser before requireAuth (see the adapter's notes on request context).
  app.use(express.json({ limit: '64kb' }));
  const auth = requireAuth(guard, { scopes: { all: ['Tasks.ReadWrite'] } });
  app.use((req, res, next) => {
    auth(req, res, (error?: unknown) => {
      if (error === undefined) hopOf(req).principal = getAuth(req);
      next(error);
    });
  });

  const who = (req: Request) => {
    const p = getAuth(req);
    return { tid: p.tenantId ?? '', oid: p.userId };
  };

  app.get('/tasks', (req, res) => {
    const { tid, oid } = who(req);
    res.json({ tasks: store.list(tid, oid) });
  });

  app.post('/tasks', (req, res) => {
    const t = title(req.body?.title);
    if (t === undefined) return void res.status(400).json(errorBody('invalid_request', `A task needs a title of 1–${MAX_TITLE} characters.`));
    const { tid, oid } = who(req);
    res.status(201).json(store.create(tid, oid, t));
  });

  app.patch('/tasks/:id', (req, res) => {
    const { tid, oid } = who(req);
    const task = store.owned(tid, oid, req.params.id);
    if (task === undefined) return void res.status(404).json(errorBody('not_found', 'No such task.'));
    const change = { title: req.body?.title === undefined ? undefined : title(req.body.title), done: typeof req.body?.done === 'boolean' ? (req.body.done as boolean) : undefined };
    if (req.body?.title !== undefined && change.title === undefined) return void res.status(400).json(errorBody('invalid_request', 'Invalid title.'));
    store.update(task.id, change);
    res.json(store.owned(tid, oid, task.id));
  });

  app.delete('/tasks/:id', (req, res) => {
    const { tid, oid } = who(req);
    const task = store.owned(tid, oid, req.params.id);
    if (task === undefined) return void res.status(404).json(errorBody('not_found', 'No such task.'));
    store.remove(task.id);
    res.status(204).end();
  });

  // Attach a new document: created in the Docs API, in the user's name (Docs.Write → MFA policy).
  app.post('/tasks/:id/documents', async (req, res) => {
    const { tid, oid } = who(req);
    const task = store.owned(tid, oid, req.params.id);
    if (task === undefined) return void res.status(404).json(errorBody('not_found', 'No such task.'));
    const upstream = await docs(req, res, 'write', '/documents', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ title: req.body?.title, content: req.body?.content }),
    });
    if (upstream === undefined) return;
    if (!upstream.ok) return relay(res, upstream);
    const doc = (await upstream.json()) as { id: string; title: string };
    store.attach(task.id, { id: doc.id, title: doc.title });
    res.status(201).json(doc);
  });

  app.get('/documents', async (req, res) => {
    const upstream = await docs(req, res, 'read', '/documents');
    if (upstream !== undefined) await relay(res, upstream);
  });

  app.get('/documents/:id', async (req, res) => {
    const upstream = await docs(req, res, 'read', `/documents/${encodeURIComponent(req.params.id)}`);
    if (upstream !== undefined) await relay(res, upstream);
  });

  app.post('/documents/:id/shares', async (req, res) => {
    const upstream = await docs(req, res, 'write', `/documents/${encodeURIComponent(req.params.id)}/shares`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: req.body?.username, access: req.body?.access }),
    });
    if (upstream !== undefined) await relay(res, upstream);
  });

  app.use((req, res) => {
    hopOf(req).reason = 'no such endpoint';
    res.status(404).json(errorBody('not_found', 'No such endpoint.'));
  });
  // Claims challenges from the downstream call become the 401 Tasks Web acts on.
  app.use(authErrorHandler());
  app.use((error: unknown, req: Request, res: ExpressResponse, _next: (e?: unknown) => void) => {
    const status = (error as { status?: number }).status;
    if (typeof status === 'number' && status >= 400 && status < 500) {
      hopOf(req).reason = (error as Error).message;
      return void res.status(status).json(errorBody('invalid_request', 'The request could not be read.'));
    }
    log.error('request failed', { path: req.path, cause: (error as Error).message });
    hopOf(req).reason = 'internal error';
    if (!res.headersSent) res.status(500).json(errorBody('server_error', 'The Tasks API failed.'));
  });

  const server = createServer(app);
  await listen(server, options.port ?? 0, options.host ?? '127.0.0.1', 'Tasks API');
  await cae?.start(urlOf(server));
  return {
    url: urlOf(server),
    async close() {
      await cae?.close();
      await closeServer(server);
      await obo.close();
      store.close();
    },
  };
}

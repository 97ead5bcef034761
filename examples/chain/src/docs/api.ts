/**
 * Docs API — the seed's *Downstream API* — on Fastify.
 *
 * - Delegated routes: the guard demands `Docs.Read` or `Docs.Write` (the SDK refuses app-only tokens
 *   on them by default). What the caller gets is the user's own access ∩ the delegated scope
 *   (`permissions.ts`), so it does not matter which application forwarded the request.
 * - Each change is recorded at the Audit API *on behalf of the same user*: a third hop, with a token
 *   obtained On-Behalf-Of by the Docs API (`act` now names the Tasks API and the Docs API).
 * - One app-only route, `/index/documents`, for applications holding the application permission
 *   `Docs.ReadAll` (the indexer). It is the only route an app-only token reaches.
 */
import { generateKeyPairSync } from 'node:crypto';
import { randomUUID } from 'node:crypto';
import Fastify, { type FastifyReply, type FastifyRequest } from 'fastify';
import { createDownstream, createGuard, createOboClient, ClaimsChallengeError, OboError, type Principal } from '@baton/resource';
import { batonAuth, requireAuth, signalsRoute } from '@baton/resource/fastify';
import type { DatabaseSync } from 'node:sqlite';
import { openDatabase } from '../db.ts';
import { errorBody, listenError, type ApiOptions, type RunningApi } from '../common.ts';
import { exampleLogger } from '../log.ts';
import { hopOf, trackHop } from '../observe.ts';
import { apiSignals, PUSH_PATH } from '../signals.ts';
import { effectiveAccess, explain, type Access, type Share } from './permissions.ts';

export const DOCS_API = 'docs-api';
const MAX_TITLE = 200;
const MAX_CONTENT = 20_000;

export interface DocsApiOptions extends ApiOptions {
  /** Where the Audit API lives. */
  auditUrl: string;
}

export interface DocumentRecord {
  id: string;
  tid: string;
  ownerOid: string;
  ownerName: string;
  title: string;
  content: string;
  createdAt: string;
  updatedAt: string;
  shares: Share[];
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS documents (
  id TEXT PRIMARY KEY, tid TEXT NOT NULL, owner_oid TEXT NOT NULL, owner_name TEXT NOT NULL,
  title TEXT NOT NULL, content TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS documents_owner ON documents (tid, owner_oid);
CREATE TABLE IF NOT EXISTS shares (
  doc_id TEXT NOT NULL REFERENCES documents (id) ON DELETE CASCADE, username TEXT NOT NULL,
  access TEXT NOT NULL CHECK (access IN ('read', 'write')), PRIMARY KEY (doc_id, username)
);
CREATE INDEX IF NOT EXISTS shares_user ON shares (username);
`;

type Row = Record<string, string>;

class DocumentStore {
  readonly #db: DatabaseSync;
  constructor(db: DatabaseSync) {
    this.#db = db;
  }
  #shares(id: string): Share[] {
    return (this.#db.prepare('SELECT username, access FROM shares WHERE doc_id = ? ORDER BY username').all(id) as Row[]).map((r) => ({ username: r.username as string, access: r.access as Access }));
  }
  #doc(r: Row): DocumentRecord {
    return {
      id: r.id as string,
      tid: r.tid as string,
      ownerOid: r.owner_oid as string,
      ownerName: r.owner_name as string,
      title: r.title as string,
      content: r.content as string,
      createdAt: r.created_at as string,
      updatedAt: r.updated_at as string,
      shares: this.#shares(r.id as string),
    };
  }
  get(id: string): DocumentRecord | undefined {
    const row = this.#db.prepare('SELECT * FROM documents WHERE id = ?').get(id) as Row | undefined;
    return row === undefined ? undefined : this.#doc(row);
  }
  /** Documents the user owns or that are shared with them, in one tenant. */
  visibleTo(tid: string, oid: string, username: string | undefined): DocumentRecord[] {
    const rows = this.#db
      .prepare(
        `SELECT DISTINCT d.* FROM documents d LEFT JOIN shares s ON s.doc_id = d.id
         WHERE d.tid = ? AND (d.owner_oid = ? OR s.username = ?) ORDER BY d.created_at DESC LIMIT 200`,
      )
      .all(tid, oid, username?.toLowerCase() ?? '') as Row[];
    return rows.map((r) => this.#doc(r));
  }
  all(): DocumentRecord[] {
    return (this.#db.prepare('SELECT * FROM documents ORDER BY created_at DESC LIMIT 1000').all() as Row[]).map((r) => this.#doc(r));
  }
  create(doc: Omit<DocumentRecord, 'shares'>): void {
    this.#db
      .prepare('INSERT INTO documents (id, tid, owner_oid, owner_name, title, content, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)')
      .run(doc.id, doc.tid, doc.ownerOid, doc.ownerName, doc.title, doc.content, doc.createdAt, doc.updatedAt);
  }
  share(id: string, share: Share): void {
    this.#db.prepare('INSERT INTO shares (doc_id, username, access) VALUES (?, ?, ?) ON CONFLICT (doc_id, username) DO UPDATE SET access = excluded.access').run(id, share.username, share.access);
  }
  close(): void {
    this.#db.close();
  }
}

/** The caller as the permission rule sees it. */
function callerOf(principal: Principal) {
  const username = principal.claims.preferred_username;
  return { tid: principal.tenantId, oid: principal.userId, username: typeof username === 'string' ? username : undefined, scopes: principal.scopes };
}

function nameOf(principal: Principal): string {
  const { name, preferred_username: username } = principal.claims;
  return typeof name === 'string' ? name : typeof username === 'string' ? username : principal.userId;
}

/**
 * What a caller sees of a document: everything but the owner's id. `access` is what this request's
 * token allows (user ∩ scope); `yours` says whether the caller owns it (sharing is the owner's).
 */
function publicView(doc: DocumentRecord, access: { read: boolean; write: boolean }, withContent: boolean, callerOid?: string) {
  return {
    id: doc.id,
    title: doc.title,
    owner: doc.ownerName,
    yours: callerOid !== undefined && callerOid === doc.ownerOid,
    createdAt: doc.createdAt,
    updatedAt: doc.updatedAt,
    shares: doc.shares,
    access: [access.read ? 'read' : '', access.write ? 'write' : ''].filter(Boolean),
    ...(withContent ? { content: doc.content } : {}),
  };
}

function text(value: unknown, max: number): string | undefined {
  if (typeof value !== 'string') return undefined;
  const trimmed = value.trim();
  return trimmed === '' || trimmed.length > max ? undefined : trimmed;
}

export async function startDocsApi(options: DocsApiOptions): Promise<RunningApi & { documents(): DocumentRecord[] }> {
  const log = exampleLogger('docs-api', options.log);
  const store = new DocumentStore(openDatabase(options.dataFile ?? ':memory:', SCHEMA));
  const tls = options.ca === undefined ? {} : { ca: options.ca };

  // The guard: tokens addressed to this API (its client id or identifier URI), from this tenant's issuer.
  // Continuous access evaluation (optional): security events for the guard and the OBO cache.
  const cae = options.signals === undefined ? undefined : await apiSignals(options.signals, { authority: options.authority, ca: options.ca, clientId: DOCS_API, clientSecret: options.clientSecret, log });
  const signals = cae === undefined ? {} : { signals: cae.signals };
  const guard = createGuard({ authority: options.authority, audience: [DOCS_API, 'api://docs'], ...tls, onError: (e) => log.warn('token issuer unreachable', { cause: e.message }), metrics: options.metrics, ...signals });
  // The On-Behalf-Of client for the third hop, and the one downstream API it calls.
  // This API's own DPoP key (RFC 9449): the tokens it gets On-Behalf-Of are bound to it, and its
  // downstream calls prove it — a hop token copied from here is worthless elsewhere.
  const obo = createOboClient({ authority: options.authority, clientId: DOCS_API, credential: { clientSecret: options.clientSecret }, ...tls, logger: log, metrics: options.metrics, dpop: { key: options.dpopKey ?? generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey }, ...signals, ...(options.oboCache === undefined ? {} : { cache: options.oboCache }) });
  const auditApi = createDownstream({ obo, scopes: ['api://audit/Audit.Write'], baseUrl: options.auditUrl, metrics: options.metrics });

  /** Records a change at the Audit API, in the user's name (OBO). Throws if it cannot be recorded. */
  async function recordChange(action: string, doc: { id: string; title: string }, details?: string): Promise<void> {
    const res = await auditApi().fetch('/entries', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ action, target: `document/${doc.id}`, title: doc.title, ...(details ? { details } : {}) }),
    });
    if (!res.ok) throw new Error(`the Audit API answered ${res.status}`);
    await res.body?.cancel();
  }

  const app = Fastify({ logger: false, bodyLimit: 64 * 1024 });
  // Chain view instrumentation first, so refusals by the guard are reported too.
  app.addHook('onRequest', (request, reply, done) => {
    // A push of security events is the token service's, not a hop of a user's request.
    if (cae?.delivery !== 'push' || request.url !== PUSH_PATH) trackHop(options.observer, DOCS_API, request.raw, reply.raw);
    done();
  });
  await app.register(batonAuth, { guard });
  // The RFC 8935 push endpoint (the transmitter authenticates with the stream's authorization header).
  if (cae?.delivery === 'push') await app.register(signalsRoute, { signals: cae.signals, path: PUSH_PATH });
  app.addHook('preHandler', (request, _reply, done) => {
    if (request.auth) hopOf(request.raw).principal = request.auth;
    done();
  });

  const refuse = (request: FastifyRequest, reply: FastifyReply, status: number, error: string, description: string, reason: string) => {
    hopOf(request.raw).reason = reason;
    return reply.code(status).send(errorBody(error, description));
  };

  /** A change must be recorded at the Audit API; when that fails the change is not made. */
  const audited = async (request: FastifyRequest, reply: FastifyReply, change: () => Promise<void>) => {
    try {
      await change();
      return true;
    } catch (error) {
      if (error instanceof ClaimsChallengeError) throw error; // handed back to the caller as a 401 challenge
      const why = error instanceof OboError ? `${error.error}: ${error.description}` : (error as Error).message;
      log.warn('could not record the change at the Audit API', { cause: why });
      refuse(request, reply, 502, 'audit_unavailable', 'The change was not made: it could not be recorded at the Audit API.', `Audit API: ${why}`);
      return false;
    }
  };

  const read = requireAuth(guard, { scopes: { any: ['Docs.Read'] } });
  const write = requireAuth(guard, { scopes: { any: ['Docs.Write'] } });

  app.get<{ Querystring: { q?: unknown } }>('/documents', { onRequest: read }, async (request) => {
    const caller = callerOf(request.auth as Principal);
    // `q`: a case-insensitive search in the titles and contents the caller may read (Docs MCP's search_documents).
    const q = typeof request.query.q === 'string' ? request.query.q.trim().toLowerCase().slice(0, 200) : '';
    const docs = store
      .visibleTo(caller.tid ?? '', caller.oid, caller.username)
      .filter((d) => q === '' || ((d.title.toLowerCase().includes(q) || d.content.toLowerCase().includes(q)) && effectiveAccess(d, caller).read));
    return { documents: docs.map((d) => publicView(d, effectiveAccess(d, caller), false, caller.oid)) };
  });

  app.get<{ Params: { id: string } }>('/documents/:id', { onRequest: read }, async (request, reply) => {
    const principal = request.auth as Principal;
    const doc = store.get(request.params.id);
    const caller = callerOf(principal);
    if (doc === undefined) return refuse(request, reply, 404, 'not_found', 'No such document, or it is not shared with you.', 'no such document');
    const effective = effectiveAccess(doc, caller);
    // Not found rather than forbidden: a document you may not read is one you cannot know exists.
    // The reason (shown in the caller's own chain view) names neither its title nor its owner, for the same reason.
    if (!effective.read) return refuse(request, reply, 404, 'not_found', 'No such document, or it is not shared with you.', `${nameOf(principal)} may not read document ${doc.id.slice(0, 8)}…: ${explain(effective)}`);
    hopOf(request.raw).reason = explain(effective);
    return publicView(doc, effective, true, caller.oid);
  });

  app.post<{ Body: { title?: unknown; content?: unknown } }>('/documents', { onRequest: write }, async (request, reply) => {
    const principal = request.auth as Principal;
    const title = text(request.body?.title, MAX_TITLE);
    const content = typeof request.body?.content === 'string' && request.body.content.length <= MAX_CONTENT ? request.body.content : undefined;
    if (title === undefined || content === undefined) {
      return refuse(request, reply, 400, 'invalid_request', `A document needs a title (1–${MAX_TITLE} characters) and content (at most ${MAX_CONTENT}).`, 'invalid document');
    }
    const now = new Date().toISOString();
    const doc = { id: randomUUID(), tid: principal.tenantId ?? '', ownerOid: principal.userId, ownerName: nameOf(principal), title, content, createdAt: now, updatedAt: now };
    // Recorded first: no change without its audit entry.
    if (!(await audited(request, reply, () => recordChange('document.create', doc)))) return reply;
    store.create(doc);
    return reply.code(201).send(publicView({ ...doc, shares: [] }, { read: false, write: true }, false, principal.userId));
  });

  app.post<{ Params: { id: string }; Body: { username?: unknown; access?: unknown } }>('/documents/:id/shares', { onRequest: write }, async (request, reply) => {
    const principal = request.auth as Principal;
    const doc = store.get(request.params.id);
    const caller = callerOf(principal);
    const effective = doc === undefined ? undefined : effectiveAccess(doc, caller);
    if (doc === undefined || effective === undefined || !(effective.user.includes('read') || effective.write)) {
      return refuse(request, reply, 404, 'not_found', 'No such document, or it is not shared with you.', 'no such document visible to the caller');
    }
    // Sharing is the owner's decision (and the token must allow writing).
    if (doc.ownerOid !== caller.oid || !effective.write) {
      return refuse(request, reply, 403, 'forbidden', 'Only the owner can share this document.', `only the owner shares: ${explain(effective)}`);
    }
    const username = text(request.body?.username, 256)?.toLowerCase();
    const access = request.body?.access === 'write' ? 'write' : request.body?.access === 'read' ? 'read' : undefined;
    if (username === undefined || !username.includes('@') || access === undefined) {
      return refuse(request, reply, 400, 'invalid_request', "Share with a username (name@domain) and access 'read' or 'write'.", 'invalid share');
    }
    if (!(await audited(request, reply, () => recordChange('document.share', doc, `${username}: ${access}`)))) return reply;
    store.share(doc.id, { username, access });
    return publicView(store.get(doc.id) as DocumentRecord, effective, false, caller.oid);
  });

  // The legitimate app-only case: an application holding the application permission Docs.ReadAll
  // (the indexer) reads every document — on this route only. Delegated tokens are refused here.
  app.get('/index/documents', { onRequest: requireAuth(guard, { roles: { any: ['Docs.ReadAll'] }, allowAppOnly: true }) }, async () => {
    return { documents: store.all().map((d) => ({ id: d.id, tid: d.tid, title: d.title, content: d.content, updatedAt: d.updatedAt })) };
  });

  app.setErrorHandler((error, request, reply) => {
    // GuardErrors (a claims challenge from the Audit API hop) carry their status and headers.
    const e = error as { status?: number; statusCode?: number; headers?: Record<string, string>; toJSON?: () => unknown };
    if (error instanceof ClaimsChallengeError) {
      hopOf(request.raw).reason = 'step-up needed further down the chain: the claims challenge goes back to the caller';
      return reply.code(error.status).headers(error.headers).send(error.toJSON());
    }
    const status = e.statusCode ?? 500;
    if (status >= 500) log.error('request failed', { path: request.url.split('?')[0], cause: (error as Error).message });
    hopOf(request.raw).reason ??= status >= 500 ? 'internal error' : (error as Error).message;
    return reply.code(status).send(errorBody(status >= 500 ? 'server_error' : 'invalid_request', status >= 500 ? 'The Docs API failed.' : (error as Error).message));
  });

  await app.listen({ port: options.port ?? 0, host: options.host ?? '127.0.0.1' }).catch((error: NodeJS.ErrnoException) => {
    throw listenError(error, 'Docs API', options.port, options.host ?? '127.0.0.1');
  });
  const address = app.server.address();
  const url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  await cae?.start(url);
  return {
    url,
    documents: () => store.all(),
    async close() {
      await cae?.close();
      await app.close();
      await obo.close();
      store.close();
    },
  };
}

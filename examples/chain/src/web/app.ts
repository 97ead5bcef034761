/**
 * Tasks Web — the seed's *Client App* — a server-side web app on Hono.
 *
 * - Sign-in: authorization code + PKCE through Baton (openid-client), tokens kept server-side.
 * - Every page calls the Tasks API with the user's access token (`api://tasks/Tasks.ReadWrite`).
 * - A `401` with `error="insufficient_claims"` from the Tasks API (the Docs API's MFA policy,
 *   surfaced through the On-Behalf-Of exchange) sends the user back to Baton's authorize endpoint
 *   with those `claims`; after the step-up, the action the user asked for is retried.
 * - `/chain`: the chain view (a local development tool), fed by Server-Sent Events.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { Hono, type Context } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { getCookie, setCookie, deleteCookie } from 'hono/cookie';
import { streamSSE } from 'hono/streaming';
import { getRequestListener, type HttpBindings } from '@hono/node-server';
import { bearerChallengeOf, decodeClaimsChallenge } from '@baton/resource';
import { canSee, type ChainLog, type ChainViewer, type RequestView } from '../chain-log.ts';
import { closeServer, listen } from '../common.ts';
import { exampleLogger, type LineWriter } from '../log.ts';
import { newTrace } from '../trace.ts';
import type { Switch, Task } from '../tasks/api.ts';
import type { IndexStatus } from '../indexer/job.ts';
import type { AuditEntry } from '../audit/api.ts';
import { createOidc, type SignedIn } from './oidc.ts';
import { Sessions, SESSION_COOKIE, type Flash, type PendingAction, type Session } from './sessions.ts';
import { chainPage, documentPage, documentRefusedPage, documentsPage, errorPage, landingPage, tasksPage, type DemoUser, type DocSummary, type Viewer } from './pages.ts';

export const TASKS_WEB = 'tasks-web';
const SCOPE = 'openid profile offline_access api://tasks/Tasks.ReadWrite';

export interface TasksWebOptions {
  authority: string;
  ca?: string | undefined;
  /** Where Tasks Web listens; the token service must have `http://127.0.0.1:<port>/callback` registered (`withWebPort`). */
  port: number;
  tasksApiUrl: string;
  /** The chain view (omit to run Tasks Web alone). */
  chain?: ChainLog | undefined;
  /** Developer controls shown on the chain view. */
  controls?: {
    antiPattern?: Switch | undefined;
    indexer?: { runNow(): Promise<IndexStatus>; status(): IndexStatus } | undefined;
    auditEntries?: (() => AuditEntry[]) | undefined;
  };
  /**
   * Usernames that may ask the chain view for every user's requests (`?view=all`). Everyone else
   * sees only the requests made in their own name (and app-only ones).
   */
  chainAdmins?: readonly string[] | undefined;
  /** Demo accounts to show, and a TOTP generator for alice's current code (local development only). */
  demo?: { users: readonly DemoUser[]; totpSecret?: string | undefined; totp?: ((username: string) => { code: string; remaining: number } | undefined) | undefined } | undefined;
  /** Renew the access token this long before it expires (default 60 000 ms). */
  refreshMarginMs?: number | undefined;
  log?: LineWriter | undefined;
}

export interface RunningWeb {
  url: string;
  close(): Promise<void>;
}

type Env = { Bindings: HttpBindings };
type Ctx = Context<Env>;

/** What a call to the Tasks API came to. */
type ApiResult =
  | { kind: 'ok'; status: number; body: unknown; traceId: string }
  | { kind: 'error'; status: number; error: string; description: string; traceId: string }
  | { kind: 'step-up'; claims: string; traceId: string }
  | { kind: 'signin'; traceId: string };

const ASSETS: Record<string, { type: string; file: string }> = {
  '/assets/app.css': { type: 'text/css; charset=utf-8', file: 'app.css' },
  '/assets/app.js': { type: 'text/javascript; charset=utf-8', file: 'app.js' },
  '/assets/chain.js': { type: 'text/javascript; charset=utf-8', file: 'chain.js' },
  '/assets/favicon.svg': { type: 'image/svg+xml', file: 'favicon.svg' },
};

function equal(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** A same-site path to come back to (never an absolute URL: no open redirect). */
function safeReturn(value: unknown): string {
  return typeof value === 'string' && /^\/(?![/\\])[\w\-./?=&%#]*$/.test(value) && value.length < 512 ? value : '/';
}

export async function startTasksWeb(options: TasksWebOptions): Promise<RunningWeb> {
  const log = exampleLogger('tasks-web', options.log);
  const origin = `http://127.0.0.1:${options.port}`;
  const redirectUri = `${origin}/callback`;
  const authorityOrigin = new URL(options.authority).origin;
  const oidc = createOidc({ authority: options.authority, clientId: TASKS_WEB, redirectUri, scope: SCOPE, ca: options.ca });
  const sessions = new Sessions();
  const chain = options.chain;
  const antiPattern = options.controls?.antiPattern;
  const indexer = options.controls?.indexer;
  /** Guards the chain view's forms (they do not need a session). */
  const chainCsrf = randomBytes(24).toString('base64url');
  const assetDir = new URL('./assets/', import.meta.url);
  const assets = new Map(Object.entries(ASSETS).map(([path, a]) => [path, { type: a.type, body: readFileSync(new URL(a.file, assetDir)) }]));
  const closers = new Set<() => void>();
  const stateListeners = new Set<() => void>();
  const notifyState = () => {
    for (const listener of stateListeners) listener();
  };

  // ---- sessions ---------------------------------------------------------------------------------

  const sessionOf = (c: Ctx): Session | undefined => sessions.get(getCookie(c, SESSION_COOKIE));
  const setSessionCookie = (c: Ctx, session: Session) =>
    setCookie(c, SESSION_COOKIE, session.id, { httpOnly: true, sameSite: 'Lax', path: '/', maxAge: 8 * 60 * 60 });
  const ensureSession = (c: Ctx): Session => {
    const existing = sessionOf(c);
    if (existing) return existing;
    const session = sessions.create();
    setSessionCookie(c, session);
    return session;
  };
  const viewerOf = (session: Session): Viewer | undefined => {
    const s = session.signedIn;
    return s === undefined ? undefined : { name: s.user.name, username: s.user.username, oid: s.user.oid, csrf: session.csrf };
  };
  const takeFlash = (session: Session | undefined): Flash | undefined => {
    const flash = session?.flash;
    if (session) session.flash = undefined;
    return flash;
  };

  // ---- the Tasks API, with the user's token -----------------------------------------------------

  /** Refreshes in flight, per session: refresh tokens rotate, so two parallel refreshes would look like a replay. */
  const refreshing = new WeakMap<Session, Promise<SignedIn | undefined>>();

  async function freshTokens(session: Session, force = false): Promise<SignedIn | undefined> {
    const s = session.signedIn;
    if (s === undefined) return undefined;
    if (!force && s.expiresAt - Date.now() > (options.refreshMarginMs ?? 60_000)) return s;
    if (s.refreshToken === undefined) return force ? undefined : s;
    let pending = refreshing.get(session);
    if (pending === undefined) {
      pending = oidc.refresh(s.refreshToken, s).then(
        (renewed) => {
          session.signedIn = renewed;
          return renewed;
        },
        (error: unknown) => {
          log.warn('refresh failed; the user signs in again', { user: s.user.username, cause: (error as Error).message });
          session.signedIn = undefined;
          return undefined;
        },
      );
      refreshing.set(session, pending);
      void pending.finally(() => refreshing.delete(session));
    }
    return pending;
  }

  /** One user action → one trace → one call to the Tasks API (which may call further). */
  async function callTasks(session: Session, label: string, method: string, path: string, body?: Record<string, unknown>): Promise<ApiResult> {
    const trace = newTrace();
    const user = session.signedIn?.user;
    chain?.begin(trace.traceId, { label, actor: user?.name ?? 'signed-out visitor', owner: user?.oid });
    try {
      for (let attempt = 0; attempt < 2; attempt++) {
        const tokens = await freshTokens(session, attempt > 0);
        if (tokens === undefined) return { kind: 'signin', traceId: trace.traceId };
        const res = await fetch(new URL(path, options.tasksApiUrl), {
          method,
          headers: {
            authorization: `Bearer ${tokens.accessToken}`,
            traceparent: trace.traceparent,
            accept: 'application/json',
            ...(body === undefined ? {} : { 'content-type': 'application/json' }),
          },
          ...(body === undefined ? {} : { body: JSON.stringify(body) }),
          signal: AbortSignal.timeout(20_000),
        });
        if (res.status === 401) {
          const challenge = bearerChallengeOf(res.headers.get('www-authenticate'));
          await res.body?.cancel();
          const claims = challenge?.params.error === 'insufficient_claims' && challenge.params.claims !== undefined ? decodeClaimsChallenge(challenge.params.claims) : undefined;
          if (claims !== undefined) {
            chain?.note(trace.traceId, `Tasks API answered 401 insufficient_claims with a claims challenge ${claims}. Tasks Web sends ${user?.name ?? 'the user'} back to Baton to sign in with these claims, then retries.`, 'warn');
            return { kind: 'step-up', claims, traceId: trace.traceId };
          }
          if (attempt === 0) continue; // expired or revoked: refresh once, then retry
          return { kind: 'signin', traceId: trace.traceId };
        }
        const text = await res.text();
        let json: unknown;
        try {
          json = text === '' ? undefined : JSON.parse(text);
        } catch {
          json = undefined;
        }
        if (!res.ok) {
          // OAuth-style errors (`error_description`) or RFC 9457 problem details (`detail`).
          const e = (json ?? {}) as { error?: unknown; error_description?: unknown; detail?: unknown };
          const description = typeof e.error_description === 'string' ? e.error_description : typeof e.detail === 'string' ? e.detail : `The Tasks API answered ${res.status}.`;
          chain?.note(trace.traceId, `Tasks Web showed: ${description}`, res.status >= 500 ? 'error' : 'warn');
          return { kind: 'error', status: res.status, error: typeof e.error === 'string' ? e.error : 'error', description, traceId: trace.traceId };
        }
        return { kind: 'ok', status: res.status, body: json, traceId: trace.traceId };
      }
      return { kind: 'signin', traceId: trace.traceId };
    } catch (error) {
      log.warn('Tasks API unreachable', { cause: (error as Error).message });
      chain?.note(trace.traceId, 'The Tasks API could not be reached.', 'error');
      return { kind: 'error', status: 502, error: 'unreachable', description: 'The Tasks API could not be reached.', traceId: trace.traceId };
    } finally {
      chain?.finish(trace.traceId);
    }
  }

  /** Sends the browser to Baton. With `claims`: a step-up for the signed-in user. */
  async function signIn(c: Ctx, session: Session, returnTo: string, claims?: string, prompt?: string): Promise<Response> {
    const { url, pending } = await oidc.start({ returnTo, claims, loginHint: claims === undefined ? undefined : session.signedIn?.user.username, prompt });
    sessions.addPending(session, pending);
    return c.redirect(url, 303);
  }

  /**
   * The Tasks API does not accept the user's token (expired and not renewable, revoked): sign in
   * again — unless a sign-in just happened, which would only loop (Baton's SSO session answers at
   * once); then say what is wrong instead.
   */
  async function signInAgain(c: Ctx, session: Session, returnTo: string, traceId: string): Promise<Response> {
    if (session.signedInAt !== undefined && Date.now() - session.signedInAt < 15_000) {
      session.action = undefined;
      return c.html(errorPage({ viewer: viewerOf(session), title: 'The Tasks API refused the sign-in', message: 'The Tasks API did not accept the token Tasks Web just received. The terminal running `npm start` says why.', traceId }), 502);
    }
    return signIn(c, session, returnTo);
  }

  /** A claims challenge on a page: sign in with the claims (once: right after a sign-in it would loop). */
  async function stepUp(c: Ctx, session: Session, returnTo: string, claims: string, traceId: string): Promise<Response> {
    if (session.signedInAt !== undefined && Date.now() - session.signedInAt < 15_000) {
      return c.html(errorPage({ viewer: viewerOf(session), title: 'A stronger sign-in did not help', message: 'The Tasks API still asks for more than this sign-in proved.', traceId }), 502);
    }
    return signIn(c, session, returnTo, claims);
  }

  /** Runs a change; on a claims challenge, remembers it, steps up, and replays it after the callback. */
  async function change(c: Ctx, session: Session, action: PendingAction): Promise<Response> {
    const result = await callTasks(session, action.label, action.method, action.path, action.body);
    switch (result.kind) {
      case 'ok':
        return c.redirect(action.returnTo, 303);
      case 'step-up':
        session.action = action;
        return signIn(c, session, action.returnTo, result.claims);
      case 'signin':
        session.action = action;
        return signInAgain(c, session, action.returnTo, result.traceId);
      case 'error':
        session.flash = { tone: 'error', text: result.description, traceId: result.traceId };
        return c.redirect(action.returnTo, 303);
    }
  }

  // ---- the app ----------------------------------------------------------------------------------

  const app = new Hono<Env>();

  // One origin only: the session cookie and the registered redirect URI live on 127.0.0.1.
  app.use('*', async (c, next) => {
    const host = c.req.header('host');
    if (host !== `127.0.0.1:${options.port}` && c.req.method === 'GET') {
      const url = new URL(c.req.url);
      return c.redirect(`${origin}${url.pathname}${url.search}`, 302);
    }
    await next();
    c.res.headers.set(
      'content-security-policy',
      `default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self' ${authorityOrigin}; frame-ancestors 'none'; base-uri 'none'`,
    );
    c.res.headers.set('x-content-type-options', 'nosniff');
    // same-origin, not no-referrer: with no-referrer browsers send `Origin: null` on form posts, and the origin check below needs it.
    c.res.headers.set('referrer-policy', 'same-origin');
    c.res.headers.set('x-frame-options', 'DENY');
    if (!c.res.headers.has('cache-control')) c.res.headers.set('cache-control', 'no-store');
  });
  app.use('*', bodyLimit({ maxSize: 64 * 1024, onError: (c) => c.text('Request too large.', 413) }));

  // Every POST: same origin (Origin header, when the browser sends one) and a CSRF token.
  const formOf = async (c: Ctx, expected: string | undefined): Promise<Record<string, string> | undefined> => {
    const originHeader = c.req.header('origin');
    if (originHeader !== undefined && originHeader !== origin) return undefined;
    const body = await c.req.parseBody();
    const form: Record<string, string> = {};
    for (const [k, v] of Object.entries(body)) if (typeof v === 'string') form[k] = v;
    if (expected === undefined || form.csrf === undefined || !equal(form.csrf, expected)) return undefined;
    return form;
  };
  const forbidden = (c: Ctx) => c.html(errorPage({ title: 'Request refused', message: 'This form expired or did not come from Tasks Web. Go back, reload the page and try again.' }), 403);

  app.get('/assets/*', (c) => {
    const asset = assets.get(c.req.path);
    if (asset === undefined) return c.notFound();
    return c.body(asset.body, 200, { 'content-type': asset.type, 'cache-control': 'no-cache' });
  });

  app.get('/favicon.ico', (c) => c.redirect('/assets/favicon.svg', 301));
  app.get('/healthz', (c) => c.json({ status: 'ok' }));

  // Sign-in ---------------------------------------------------------------------------------------

  app.get('/signin', async (c) => {
    const session = ensureSession(c);
    try {
      return await signIn(c, session, safeReturn(c.req.query('return')), undefined, c.req.query('switch') === '1' ? 'select_account' : undefined);
    } catch (error) {
      log.warn('sign-in could not start', { cause: (error as Error).message });
      return c.html(errorPage({ title: 'Baton is not reachable', message: `Tasks Web could not reach the token service at ${options.authority}. Is \`npm start\` running?` }), 502);
    }
  });

  app.get('/callback', async (c) => {
    const session = sessionOf(c);
    const query = new URL(c.req.url).search;
    const params = new URLSearchParams(query);
    // Back from Baton's logout (post_logout_redirect_uri is the registered redirect URI).
    if (!params.has('code') && !params.has('error')) {
      const s = session ?? ensureSession(c);
      s.flash = { tone: 'ok', text: 'You are signed out of Tasks Web and of Baton.' };
      return c.redirect('/', 302);
    }
    if (session === undefined) return c.html(errorPage({ title: 'Sign-in expired', message: 'This sign-in did not start in this browser, or it took too long. Please sign in again.' }), 400);
    const pending = sessions.takePending(session, params.get('state') ?? undefined);
    if (pending === undefined) return c.html(errorPage({ title: 'Sign-in expired', message: 'This sign-in response does not match a sign-in started here (state). Please sign in again.' }), 400);
    if (params.has('error')) {
      const description = params.get('error_description') ?? params.get('error') ?? 'error';
      session.action = undefined;
      return c.html(errorPage({ viewer: viewerOf(session), title: 'Sign-in did not complete', message: `Baton answered: ${description.slice(0, 500)}` }), 400);
    }
    let signedIn: SignedIn;
    try {
      signedIn = await oidc.finish(query, pending);
    } catch (error) {
      log.warn('code redemption failed', { cause: (error as Error).message });
      return c.html(errorPage({ title: 'Sign-in failed', message: `The sign-in response could not be used: ${(error as Error).message}` }), 400);
    }
    const previousUser = session.signedIn?.user.oid;
    session.signedIn = signedIn;
    session.signedInAt = Date.now();
    sessions.rotate(session);
    setSessionCookie(c, session);
    // The action that needed the step-up (or a new sign-in): retried now, for the same user only.
    const action = session.action;
    session.action = undefined;
    if (action !== undefined && (previousUser === undefined || previousUser === signedIn.user.oid)) {
      const retried = { ...action, label: `${action.label} (retried after ${pending.claims ? 'step-up' : 'sign-in'})` };
      const result = await callTasks(session, retried.label, retried.method, retried.path, retried.body);
      session.flash =
        result.kind === 'ok'
          ? { tone: 'ok', text: pending.claims ? 'Verified. Your change went through all the way to the Audit API.' : 'Done.', traceId: result.traceId }
          : { tone: 'error', text: result.kind === 'error' ? result.description : 'The change still needs a stronger sign-in.', traceId: result.traceId };
      return c.redirect(action.returnTo, 303);
    }
    return c.redirect(safeReturn(pending.returnTo), 303);
  });

  app.post('/signout', async (c) => {
    const session = sessionOf(c);
    if (session === undefined) return c.redirect('/', 303);
    if ((await formOf(c, session.csrf)) === undefined) return forbidden(c);
    const idToken = session.signedIn?.idToken;
    sessions.destroy(session);
    deleteCookie(c, SESSION_COOKIE, { path: '/' });
    try {
      return c.redirect(await oidc.logoutUrl(idToken, redirectUri, randomBytes(12).toString('base64url')), 303);
    } catch {
      return c.redirect('/', 303);
    }
  });

  // Tasks -----------------------------------------------------------------------------------------

  const requireUser = (c: Ctx): Session | undefined => {
    const session = sessionOf(c);
    return session?.signedIn === undefined ? undefined : session;
  };

  app.get('/', async (c) => {
    const session = sessionOf(c);
    if (session?.signedIn === undefined) {
      return c.html(landingPage({ users: options.demo?.users ?? [], totpSecret: options.demo?.totpSecret, flash: takeFlash(session) }));
    }
    const result = await callTasks(session, 'List tasks', 'GET', '/tasks');
    if (result.kind === 'signin') return signInAgain(c, session, '/', result.traceId);
    if (result.kind === 'step-up') return stepUp(c, session, '/', result.claims, result.traceId);
    const viewer = viewerOf(session) as Viewer;
    if (result.kind === 'error') return c.html(tasksPage({ viewer, tasks: [], flash: takeFlash(session), error: { tone: 'error', text: result.description, traceId: result.traceId } }), 502);
    return c.html(tasksPage({ viewer, tasks: (result.body as { tasks: Task[] }).tasks, flash: takeFlash(session) }));
  });

  app.post('/tasks', async (c) => {
    const session = requireUser(c);
    if (session === undefined) return c.redirect('/signin', 303);
    const form = await formOf(c, session.csrf);
    if (form === undefined) return forbidden(c);
    return change(c, session, { label: `Add task “${(form.title ?? '').slice(0, 60)}”`, method: 'POST', path: '/tasks', body: { title: form.title ?? '' }, returnTo: '/' });
  });

  app.post('/tasks/:id/toggle', async (c) => {
    const session = requireUser(c);
    if (session === undefined) return c.redirect('/signin', 303);
    const form = await formOf(c, session.csrf);
    if (form === undefined) return forbidden(c);
    const done = form.done === 'true';
    return change(c, session, { label: `Mark a task ${done ? 'done' : 'not done'}`, method: 'PATCH', path: `/tasks/${encodeURIComponent(c.req.param('id'))}`, body: { done }, returnTo: '/' });
  });

  app.post('/tasks/:id/delete', async (c) => {
    const session = requireUser(c);
    if (session === undefined) return c.redirect('/signin', 303);
    if ((await formOf(c, session.csrf)) === undefined) return forbidden(c);
    return change(c, session, { label: 'Delete a task', method: 'DELETE', path: `/tasks/${encodeURIComponent(c.req.param('id'))}`, body: undefined, returnTo: '/' });
  });

  app.post('/tasks/:id/documents', async (c) => {
    const session = requireUser(c);
    if (session === undefined) return c.redirect('/signin', 303);
    const form = await formOf(c, session.csrf);
    if (form === undefined) return forbidden(c);
    return change(c, session, {
      label: `Attach document “${(form.title ?? '').slice(0, 60)}” to a task`,
      method: 'POST',
      path: `/tasks/${encodeURIComponent(c.req.param('id'))}/documents`,
      body: { title: form.title ?? '', content: form.content ?? '' },
      returnTo: '/',
    });
  });

  // Documents -------------------------------------------------------------------------------------

  app.get('/documents', async (c) => {
    const session = requireUser(c);
    if (session === undefined) return c.redirect('/signin?return=/documents', 303);
    const result = await callTasks(session, 'List documents', 'GET', '/documents');
    if (result.kind === 'signin') return signInAgain(c, session, '/documents', result.traceId);
    if (result.kind === 'step-up') return stepUp(c, session, '/documents', result.claims, result.traceId);
    const viewer = viewerOf(session) as Viewer;
    if (result.kind === 'error') return c.html(documentsPage({ viewer, documents: [], flash: takeFlash(session), error: { tone: 'error', text: result.description, traceId: result.traceId } }), result.status >= 500 ? 502 : 200);
    return c.html(documentsPage({ viewer, documents: (result.body as { documents: DocSummary[] }).documents, flash: takeFlash(session) }));
  });

  app.get('/documents/open', (c) => {
    const id = (c.req.query('id') ?? '').trim();
    if (!/^[\w-]{1,64}$/.test(id)) return c.redirect('/documents', 303);
    return c.redirect(`/documents/${id}`, 303);
  });

  app.get('/documents/:id', async (c) => {
    const session = requireUser(c);
    const id = c.req.param('id');
    if (session === undefined) return c.redirect(`/signin?return=/documents/${encodeURIComponent(id)}`, 303);
    const result = await callTasks(session, `Open document ${id.slice(0, 8)}…`, 'GET', `/documents/${encodeURIComponent(id)}`);
    if (result.kind === 'signin') return signInAgain(c, session, `/documents/${id}`, result.traceId);
    if (result.kind === 'step-up') return stepUp(c, session, `/documents/${id}`, result.claims, result.traceId);
    const viewer = viewerOf(session) as Viewer;
    if (result.kind === 'error') {
      if (result.status === 404 || result.status === 403) return c.html(documentRefusedPage({ viewer, id, status: result.status, description: result.description, traceId: result.traceId }), 404);
      return c.html(errorPage({ viewer, title: 'The document could not be opened', message: result.description, traceId: result.traceId }), 502);
    }
    const doc = result.body as DocSummary;
    return c.html(documentPage({ viewer, doc, isOwner: doc.yours === true, flash: takeFlash(session) }));
  });

  app.post('/documents/:id/shares', async (c) => {
    const session = requireUser(c);
    if (session === undefined) return c.redirect('/signin', 303);
    const form = await formOf(c, session.csrf);
    if (form === undefined) return forbidden(c);
    const id = c.req.param('id');
    return change(c, session, {
      label: `Share a document with ${(form.username ?? '').slice(0, 60)}`,
      method: 'POST',
      path: `/documents/${encodeURIComponent(id)}/shares`,
      body: { username: form.username ?? '', access: form.access === 'write' ? 'write' : 'read' },
      returnTo: `/documents/${id}`,
    });
  });

  // Demo helpers (local development only) --------------------------------------------------------

  app.get('/demo/totp', (c) => {
    const codes: Record<string, { code: string; remaining: number }> = {};
    for (const user of options.demo?.users ?? []) {
      const code = user.mfa ? options.demo?.totp?.(user.username) : undefined;
      if (code) codes[user.username] = code;
    }
    return c.json(codes);
  });

  // Chain view ------------------------------------------------------------------------------------

  const isChainAdmin = (session: Session | undefined): boolean => {
    const username = session?.signedIn?.user.username?.toLowerCase();
    return username !== undefined && (options.chainAdmins ?? []).some((admin) => admin.toLowerCase() === username);
  };
  /**
   * Who is looking, judged again at every event (the session may have signed out or switched user
   * since the stream opened): the signed-in user, with every user's requests only for an admin who asked.
   */
  const chainViewerOf = (sessionId: string | undefined, allUsers: boolean): ChainViewer | undefined => {
    const session = sessions.peek(sessionId);
    const oid = session?.signedIn?.user.oid;
    return oid === undefined ? undefined : { oid, allUsers: allUsers && isChainAdmin(session) };
  };
  const state = (viewer: ChainViewer | undefined) => ({
    antiPattern: antiPattern?.enabled ?? false,
    indexer: indexer?.status(),
    // What the Audit API recorded names documents: only the viewer's own entries (every user's for an admin's "all users" view).
    audit: viewer === undefined ? [] : (options.controls?.auditEntries?.() ?? []).filter((e) => viewer.allUsers || e.oid === viewer.oid).slice(0, 12),
  });

  app.get('/chain', (c) => {
    const session = sessionOf(c);
    const admin = isChainAdmin(session);
    const allUsers = c.req.query('view') === 'all';
    if (allUsers && !admin) return c.html(errorPage({ viewer: session ? viewerOf(session) : undefined, title: 'Only for administrators', message: 'Every user’s requests are shown to an administrator of the demo only. You see the requests made in your name.' }), 403);
    return c.html(
      chainPage({
        viewer: session ? viewerOf(session) : undefined,
        csrf: chainCsrf,
        antiPattern: antiPattern?.enabled ?? false,
        users: options.demo?.users ?? [],
        totpSecret: options.demo?.totpSecret,
        view: allUsers ? 'all' : 'mine',
        admin,
      }),
    );
  });

  app.get('/chain/events', (c) => {
    if (chain === undefined) return c.json({ error: 'not_found' }, 404);
    const sessionId = getCookie(c, SESSION_COOKIE);
    const allUsers = c.req.query('view') === 'all';
    if (allUsers && !isChainAdmin(sessions.get(sessionId))) return c.json({ error: 'forbidden', error_description: 'Only an administrator may see every user’s requests.' }, 403);
    const viewer = () => chainViewerOf(sessionId, allUsers);
    c.header('cache-control', 'no-store');
    return streamSSE(c, async (stream) => {
      let ended = false;
      const queue: Array<{ event: string; data: string }> = [];
      let wake: (() => void) | undefined;
      const push = (event: string, data: unknown) => {
        queue.push({ event, data: JSON.stringify(data) });
        wake?.();
      };
      const end = () => {
        ended = true;
        wake?.();
      };
      const first = viewer();
      push('snapshot', { requests: chain.snapshot().filter((r) => canSee(r, first)).slice(0, 40), names: chain.names(), state: state(first), signedIn: first !== undefined });
      const unsubscribe = chain.subscribe((request: RequestView) => {
        const now = viewer();
        if (!canSee(request, now)) return;
        push('request', request);
        if (request.hops.some((h) => h.to === 'audit-api')) push('state', state(now));
      });
      const onState = () => push('state', state(viewer()));
      stateListeners.add(onState);
      closers.add(end);
      stream.onAbort(end);
      const keepAlive = setInterval(() => push('ping', {}), 15_000);
      try {
        while (!ended) {
          while (queue.length > 0 && !ended) {
            const item = queue.shift() as { event: string; data: string };
            await stream.writeSSE(item);
          }
          if (!ended) await new Promise<void>((resolve) => (wake = resolve));
          wake = undefined;
        }
      } finally {
        clearInterval(keepAlive);
        unsubscribe();
        stateListeners.delete(onState);
        closers.delete(end);
      }
    });
  });

  app.post('/chain/anti-pattern', async (c) => {
    const form = await formOf(c, chainCsrf);
    if (form === undefined) return forbidden(c);
    if (antiPattern) {
      antiPattern.enabled = form.enabled === 'on';
      log.info(`anti-pattern switch ${antiPattern.enabled ? 'ON: the Tasks API will try to act as itself for users' : 'off'}`);
    }
    notifyState();
    return c.redirect('/chain', 303);
  });

  app.post('/chain/indexer', async (c) => {
    const form = await formOf(c, chainCsrf);
    if (form === undefined) return forbidden(c);
    if (indexer) {
      void indexer.runNow().finally(notifyState);
    }
    return c.redirect('/chain', 303);
  });

  app.notFound((c) => c.html(errorPage({ title: 'Not found', message: 'There is no page here.' }), 404));
  app.onError((error, c) => {
    log.error('request failed', { path: c.req.path, cause: error.message });
    return c.html(errorPage({ title: 'Something went wrong', message: 'Tasks Web failed to handle this request. The terminal running `npm start` has the details.' }), 500);
  });

  const server = createServer(getRequestListener(app.fetch, { overrideGlobalObjects: false }));
  await listen(server, options.port, '127.0.0.1', 'Tasks Web', 'Stop what uses it, or move Tasks Web with `baton dev --web-port N` (or BATON_WEB_PORT=N); its registered redirect URI follows.');
  return {
    url: origin,
    async close() {
      for (const end of [...closers]) end();
      await closeServer(server, 500);
    },
  };
}

/**
 * Tasks Web's own pages: tasks, documents, sharing. Each page is one call to the Tasks API with the
 * user's token; a change that meets a claims challenge is remembered, stepped up, and replayed after
 * the callback (`SignInFlow`).
 */
import type { Task } from '../tasks/api.ts';
import type { Ctx, Forms, SessionCookies, WebApp } from './http.ts';
import { documentPage, documentRefusedPage, documentsPage, errorPage, landingPage, tasksPage, type DemoUser, type DocSummary, type Viewer } from './pages.ts';
import type { Flash, PendingAction, Session } from './sessions.ts';
import { viewerOf, type SignInFlow } from './signin.ts';
import type { ApiResult, TasksClient } from './tasks-client.ts';

export interface TaskRoutesOptions {
  cookies: SessionCookies;
  forms: Forms;
  tasks: TasksClient;
  signIn: SignInFlow;
  /** Demo accounts for the landing page, and a TOTP generator for their current codes (local development only). */
  demo?: { users: readonly DemoUser[]; totpSecret?: string | undefined; totp?: ((username: string) => { code: string; remaining: number } | undefined) | undefined } | undefined;
}

/** A signed-in user's checked form, or the answer to send instead. */
type UserForm = { session: Session; form: Record<string, string> } | { response: Response };

function takeFlash(session: Session | undefined): Flash | undefined {
  const flash = session?.flash;
  if (session) session.flash = undefined;
  return flash;
}

export class TaskRoutes {
  readonly #o: TaskRoutesOptions;

  constructor(options: TaskRoutesOptions) {
    this.#o = options;
  }

  register(app: WebApp): void {
    app.get('/', (c) => this.home(c));
    app.post('/tasks', (c) => this.addTask(c));
    app.post('/tasks/:id/toggle', (c) => this.toggleTask(c));
    app.post('/tasks/:id/delete', (c) => this.deleteTask(c));
    app.post('/tasks/:id/documents', (c) => this.attachDocument(c));
    app.get('/documents', (c) => this.documents(c));
    app.get('/documents/open', (c) => this.openById(c));
    app.get('/documents/:id', (c) => this.document(c));
    app.post('/documents/:id/shares', (c) => this.share(c));
    app.get('/demo/totp', (c) => this.totpCodes(c));
  }

  async home(c: Ctx): Promise<Response> {
    const session = this.#o.cookies.of(c);
    if (session?.signedIn === undefined) {
      return c.html(landingPage({ users: this.#o.demo?.users ?? [], totpSecret: this.#o.demo?.totpSecret, flash: takeFlash(session) }));
    }
    const result = await this.#o.tasks.call(session, 'List tasks', 'GET', '/tasks');
    if (result.kind === 'signin' || result.kind === 'step-up') return this.#reauthenticate(c, session, '/', result);
    const viewer = viewerOf(session) as Viewer;
    if (result.kind === 'error') return c.html(tasksPage({ viewer, tasks: [], flash: takeFlash(session), error: { tone: 'error', text: result.description, traceId: result.traceId } }), 502);
    return c.html(tasksPage({ viewer, tasks: (result.body as { tasks: Task[] }).tasks, flash: takeFlash(session) }));
  }

  async addTask(c: Ctx): Promise<Response> {
    const u = await this.#userForm(c);
    if ('response' in u) return u.response;
    return this.#change(c, u.session, { label: `Add task “${(u.form.title ?? '').slice(0, 60)}”`, method: 'POST', path: '/tasks', body: { title: u.form.title ?? '' }, returnTo: '/' });
  }

  async toggleTask(c: Ctx): Promise<Response> {
    const u = await this.#userForm(c);
    if ('response' in u) return u.response;
    const done = u.form.done === 'true';
    return this.#change(c, u.session, { label: `Mark a task ${done ? 'done' : 'not done'}`, method: 'PATCH', path: `/tasks/${encodeURIComponent(c.req.param('id') ?? '')}`, body: { done }, returnTo: '/' });
  }

  async deleteTask(c: Ctx): Promise<Response> {
    const u = await this.#userForm(c);
    if ('response' in u) return u.response;
    return this.#change(c, u.session, { label: 'Delete a task', method: 'DELETE', path: `/tasks/${encodeURIComponent(c.req.param('id') ?? '')}`, body: undefined, returnTo: '/' });
  }

  async attachDocument(c: Ctx): Promise<Response> {
    const u = await this.#userForm(c);
    if ('response' in u) return u.response;
    return this.#change(c, u.session, {
      label: `Attach document “${(u.form.title ?? '').slice(0, 60)}” to a task`,
      method: 'POST',
      path: `/tasks/${encodeURIComponent(c.req.param('id') ?? '')}/documents`,
      body: { title: u.form.title ?? '', content: u.form.content ?? '' },
      returnTo: '/',
    });
  }

  async documents(c: Ctx): Promise<Response> {
    const session = this.#o.cookies.signedIn(c);
    if (session === undefined) return c.redirect('/signin?return=/documents', 303);
    const result = await this.#o.tasks.call(session, 'List documents', 'GET', '/documents');
    if (result.kind === 'signin' || result.kind === 'step-up') return this.#reauthenticate(c, session, '/documents', result);
    const viewer = viewerOf(session) as Viewer;
    if (result.kind === 'error') return c.html(documentsPage({ viewer, documents: [], flash: takeFlash(session), error: { tone: 'error', text: result.description, traceId: result.traceId } }), result.status >= 500 ? 502 : 200);
    return c.html(documentsPage({ viewer, documents: (result.body as { documents: DocSummary[] }).documents, flash: takeFlash(session) }));
  }

  openById(c: Ctx): Response {
    const id = (c.req.query('id') ?? '').trim();
    if (!/^[\w-]{1,64}$/.test(id)) return c.redirect('/documents', 303);
    return c.redirect(`/documents/${id}`, 303);
  }

  async document(c: Ctx): Promise<Response> {
    const session = this.#o.cookies.signedIn(c);
    const id = c.req.param('id') ?? '';
    if (session === undefined) return c.redirect(`/signin?return=/documents/${encodeURIComponent(id)}`, 303);
    const result = await this.#o.tasks.call(session, `Open document ${id.slice(0, 8)}…`, 'GET', `/documents/${encodeURIComponent(id)}`);
    if (result.kind === 'signin' || result.kind === 'step-up') return this.#reauthenticate(c, session, `/documents/${id}`, result);
    const viewer = viewerOf(session) as Viewer;
    if (result.kind === 'error') {
      if (result.status === 404 || result.status === 403) return c.html(documentRefusedPage({ viewer, id, status: result.status, description: result.description, traceId: result.traceId }), 404);
      return c.html(errorPage({ viewer, title: 'The document could not be opened', message: result.description, traceId: result.traceId }), 502);
    }
    const doc = result.body as DocSummary;
    return c.html(documentPage({ viewer, doc, isOwner: doc.yours === true, flash: takeFlash(session) }));
  }

  async share(c: Ctx): Promise<Response> {
    const u = await this.#userForm(c);
    if ('response' in u) return u.response;
    const id = c.req.param('id') ?? '';
    return this.#change(c, u.session, {
      label: `Share a document with ${(u.form.username ?? '').slice(0, 60)}`,
      method: 'POST',
      path: `/documents/${encodeURIComponent(id)}/shares`,
      body: { username: u.form.username ?? '', access: u.form.access === 'write' ? 'write' : 'read' },
      returnTo: `/documents/${id}`,
    });
  }

  /** Demo helper (local development only): the current TOTP codes of the demo users with a second factor. */
  totpCodes(c: Ctx): Response {
    const codes: Record<string, { code: string; remaining: number }> = {};
    for (const user of this.#o.demo?.users ?? []) {
      const code = user.mfa ? this.#o.demo?.totp?.(user.username) : undefined;
      if (code) codes[user.username] = code;
    }
    return c.json(codes);
  }

  /** A signed-in user's form, same origin and with the session's CSRF token. */
  async #userForm(c: Ctx): Promise<UserForm> {
    const session = this.#o.cookies.signedIn(c);
    if (session === undefined) return { response: c.redirect('/signin', 303) };
    const form = await this.#o.forms.read(c, session.csrf);
    if (form === undefined) return { response: this.#o.forms.forbidden(c) };
    return { session, form };
  }

  /** A page's read that needs a new sign-in or a step-up: the redirect to Baton (or the page saying why not). */
  #reauthenticate(c: Ctx, session: Session, returnTo: string, result: Extract<ApiResult, { kind: 'signin' | 'step-up' }>): Promise<Response> {
    return result.kind === 'signin' ? this.#o.signIn.again(c, session, returnTo, result.traceId) : this.#o.signIn.stepUp(c, session, returnTo, result.claims, result.traceId);
  }

  /** Runs a change; on a claims challenge, remembers it, steps up, and replays it after the callback. */
  async #change(c: Ctx, session: Session, action: PendingAction): Promise<Response> {
    const result = await this.#o.tasks.call(session, action.label, action.method, action.path, action.body);
    switch (result.kind) {
      case 'ok':
        return c.redirect(action.returnTo, 303);
      case 'step-up':
        session.action = action;
        return this.#o.signIn.start(c, session, action.returnTo, result.claims);
      case 'signin':
        session.action = action;
        return this.#o.signIn.again(c, session, action.returnTo, result.traceId);
      case 'error':
        session.flash = { tone: 'error', text: result.description, traceId: result.traceId };
        return c.redirect(action.returnTo, 303);
    }
  }
}

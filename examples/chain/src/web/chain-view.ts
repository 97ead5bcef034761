/**
 * The chain view (a local development tool): its page, its live feed (Server-Sent Events) and the
 * developer controls (the anti-pattern switch, the indexer's "Run now", "Revoke alice's sessions"
 * with the security events each API received).
 *
 * A trace is its user's: each signed-in user sees the requests made in their name (and the app-only
 * ones); an administrator may ask for every user's (`?view=all`). Who is looking is judged again at
 * every event, since the session may sign out or switch user while the stream is open.
 */
import { randomBytes } from 'node:crypto';
import { streamSSE, type SSEStreamingApi } from 'hono/streaming';
import { canSee, type ChainLog, type ChainViewer, type RequestView } from '../chain-log.ts';
import type { AuditEntry } from '../audit/api.ts';
import type { DemoAdmin } from '../demo-admin.ts';
import type { SignalLog } from '../signal-log.ts';
import type { IndexStatus } from '../indexer/job.ts';
import type { ExampleLogger } from '../log.ts';
import type { Switch } from '../tasks/api.ts';
import type { Ctx, Forms, SessionCookies, WebApp } from './http.ts';
import { chainPage, errorPage, type DemoUser } from './pages.ts';
import type { Session, Sessions } from './sessions.ts';
import { viewerOf } from './signin.ts';

/** Developer controls shown on the chain view. */
export interface ChainControls {
  antiPattern?: Switch | undefined;
  indexer?: { runNow(): Promise<IndexStatus>; status(): IndexStatus } | undefined;
  auditEntries?: (() => AuditEntry[]) | undefined;
  /**
   * Continuous access evaluation: the demo admin revokes `target`'s sessions at the token service
   * (admin API), and `signals` holds the security events each API received.
   */
  revoke?: { admin: DemoAdmin; target: { username: string; displayName: string }; signals: SignalLog; receivers: readonly string[] } | undefined;
}

export interface ChainViewOptions {
  chain?: ChainLog | undefined;
  controls?: ChainControls | undefined;
  /** Usernames that may see every user's requests. */
  admins?: readonly string[] | undefined;
  sessions: Sessions;
  cookies: SessionCookies;
  forms: Forms;
  demo?: { users: readonly DemoUser[]; totpSecret?: string | undefined } | undefined;
  /** A trace UI's URL with `{traceId}` (e.g. Jaeger's `http://localhost:16686/trace/{traceId}`): each hop links there. */
  traceUrl?: string | undefined;
  log: ExampleLogger;
}

type Event = { event: string; data: string };

export class ChainView {
  readonly #o: ChainViewOptions;
  /** Guards the chain view's forms (they do not need a session). */
  readonly #csrf = randomBytes(24).toString('base64url');
  /** Open streams, told when the controls' state changed, and ended on close. */
  readonly #stateListeners = new Set<() => void>();
  readonly #closers = new Set<() => void>();

  constructor(options: ChainViewOptions) {
    this.#o = options;
  }

  register(app: WebApp): void {
    app.get('/chain', (c) => this.page(c));
    app.get('/chain/events', (c) => this.events(c));
    app.post('/chain/anti-pattern', (c) => this.setAntiPattern(c));
    app.post('/chain/indexer', (c) => this.runIndexer(c));
    app.post('/chain/revoke-sessions', (c) => this.revokeSessions(c));
  }

  page(c: Ctx): Response {
    const session = this.#o.cookies.of(c);
    const admin = this.#isAdmin(session);
    const allUsers = c.req.query('view') === 'all';
    const viewer = session ? viewerOf(session) : undefined;
    if (allUsers && !admin) return c.html(errorPage({ viewer, title: 'Only for administrators', message: 'Every user’s requests are shown to an administrator of the demo only. You see the requests made in your name.' }), 403);
    return c.html(
      chainPage({
        viewer,
        csrf: this.#csrf,
        antiPattern: this.#o.controls?.antiPattern?.enabled ?? false,
        users: this.#o.demo?.users ?? [],
        totpSecret: this.#o.demo?.totpSecret,
        view: allUsers ? 'all' : 'mine',
        admin,
        traceUrl: this.#o.traceUrl,
        revokeTarget: this.#o.controls?.revoke?.target,
      }),
    );
  }

  events(c: Ctx): Response {
    const chain = this.#o.chain;
    if (chain === undefined) return c.json({ error: 'not_found' }, 404);
    const sessionId = this.#o.cookies.idOf(c);
    const allUsers = c.req.query('view') === 'all';
    if (allUsers && !this.#isAdmin(this.#o.sessions.get(sessionId))) return c.json({ error: 'forbidden', error_description: 'Only an administrator may see every user’s requests.' }, 403);
    c.header('cache-control', 'no-store');
    return streamSSE(c, (stream) => this.#stream(stream, chain, () => this.#viewerOf(sessionId, allUsers)));
  }

  async setAntiPattern(c: Ctx): Promise<Response> {
    const form = await this.#o.forms.read(c, this.#csrf);
    if (form === undefined) return this.#o.forms.forbidden(c);
    const antiPattern = this.#o.controls?.antiPattern;
    if (antiPattern) {
      antiPattern.enabled = form.enabled === 'on';
      this.#o.log.info(`anti-pattern switch ${antiPattern.enabled ? 'ON: the Tasks API will try to act as itself for users' : 'off'}`);
    }
    this.#notifyState();
    return c.redirect('/chain', 303);
  }

  async runIndexer(c: Ctx): Promise<Response> {
    const form = await this.#o.forms.read(c, this.#csrf);
    if (form === undefined) return this.#o.forms.forbidden(c);
    const indexer = this.#o.controls?.indexer;
    if (indexer) void indexer.runNow().finally(() => this.#notifyState());
    return c.redirect('/chain', 303);
  }

  /** The demo admin revokes the target user's sessions (admin API); the APIs hear it as a security event. */
  async revokeSessions(c: Ctx): Promise<Response> {
    const form = await this.#o.forms.read(c, this.#csrf);
    if (form === undefined) return this.#o.forms.forbidden(c);
    const revoke = this.#o.controls?.revoke;
    if (revoke === undefined) return c.redirect('/chain', 303);
    const { username } = revoke.target;
    try {
      const edge = await revoke.admin.revokeSessions(username);
      this.#o.log.info('sessions revoked by the demo admin', { user: username, revokedBefore: edge });
      revoke.signals.revoked({ username, at: Date.now(), outcome: 'ok', text: `Sessions of ${revoke.target.displayName} revoked: tokens issued before ${edge} are void.` });
    } catch (error) {
      this.#o.log.warn('revoking sessions failed', { user: username, cause: (error as Error).message });
      revoke.signals.revoked({ username, at: Date.now(), outcome: 'failed', text: (error as Error).message });
    }
    return c.redirect('/chain#security-events', 303);
  }

  /** Ends every open stream (the server is closing). */
  close(): void {
    for (const end of [...this.#closers]) end();
  }

  #isAdmin(session: Session | undefined): boolean {
    const username = session?.signedIn?.user.username?.toLowerCase();
    return username !== undefined && (this.#o.admins ?? []).some((admin) => admin.toLowerCase() === username);
  }

  /** The signed-in user behind `sessionId` now, with every user's requests only for an admin who asked. */
  #viewerOf(sessionId: string | undefined, allUsers: boolean): ChainViewer | undefined {
    const session = this.#o.sessions.peek(sessionId);
    const oid = session?.signedIn?.user.oid;
    return oid === undefined ? undefined : { oid, allUsers: allUsers && this.#isAdmin(session) };
  }

  /** The controls' state; what the Audit API recorded names documents, so only the viewer's own entries (every user's for an admin's view). */
  #state(viewer: ChainViewer | undefined) {
    const controls = this.#o.controls;
    return {
      antiPattern: controls?.antiPattern?.enabled ?? false,
      indexer: controls?.indexer?.status(),
      audit: viewer === undefined ? [] : (controls?.auditEntries?.() ?? []).filter((e) => viewer.allUsers || e.oid === viewer.oid).slice(0, 12),
      ...(controls?.revoke === undefined
        ? {}
        : { signals: { receivers: controls.revoke.receivers, events: this.#namedSignals(controls.revoke.signals, viewer), revoke: controls.revoke.signals.lastRevoke() } }),
    };
  }

  /** The events the viewer may see, with the user's name when a request of hers told it (the SET names her by `oid` only). */
  #namedSignals(signals: SignalLog, viewer: ChainViewer | undefined) {
    const names = new Map<string, string>();
    for (const r of this.#o.chain?.snapshot() ?? []) if (r.owner !== undefined && !names.has(r.owner)) names.set(r.owner, r.actor);
    return signals.visibleTo(viewer).slice(0, 30).map((e) => ({ ...e, user: e.oid === undefined ? undefined : names.get(e.oid) }));
  }

  #notifyState(): void {
    for (const listener of this.#stateListeners) listener();
  }

  /** A snapshot, then each request as it changes (if the viewer may see it), state changes and a keep-alive, in order. */
  async #stream(stream: SSEStreamingApi, chain: ChainLog, viewer: () => ChainViewer | undefined): Promise<void> {
    let ended = false;
    const queue: Event[] = [];
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
    push('snapshot', { requests: chain.snapshot().filter((r) => canSee(r, first)).slice(0, 40), names: chain.names(), state: this.#state(first), signedIn: first !== undefined });
    const unsubscribe = chain.subscribe((request: RequestView) => {
      const now = viewer();
      if (!canSee(request, now)) return;
      push('request', request);
      if (request.hops.some((h) => h.to === 'audit-api')) push('state', this.#state(now));
    });
    const onState = () => push('state', this.#state(viewer()));
    this.#stateListeners.add(onState);
    const unsubscribeSignals = this.#o.controls?.revoke?.signals.subscribe(onState);
    this.#closers.add(end);
    stream.onAbort(end);
    const keepAlive = setInterval(() => push('ping', {}), 15_000);
    try {
      while (!ended) {
        while (queue.length > 0 && !ended) await stream.writeSSE(queue.shift() as Event);
        if (!ended) await new Promise<void>((resolve) => (wake = resolve));
        wake = undefined;
      }
    } finally {
      clearInterval(keepAlive);
      unsubscribe();
      unsubscribeSignals?.();
      this.#stateListeners.delete(onState);
      this.#closers.delete(end);
    }
  }
}

/**
 * Tasks Web's side of signing in through Baton: starting a sign-in (or a step-up with the claims an
 * API asked for), the callback that redeems the code and replays the action that needed it, and
 * sign-out (RP-initiated logout at Baton).
 */
import { randomBytes } from 'node:crypto';
import type { ExampleLogger } from '../log.ts';
import { safeReturn, type Ctx, type SessionCookies } from './http.ts';
import type { Oidc, PendingSignIn, SignedIn } from './oidc.ts';
import { errorPage, type Viewer } from './pages.ts';
import type { Sessions, Session } from './sessions.ts';
import type { TasksClient } from './tasks-client.ts';

/** A sign-in that completed this recently does not start another (Baton's SSO session would answer at once, looping). */
const LOOP_WINDOW_MS = 15_000;

/** What the pages show of the signed-in user. */
export function viewerOf(session: Session): Viewer | undefined {
  const s = session.signedIn;
  return s === undefined ? undefined : { name: s.user.name, username: s.user.username, oid: s.user.oid, csrf: session.csrf };
}

export interface SignInFlowOptions {
  oidc: Oidc;
  sessions: Sessions;
  cookies: SessionCookies;
  tasks: TasksClient;
  /** The token service's authority (for the "not reachable" page). */
  authority: string;
  redirectUri: string;
  log: ExampleLogger;
}

export class SignInFlow {
  readonly #o: SignInFlowOptions;

  constructor(options: SignInFlowOptions) {
    this.#o = options;
  }

  /** Sends the browser to Baton. With `claims`: a step-up for the signed-in user. */
  async start(c: Ctx, session: Session, returnTo: string, claims?: string, prompt?: string): Promise<Response> {
    const { url, pending } = await this.#o.oidc.start({ returnTo, claims, loginHint: claims === undefined ? undefined : session.signedIn?.user.username, prompt });
    this.#o.sessions.addPending(session, pending);
    return c.redirect(url, 303);
  }

  /**
   * The Tasks API does not accept the user's token (expired and not renewable, revoked): sign in
   * again — unless a sign-in just happened, which would only loop; then say what is wrong instead.
   */
  async again(c: Ctx, session: Session, returnTo: string, traceId: string): Promise<Response> {
    if (this.#justSignedIn(session)) {
      session.action = undefined;
      return c.html(errorPage({ viewer: viewerOf(session), title: 'The Tasks API refused the sign-in', message: 'The Tasks API did not accept the token Tasks Web just received. The terminal running `npm start` says why.', traceId }), 502);
    }
    return this.start(c, session, returnTo);
  }

  /**
   * A claims challenge on a page: sign in with the claims — once: right after a sign-in asked for
   * these same claims it would loop. Other claims (a revocation's `nbf` after an MFA step-up) are a
   * new demand.
   */
  async stepUp(c: Ctx, session: Session, returnTo: string, claims: string, traceId: string): Promise<Response> {
    if (this.#justSignedIn(session) && session.signedInClaims === claims) {
      return c.html(errorPage({ viewer: viewerOf(session), title: 'A stronger sign-in did not help', message: 'The Tasks API still asks for more than this sign-in proved.', traceId }), 502);
    }
    return this.start(c, session, returnTo, claims);
  }

  /** `GET /signin`: starts a sign-in (`switch=1`: let the user pick another account). */
  async begin(c: Ctx): Promise<Response> {
    const session = this.#o.cookies.ensure(c);
    try {
      return await this.start(c, session, safeReturn(c.req.query('return')), undefined, c.req.query('switch') === '1' ? 'select_account' : undefined);
    } catch (error) {
      this.#o.log.warn('sign-in could not start', { cause: (error as Error).message });
      return c.html(errorPage({ title: 'Baton is not reachable', message: `Tasks Web could not reach the token service at ${this.#o.authority}. Is \`npm start\` running?` }), 502);
    }
  }

  /** `GET /callback`: back from Baton's authorize (or from its logout). */
  async callback(c: Ctx): Promise<Response> {
    const session = this.#o.cookies.of(c);
    const query = new URL(c.req.url).search;
    const params = new URLSearchParams(query);
    // Back from Baton's logout (post_logout_redirect_uri is the registered redirect URI).
    if (!params.has('code') && !params.has('error')) return this.#signedOut(c, session);
    if (session === undefined) return c.html(errorPage({ title: 'Sign-in expired', message: 'This sign-in did not start in this browser, or it took too long. Please sign in again.' }), 400);
    const pending = this.#o.sessions.takePending(session, params.get('state') ?? undefined);
    if (pending === undefined) return c.html(errorPage({ title: 'Sign-in expired', message: 'This sign-in response does not match a sign-in started here (state). Please sign in again.' }), 400);
    if (params.has('error')) {
      const description = params.get('error_description') ?? params.get('error') ?? 'error';
      session.action = undefined;
      return c.html(errorPage({ viewer: viewerOf(session), title: 'Sign-in did not complete', message: `Baton answered: ${description.slice(0, 500)}` }), 400);
    }
    let signedIn: SignedIn;
    try {
      signedIn = await this.#o.oidc.finish(query, pending);
    } catch (error) {
      this.#o.log.warn('code redemption failed', { cause: (error as Error).message });
      return c.html(errorPage({ title: 'Sign-in failed', message: `The sign-in response could not be used: ${(error as Error).message}` }), 400);
    }
    const previousUser = session.signedIn?.user.oid;
    this.#establish(c, session, signedIn, pending.claims);
    return this.#resume(c, session, pending, previousUser);
  }

  /** `POST /signout` (form checked by the caller): ends the session here, then at Baton. */
  async signOut(c: Ctx, session: Session): Promise<Response> {
    const idToken = session.signedIn?.idToken;
    this.#o.sessions.destroy(session);
    this.#o.cookies.clear(c);
    try {
      return c.redirect(await this.#o.oidc.logoutUrl(idToken, this.#o.redirectUri, randomBytes(12).toString('base64url')), 303);
    } catch {
      return c.redirect('/', 303);
    }
  }

  #justSignedIn(session: Session): boolean {
    return session.signedInAt !== undefined && Date.now() - session.signedInAt < LOOP_WINDOW_MS;
  }

  #signedOut(c: Ctx, session: Session | undefined): Response {
    const s = session ?? this.#o.cookies.ensure(c);
    s.flash = { tone: 'ok', text: 'You are signed out of Tasks Web and of Baton.' };
    return c.redirect('/', 302);
  }

  /** The new sign-in, under a new session id (session fixation). */
  #establish(c: Ctx, session: Session, signedIn: SignedIn, claims: string | undefined): void {
    session.signedIn = signedIn;
    session.signedInAt = Date.now();
    session.signedInClaims = claims;
    this.#o.sessions.rotate(session);
    this.#o.cookies.set(c, session);
  }

  /** The action that needed the step-up (or a new sign-in) is retried now, for the same user only; else back where the sign-in started. */
  async #resume(c: Ctx, session: Session, pending: PendingSignIn, previousUser: string | undefined): Promise<Response> {
    const action = session.action;
    session.action = undefined;
    if (action === undefined || (previousUser !== undefined && previousUser !== session.signedIn?.user.oid)) return c.redirect(safeReturn(pending.returnTo), 303);
    const label = `${action.label} (retried after ${pending.claims ? 'step-up' : 'sign-in'})`;
    const result = await this.#o.tasks.call(session, label, action.method, action.path, action.body);
    session.flash =
      result.kind === 'ok'
        ? { tone: 'ok', text: pending.claims ? 'Verified. Your change went through all the way to the Audit API.' : 'Done.', traceId: result.traceId }
        : { tone: 'error', text: result.kind === 'error' ? result.description : 'The change still needs a stronger sign-in.', traceId: result.traceId };
    return c.redirect(action.returnTo, 303);
  }
}

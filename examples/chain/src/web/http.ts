/**
 * What every route of Tasks Web shares: the Hono context type, the session cookie, the security
 * headers, same-origin + CSRF-checked forms, and the static assets.
 */
import { timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Context, Hono, MiddlewareHandler } from 'hono';
import { deleteCookie, getCookie, setCookie } from 'hono/cookie';
import type { HttpBindings } from '@hono/node-server';
import { SESSION_COOKIE, type Session, type Sessions } from './sessions.ts';
import { errorPage } from './pages.ts';

export type Env = { Bindings: HttpBindings };
export type Ctx = Context<Env>;
export type WebApp = Hono<Env>;

/** Constant-time comparison of two strings (CSRF tokens). */
export function equal(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** A same-site path to come back to (never an absolute URL: no open redirect). */
export function safeReturn(value: unknown): string {
  return typeof value === 'string' && /^\/(?![/\\])[\w\-./?=&%#]*$/.test(value) && value.length < 512 ? value : '/';
}

/** The browser's end of a session: an opaque, HttpOnly, SameSite=Lax cookie. */
export class SessionCookies {
  readonly #sessions: Sessions;

  constructor(sessions: Sessions) {
    this.#sessions = sessions;
  }

  /** The session of this request, if the cookie names a live one. */
  of(c: Ctx): Session | undefined {
    return this.#sessions.get(this.idOf(c));
  }

  /** The session id the cookie carries (checked by the caller). */
  idOf(c: Ctx): string | undefined {
    return getCookie(c, SESSION_COOKIE);
  }

  /** The session of this request, signed in or not; a new one (and its cookie) when there is none. */
  ensure(c: Ctx): Session {
    const existing = this.of(c);
    if (existing) return existing;
    const session = this.#sessions.create();
    this.set(c, session);
    return session;
  }

  /** The session only when someone is signed in. */
  signedIn(c: Ctx): Session | undefined {
    const session = this.of(c);
    return session?.signedIn === undefined ? undefined : session;
  }

  set(c: Ctx, session: Session): void {
    setCookie(c, SESSION_COOKIE, session.id, { httpOnly: true, sameSite: 'Lax', path: '/', maxAge: 8 * 60 * 60 });
  }

  clear(c: Ctx): void {
    deleteCookie(c, SESSION_COOKIE, { path: '/' });
  }
}

/**
 * One origin only (the session cookie and the registered redirect URI live on 127.0.0.1:port), and
 * the headers every answer carries: a CSP allowing same-origin files only and forms to Baton.
 */
export function securityHeaders(port: number, authority: string): MiddlewareHandler<Env> {
  const origin = `http://127.0.0.1:${port}`;
  const authorityOrigin = new URL(authority).origin;
  return async function tasksWebHeaders(c, next) {
    const host = c.req.header('host');
    if (host !== `127.0.0.1:${port}` && c.req.method === 'GET') {
      const url = new URL(c.req.url);
      return c.redirect(`${origin}${url.pathname}${url.search}`, 302);
    }
    await next();
    c.res.headers.set(
      'content-security-policy',
      `default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self' ${authorityOrigin}; frame-ancestors 'none'; base-uri 'none'`,
    );
    c.res.headers.set('x-content-type-options', 'nosniff');
    // same-origin, not no-referrer: with no-referrer browsers send `Origin: null` on form posts, and the origin check needs it.
    c.res.headers.set('referrer-policy', 'same-origin');
    c.res.headers.set('x-frame-options', 'DENY');
    if (!c.res.headers.has('cache-control')) c.res.headers.set('cache-control', 'no-store');
  };
}

/** Every POST: same origin (the Origin header, when the browser sends one) and a CSRF token. */
export class Forms {
  readonly #origin: string;

  constructor(origin: string) {
    this.#origin = origin;
  }

  /** The form's string fields, or `undefined` when it came from elsewhere or its CSRF token is not `expected`. */
  async read(c: Ctx, expected: string | undefined): Promise<Record<string, string> | undefined> {
    const originHeader = c.req.header('origin');
    if (originHeader !== undefined && originHeader !== this.#origin) return undefined;
    const body = await c.req.parseBody();
    const form: Record<string, string> = {};
    for (const [k, v] of Object.entries(body)) if (typeof v === 'string') form[k] = v;
    if (expected === undefined || form.csrf === undefined || !equal(form.csrf, expected)) return undefined;
    return form;
  }

  /** The answer to a form that failed `read`. */
  forbidden(c: Ctx): Response {
    return c.html(errorPage({ title: 'Request refused', message: 'This form expired or did not come from Tasks Web. Go back, reload the page and try again.' }), 403);
  }
}

const ASSETS: Record<string, { type: string; file: string }> = {
  '/assets/app.css': { type: 'text/css; charset=utf-8', file: 'app.css' },
  '/assets/app.js': { type: 'text/javascript; charset=utf-8', file: 'app.js' },
  '/assets/chain.js': { type: 'text/javascript; charset=utf-8', file: 'chain.js' },
  '/assets/favicon.svg': { type: 'image/svg+xml', file: 'favicon.svg' },
};

/** The stylesheet, scripts and icon (the CSP allows nothing inline), read once. */
export function assetRoutes(app: WebApp): void {
  const dir = new URL('./assets/', import.meta.url);
  const assets = new Map(Object.entries(ASSETS).map(([path, a]) => [path, { type: a.type, body: readFileSync(new URL(a.file, dir)) }]));
  app.get('/assets/*', (c) => {
    const asset = assets.get(c.req.path);
    if (asset === undefined) return c.notFound();
    return c.body(asset.body, 200, { 'content-type': asset.type, 'cache-control': 'no-cache' });
  });
  app.get('/favicon.ico', (c) => c.redirect('/assets/favicon.svg', 301));
}

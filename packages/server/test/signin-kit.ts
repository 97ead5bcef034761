/**
 * A tiny "browser" for black-box sign-in tests: a cookie jar (path-scoped, Secure cookies over
 * HTTPS only), redirects followed by hand so a test sees every hop, and the forms of Baton's pages
 * read from the HTML (action, CSRF token). Real Chromium is exercised in signin-chromium.test.ts.
 */
import { createHash, randomBytes } from 'node:crypto';
import { TOTP, Secret } from 'otpauth';
import type { TestServer } from './harness.ts';

export const ALICE = { username: 'alice@contoso.test', password: 'alice-Demo-pass-1', totp: 'JBSWY3DPEHPK3PXP' };
export const BOB = { username: 'bob@contoso.test', password: 'bob-Demo-pass-1' };
export const CAROL = { username: 'carol@contoso.test', password: 'carol-Demo-pass-1' };
export const WEB = { clientId: 'tasks-web', redirectUri: 'http://127.0.0.1:7000/callback' };

export function pkce(): { verifier: string; challenge: string } {
  const verifier = randomBytes(32).toString('base64url');
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') };
}

/** The TOTP code for `secret` at the server's clock (seconds). */
export function totpAt(secret: string, nowSeconds: number): string {
  return TOTP.generate({ secret: Secret.fromBase32(secret), timestamp: nowSeconds * 1000 });
}

interface Cookie {
  name: string;
  value: string;
  path: string;
}

export interface Hop {
  status: number;
  url: string;
  location?: string | undefined;
  body: string;
  headers: Headers;
}

export class Browser {
  readonly #cookies: Cookie[] = [];

  cookie(name: string): string | undefined {
    return this.#cookies.find((c) => c.name === name)?.value;
  }

  cookieNames(): string[] {
    return this.#cookies.map((c) => c.name);
  }

  clearCookies(): void {
    this.#cookies.length = 0;
  }

  #header(url: URL): string | undefined {
    const secure = url.protocol === 'https:';
    const list = this.#cookies.filter((c) => (secure || !(c.name.startsWith('__Host-') || c.name.startsWith('__Secure-'))) && (url.pathname === c.path || url.pathname.startsWith(c.path.endsWith('/') ? c.path : `${c.path}/`)));
    return list.length === 0 ? undefined : list.map((c) => `${c.name}=${c.value}`).join('; ');
  }

  #store(response: Response): void {
    for (const line of response.headers.getSetCookie()) {
      const [pair, ...attributes] = line.split(';').map((s) => s.trim());
      const eq = pair!.indexOf('=');
      const name = pair!.slice(0, eq);
      const value = pair!.slice(eq + 1);
      let path = '/';
      let remove = false;
      for (const attribute of attributes) {
        const [k, v] = attribute.split('=');
        if (k!.toLowerCase() === 'path') path = v ?? '/';
        if (k!.toLowerCase() === 'max-age' && Number(v) <= 0) remove = true;
      }
      const index = this.#cookies.findIndex((c) => c.name === name && c.path === path);
      if (index >= 0) this.#cookies.splice(index, 1);
      if (!remove) this.#cookies.push({ name, value, path });
    }
  }

  async request(method: 'GET' | 'POST', url: string, form?: Record<string, string>, headers: Record<string, string> = {}): Promise<Hop> {
    const target = new URL(url);
    const cookie = this.#header(target);
    const response = await fetch(target, {
      method,
      redirect: 'manual',
      headers: {
        ...(cookie ? { cookie } : {}),
        ...(form ? { 'content-type': 'application/x-www-form-urlencoded' } : {}),
        ...headers,
      },
      ...(form ? { body: new URLSearchParams(form).toString() } : {}),
    });
    this.#store(response);
    const body = await response.text();
    const location = response.headers.get('location') ?? undefined;
    return { status: response.status, url: target.href, location: location === undefined ? undefined : new URL(location, target).href, body, headers: response.headers };
  }

  get(url: string): Promise<Hop> {
    return this.request('GET', url);
  }

  post(url: string, form: Record<string, string>): Promise<Hop> {
    return this.request('POST', url, form);
  }
}

/** The first POST form of a page: its absolute action and its fields (hidden and prefilled). */
export function formOf(hop: Hop): { action: string; fields: Record<string, string> } {
  const form = /<form method="post" action="([^"]*)"[^>]*>([\s\S]*?)<\/form>/.exec(hop.body);
  if (form === null) throw new Error(`no form on the page (status ${hop.status}): ${hop.body.slice(0, 400)}`);
  const fields: Record<string, string> = {};
  for (const input of form[2]!.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)">/g)) fields[input[1]!] = unescape(input[2]!);
  return { action: new URL(unescape(form[1]!), hop.url).href, fields };
}

function unescape(value: string): string {
  return value.replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&#96;/g, '`').replace(/&amp;/g, '&');
}

export type PageKind = 'login' | 'mfa' | 'consent' | 'select' | 'admin_required' | 'error' | 'form_post' | 'signed_out' | 'other';

export function pageKind(hop: Hop): PageKind {
  if (hop.body.includes('id="response"')) return 'form_post';
  if (hop.body.includes('name="password"')) return 'login';
  if (hop.body.includes('name="code"')) return 'mfa';
  if (hop.body.includes('<h1>Need admin approval</h1>')) return 'admin_required';
  if (hop.body.includes('name="decision"')) return 'consent';
  if (hop.body.includes('name="account"')) return 'select';
  if (hop.body.includes('class="details"')) return 'error';
  if (hop.body.includes('You signed out')) return 'signed_out';
  return 'other';
}

export function authorizeUrl(server: TestServer, params: Record<string, string>, tenant = 'contoso'): string {
  return `${server.url}/${tenant}/oauth2/v2.0/authorize?${new URLSearchParams(params).toString()}`;
}

export interface FlowOptions {
  user?: { username: string; password: string; totp?: string } | undefined;
  /** What to press on the consent page. Default accept. */
  consent?: 'accept' | 'cancel';
  /** Tick "on behalf of your organization". */
  organization?: boolean;
  account?: 'current' | 'other';
  /** Stop at the first page of this kind and return it. */
  stopAt?: PageKind;
  /** Pages seen, in order. */
  seen?: PageKind[];
}

export interface FlowResult {
  /** The final hop: a redirect to the client (or a page when stopped / on error). */
  hop: Hop;
  /** Parameters delivered to the client, when the flow reached it. */
  params?: Record<string, string>;
  seen: PageKind[];
}

/** Follows a sign-in from `url` until the client receives its response, filling the forms as told. */
export async function runFlow(browser: Browser, server: TestServer, url: string, options: FlowOptions = {}): Promise<FlowResult> {
  const seen = options.seen ?? [];
  let hop = await browser.get(url);
  for (let i = 0; i < 20; i++) {
    if (hop.status === 302 || hop.status === 303) {
      const location = hop.location!;
      if (!location.startsWith(server.url)) return { hop, params: Object.fromEntries(new URL(location).searchParams), seen };
      hop = await browser.get(location);
      continue;
    }
    const kind = pageKind(hop);
    seen.push(kind);
    if (options.stopAt === kind) return { hop, seen };
    const { action, fields } = kind === 'error' || kind === 'signed_out' || kind === 'other' ? { action: '', fields: {} } : formOf(hop);
    switch (kind) {
      case 'login': {
        const user = options.user ?? ALICE;
        hop = await browser.post(action, { ...fields, username: user.username, password: user.password });
        if (hop.status !== 303) return { hop, seen };
        break;
      }
      case 'mfa': {
        const secret = options.user?.totp ?? ALICE.totp;
        // A TOTP step is accepted once per user: move to the next step, as a user waits for the next code.
        advance(server, 30);
        hop = await browser.post(action, { ...fields, code: totpAt(secret, serverNow(server)) });
        if (hop.status !== 303) return { hop, seen };
        break;
      }
      case 'consent':
        hop = await browser.post(action, { ...fields, decision: options.consent ?? 'accept', ...(options.organization ? { organization: '1' } : {}) });
        break;
      case 'admin_required':
        hop = await browser.post(action, { ...fields, decision: 'cancel' });
        break;
      case 'select':
        hop = await browser.post(action, { ...fields, account: options.account ?? 'current' });
        break;
      case 'form_post':
        return { hop, params: fields, seen };
      default:
        return { hop, seen };
    }
  }
  throw new Error('too many hops');
}

const offsets = new WeakMap<TestServer, number>();
/** Moves the server clock and remembers by how much (so TOTP codes follow it). */
export function advance(server: TestServer, seconds: number): void {
  server.advance(seconds);
  offsets.set(server, offsetOf(server) + seconds);
}
function offsetOf(server: TestServer): number {
  return offsets.get(server) ?? 0;
}
/** The server's clock (epoch seconds), as moved by `advance`. */
export function serverNow(server: TestServer): number {
  return Math.floor(Date.now() / 1000) + offsetOf(server);
}

/** Redeems a code at the token endpoint as a public client (PKCE). */
export async function redeem(server: TestServer, code: string, verifier: string, extra: Record<string, string> = {}) {
  return server.post('/contoso/oauth2/v2.0/token', {
    grant_type: 'authorization_code',
    client_id: WEB.clientId,
    redirect_uri: WEB.redirectUri,
    code,
    code_verifier: verifier,
    ...extra,
  });
}

/** Standard authorize parameters for tasks-web. */
export function webParams(challenge: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    client_id: WEB.clientId,
    redirect_uri: WEB.redirectUri,
    response_type: 'code',
    scope: 'openid profile offline_access api://tasks/Tasks.ReadWrite',
    state: 'st-123',
    nonce: 'n-456',
    code_challenge: challenge,
    code_challenge_method: 'S256',
    ...extra,
  };
}

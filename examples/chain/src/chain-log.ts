/**
 * The chain log: the latest user actions (one W3C trace each) and, for each, every hop with the
 * decoded token that crossed it and the decision that let it through — or the refusal that stopped it.
 *
 * Three sources meet here:
 * - the Client App says what the user did (`begin`, `note`);
 * - each API reports the request it served (`HopReport`, with the verified claims of the token);
 * - the token service's audit stream says how each exchange was decided and by which rule.
 *
 * An exchange is matched to the hop it enabled by the `jti` of the token it issued (the audit event's
 * `issuedTokenId` is the `jti` the next API sees); a refused exchange is matched to the hop whose
 * token it tried to exchange (`subjectTokenId`), while that hop was in flight. Tokens themselves
 * never reach this module.
 */
import type { ExchangeAuditEvent } from '@baton/server';
import type { DownstreamRefusal, HopObserver, HopReport } from './observe.ts';

/** The claims the chain view shows, as the API verified them. Never the token or its signature. */
export interface TokenView {
  aud?: unknown;
  sub?: unknown;
  oid?: unknown;
  tid?: unknown;
  azp?: unknown;
  scp?: unknown;
  roles?: unknown;
  act?: unknown;
  amr?: unknown;
  acr?: unknown;
  idtyp?: unknown;
  preferred_username?: unknown;
  jti?: unknown;
  iat?: unknown;
  exp?: unknown;
  /** RFC 9449: `{ jkt }`, the thumbprint of the key the token is bound to (DPoP), absent for a bearer token. */
  cnf?: unknown;
  /** RFC 8693 §4.4: the middle tiers the token's API (`delegation.mayAct`) allows to exchange it. */
  may_act?: unknown;
}

const SHOWN: ReadonlyArray<keyof TokenView> = ['aud', 'sub', 'oid', 'tid', 'azp', 'scp', 'roles', 'act', 'amr', 'acr', 'idtyp', 'preferred_username', 'jti', 'iat', 'exp', 'cnf', 'may_act'];

export interface DecisionView {
  /** Who decided: the token service (an exchange, a sign-in, client credentials), the SDK, or the API. */
  by: 'token-service' | 'sdk' | 'api';
  outcome: 'allow' | 'refuse' | 'error';
  /** The grant or rule: `on_behalf_of · consent`, `authorization_code`, `confused-deputy` … */
  rule: string;
  /** One sentence for people. */
  summary: string;
  error?: string | undefined;
  entraCode?: number | undefined;
  description?: string | undefined;
  /** The token came from the OBO cache: this decision was taken for an earlier request. */
  cached?: boolean | undefined;
  time?: string | undefined;
}

export interface HopView {
  id: string;
  /** Client ids: the caller (`azp`) and the API called. */
  from: string;
  to: string;
  /** `call`: a request reached `to`. `exchange`: a token for `to` was refused, so no call was made. */
  kind: 'call' | 'exchange';
  method?: string | undefined;
  path?: string | undefined;
  status?: number | undefined;
  token?: TokenView | undefined;
  decision?: DecisionView | undefined;
  outcome: 'ok' | 'refused';
  reason?: string | undefined;
  startedAt: number;
  durationMs?: number | undefined;
}

export interface NoteView {
  time: number;
  text: string;
  tone: 'info' | 'warn' | 'error';
}

export interface RequestView {
  /** The trace id. */
  id: string;
  label: string;
  /** Who acted: the user's name, or the application acting as itself. */
  actor: string;
  /**
   * The `oid` of the user the request was made for (absent for app-only and unknown callers). The
   * chain view shows a request only to this user, or to an administrator asking for every user's.
   */
  owner?: string | undefined;
  kind: 'delegated' | 'app-only' | 'unknown';
  startedAt: number;
  updatedAt: number;
  hops: HopView[];
  notes: NoteView[];
  outcome: 'ok' | 'refused' | 'pending';
}

export type RequestListener = (request: RequestView) => void;

/** Who is looking at the chain view: a signed-in user (`oid`), and whether they asked for every user's requests as an administrator. */
export interface ChainViewer {
  oid: string;
  /** Granted only to administrators (the caller checks the role). */
  allUsers: boolean;
}

/**
 * Whether `viewer` may see `request`. A trace shows what a user did, the documents they touched
 * (titles in labels, reasons and notes) and the tokens issued for them: it is theirs alone. An
 * app-only request (the indexer) acts for nobody, so every signed-in user may see it; a signed-out
 * visitor sees nothing.
 */
export function canSee(request: RequestView, viewer: ChainViewer | undefined): boolean {
  if (viewer === undefined) return false;
  if (viewer.allUsers) return true;
  if (request.kind === 'app-only') return true;
  return request.owner !== undefined && request.owner === viewer.oid;
}

/** The audit feed of the token service (`auditLogOf(server.ctx)`), as far as the chain log needs it. */
export interface ExchangeFeed {
  subscribe(listener: (event: ExchangeAuditEvent) => void): () => void;
  recent(afterSeq?: number): ExchangeAuditEvent[];
}

/** Display names of the applications, for labels. */
export type AppNames = Readonly<Record<string, string>>;

const MAX_REQUESTS = 60;
const MAX_EVENTS = 2000;
/** A refused exchange waits this long for the hop it belongs to (that hop's response is still being written). */
const PENDING_MS = 60_000;

function tokenView(claims: Readonly<Record<string, unknown>>): TokenView {
  const view: Record<string, unknown> = {};
  for (const name of SHOWN) if (claims[name] !== undefined) view[name] = claims[name];
  return view as TokenView;
}

function str(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined;
}

/** Client ids in an `act` claim, outermost (most recent) first. */
export function actChain(act: unknown): string[] {
  const names: string[] = [];
  let node = act;
  while (node !== null && typeof node === 'object' && names.length < 16) {
    const a = node as Record<string, unknown>;
    names.push(str(a.client_id) ?? str(a.sub) ?? '?');
    node = a.act;
  }
  return names;
}

export class ChainLog implements HopObserver {
  readonly #requests = new Map<string, RequestView>();
  readonly #listeners = new Set<RequestListener>();
  /** Allowed exchanges by the `jti` of the token they issued. */
  readonly #issued = new Map<string, ExchangeAuditEvent>();
  /** Refused exchanges not yet matched to a hop. */
  #refused: ExchangeAuditEvent[] = [];
  readonly #names: AppNames;
  #unsubscribe: (() => void) | undefined;
  #hopSeq = 0;

  constructor(names: AppNames = {}) {
    this.#names = names;
  }

  /** Follows the token service's exchange decisions. */
  attach(feed: ExchangeFeed): void {
    this.#unsubscribe?.();
    for (const event of feed.recent()) this.exchange(event);
    this.#unsubscribe = feed.subscribe((event) => this.exchange(event));
  }

  close(): void {
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
    this.#listeners.clear();
  }

  name(clientId: string): string {
    return this.#names[clientId] ?? clientId;
  }

  /** Display names of the applications, by client id. */
  names(): AppNames {
    return this.#names;
  }

  /** The Client App starts a user action: one trace. */
  begin(traceId: string, init: { label: string; actor: string; owner?: string | undefined; kind?: RequestView['kind'] }): void {
    const now = Date.now();
    const existing = this.#requests.get(traceId);
    if (existing) {
      existing.label = init.label;
      existing.actor = init.actor;
      if (init.owner !== undefined) existing.owner = init.owner;
      if (init.kind) existing.kind = init.kind;
      this.#emit(existing);
      return;
    }
    this.#add({ id: traceId, label: init.label, actor: init.actor, owner: init.owner, kind: init.kind ?? 'delegated', startedAt: now, updatedAt: now, hops: [], notes: [], outcome: 'pending' });
  }

  /** A line of explanation on a request (the Client App's step-up, an error it showed). */
  note(traceId: string, text: string, tone: NoteView['tone'] = 'info'): void {
    const request = this.#requests.get(traceId);
    if (request === undefined) return;
    request.notes.push({ time: Date.now(), text, tone });
    if (tone === 'error' && request.outcome !== 'refused') request.outcome = 'refused';
    this.#emit(request);
  }

  /** Marks the end of a user action whose calls all reported. */
  finish(traceId: string): void {
    const request = this.#requests.get(traceId);
    if (request === undefined) return;
    if (request.outcome === 'pending') request.outcome = request.hops.some((h) => h.outcome === 'refused') ? 'refused' : 'ok';
    this.#emit(request);
  }

  /** Newest first. */
  snapshot(): RequestView[] {
    return [...this.#requests.values()].sort((a, b) => b.startedAt - a.startedAt);
  }

  get(traceId: string): RequestView | undefined {
    return this.#requests.get(traceId);
  }

  subscribe(listener: RequestListener): () => void {
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  }

  /** An exchange decided by the token service (allowed or refused). */
  exchange(event: ExchangeAuditEvent): void {
    if (event.decision === 'allow') {
      if (event.issuedTokenId !== undefined) {
        this.#issued.set(event.issuedTokenId, event);
        if (this.#issued.size > MAX_EVENTS) this.#issued.delete(this.#issued.keys().next().value as string);
      }
      return;
    }
    const cutoff = Date.now() - PENDING_MS;
    this.#refused = this.#refused.filter((e) => Date.parse(e.time) >= cutoff);
    this.#refused.push(event);
  }

  /** An API finished a request (HopObserver). */
  hop(report: HopReport): void {
    let request = this.#requests.get(report.traceId);
    const claims = report.claims;
    if (request === undefined) {
      const appOnly = claims?.idtyp === 'app';
      request = {
        id: report.traceId,
        label: `${report.method} ${report.path}`,
        actor: appOnly ? this.name(str(claims?.azp) ?? '?') : (str(claims?.name) ?? str(claims?.preferred_username) ?? 'unknown caller'),
        owner: appOnly ? undefined : str(claims?.oid),
        kind: claims === undefined ? 'unknown' : appOnly ? 'app-only' : 'delegated',
        startedAt: report.startedAt,
        updatedAt: report.finishedAt,
        hops: [],
        notes: [],
        outcome: 'pending',
      };
      this.#add(request);
    }

    const refused = report.status >= 400;
    const hop: HopView = {
      id: `h${++this.#hopSeq}`,
      from: str(claims?.azp) ?? str(claims?.client_id) ?? 'caller',
      to: report.api,
      kind: 'call',
      method: report.method,
      path: report.path,
      status: report.status,
      token: claims === undefined ? undefined : tokenView(claims),
      decision: claims === undefined ? undefined : this.#decisionFor(claims, request.startedAt),
      outcome: refused ? 'refused' : 'ok',
      reason: report.reason,
      startedAt: report.startedAt,
      durationMs: report.finishedAt - report.startedAt,
    };
    const hops: HopView[] = [hop];

    // Exchanges of this hop's token that the token service refused while the hop was in flight.
    const jti = str(claims?.jti) ?? str(claims?.uti);
    if (jti !== undefined) {
      const mine = this.#refused.filter((e) => {
        const t = Date.parse(e.time);
        return e.subjectTokenId === jti && e.caller === report.api && t >= report.startedAt - 1000 && t <= report.finishedAt + 1000;
      });
      this.#refused = this.#refused.filter((e) => !mine.includes(e));
      for (const event of mine) hops.push(this.#refusedExchange(event, report.api));
    }
    for (const refusal of report.refusals) hops.push(this.#sdkRefusal(refusal, report.api, report.finishedAt));

    request.hops.push(...hops);
    request.hops.sort((a, b) => a.startedAt - b.startedAt);
    if (refused || hops.some((h) => h.outcome === 'refused')) request.outcome = 'refused';
    else if (request.outcome === 'pending' && request.hops.every((h) => h.outcome === 'ok')) request.outcome = 'ok';
    request.updatedAt = Date.now();
    this.#emit(request);
  }

  #decisionFor(claims: Readonly<Record<string, unknown>>, requestStartedAt: number): DecisionView {
    if (claims.idtyp === 'app') {
      const roles = Array.isArray(claims.roles) ? claims.roles.join(' ') : '';
      return {
        by: 'token-service',
        outcome: 'allow',
        rule: 'client_credentials',
        summary: `Client credentials: ${this.name(str(claims.azp) ?? '?')} acts as itself with the application permission${roles.includes(' ') ? 's' : ''} assigned to it (${roles}).`,
      };
    }
    if (claims.act === undefined) {
      const amr = Array.isArray(claims.amr) ? claims.amr.join(', ') : '?';
      return {
        by: 'token-service',
        outcome: 'allow',
        rule: 'authorization_code',
        summary: `Issued at sign-in (authorization code + PKCE) to ${this.name(str(claims.azp) ?? '?')}; the user authenticated with ${amr}.`,
      };
    }
    const jti = str(claims.jti) ?? str(claims.uti);
    const event = jti === undefined ? undefined : this.#issued.get(jti);
    if (event === undefined) {
      return { by: 'token-service', outcome: 'allow', rule: 'on_behalf_of', summary: 'Exchanged On-Behalf-Of before this page started following the token service.' };
    }
    const cached = Date.parse(event.time) < requestStartedAt - 1000;
    const granted = event.scopesGranted.join(' ');
    return {
      by: 'token-service',
      outcome: 'allow',
      rule: `${event.form} · ${event.rule}`,
      summary: `${this.name(event.caller)} exchanged the token it received for one addressed to ${this.name(event.api ?? '?')}, scopes ${granted}.${cached ? ' Served from the SDK\u2019s OBO cache: this decision was taken for an earlier request.' : ''}`,
      cached,
      time: event.time,
    };
  }

  #refusedExchange(event: ExchangeAuditEvent, from: string): HopView {
    const code = event.entraCode === undefined ? '' : ` (AADSTS${event.entraCode})`;
    return {
      id: `h${++this.#hopSeq}`,
      from,
      to: event.api ?? '?',
      kind: 'exchange',
      outcome: 'refused',
      decision: {
        by: 'token-service',
        outcome: event.decision === 'error' ? 'error' : 'refuse',
        rule: `${event.form} · ${event.rule}`,
        summary: `The token service refused to exchange ${this.name(from)}'s token for ${this.name(event.api ?? '?')}: ${event.error ?? 'error'}${event.suberror ? ` / ${event.suberror}` : ''}${code}.`,
        error: event.error,
        entraCode: event.entraCode,
        description: event.description,
        time: event.time,
      },
      startedAt: Date.parse(event.time),
    };
  }

  #sdkRefusal(refusal: DownstreamRefusal, from: string, at: number): HopView {
    return {
      id: `h${++this.#hopSeq}`,
      from,
      to: refusal.to,
      kind: 'exchange',
      outcome: 'refused',
      decision: {
        by: refusal.by,
        outcome: 'refuse',
        rule: refusal.rule,
        summary:
          refusal.as === 'app'
            ? `${this.name(from)} tried to call ${this.name(refusal.to)} with its own application identity while serving a user. Refused before any token was requested.`
            : `${this.name(from)} did not call ${this.name(refusal.to)}.`,
        description: refusal.description,
      },
      startedAt: at,
    };
  }

  #add(request: RequestView): void {
    this.#requests.set(request.id, request);
    while (this.#requests.size > MAX_REQUESTS) {
      const oldest = [...this.#requests.values()].sort((a, b) => a.startedAt - b.startedAt)[0] as RequestView;
      this.#requests.delete(oldest.id);
    }
    this.#emit(request);
  }

  #emit(request: RequestView): void {
    request.updatedAt = Date.now();
    for (const listener of this.#listeners) {
      try {
        listener(request);
      } catch {
        // A closed page must not break a request.
      }
    }
  }
}

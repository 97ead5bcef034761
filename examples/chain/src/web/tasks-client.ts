/**
 * Tasks Web's calls to the Tasks API, with the signed-in user's access token: renewed shortly before
 * it expires (one refresh at a time per session), one trace per user action, and the answer sorted
 * into what the page must do next — show it, show an error, step up (a claims challenge), or sign in.
 */
import { bearerChallengeOf, decodeClaimsChallenge } from '@baton/resource';
import type { ChainLog } from '../chain-log.ts';
import type { ExampleLogger } from '../log.ts';
import { traceAction } from '../trace.ts';
import type { Oidc, SignedIn } from './oidc.ts';
import type { Session } from './sessions.ts';

/** What a call to the Tasks API came to. */
export type ApiResult =
  | { kind: 'ok'; status: number; body: unknown; traceId: string }
  | { kind: 'error'; status: number; error: string; description: string; traceId: string }
  | { kind: 'step-up'; claims: string; traceId: string }
  | { kind: 'signin'; traceId: string };

export interface TasksClientOptions {
  oidc: Oidc;
  tasksApiUrl: string;
  chain?: ChainLog | undefined;
  /** Renew the access token this long before it expires (default 60 000 ms). */
  refreshMarginMs?: number | undefined;
  log: ExampleLogger;
}

export class TasksClient {
  readonly #options: TasksClientOptions;
  /** Refreshes in flight, per session: refresh tokens rotate, so two parallel refreshes would look like a replay. */
  readonly #refreshing = new WeakMap<Session, Promise<SignedIn | undefined>>();

  constructor(options: TasksClientOptions) {
    this.#options = options;
  }

  /** The session's tokens, renewed first when they expire soon (or when `force`: the API refused them). */
  async freshTokens(session: Session, force = false): Promise<SignedIn | undefined> {
    const s = session.signedIn;
    if (s === undefined) return undefined;
    if (!force && s.expiresAt - Date.now() > (this.#options.refreshMarginMs ?? 60_000)) return s;
    if (s.refreshToken === undefined) return force ? undefined : s;
    let pending = this.#refreshing.get(session);
    if (pending === undefined) {
      pending = this.#refresh(session, s, s.refreshToken);
      this.#refreshing.set(session, pending);
      void pending.finally(() => this.#refreshing.delete(session));
    }
    return pending;
  }

  /** One user action → one trace → one call to the Tasks API (which may call further). */
  call(session: Session, label: string, method: string, path: string, body?: Record<string, unknown>): Promise<ApiResult> {
    return traceAction(`Tasks Web ${method}`, { 'url.path': path }, ({ traceId, traceparent }) => this.#call(session, label, method, path, body, traceId, traceparent));
  }

  async #call(session: Session, label: string, method: string, path: string, body: Record<string, unknown> | undefined, traceId: string, traceparent: string): Promise<ApiResult> {
    const user = session.signedIn?.user;
    const chain = this.#options.chain;
    chain?.begin(traceId, { label, actor: user?.name ?? 'signed-out visitor', owner: user?.oid });
    try {
      for (let attempt = 0; attempt < 2; attempt++) {
        const tokens = await this.freshTokens(session, attempt > 0);
        if (tokens === undefined) return { kind: 'signin', traceId };
        const res = await this.#send(tokens, traceparent, method, path, body);
        if (res.status === 401) {
          const claims = await this.#claimsChallenge(res);
          if (claims !== undefined) {
            chain?.note(traceId, `Tasks API answered 401 insufficient_claims with a claims challenge ${claims}. Tasks Web sends ${user?.name ?? 'the user'} back to Baton to sign in with these claims, then retries.`, 'warn');
            return { kind: 'step-up', claims, traceId };
          }
          if (attempt === 0) continue; // expired or revoked: refresh once, then retry
          return { kind: 'signin', traceId };
        }
        return await this.#result(res, traceId);
      }
      return { kind: 'signin', traceId };
    } catch (error) {
      this.#options.log.warn('Tasks API unreachable', { cause: (error as Error).message });
      chain?.note(traceId, 'The Tasks API could not be reached.', 'error');
      return { kind: 'error', status: 502, error: 'unreachable', description: 'The Tasks API could not be reached.', traceId };
    } finally {
      chain?.finish(traceId);
    }
  }

  #refresh(session: Session, current: SignedIn, refreshToken: string): Promise<SignedIn | undefined> {
    return this.#options.oidc.refresh(refreshToken, current).then(
      (renewed) => {
        session.signedIn = renewed;
        return renewed;
      },
      (error: unknown) => {
        this.#options.log.warn('refresh failed; the user signs in again', { user: current.user.username, cause: (error as Error).message });
        session.signedIn = undefined;
        return undefined;
      },
    );
  }

  #send(tokens: SignedIn, traceparent: string, method: string, path: string, body: Record<string, unknown> | undefined): Promise<Response> {
    const url = new URL(path, this.#options.tasksApiUrl);
    // A DPoP-bound token goes with a proof of Tasks Web's key, made for this request (RFC 9449 §7).
    const bound = tokens.tokenType.toLowerCase() === 'dpop';
    return fetch(url, {
      method,
      headers: {
        authorization: `${bound ? 'DPoP' : 'Bearer'} ${tokens.accessToken}`,
        ...(bound ? { dpop: this.#options.oidc.proof(method, url.href, tokens.accessToken) } : {}),
        traceparent,
        accept: 'application/json',
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(20_000),
    });
  }

  /** The claims of a `401 insufficient_claims` challenge, or `undefined` for any other 401. */
  async #claimsChallenge(res: Response): Promise<string | undefined> {
    const challenge = bearerChallengeOf(res.headers.get('www-authenticate'));
    await res.body?.cancel();
    return challenge?.params.error === 'insufficient_claims' && challenge.params.claims !== undefined ? decodeClaimsChallenge(challenge.params.claims) : undefined;
  }

  async #result(res: Response, traceId: string): Promise<ApiResult> {
    const text = await res.text();
    let json: unknown;
    try {
      json = text === '' ? undefined : JSON.parse(text);
    } catch {
      json = undefined;
    }
    if (res.ok) return { kind: 'ok', status: res.status, body: json, traceId };
    // OAuth-style errors (`error_description`) or RFC 9457 problem details (`detail`).
    const e = (json ?? {}) as { error?: unknown; error_description?: unknown; detail?: unknown };
    const description = typeof e.error_description === 'string' ? e.error_description : typeof e.detail === 'string' ? e.detail : `The Tasks API answered ${res.status}.`;
    this.#options.chain?.note(traceId, `Tasks Web showed: ${description}`, res.status >= 500 ? 'error' : 'warn');
    return { kind: 'error', status: res.status, error: typeof e.error === 'string' ? e.error : 'error', description, traceId };
  }
}

/**
 * Server-side sessions of Tasks Web. The browser holds only an opaque, HttpOnly, SameSite=Lax
 * cookie; the tokens stay on the server (a confidential place, even though the OAuth client itself
 * is public). In memory: a restart signs everyone out of Tasks Web (not of Baton).
 */
import { randomBytes } from 'node:crypto';
import type { PendingSignIn, SignedIn } from './oidc.ts';

export const SESSION_COOKIE = 'tasks_web_session';
const IDLE_MS = 8 * 60 * 60 * 1000;
const MAX_PENDING = 5;
const PENDING_MS = 15 * 60 * 1000;

/** A change the user asked for that needs a stronger sign-in first; replayed after the step-up. */
export interface PendingAction {
  label: string;
  method: 'POST' | 'PATCH' | 'DELETE';
  path: string;
  body: Record<string, unknown> | undefined;
  /** Where to go once it is done. */
  returnTo: string;
}

export interface Flash {
  tone: 'ok' | 'warn' | 'error';
  text: string;
  /** A link to the chain view for the request it is about. */
  traceId?: string | undefined;
}

export interface Session {
  id: string;
  csrf: string;
  signedIn: SignedIn | undefined;
  /** Epoch ms of the last completed sign-in. */
  signedInAt?: number | undefined;
  /** The claims that sign-in was asked to satisfy (a step-up's or a CAE challenge's), if any. */
  signedInClaims?: string | undefined;
  pending: PendingSignIn[];
  action: PendingAction | undefined;
  flash: Flash | undefined;
  lastSeen: number;
}

export class Sessions {
  readonly #sessions = new Map<string, Session>();

  get(id: string | undefined): Session | undefined {
    if (id === undefined) return undefined;
    const session = this.#sessions.get(id);
    if (session === undefined) return undefined;
    if (Date.now() - session.lastSeen > IDLE_MS) {
      this.#sessions.delete(id);
      return undefined;
    }
    session.lastSeen = Date.now();
    return session;
  }

  /** The live session with this id, without counting it as activity (a chain view left open does not keep a session alive). */
  peek(id: string | undefined): Session | undefined {
    if (id === undefined) return undefined;
    const session = this.#sessions.get(id);
    return session === undefined || Date.now() - session.lastSeen > IDLE_MS ? undefined : session;
  }

  create(): Session {
    this.#sweep();
    const session: Session = {
      id: randomBytes(32).toString('base64url'),
      csrf: randomBytes(24).toString('base64url'),
      signedIn: undefined,
      pending: [],
      action: undefined,
      flash: undefined,
      lastSeen: Date.now(),
    };
    this.#sessions.set(session.id, session);
    return session;
  }

  /** A new id for the same session (after sign-in: session fixation). */
  rotate(session: Session): Session {
    this.#sessions.delete(session.id);
    session.id = randomBytes(32).toString('base64url');
    session.csrf = randomBytes(24).toString('base64url');
    this.#sessions.set(session.id, session);
    return session;
  }

  destroy(session: Session): void {
    this.#sessions.delete(session.id);
  }

  addPending(session: Session, pending: PendingSignIn): void {
    session.pending = [...session.pending.filter((p) => Date.now() - p.createdAt < PENDING_MS), pending].slice(-MAX_PENDING);
  }

  /** The pending sign-in with this `state`, removed (single use). */
  takePending(session: Session, state: string | undefined): PendingSignIn | undefined {
    const found = session.pending.find((p) => p.state === state && Date.now() - p.createdAt < PENDING_MS);
    session.pending = session.pending.filter((p) => p !== found);
    return found;
  }

  #sweep(): void {
    const now = Date.now();
    for (const [id, s] of this.#sessions) if (now - s.lastSeen > IDLE_MS) this.#sessions.delete(id);
  }
}

/**
 * What the chain view shows of continuous access evaluation (docs/cae.md): the security events
 * each API's receiver accepted (`createSignals({ onEvent })`), newest first, and the last "revoke
 * sessions" pressed on the chain view.
 *
 * The demo's streams ask for the `opaque` subject format, so an event names the user by her `oid`,
 * the claim every token of the chain carries: the chain view shows an event to the user it is about
 * (and every event to an administrator asking for every user's), as it does requests.
 */
import type { ReceivedEvent } from '@baton/resource';
import type { ChainViewer } from './chain-log.ts';

export interface SignalView {
  /** The SET's `jti`. */
  id: string;
  /** The receiving API's client id (`tasks-api` …). */
  api: string;
  /** The event type's last segment (`session-revoked`), and the full URI. */
  type: string;
  typeUri: string;
  /** What the SET named: `oid` / `sub` / `sid` / `email` and its value. */
  subject: { kind: string; value: string } | undefined;
  /** The user's `oid` when the subject names it. */
  oid: string | undefined;
  /** Epoch ms when the API accepted it. */
  receivedAt: number;
  /** Epoch seconds: tokens issued before are refused. */
  edge: number | undefined;
  via: ReceivedEvent['via'];
}

export interface RevokeView {
  username: string;
  at: number;
  outcome: 'ok' | 'failed';
  text: string;
}

const MAX = 60;

/** The subject of a revocation key (`oid:<tid>|<oid>`, signals.ts `revocationKeysOfSubject`). */
function subjectOf(key: string | undefined): SignalView['subject'] {
  if (key === undefined) return undefined;
  const colon = key.indexOf(':');
  const bar = key.indexOf('|');
  if (colon < 0 || bar < colon) return undefined;
  return { kind: key.slice(0, colon), value: key.slice(bar + 1) };
}

export class SignalLog {
  readonly #events: SignalView[] = [];
  readonly #listeners = new Set<() => void>();
  #revoke: RevokeView | undefined;
  readonly #clock: () => number;

  constructor(clock: () => number = Date.now) {
    this.#clock = clock;
  }

  /** The `onEvent` of one API's receiver. */
  receiverFor(api: string): (event: ReceivedEvent) => void {
    return (event) => {
      const subject = subjectOf(event.keys[0]);
      this.#events.unshift({
        id: event.jti,
        api,
        type: event.type.slice(event.type.lastIndexOf('/') + 1),
        typeUri: event.type,
        subject,
        oid: subject?.kind === 'oid' ? subject.value : undefined,
        receivedAt: this.#clock(),
        edge: event.edge,
        via: event.via,
      });
      this.#events.length = Math.min(this.#events.length, MAX);
      this.#notify();
    };
  }

  revoked(view: RevokeView): void {
    this.#revoke = view;
    this.#notify();
  }

  /** The events `viewer` may see (theirs; every one for an administrator's view), newest first. */
  visibleTo(viewer: ChainViewer | undefined): SignalView[] {
    if (viewer === undefined) return [];
    return this.#events.filter((e) => viewer.allUsers || (e.oid !== undefined && e.oid === viewer.oid));
  }

  lastRevoke(): RevokeView | undefined {
    return this.#revoke;
  }

  subscribe(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #notify(): void {
    for (const listener of this.#listeners) listener();
  }
}

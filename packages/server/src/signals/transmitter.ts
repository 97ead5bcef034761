/**
 * The security event transmitter of one token service instance (issue 17, OpenID Shared Signals
 * Framework 1.0): it hears every admin change (the admin change log, admin/audit.ts) and every
 * sign-out, turns each into CAEP/RISC events (events.ts), signs one SET per interested stream
 * (sets.ts) and queues it in the store, where it waits until the receiver acknowledges it (poll,
 * RFC 8936) or the push worker delivers it (push.ts, RFC 8935). The store is shared by every
 * instance: a SET queued by one is polled from, or pushed by, any.
 *
 * An admin change's SETs are signed before the change is written and queued in the change's own
 * transaction (admin/changes.ts `commitChange`, `Store.atomically`): the change, its change event
 * and its SETs are stored together or not at all. A sign-out's event is queued after the session
 * ends (`emit`); `close()` waits for the events under way.
 */
import type { ServerContext } from '../context.ts';
import type { AdminChangeEvent } from '../admin/audit.ts';
import type { QueuedSet, SignalStream } from '../store/types.ts';
import { EVENT_TYPES, securityEventsOf, type SecurityEvent } from './events.ts';
import { setFor, signSet } from './sets.ts';
import { PushDelivery } from './push.ts';

/** How long a SET waits for its receiver before it is dropped (seconds). */
export const SET_RETENTION_SECONDS = 7 * 24 * 3600;

export class Transmitter {
  readonly #ctx: ServerContext;
  readonly #pending = new Set<Promise<void>>();
  /** The last emission of each tenant: the next one starts after it. */
  readonly #lastOfTenant = new Map<string, Promise<void>>();
  /** Long polls waiting for a stream's next SET, by `tenant|stream`. */
  readonly #waiting = new Map<string, Set<() => void>>();
  readonly #push: PushDelivery;
  readonly #closing = new AbortController();
  /** Long polls being answered: `close()` waits for them, so the server's close finds their connections idle. */
  readonly #longPolls = new Set<Promise<unknown>>();
  /** Between `start` and `close`: admin changes become SETs. */
  #transmitting = false;

  constructor(ctx: ServerContext) {
    this.#ctx = ctx;
    this.#push = new PushDelivery(ctx);
  }

  /** From now on admin changes carry their SETs; with `push`, also runs the push worker. */
  start(options: { push: boolean }): void {
    this.#transmitting = true;
    if (options.push) this.#push.start();
  }

  /** True once `close()` was called: long polls answer at once. */
  get closing(): boolean {
    return this.#closing.signal.aborted;
  }

  /** Stops listening and pushing, ends long polls; waits for the events already under way to be queued. */
  async close(): Promise<void> {
    this.#closing.abort();
    this.#transmitting = false;
    await this.settled();
    await this.#push.stop();
    await Promise.allSettled([...this.#longPolls]);
  }

  /** Runs a long poll's answer, tracked for `close()`. */
  longPoll<T>(answer: () => Promise<T>): Promise<T> {
    const running = answer();
    this.#longPolls.add(running);
    void running.finally(() => this.#longPolls.delete(running)).catch(() => {});
    return running;
  }

  /** Resolves once every event emitted so far is queued (or failed and was logged). */
  async settled(): Promise<void> {
    while (this.#pending.size > 0) await Promise.allSettled([...this.#pending]);
  }

  /**
   * The SETs an admin change is (events.ts), signed for every stream that carries them, for
   * `commitChange` to queue in the change's own transaction; then `queued(sets)`. None when this
   * transmitter is not running.
   */
  async setsOfChange(change: AdminChangeEvent): Promise<QueuedSet[]> {
    if (!this.#transmitting) return [];
    const events = securityEventsOf(change, this.#ctx.now());
    return events.length === 0 ? [] : this.#signed(change.tenant, events, change.id);
  }

  /** After SETs were stored (by `commitChange`): the push worker and the long polls waiting for them hear of it. */
  queued(sets: readonly QueuedSet[]): void {
    if (sets.length === 0) return;
    if (sets.some((s) => s.nextAttemptAt !== undefined)) this.#push.wake();
    for (const set of sets) {
      const waiting = this.#waiting.get(`${set.tenantId}|${set.streamId}`);
      if (waiting !== undefined) for (const wake of waiting) wake();
    }
    this.#ctx.log.info({ tenant: sets[0]!.tenantId, sets: sets.length }, 'security events queued');
  }

  /**
   * Queues `events` of `tenantId` in every stream that carries them, after every event this
   * instance emitted for the tenant before (a receiver sees a disable before the enable that
   * followed it). `txn` links them to their cause.
   */
  emit(tenantId: string, events: readonly SecurityEvent[], txn?: string): Promise<void> {
    const previous = this.#lastOfTenant.get(tenantId) ?? Promise.resolve();
    const work = previous
      .then(() => this.#emit(tenantId, events, txn))
      .catch((error: Error) => {
        this.#ctx.log.error({ err: error.message, tenant: tenantId, events: events.map((e) => e.type) }, 'security events could not be queued');
      });
    this.#lastOfTenant.set(tenantId, work);
    this.#pending.add(work);
    void work.finally(() => {
      this.#pending.delete(work);
      if (this.#lastOfTenant.get(tenantId) === work) this.#lastOfTenant.delete(tenantId);
    });
    return work;
  }

  async #emit(tenantId: string, events: readonly SecurityEvent[], txn: string | undefined): Promise<void> {
    const sets = await this.#signed(tenantId, events, txn);
    await this.#queue(sets);
    if (sets.length > 0) this.#ctx.log.info({ tenant: tenantId, txn, events: events.map((e) => e.type), sets: sets.length }, 'security events queued');
  }

  /** One signed SET per (interested stream, event). */
  async #signed(tenantId: string, events: readonly SecurityEvent[], txn: string | undefined): Promise<QueuedSet[]> {
    const streams = (await this.#ctx.store.listStreams(tenantId)).filter((s) => s.status !== 'disabled');
    if (streams.length === 0) return [];
    const directory = await this.#ctx.directories.get(tenantId);
    if (directory === undefined) return [];
    const sets: QueuedSet[] = [];
    for (const stream of streams) {
      for (const event of events) {
        const signed = await setFor(this.#ctx, directory, stream, event, txn);
        if (signed !== undefined) sets.push(this.#queued(stream, signed.jti, signed.set));
      }
    }
    return sets;
  }

  /** The SSF verification event (`state` echoed), queued like any other. */
  async verify(stream: SignalStream, state: string | undefined): Promise<void> {
    const signed = await signSet(this.#ctx, stream, { format: 'opaque', id: stream.streamId }, { [EVENT_TYPES.verification]: state === undefined ? {} : { state } });
    await this.#queue([this.#queued(stream, signed.jti, signed.set)]);
  }

  /** The SSF stream-updated event: the transmitter changed the stream's status. */
  async streamUpdated(stream: SignalStream): Promise<void> {
    const signed = await signSet(this.#ctx, stream, { format: 'opaque', id: stream.streamId }, {
      [EVENT_TYPES.streamUpdated]: { status: stream.status, ...(stream.reason !== undefined ? { reason: stream.reason } : {}) },
    });
    await this.#queue([this.#queued(stream, signed.jti, signed.set)]);
  }

  #queued(stream: SignalStream, jti: string, set: string): QueuedSet {
    const now = this.#ctx.now();
    return {
      tenantId: stream.tenantId,
      streamId: stream.streamId,
      jti,
      set,
      createdAt: now,
      expiresAt: now + SET_RETENTION_SECONDS,
      ...(stream.delivery.method === 'push' ? { nextAttemptAt: now } : {}),
      attempts: 0,
    };
  }

  async #queue(sets: QueuedSet[]): Promise<void> {
    if (sets.length === 0) return;
    await this.#ctx.store.queueSets(sets);
    this.queued(sets);
  }

  /**
   * Waits until this instance queues a SET for the stream, `ms` pass, or `signal` aborts (a long
   * poll re-reads the store after each wait: SETs queued by another instance are found then).
   */
  waitForSets(tenantId: string, streamId: string, ms: number, signal?: AbortSignal): Promise<void> {
    const key = `${tenantId}|${streamId}`;
    return new Promise((resolve) => {
      let waiting = this.#waiting.get(key);
      if (waiting === undefined) this.#waiting.set(key, (waiting = new Set()));
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        waiting.delete(done);
        if (waiting.size === 0 && this.#waiting.get(key) === waiting) this.#waiting.delete(key);
        resolve();
      };
      const timer = setTimeout(done, ms);
      waiting.add(done);
      signal?.addEventListener('abort', done, { once: true });
      this.#closing.signal.addEventListener('abort', done, { once: true });
    });
  }
}

const transmitters = new WeakMap<ServerContext, Transmitter>();

/** The transmitter of the server `ctx` belongs to, created on first use. */
export function transmitterOf(ctx: ServerContext): Transmitter {
  let transmitter = transmitters.get(ctx);
  if (transmitter === undefined) {
    transmitter = new Transmitter(ctx);
    transmitters.set(ctx, transmitter);
  }
  return transmitter;
}

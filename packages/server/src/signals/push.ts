/**
 * Push delivery (RFC 8935) of the SETs queued in push streams. Each instance runs one worker: it
 * claims due SETs from the store (a lease, so two instances never push one SET at once), POSTs
 * each to its stream's endpoint as `application/secevent+jwt`, and settles it:
 *
 * - 2xx (RFC 8935 says 202): delivered, removed;
 * - 400 with an RFC 8935 §2.3 error (`invalid_request`, `invalid_key`, `invalid_issuer`,
 *   `invalid_audience`, `authentication_failed`, `access_denied`): the receiver refuses this SET for
 *   good; removed, and the error logged;
 * - anything else (a network error, a timeout, 5xx, 429, 401…): tried again after 1, 2, 4 … s,
 *   at most `MAX_BACKOFF_SECONDS` apart, until the SET's retention ends;
 * - a paused stream holds its SETs (looked at again every `PAUSED_RECHECK_SECONDS`), a disabled
 *   one drops them.
 *
 * The worker looks for due SETs every `IDLE_POLL_MS` (SETs queued by other instances, retries)
 * and at once when this instance queues one.
 */
import type { ServerContext } from '../context.ts';
import type { QueuedSet, SignalStream } from '../store/types.ts';

export const PUSH_TIMEOUT_MS = 5000;
export const MAX_BACKOFF_SECONDS = 300;
const LEASE_SECONDS = 30;
const BATCH = 32;
const IDLE_POLL_MS = 1000;
const PAUSED_RECHECK_SECONDS = 5;

/** Seconds until attempt `attempts + 1` after `attempts` failed ones. */
export function backoffSeconds(attempts: number): number {
  return Math.min(2 ** Math.max(0, attempts - 1), MAX_BACKOFF_SECONDS);
}

export class PushDelivery {
  readonly #ctx: ServerContext;
  #running: Promise<void> | undefined;
  #stopped = false;
  #wake: (() => void) | undefined;
  #woken = false;

  constructor(ctx: ServerContext) {
    this.#ctx = ctx;
  }

  start(): void {
    this.#stopped = false;
    this.#running ??= this.#loop();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.wake();
    await this.#running;
    this.#running = undefined;
  }

  /** Look for due SETs now (this instance just queued one). */
  wake(): void {
    this.#woken = true;
    this.#wake?.();
  }

  async #loop(): Promise<void> {
    while (!this.#stopped) {
      let claimed: QueuedSet[] = [];
      try {
        const now = this.#ctx.now();
        claimed = await this.#ctx.store.claimPushSets(now, now + LEASE_SECONDS, BATCH);
      } catch (error) {
        this.#ctx.log.warn({ err: (error as Error).message }, 'push delivery: could not claim SETs');
      }
      if (claimed.length > 0) {
        await this.#deliverAll(claimed);
        continue;
      }
      await this.#idle();
    }
  }

  #idle(): Promise<void> {
    if (this.#woken || this.#stopped) {
      this.#woken = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#wake = undefined;
        this.#woken = false;
        resolve();
      };
      const timer = setTimeout(done, IDLE_POLL_MS);
      timer.unref();
      this.#wake = done;
    });
  }

  async #deliverAll(sets: QueuedSet[]): Promise<void> {
    const streams = new Map<string, Promise<SignalStream | undefined>>();
    await Promise.allSettled(
      sets.map(async (set) => {
        const key = `${set.tenantId}|${set.streamId}`;
        let stream = streams.get(key);
        if (stream === undefined) streams.set(key, (stream = this.#ctx.store.getStream(set.tenantId, set.streamId)));
        try {
          await this.#deliver(set, await stream);
        } catch (error) {
          this.#ctx.log.warn({ err: (error as Error).message, tenant: set.tenantId, stream: set.streamId, jti: set.jti }, 'push delivery: could not settle a SET');
        }
      }),
    );
  }

  async #deliver(set: QueuedSet, stream: SignalStream | undefined): Promise<void> {
    const store = this.#ctx.store;
    if (stream === undefined || stream.status === 'disabled' || stream.delivery.method !== 'push' || stream.delivery.endpointUrl === undefined) {
      return store.settlePushSet(set.tenantId, set.streamId, set.jti, undefined, set.attempts);
    }
    if (stream.status === 'paused') return store.settlePushSet(set.tenantId, set.streamId, set.jti, this.#ctx.now() + PAUSED_RECHECK_SECONDS, set.attempts);
    const attempts = set.attempts + 1;
    const log = { tenant: set.tenantId, stream: set.streamId, jti: set.jti, attempts };
    let outcome: 'delivered' | 'refused' | 'retry';
    let detail: string;
    try {
      const response = await fetch(stream.delivery.endpointUrl, {
        method: 'POST',
        headers: {
          'content-type': 'application/secevent+jwt',
          accept: 'application/json',
          ...(stream.delivery.authorizationHeader !== undefined ? { authorization: stream.delivery.authorizationHeader } : {}),
        },
        body: set.set,
        redirect: 'manual',
        signal: AbortSignal.timeout(PUSH_TIMEOUT_MS),
      });
      const text = await response.text().catch(() => '');
      if (response.status >= 200 && response.status < 300) {
        outcome = 'delivered';
        detail = String(response.status);
      } else if (response.status === 400) {
        outcome = 'refused';
        detail = refusal(text);
      } else {
        outcome = 'retry';
        detail = `HTTP ${response.status}`;
      }
    } catch (error) {
      outcome = 'retry';
      detail = (error as Error).name === 'TimeoutError' ? `no answer in ${PUSH_TIMEOUT_MS} ms` : (error as Error).message;
    }
    if (outcome === 'retry') {
      const retryAt = this.#ctx.now() + backoffSeconds(attempts);
      this.#ctx.log.warn({ ...log, retryAt, reason: detail }, 'push delivery failed; will retry');
      return store.settlePushSet(set.tenantId, set.streamId, set.jti, retryAt, attempts);
    }
    if (outcome === 'refused') this.#ctx.log.warn({ ...log, err: detail }, 'push delivery: the receiver refused the SET');
    return store.settlePushSet(set.tenantId, set.streamId, set.jti, undefined, attempts);
  }
}

/** The RFC 8935 §2.3 error of a 400 answer, as far as it can be read (never the SET). */
function refusal(text: string): string {
  try {
    const body = JSON.parse(text) as { err?: unknown; description?: unknown };
    if (typeof body.err === 'string') return `${body.err.slice(0, 64)}${typeof body.description === 'string' ? `: ${body.description.slice(0, 200)}` : ''}`;
  } catch {
    // not JSON
  }
  return 'HTTP 400';
}

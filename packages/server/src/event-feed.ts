/**
 * An in-process feed of events: the last `capacity` in a ring buffer plus live subscribers. The
 * exchange audit log (audit.ts) and the admin change log (admin/audit.ts) are two such feeds.
 */

export class EventFeed<E extends { seq: number }> {
  readonly #capacity: number;
  readonly #buffer: E[] = [];
  /** Index of the oldest event once the buffer is full. */
  #start = 0;
  #seq = 0;
  readonly #listeners = new Set<(event: E) => void>();
  readonly #onListenerError: (error: Error) => void;

  constructor(capacity: number, onListenerError: (error: Error) => void) {
    if (!Number.isSafeInteger(capacity) || capacity <= 0) throw new TypeError('capacity must be a positive integer');
    this.#capacity = capacity;
    this.#onListenerError = onListenerError;
  }

  /** The next sequence number: monotonic within this process, so a subscriber that reconnects can ask for what it missed. */
  protected nextSeq(): number {
    return ++this.#seq;
  }

  /** Keeps the event in the ring buffer and hands it to every subscriber. */
  protected publish(event: E): void {
    if (this.#buffer.length < this.#capacity) this.#buffer.push(event);
    else {
      this.#buffer[this.#start] = event;
      this.#start = (this.#start + 1) % this.#capacity;
    }
    for (const listener of this.#listeners) {
      // A broken subscriber (a closed page) must never fail the request that produced the event.
      try {
        listener(event);
      } catch (error) {
        this.#onListenerError(error as Error);
      }
    }
  }

  /** The buffered events, oldest first; with `afterSeq`, only those newer than it. */
  recent(afterSeq = 0): E[] {
    const ordered = this.#buffer.length < this.#capacity ? this.#buffer.slice() : [...this.#buffer.slice(this.#start), ...this.#buffer.slice(0, this.#start)];
    return afterSeq > 0 ? ordered.filter((e) => e.seq > afterSeq) : ordered;
  }

  /** Calls `listener` for every new event until the returned function is called. */
  subscribe(listener: (event: E) => void): () => void {
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  }

  /** Number of live subscribers (for the page's health, and tests). */
  get subscribers(): number {
    return this.#listeners.size;
  }
}

/**
 * The `onInvalidate` listeners of one store instance, and delivering a change to them. Both
 * engines call `emit` after a registration write commits (their own) or when another instance's
 * change reaches them (NOTIFY, the SQLite change log).
 */
import type { Invalidation } from './types.ts';

type Listener = (change: Invalidation) => void;

export class InvalidationListeners {
  /** A wrapper per subscription, so subscribing one function twice needs two unsubscribes. */
  readonly #subscriptions = new Set<{ listener: Listener }>();

  get size(): number {
    return this.#subscriptions.size;
  }

  /** Returns the unsubscribe. */
  add(listener: Listener, onRemoved?: () => void): () => void {
    const subscription = { listener };
    this.#subscriptions.add(subscription);
    return () => {
      this.#subscriptions.delete(subscription);
      onRemoved?.();
    };
  }

  clear(): void {
    this.#subscriptions.clear();
  }

  emit(change: Invalidation): void {
    for (const { listener } of [...this.#subscriptions]) {
      try {
        listener(change);
      } catch (error) {
        // The write has committed; a throwing listener must not make it look failed. Surface it.
        process.emitWarning(error instanceof Error ? error : String(error), { code: 'BATON_STORE_LISTENER' });
      }
    }
  }
}

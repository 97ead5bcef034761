/**
 * Every call of a `Store`, seen from outside the engines: the one wrapper the service's tracing
 * (observe/tracing.ts, a span per call) and metrics (observe/metrics.ts, a duration per call) are
 * built on, whatever the engine. `around` receives the operation (the `Store` method's name) and
 * the call to make; it must make it once and return its promise (or one settling the same way).
 * Lifecycle and the change feed (`engine`, `migrate`, `close`, `onInvalidate`) are passed through.
 *
 * Engines keep private fields, which a Proxy does not have: every method runs with the engine
 * itself as `this`.
 */
import type { Store } from './types.ts';

export type StoreCallObserver = (operation: string, call: () => Promise<unknown>) => Promise<unknown>;

const PASSED_THROUGH = new Set<PropertyKey>(['engine', 'migrate', 'close', 'onInvalidate', 'constructor']);

export function observeStore<S extends Store>(store: S, around: StoreCallObserver): S {
  const wrapped = new Map<PropertyKey, unknown>();
  return new Proxy(store, {
    get(target, property) {
      const value: unknown = Reflect.get(target, property, target);
      if (typeof value !== 'function') return value;
      let wrapper = wrapped.get(property);
      if (wrapper === undefined) {
        const method = value as (...args: unknown[]) => Promise<unknown>;
        wrapper =
          PASSED_THROUGH.has(property) || typeof property !== 'string'
            ? method.bind(target)
            : function observedStoreCall(...args: unknown[]): Promise<unknown> {
                return around(property, () => method.apply(target, args));
              };
        wrapped.set(property, wrapper);
      }
      return wrapper;
    },
  });
}

/**
 * Values computed once per (object, key) and forgotten with the object: a `WeakMap` of bounded
 * `Map`s. For pure functions of a key object and a string whose result is costly to recompute on
 * a hot path (a key's fitness for an algorithm, an HMAC under a key).
 *
 * @example
 * const fits = new WeakMemo<KeyObject, boolean>();
 * fits.get(key, 'ES256', () => computeKeyFitsAlg(key, 'ES256'));
 */
export class WeakMemo<O extends object, V> {
  readonly #byOwner = new WeakMap<O, Map<string, V>>();
  readonly #max: number;

  /** `max`: entries kept per object; when full, the object's entries are dropped at once. */
  constructor(max = Number.POSITIVE_INFINITY) {
    if (!(max >= 1)) throw new TypeError('max must be at least 1');
    this.#max = max;
  }

  get(owner: O, key: string, compute: () => V): V {
    let values = this.#byOwner.get(owner);
    if (values === undefined) {
      values = new Map();
      this.#byOwner.set(owner, values);
    }
    if (values.has(key)) return values.get(key) as V;
    const value = compute();
    if (values.size >= this.#max) values.clear();
    values.set(key, value);
    return value;
  }
}

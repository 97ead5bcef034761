/**
 * A bounded least-recently-used map whose entries expire. `Map` keeps insertion order, so the first
 * key is the least recently used one once every hit re-inserts its key.
 */
export class Lru<V> {
  readonly max: number;
  readonly #map = new Map<string, { value: V; expiresAt: number }>();

  constructor(max: number) {
    if (!Number.isInteger(max) || max < 0) throw new TypeError('LRU size must be a non-negative integer');
    this.max = max;
  }

  get size(): number {
    return this.#map.size;
  }

  /** The value, if present and `now < expiresAt` (both epoch milliseconds). Expired entries are dropped. */
  get(key: string, now: number): V | undefined {
    const entry = this.#map.get(key);
    if (entry === undefined) return undefined;
    this.#map.delete(key);
    if (entry.expiresAt <= now) return undefined;
    this.#map.set(key, entry);
    return entry.value;
  }

  set(key: string, value: V, expiresAt: number): void {
    if (this.max === 0) return;
    this.#map.delete(key);
    this.#map.set(key, { value, expiresAt });
    while (this.#map.size > this.max) {
      const oldest = this.#map.keys().next();
      if (oldest.done) break;
      this.#map.delete(oldest.value);
    }
  }

  delete(key: string): void {
    this.#map.delete(key);
  }

  clear(): void {
    this.#map.clear();
  }
}

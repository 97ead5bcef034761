/**
 * The second-chance cache behind the guard's verified tokens and the OBO client's tokens: bounded,
 * expiring, hits protected from the next eviction, and never a lookup answered with a dead entry.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Lru } from '../src/lru.ts';

const FOREVER = Number.MAX_SAFE_INTEGER;

test('never holds more than max entries, evicting the oldest unflagged one', () => {
  const lru = new Lru<number>(3);
  for (const [i, key] of ['a', 'b', 'c', 'd', 'e'].entries()) lru.set(key, i, FOREVER);
  assert.equal(lru.size, 3);
  assert.equal(lru.get('a', 0), undefined);
  assert.equal(lru.get('b', 0), undefined);
  assert.deepEqual(['c', 'd', 'e'].map((k) => lru.get(k, 0)), [2, 3, 4]);
});

test('a hit survives the next eviction (second chance); an unflagged neighbour goes instead', () => {
  const lru = new Lru<string>(3);
  lru.set('a', 'A', FOREVER);
  lru.set('b', 'B', FOREVER);
  lru.set('c', 'C', FOREVER);
  assert.equal(lru.get('a', 0), 'A');
  lru.set('d', 'D', FOREVER); // the hand passes a (flagged), evicts b
  assert.equal(lru.get('a', 0), 'A');
  assert.equal(lru.get('b', 0), undefined);
  assert.equal(lru.get('c', 0), 'C');
  assert.equal(lru.get('d', 0), 'D');
  assert.equal(lru.size, 3);
});

test('when every entry was hit, one full sweep clears the flags and the eviction still happens', () => {
  const lru = new Lru<number>(4);
  for (let i = 0; i < 4; i++) lru.set(`k${i}`, i, FOREVER);
  for (let i = 0; i < 4; i++) lru.get(`k${i}`, 0);
  lru.set('new', 9, FOREVER);
  assert.equal(lru.size, 4);
  assert.equal(lru.get('new', 0), 9);
});

test('expired entries are not returned and are removed on lookup', () => {
  const lru = new Lru<string>(2);
  lru.set('a', 'A', 1000);
  assert.equal(lru.get('a', 999), 'A');
  assert.equal(lru.get('a', 1000), undefined);
  assert.equal(lru.size, 0);
});

test('delete, re-insert and overwrite keep the map and the ring consistent over many operations', () => {
  const lru = new Lru<number>(50);
  const model = new Map<string, number>();
  let seed = 7;
  const rand = (n: number) => (seed = (seed * 1103515245 + 12345) % 2147483648) % n;
  for (let i = 0; i < 20_000; i++) {
    const key = `k${rand(120)}`;
    const op = rand(10);
    if (op < 5) {
      lru.set(key, i, FOREVER);
      model.set(key, i);
    } else if (op < 7) {
      lru.delete(key);
      model.delete(key);
    } else {
      const got = lru.get(key, 0);
      // The cache may have evicted it, but it never answers with a stale or foreign value.
      if (got !== undefined) assert.equal(got, model.get(key), `key ${key} at ${i}`);
    }
    assert.ok(lru.size <= 50);
  }
});

test('size 0 caches nothing; clear empties', () => {
  const none = new Lru<number>(0);
  none.set('a', 1, FOREVER);
  assert.equal(none.get('a', 0), undefined);
  const lru = new Lru<number>(2);
  lru.set('a', 1, FOREVER);
  lru.clear();
  assert.equal(lru.size, 0);
  assert.equal(lru.get('a', 0), undefined);
  lru.set('b', 2, FOREVER);
  assert.equal(lru.get('b', 0), 2);
  assert.throws(() => new Lru(-1), TypeError);
});

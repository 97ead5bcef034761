/**
 * The `node:sqlite` database every SQLite resource module runs its statements on, and how they
 * write: in a `BEGIN IMMEDIATE` transaction, registration writes also recording what changed in
 * the `baton_changes` log that other processes poll (`change-poller.ts`).
 */
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import type { InvalidationListeners } from '../listeners.ts';
import { type DataRow, parseJson } from '../rows.ts';
import type { Invalidation } from '../types.ts';

/** How many change-log rows are kept for other processes to read (older ones become `*`). */
export const CHANGE_LOG_KEEP = 1000;

/** Records that a registration write changed `entity` of `tenantId`. */
export type Changed = (tenantId: string, entity: Invalidation['entity']) => void;

/**
 * What the writes `Store.atomically` combines return: they run, and throw, synchronously (inside
 * its transaction); the store's own methods are `async`, so a caller still gets a rejection.
 */
export const DONE: Promise<void> = Promise.resolve();

/** A row's JSON `data` column, decoded. */
export function parseData<T>(row: unknown): T {
  return parseJson((row as DataRow<string>).data) as T;
}

export function allRows(statement: StatementSync, ...params: (string | number | null)[]): unknown[] {
  return statement.all(...params);
}

/**
 * How a connection's commits reach the disk. `full` (SQLite's default): each commit waits for
 * the WAL's fsync, so a committed write survives a power loss. `normal`: the commit is in the WAL
 * (the operating system's cache) when it returns — it survives the process crashing, and the
 * file stays consistent whatever happens, but an OS crash or power loss can undo the commits since
 * the WAL's last fsync (the next `full` commit or checkpoint on the file).
 */
export type Synchronous = 'full' | 'normal';

/** Opens the file (or `:memory:`) with the settings every Baton connection needs. */
export function openDatabase(path: string, busyTimeoutMs: number, synchronous: Synchronous = 'full'): DatabaseSync {
  const db = new DatabaseSync(path, { enableForeignKeyConstraints: true, timeout: busyTimeoutMs });
  // busy_timeout before journal_mode: switching to WAL needs the lock another starter may hold.
  db.exec(`PRAGMA busy_timeout = ${Math.trunc(busyTimeoutMs)}`);
  db.exec('PRAGMA foreign_keys = ON');
  // WAL: readers never block the writer, and other processes can poll data_version cheaply.
  if (!isMemory(path)) db.exec('PRAGMA journal_mode = WAL');
  // Per connection; stated even for `full`, so a library default can never weaken it.
  db.exec(`PRAGMA synchronous = ${synchronous === 'normal' ? 'NORMAL' : 'FULL'}`);
  return db;
}

export function isMemory(path: string): boolean {
  return path === ':memory:' || path === '';
}

/** Prepared once the schema exists (the change log is a table). */
export class SqliteConnection {
  readonly db: DatabaseSync;
  readonly #listeners: InvalidationListeners;
  readonly #begin: StatementSync;
  readonly #commit: StatementSync;
  readonly #rollback: StatementSync;
  readonly #logChange: StatementSync;
  readonly #pruneChanges: StatementSync;

  constructor(db: DatabaseSync, listeners: InvalidationListeners) {
    this.db = db;
    this.#listeners = listeners;
    this.#begin = db.prepare('BEGIN IMMEDIATE');
    this.#commit = db.prepare('COMMIT');
    this.#rollback = db.prepare('ROLLBACK');
    this.#logChange = db.prepare('INSERT INTO baton_changes (tenant_id, entity) VALUES (?, ?) RETURNING seq');
    this.#pruneChanges = db.prepare('DELETE FROM baton_changes WHERE seq <= ?');
  }

  /** Nesting depth of `transaction`: an inner one joins the outer (all or nothing together). */
  #depth = 0;
  /** Changes written in the open transaction, told to local listeners once it commits. */
  #pending: Invalidation[] = [];

  /**
   * Runs `fn` in a `BEGIN IMMEDIATE` transaction; called inside another, it joins it (so
   * `Store.atomically` can run several writes, each a transaction of its own, as one).
   */
  transaction<T>(fn: () => T): T {
    if (this.#depth > 0) {
      this.#depth += 1;
      try {
        return fn();
      } finally {
        this.#depth -= 1;
      }
    }
    this.#begin.run();
    this.#depth = 1;
    let result: T;
    try {
      result = fn();
      this.#commit.run();
    } catch (error) {
      this.#pending = [];
      if (this.db.isTransaction) this.#rollback.run();
      throw error;
    } finally {
      this.#depth = 0;
    }
    const changes = this.#pending;
    this.#pending = [];
    // Synchronously, before the caller's await resumes: a cache is dropped before anyone can
    // read the value this write replaced.
    for (const change of changes) this.#listeners.emit(change);
    return result;
  }

  /** A registration write: its changes go to the change log in the same transaction, then (after the commit) to local listeners. */
  write<T>(fn: (changed: Changed) => T): T {
    return this.transaction(() => {
      const changes: Invalidation[] = [];
      const value = fn((tenantId, entity) => changes.push({ tenantId, entity }));
      let seq = 0;
      for (const change of changes) seq = Number((this.#logChange.get(change.tenantId, change.entity) as { seq: number }).seq);
      if (seq > CHANGE_LOG_KEEP) this.#pruneChanges.run(seq - CHANGE_LOG_KEEP);
      this.#pending.push(...changes);
      return value;
    });
  }
}

/**
 * The embedded store engine on Node's built-in `node:sqlite` (DESIGN principle 3). The SQL lives
 * in one module per resource under `sqlite/`; this file opens, migrates and closes them.
 *
 * Every statement is prepared once and reused. The methods are `async` to honour the Store
 * interface, but each runs its SQL synchronously to completion, so within one process a
 * multi-statement write (a key rotation, a policy replacement) cannot interleave with another.
 * Across processes on one file, writes take the database write lock (`BEGIN IMMEDIATE`) and wait
 * for it up to `busy_timeout`; they hear each other through the change log
 * (`sqlite/change-poller.ts`). Proof replay records are written through a second connection to
 * the file that does not wait for the disk at commit (`sqlite/proof-replay.ts`).
 */
import type { DatabaseSync } from 'node:sqlite';
import { InvalidationListeners } from './listeners.ts';
import { migrateSqlite } from './migrations.ts';
import { applyWrite, PartitionedStore, type StoreParts } from './parts.ts';
import { SqliteAccess } from './sqlite/access.ts';
import { ChangePoller } from './sqlite/change-poller.ts';
import { isMemory, openDatabase, SqliteConnection } from './sqlite/connection.ts';
import { SqliteDirectory } from './sqlite/directory.ts';
import { SqliteOneTime } from './sqlite/one-time.ts';
import { SqliteProofReplay } from './sqlite/proof-replay.ts';
import { SqliteSigningKeys } from './sqlite/signing-keys.ts';
import { SqliteSignals } from './sqlite/signals.ts';
import type { AtomicWrite, Invalidation } from './types.ts';

export { consentListSql } from './sqlite/access.ts';

export interface SqliteStoreOptions {
  /** How long a write waits for another process holding the write lock. Default 5000 ms. */
  busyTimeoutMs?: number;
  /** How often to look for writes made by other processes on the same file. Default 500 ms. */
  pollIntervalMs?: number;
}

/** Everything whose statements need the migrated schema. */
interface Prepared {
  connection: SqliteConnection;
  parts: StoreParts;
  poller: ChangePoller;
  /** The proof replay records' own connection (`synchronous=NORMAL`); the store's own in memory. */
  replayDb: DatabaseSync;
}

export class SqliteStore extends PartitionedStore {
  readonly engine = 'sqlite' as const;
  readonly #db: DatabaseSync;
  readonly #path: string;
  readonly #busyTimeoutMs: number;
  readonly #memory: boolean;
  readonly #pollIntervalMs: number;
  readonly #listeners = new InvalidationListeners();
  #prepared: Prepared | undefined;
  #closed = false;

  /**
   * @param path a file path, or `':memory:'` for a private in-memory database.
   * @example
   * const store = new SqliteStore('/var/lib/baton/baton.sqlite');
   * await store.migrate();
   */
  constructor(path: string, options: SqliteStoreOptions = {}) {
    super();
    this.#pollIntervalMs = options.pollIntervalMs ?? 500;
    this.#memory = isMemory(path);
    this.#path = path;
    this.#busyTimeoutMs = options.busyTimeoutMs ?? 5000;
    this.#db = openDatabase(path, this.#busyTimeoutMs);
  }

  protected override get parts(): StoreParts {
    return this.#ready.parts;
  }

  async migrate(): Promise<void> {
    migrateSqlite(this.#db);
    this.#prepared ??= this.#prepare();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#prepared?.poller.stop();
    this.#listeners.clear();
    if (this.#prepared !== undefined && this.#prepared.replayDb !== this.#db) this.#prepared.replayDb.close();
    this.#db.close();
  }

  /**
   * One `BEGIN IMMEDIATE` transaction that each write joins. The writes run, and throw,
   * synchronously (`sqlite/connection.ts` `DONE`): nothing else can run a statement in between.
   */
  async atomically(writes: readonly AtomicWrite[]): Promise<void> {
    const { connection, parts } = this.#ready;
    const settled: Promise<unknown>[] = [];
    connection.transaction(() => {
      for (const write of writes) settled.push(applyWrite(parts, write));
    });
    await Promise.all(settled);
  }

  onInvalidate(listener: (change: Invalidation) => void): () => void {
    const unsubscribe = this.#listeners.add(listener, () => {
      if (this.#listeners.size === 0) this.#prepared?.poller.stop();
    });
    // An in-memory database has no other connection that could write to it.
    if (!this.#memory && !this.#closed) this.#ready.poller.start();
    return unsubscribe;
  }

  get #ready(): Prepared {
    // Prepared on first use when the caller skipped migrate() on an already-migrated file.
    this.#prepared ??= this.#prepare();
    return this.#prepared;
  }

  #prepare(): Prepared {
    const connection = new SqliteConnection(this.#db, this.#listeners);
    // A private in-memory database cannot be opened twice; it has no disk to wait for anyway.
    const replayDb = this.#memory ? this.#db : openDatabase(this.#path, this.#busyTimeoutMs, 'normal');
    return {
      connection,
      parts: {
        directory: new SqliteDirectory(connection),
        access: new SqliteAccess(connection),
        signingKeys: new SqliteSigningKeys(connection),
        oneTime: new SqliteOneTime(connection),
        proofReplay: new SqliteProofReplay(replayDb),
        signals: new SqliteSignals(connection),
      },
      poller: new ChangePoller(this.#db, this.#listeners, this.#pollIntervalMs, () => this.#closed),
      replayDb,
    };
  }
}

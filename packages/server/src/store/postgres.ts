/**
 * The multi-instance store engine on PostgreSQL (`pg`), DESIGN principle 3. The SQL lives in one
 * module per resource under `postgres/`; this file connects, migrates and closes them.
 *
 * - Every table lives in one schema, selected per connection through the startup `search_path`,
 *   so several deployments (or test runs) can share a database (`postgres/connection.ts`).
 * - Single-use values are claimed by one statement: row locks decide the winner across
 *   instances (`postgres/one-time.ts`); proof replay records the same way through a pool whose
 *   commits do not wait for the WAL flush (`postgres/proof-replay.ts`).
 * - Key rotation holds a transaction-scoped advisory lock (`postgres/signing-keys.ts`).
 * - Registration writes send `pg_notify` in the same statement or transaction, so a notification
 *   exists exactly when the change committed; a dedicated LISTEN connection delivers those of
 *   other instances to `onInvalidate` listeners and reconnects when it drops
 *   (`postgres/notifications.ts`).
 */
import { randomUUID } from 'node:crypto';
import { InvalidationListeners } from './listeners.ts';
import { migratePostgres, SCHEMA_NAME } from './migrations.ts';
import { applyWrite, PartitionedStore, type StoreParts } from './parts.ts';
import { PostgresAccess } from './postgres/access.ts';
import { PostgresConnection, type PgQueries } from './postgres/connection.ts';
import { PostgresDirectory } from './postgres/directory.ts';
import { InvalidationListener } from './postgres/notifications.ts';
import { PostgresOneTime } from './postgres/one-time.ts';
import { PostgresProofReplay } from './postgres/proof-replay.ts';
import { PostgresSigningKeys } from './postgres/signing-keys.ts';
import { PostgresSignals } from './postgres/signals.ts';
import type { AtomicWrite, Invalidation } from './types.ts';

export { consentListSql } from './postgres/access.ts';
export { INVALIDATION_CHANNEL } from './postgres/notifications.ts';

export interface PostgresStoreOptions {
  /** Schema holding every table (created by `migrate()` if missing). Default `public`. */
  schema?: string;
  /** Pool size. Default 10; the proof replay records' own pool has a quarter of it (at least 2). */
  max?: number;
  /** How long to wait for a connection before failing. Default 10000 ms. */
  connectionTimeoutMillis?: number;
  /** Longest wait between attempts to re-establish the LISTEN connection. Default 5000 ms. */
  maxReconnectDelayMs?: number;
  /**
   * Errors that belong to no call: an idle pooled connection or the LISTEN connection dropping.
   * The store recovers from both by itself; this is for logging. Default: ignored.
   */
  onError?: (error: Error) => void;
}

export class PostgresStore extends PartitionedStore {
  readonly engine = 'postgres' as const;
  readonly #db: PostgresConnection;
  /** The proof replay records' pool (`synchronous_commit=off`, `postgres/proof-replay.ts`). */
  readonly #replayDb: PostgresConnection;
  readonly #schema: string;
  readonly #listeners = new InvalidationListeners();
  readonly #listener: InvalidationListener;
  readonly #parts: StoreParts;
  #closing: Promise<void> | undefined;

  /**
   * @param connectionString `postgres://user@host:5432/db` (never logged: it may hold a password).
   * @example
   * const store = new PostgresStore(process.env.DATABASE_URL!, { schema: 'baton' });
   * await store.migrate();
   */
  constructor(connectionString: string, options: PostgresStoreOptions = {}) {
    super();
    const schema = options.schema ?? 'public';
    // The name goes into startup options and DDL as an identifier; only plain names are safe there.
    if (!SCHEMA_NAME.test(schema)) throw new TypeError('PostgresStore: schema must match /^[a-z_][a-z0-9_]{0,62}$/');
    this.#schema = schema;
    const connectionTimeoutMillis = options.connectionTimeoutMillis ?? 10_000;
    const onError = options.onError ?? (() => {});
    const from = { schema, source: randomUUID() };
    this.#db = new PostgresConnection(
      { connectionString, schema, max: options.max ?? 10, connectionTimeoutMillis, onError },
      from,
      this.#listeners,
    );
    const max = options.max ?? 10;
    this.#replayDb = new PostgresConnection(
      { connectionString, schema, max: Math.max(2, Math.ceil(max / 4)), connectionTimeoutMillis, onError, asynchronousCommit: true },
      from,
      this.#listeners,
    );
    this.#listener = new InvalidationListener(
      { connectionString, connectionTimeoutMillis, maxReconnectDelayMs: options.maxReconnectDelayMs ?? 5000, onError },
      from,
      this.#listeners,
    );
    this.#parts = this.#partsOn(this.#db);
  }

  #partsOn(db: PgQueries): StoreParts {
    return {
      directory: new PostgresDirectory(db),
      access: new PostgresAccess(db),
      signingKeys: new PostgresSigningKeys(db, this.#schema),
      oneTime: new PostgresOneTime(db),
      proofReplay: new PostgresProofReplay(this.#replayDb),
      signals: new PostgresSignals(db),
    };
  }

  /** The writes, in order, on one connection in one transaction (the parts built on it). */
  async atomically(writes: readonly AtomicWrite[]): Promise<void> {
    await this.#db.atomically(async (tx) => {
      const parts = this.#partsOn(tx);
      for (const write of writes) await applyWrite(parts, write);
    });
  }

  protected override get parts(): StoreParts {
    return this.#parts;
  }

  /** Applies pending migrations, then starts listening for other instances' changes. */
  async migrate(): Promise<void> {
    if (this.#closing) throw new Error('PostgresStore: closed');
    const client = await this.#db.pool.connect();
    try {
      await migratePostgres(client, this.#schema);
      client.release();
    } catch (error) {
      // A failed migration may leave the connection mid-transaction: destroy it, never reuse it.
      client.release(error instanceof Error ? error : true);
      throw error;
    }
    await this.#listener.start();
  }

  async close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#listeners.clear();
      await Promise.allSettled([this.#listener.close(), this.#db.pool.end(), this.#replayDb.pool.end()]);
    })();
    return this.#closing;
  }

  onInvalidate(listener: (change: Invalidation) => void): () => void {
    const unsubscribe = this.#listeners.add(listener);
    // migrate() normally started it already; this covers a store used on a migrated schema.
    this.#listener.ensureStarted();
    return unsubscribe;
  }
}

/**
 * The pool every PostgreSQL resource module queries through, and the three ways they write:
 * a plain named statement, a statement that notifies other instances iff it wrote, and a
 * transaction that notifies before it commits.
 */
import { Pool } from 'pg';
import type { PoolClient, QueryResultRow } from 'pg';
import type { InvalidationListeners } from '../listeners.ts';
import type { Invalidation } from '../types.ts';
import { INVALIDATION_CHANNEL, notifyPayload, type NotifySource } from './notifications.ts';

export interface PoolOptions {
  connectionString: string;
  schema: string;
  max: number;
  connectionTimeoutMillis: number;
  /**
   * `synchronous_commit=off` for every session of the pool: a commit returns before its WAL
   * record is flushed (the WAL writer flushes it within 3 × `wal_writer_delay`, 600 ms by
   * default). Visible to every session at once, and never inconsistent; a crash of the PostgreSQL
   * server (not of Baton) can lose those last commits. Only for the proof replay records.
   */
  asynchronousCommit?: boolean;
  onError: (error: Error) => void;
}

/**
 * The pool's connection settings with `-c search_path=<schema>` (and, for the proof replay pool,
 * `-c synchronous_commit=off`) in the startup options. `pg` lets
 * an `options` parameter in the URL override the config's, which would silently put every query
 * back in `public`; so any `options` the URL carries (some hosted services route by them) move
 * into ours.
 */
function withSessionSettings(connectionString: string, schema: string, asynchronousCommit: boolean): { connectionString: string; options: string } {
  const ours = `-c search_path=${schema}${asynchronousCommit ? ' -c synchronous_commit=off' : ''}`;
  let url: URL;
  try {
    url = new URL(connectionString);
  } catch {
    // Not a URL (a key=value string): pg reads it as is.
    return { connectionString, options: ours };
  }
  const existing = url.searchParams.get('options');
  if (existing === null) return { connectionString, options: ours };
  url.searchParams.delete('options');
  return { connectionString: url.toString(), options: `${existing} ${ours}` };
}

/** What the resource modules query through: the pool, or one transaction (`PostgresConnection.atomically`). */
export type PgQueries = Pick<PostgresConnection, 'query' | 'notifyingQuery' | 'notifyingTransaction'>;

/**
 * The statements of one open transaction on `client`: the same SQL as on the pool, notifications
 * sent by PostgreSQL at the commit, and local listeners told after it (`emitted`).
 */
class TransactionQueries implements PgQueries {
  readonly #client: PoolClient;
  readonly #from: NotifySource;
  readonly changes: Invalidation[] = [];

  constructor(client: PoolClient, from: NotifySource) {
    this.#client = client;
    this.#from = from;
  }

  query<R extends QueryResultRow = QueryResultRow>(name: string, text: string, values: unknown[]) {
    return this.#client.query<R>({ name, text, values });
  }

  async notifyingQuery(name: string, write: string, values: unknown[], change: Invalidation): Promise<{ rowCount: number }> {
    const { rows } = await this.query<{ n: number }>(name, notifyingSql(write, values.length), [...values, notifyPayload(this.#from, change)]);
    const rowCount = rows[0]?.n ?? 0;
    if (rowCount > 0) this.changes.push(change);
    return { rowCount };
  }

  async notifyingTransaction(change: Invalidation, fn: (client: PoolClient) => Promise<boolean>): Promise<boolean> {
    if (!(await fn(this.#client))) return false;
    await this.#client.query({ name: 'baton_notify', text: `SELECT pg_notify('${INVALIDATION_CHANNEL}', $1)`, values: [notifyPayload(this.#from, change)] });
    this.changes.push(change);
    return true;
  }
}

/**
 * `write` (with its `values.length` parameters) as one statement that also notifies, with the
 * payload as the next parameter, once if it wrote any row: answers `n`, the rows written.
 */
function notifyingSql(write: string, parameters: number): string {
  return `WITH w AS (${write} RETURNING 1), c AS (SELECT count(*)::int AS n FROM w)
       SELECT n, CASE WHEN n > 0 THEN pg_notify('${INVALIDATION_CHANNEL}', $${parameters + 1}) END AS notified FROM c`;
}

export class PostgresConnection {
  readonly pool: Pool;
  readonly #from: NotifySource;
  readonly #listeners: InvalidationListeners;

  constructor(options: PoolOptions, from: NotifySource, listeners: InvalidationListeners) {
    this.#from = from;
    this.#listeners = listeners;
    this.pool = new Pool({
      ...withSessionSettings(options.connectionString, options.schema, options.asynchronousCommit === true),
      application_name: 'baton',
      max: options.max,
      connectionTimeoutMillis: options.connectionTimeoutMillis,
    });
    // Without a handler, an idle connection killed by the server would crash the process; the
    // pool already discards it and opens a fresh one for the next query.
    this.pool.on('error', (error) => options.onError(error));
  }

  /** A named (server-side prepared, once per connection) statement on the pool. */
  query<R extends QueryResultRow = QueryResultRow>(name: string, text: string, values: unknown[]) {
    return this.pool.query<R>({ name, text, values });
  }

  /**
   * One statement that writes and, for each row it wrote, notifies: a data-modifying CTE runs in
   * the statement's own transaction, so the notification is sent iff the write commits, and a
   * delete that matched nothing notifies nobody. Emits locally after the commit.
   */
  async notifyingQuery(name: string, write: string, values: unknown[], change: Invalidation): Promise<{ rowCount: number }> {
    const { rows } = await this.query<{ n: number }>(name, notifyingSql(write, values.length), [...values, notifyPayload(this.#from, change)]);
    const rowCount = rows[0]?.n ?? 0;
    if (rowCount > 0) this.#listeners.emit(change);
    return { rowCount };
  }

  /**
   * Runs `fn` in a transaction. When it returns true the transaction also notifies `change`
   * (sent iff it commits) and local listeners hear it after the commit.
   */
  async notifyingTransaction(change: Invalidation, fn: (client: PoolClient) => Promise<boolean>): Promise<boolean> {
    const changed = await this.#transaction(async (client) => {
      if (!(await fn(client))) return false;
      await client.query({ name: 'baton_notify', text: `SELECT pg_notify('${INVALIDATION_CHANNEL}', $1)`, values: [notifyPayload(this.#from, change)] });
      return true;
    });
    if (changed) this.#listeners.emit(change);
    return changed;
  }

  /**
   * Runs `fn` with statements of ONE transaction: everything it writes commits together or not at
   * all (`Store.atomically`). Local listeners hear its changes after the commit.
   */
  async atomically(fn: (tx: PgQueries) => Promise<void>): Promise<void> {
    const changes = await this.#transaction(async (client) => {
      const tx = new TransactionQueries(client, this.#from);
      await fn(tx);
      return tx.changes;
    });
    for (const change of changes) this.#listeners.emit(change);
  }

  async #transaction<T>(fn: (client: PoolClient) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      const result = await fn(client);
      await client.query('COMMIT');
      client.release();
      return result;
    } catch (error) {
      try {
        await client.query('ROLLBACK');
        client.release();
      } catch (rollbackError) {
        // The connection is unusable; destroy it rather than hand a half-open transaction to the next caller.
        client.release(rollbackError instanceof Error ? rollbackError : true);
      }
      throw error;
    }
  }
}

/**
 * Proof replay records on PostgreSQL (`Store.useProofOnce`): the one-time values' claim of a
 * `used_once` row, through a small pool of its own whose sessions run with
 * `synchronous_commit=off`. The commit returns without waiting for the WAL flush (the statement is
 * one round trip either way); the row is visible to every instance at once and the row lock still
 * decides which one claims a `jti`. A crash of Baton loses nothing; a crash of the PostgreSQL
 * server can lose the records of its last ~600 ms (3 × `wal_writer_delay`), never more, and leaves
 * the database consistent. Its own pool, not `SET LOCAL` in a transaction on the store's: that
 * would be four round trips (BEGIN, SET LOCAL, INSERT, COMMIT) for one record.
 */
import type { ProofReplayPart } from '../parts.ts';
import type { PostgresConnection } from './connection.ts';
import { claimOnce } from './one-time.ts';

export class PostgresProofReplay implements ProofReplayPart {
  readonly #db: PostgresConnection;

  /** @param db a pool opened with `asynchronousCommit: true`. */
  constructor(db: PostgresConnection) {
    this.#db = db;
  }

  async useProofOnce(namespace: string, id: string, expiresAt: number, now: number): Promise<boolean> {
    return claimOnce(this.#db, namespace, id, expiresAt, now);
  }
}

/**
 * Single-use and expiring values on PostgreSQL. Each is claimed by one statement
 * (`INSERT … ON CONFLICT … WHERE`, `UPDATE … WHERE consumed_at IS NULL RETURNING`): row locks
 * decide the winner across instances. These writes notify nobody: no cache holds them.
 */
import type { OneTimePart } from '../parts.ts';
import { asParsed, EPHEMERAL_UPSERT, ephemeralFromRow, ephemeralParams, type EphemeralRow, unclaimedResult, useOnceKey } from '../rows.ts';
import type { ConsumeResult, EphemeralKind, EphemeralRecord } from '../types.ts';
import type { PgQueries } from './connection.ts';

/**
 * The claim of a `used_once` row through `db` (the store's pool, or the proof replay one). One
 * statement: the insert wins, or the conflict branch revives an expired row; a live row returns
 * nothing. A concurrent insert of the same key waits for the first to commit and then re-checks
 * the WHERE against it, so exactly one caller across instances sees a row.
 */
export async function claimOnce(db: PgQueries, namespace: string, id: string, expiresAt: number, now: number): Promise<boolean> {
  const { rowCount } = await db.query(
    'baton_use_once',
    `INSERT INTO used_once (namespace, id, expires_at) VALUES ($1, $2, $3)
     ON CONFLICT (namespace, id) DO UPDATE SET expires_at = EXCLUDED.expires_at WHERE used_once.expires_at <= $4
     RETURNING 1`,
    [namespace, useOnceKey(id), expiresAt, now],
  );
  return rowCount === 1;
}

export class PostgresOneTime implements OneTimePart {
  readonly #db: PgQueries;

  constructor(db: PgQueries) {
    this.#db = db;
  }

  async useOnce(namespace: string, id: string, expiresAt: number, now: number): Promise<boolean> {
    return claimOnce(this.#db, namespace, id, expiresAt, now);
  }

  async putEphemeral<T>(record: EphemeralRecord<T>): Promise<void> {
    await this.#db.query(
      'baton_put_ephemeral',
      `INSERT INTO ephemeral (kind, id, tenant_id, family_id, payload, expires_at, created_at, consumed_at, revoked_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ${EPHEMERAL_UPSERT}`,
      ephemeralParams(record),
    );
  }

  async getEphemeral<T>(kind: EphemeralKind, id: string, now: number): Promise<EphemeralRecord<T> | undefined> {
    const { rows } = await this.#db.query<EphemeralRow<unknown>>(
      'baton_get_ephemeral',
      'SELECT * FROM ephemeral WHERE kind = $1 AND id = $2 AND expires_at > $3 AND consumed_at IS NULL AND revoked_at IS NULL',
      [kind, id, now],
    );
    const row = rows[0];
    return row === undefined ? undefined : ephemeralFromRow<T, unknown>(row, asParsed);
  }

  async consumeEphemeral<T>(kind: EphemeralKind, id: string, now: number): Promise<ConsumeResult<T>> {
    // Atomic single use (STYLE habit 6): the WHERE clause is the check, the UPDATE is the claim.
    // A second instance blocks on the row lock, re-evaluates the WHERE and claims nothing.
    const claimed = await this.#db.query<EphemeralRow<unknown>>(
      'baton_consume_ephemeral',
      `UPDATE ephemeral SET consumed_at = $3
       WHERE kind = $1 AND id = $2 AND consumed_at IS NULL AND revoked_at IS NULL AND expires_at > $3
       RETURNING *`,
      [kind, id, now],
    );
    const won = claimed.rows[0];
    if (won !== undefined) return { status: 'ok', record: ephemeralFromRow<T, unknown>(won, asParsed) };
    const { rows } = await this.#db.query<EphemeralRow<unknown>>('baton_find_ephemeral', 'SELECT * FROM ephemeral WHERE kind = $1 AND id = $2', [
      kind,
      id,
    ]);
    return unclaimedResult<T, unknown>(rows[0], now, asParsed);
  }

  async deleteEphemeral(kind: EphemeralKind, id: string): Promise<void> {
    await this.#db.query('baton_delete_ephemeral', 'DELETE FROM ephemeral WHERE kind = $1 AND id = $2', [kind, id]);
  }

  async revokeFamily(tenantId: string, familyId: string, now: number): Promise<number> {
    const { rowCount } = await this.#db.query(
      'baton_revoke_family',
      'UPDATE ephemeral SET revoked_at = $3 WHERE tenant_id = $1 AND family_id = $2 AND revoked_at IS NULL',
      [tenantId, familyId, now],
    );
    return rowCount ?? 0;
  }

  async sweep(now: number): Promise<number> {
    const { rows } = await this.#db.query<{ removed: number }>(
      'baton_sweep',
      `WITH e AS (DELETE FROM ephemeral WHERE expires_at <= $1 RETURNING 1),
            u AS (DELETE FROM used_once WHERE expires_at <= $1 RETURNING 1)
       SELECT ((SELECT count(*) FROM e) + (SELECT count(*) FROM u))::int AS removed`,
      [now],
    );
    return rows[0]?.removed ?? 0;
  }
}

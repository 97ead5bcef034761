/**
 * Single-use and expiring values on SQLite. Each claim is one statement, so there is no
 * read-then-write window for a replayed value to slip through. These writes skip the change
 * log: no cache holds them.
 */
import type { DatabaseSync, StatementSync } from 'node:sqlite';
import type { OneTimePart } from '../parts.ts';
import { EPHEMERAL_UPSERT, ephemeralFromRow, ephemeralParams, type EphemeralRow, parseJson, unclaimedResult, useOnceKey } from '../rows.ts';
import type { ConsumeResult, EphemeralKind, EphemeralRecord } from '../types.ts';
import type { SqliteConnection } from './connection.ts';

/**
 * The claim of a `used_once` row, on `db` (the store's connection, or the proof replay one). One
 * statement: the insert wins, or the conflict branch revives an expired row; a live row returns
 * nothing. No read-then-write window for a replayed `jti` to slip through.
 */
export function prepareUseOnce(db: DatabaseSync): StatementSync {
  return db.prepare(
    `INSERT INTO used_once (namespace, id, expires_at) VALUES (?1, ?2, ?3)
     ON CONFLICT (namespace, id) DO UPDATE SET expires_at = excluded.expires_at WHERE used_once.expires_at <= ?4
     RETURNING 1 AS ok`,
  );
}

/** Runs a `prepareUseOnce` statement: true iff this call recorded `id`. */
export function claimOnce(statement: StatementSync, namespace: string, id: string, expiresAt: number, now: number): boolean {
  return statement.get(namespace, useOnceKey(id), expiresAt, now) !== undefined;
}

export class SqliteOneTime implements OneTimePart {
  readonly #db: SqliteConnection;
  readonly #useOnce: StatementSync;
  readonly #put: StatementSync;
  readonly #get: StatementSync;
  readonly #consume: StatementSync;
  readonly #find: StatementSync;
  readonly #delete: StatementSync;
  readonly #revokeFamily: StatementSync;
  readonly #sweepEphemeral: StatementSync;
  readonly #sweepUsedOnce: StatementSync;

  constructor(db: SqliteConnection) {
    this.#db = db;
    this.#useOnce = prepareUseOnce(db.db);
    this.#put = db.db.prepare(
      `INSERT INTO ephemeral (kind, id, tenant_id, family_id, payload, expires_at, created_at, consumed_at, revoked_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ${EPHEMERAL_UPSERT}`,
    );
    this.#get = db.db.prepare(
      `SELECT * FROM ephemeral WHERE kind = ? AND id = ? AND expires_at > ? AND consumed_at IS NULL AND revoked_at IS NULL`,
    );
    // Atomic single use (STYLE habit 6): the WHERE clause is the check, the UPDATE is the claim.
    this.#consume = db.db.prepare(
      `UPDATE ephemeral SET consumed_at = ?3
       WHERE kind = ?1 AND id = ?2 AND consumed_at IS NULL AND revoked_at IS NULL AND expires_at > ?3
       RETURNING *`,
    );
    this.#find = db.db.prepare('SELECT * FROM ephemeral WHERE kind = ? AND id = ?');
    this.#delete = db.db.prepare('DELETE FROM ephemeral WHERE kind = ? AND id = ?');
    this.#revokeFamily = db.db.prepare('UPDATE ephemeral SET revoked_at = ? WHERE tenant_id = ? AND family_id = ? AND revoked_at IS NULL');
    this.#sweepEphemeral = db.db.prepare('DELETE FROM ephemeral WHERE expires_at <= ?');
    this.#sweepUsedOnce = db.db.prepare('DELETE FROM used_once WHERE expires_at <= ?');
  }

  async useOnce(namespace: string, id: string, expiresAt: number, now: number): Promise<boolean> {
    return claimOnce(this.#useOnce, namespace, id, expiresAt, now);
  }

  async putEphemeral<T>(record: EphemeralRecord<T>): Promise<void> {
    this.#put.run(...ephemeralParams(record));
  }

  async getEphemeral<T>(kind: EphemeralKind, id: string, now: number): Promise<EphemeralRecord<T> | undefined> {
    const row = this.#get.get(kind, id, now) as EphemeralRow<string> | undefined;
    return row === undefined ? undefined : ephemeralFromRow<T, string>(row, parseJson);
  }

  async consumeEphemeral<T>(kind: EphemeralKind, id: string, now: number): Promise<ConsumeResult<T>> {
    const claimed = this.#consume.get(kind, id, now) as EphemeralRow<string> | undefined;
    if (claimed !== undefined) return { status: 'ok', record: ephemeralFromRow<T, string>(claimed, parseJson) };
    const row = this.#find.get(kind, id) as EphemeralRow<string> | undefined;
    return unclaimedResult<T, string>(row, now, parseJson);
  }

  async deleteEphemeral(kind: EphemeralKind, id: string): Promise<void> {
    this.#delete.run(kind, id);
  }

  async revokeFamily(tenantId: string, familyId: string, now: number): Promise<number> {
    return Number(this.#revokeFamily.run(now, tenantId, familyId).changes);
  }

  async sweep(now: number): Promise<number> {
    return this.#db.transaction(() => Number(this.#sweepEphemeral.run(now).changes) + Number(this.#sweepUsedOnce.run(now).changes));
  }
}

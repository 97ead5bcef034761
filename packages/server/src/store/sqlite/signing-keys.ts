/**
 * Signing keys on SQLite. A rotation runs inside `BEGIN IMMEDIATE`: no other connection can
 * change the keys between its read and its writes, so the compare and the set are one step.
 */
import type { StatementSync } from 'node:sqlite';
import type { SigningKeyRecord } from '@baton/core';
import { checkPromote, checkRotation, retiredKey, type RotateArgs } from '../checks.ts';
import type { SigningKeyPart } from '../parts.ts';
import { signingKeyParams } from '../rows.ts';
import { allRows, parseData, type SqliteConnection } from './connection.ts';

export class SqliteSigningKeys implements SigningKeyPart {
  readonly #db: SqliteConnection;
  readonly #put: StatementSync;
  readonly #insert: StatementSync;
  readonly #get: StatementSync;
  readonly #current: StatementSync;
  readonly #list: StatementSync;
  readonly #prune: StatementSync;

  constructor(db: SqliteConnection) {
    this.#db = db;
    this.#put = db.db.prepare(
      `INSERT INTO signing_keys (tenant_id, kid, alg, status, created_at, remove_after, data) VALUES (?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (tenant_id, kid) DO UPDATE SET alg = excluded.alg, status = excluded.status,
         created_at = excluded.created_at, remove_after = excluded.remove_after, data = excluded.data`,
    );
    this.#insert = db.db.prepare('INSERT INTO signing_keys (tenant_id, kid, alg, status, created_at, remove_after, data) VALUES (?, ?, ?, ?, ?, ?, ?)');
    this.#get = db.db.prepare('SELECT data FROM signing_keys WHERE tenant_id = ? AND kid = ?');
    this.#current = db.db.prepare("SELECT kid, data FROM signing_keys WHERE tenant_id = ? AND alg = ? AND status = 'current'");
    this.#list = db.db.prepare('SELECT data FROM signing_keys WHERE tenant_id = ? ORDER BY created_at, kid');
    this.#prune = db.db.prepare('DELETE FROM signing_keys WHERE tenant_id = ? AND remove_after IS NOT NULL AND remove_after < ?');
  }

  async putSigningKey(key: SigningKeyRecord): Promise<void> {
    this.#db.write((changed) => {
      this.#put.run(...signingKeyParams(key));
      changed(key.tenantId, 'signingKey');
    });
  }

  async listSigningKeys(tenantId: string): Promise<SigningKeyRecord[]> {
    return allRows(this.#list, tenantId).map((row) => parseData<SigningKeyRecord>(row));
  }

  async rotateSigningKey(args: RotateArgs): Promise<boolean> {
    checkRotation(args);
    const { tenantId, alg, now } = args;
    return this.#db.write((changed) => {
      const current = this.#current.get(tenantId, alg) as { kid: string; data: string } | undefined;
      if (current?.kid !== args.expectCurrentKid) return false;
      const promoteRow = this.#get.get(tenantId, args.promoteKid);
      const promote = promoteRow === undefined ? undefined : parseData<SigningKeyRecord>(promoteRow);
      checkPromote(promote, args);
      if (promote.status !== 'next') return false;
      if (current !== undefined) {
        // Retire before promoting: the one-current-key index is checked per statement.
        this.#put.run(...signingKeyParams(retiredKey(parseData<SigningKeyRecord>(current), args)));
      }
      this.#put.run(...signingKeyParams({ ...promote, status: 'current', activatedAt: now }));
      this.#insert.run(...signingKeyParams({ ...args.next, status: 'next' }));
      changed(tenantId, 'signingKey');
      return true;
    });
  }

  async pruneSigningKeys(tenantId: string, now: number): Promise<number> {
    return this.#db.write((changed) => {
      const removed = Number(this.#prune.run(tenantId, now).changes);
      if (removed > 0) changed(tenantId, 'signingKey');
      return removed;
    });
  }
}

/**
 * Signing keys on PostgreSQL. Rotation holds a transaction-scoped advisory lock per (schema,
 * tenant, alg), so the compare-and-set also covers "no current key yet", where there is no row
 * to lock.
 */
import type { SigningKeyRecord } from '@baton/core';
import { checkPromote, checkRotation, retiredKey, type RotateArgs } from '../checks.ts';
import { advisoryLockKey } from '../migrations.ts';
import type { SigningKeyPart } from '../parts.ts';
import { type DataRow, signingKeyParams } from '../rows.ts';
import type { PgQueries } from './connection.ts';

const PUT_SIGNING_KEY = `
  INSERT INTO signing_keys (tenant_id, kid, alg, status, created_at, remove_after, data) VALUES ($1, $2, $3, $4, $5, $6, $7)
  ON CONFLICT (tenant_id, kid) DO UPDATE SET alg = EXCLUDED.alg, status = EXCLUDED.status,
    created_at = EXCLUDED.created_at, remove_after = EXCLUDED.remove_after, data = EXCLUDED.data`;

export class PostgresSigningKeys implements SigningKeyPart {
  readonly #db: PgQueries;
  readonly #schema: string;

  constructor(db: PgQueries, schema: string) {
    this.#db = db;
    this.#schema = schema;
  }

  async putSigningKey(key: SigningKeyRecord): Promise<void> {
    await this.#db.notifyingQuery('baton_put_signing_key', PUT_SIGNING_KEY, signingKeyParams(key), {
      tenantId: key.tenantId,
      entity: 'signingKey',
    });
  }

  async listSigningKeys(tenantId: string): Promise<SigningKeyRecord[]> {
    const { rows } = await this.#db.query<DataRow<unknown>>(
      'baton_list_signing_keys',
      'SELECT data FROM signing_keys WHERE tenant_id = $1 ORDER BY created_at, kid',
      [tenantId],
    );
    return rows.map((row) => row.data as SigningKeyRecord);
  }

  async rotateSigningKey(args: RotateArgs): Promise<boolean> {
    checkRotation(args);
    const { tenantId, alg, now } = args;
    return this.#db.notifyingTransaction({ tenantId, entity: 'signingKey' }, async (client) => {
      // Serialises rotations of this tenant's `alg` keys across instances. A row lock would not
      // do: when no key is current yet there is no row, and both instances would promote.
      await client.query('SELECT pg_advisory_xact_lock($1::bigint)', [advisoryLockKey('baton.rotate', this.#schema, tenantId, alg)]);
      const current = await client.query<{ kid: string; data: SigningKeyRecord }>({
        name: 'baton_current_signing_key',
        text: "SELECT kid, data FROM signing_keys WHERE tenant_id = $1 AND alg = $2 AND status = 'current'",
        values: [tenantId, alg],
      });
      const currentRow = current.rows[0];
      if (currentRow?.kid !== args.expectCurrentKid) return false;
      const found = await client.query<DataRow<unknown>>({
        name: 'baton_get_signing_key',
        text: 'SELECT data FROM signing_keys WHERE tenant_id = $1 AND kid = $2',
        values: [tenantId, args.promoteKid],
      });
      const promote = found.rows[0]?.data as SigningKeyRecord | undefined;
      checkPromote(promote, args);
      if (promote.status !== 'next') return false;
      if (currentRow !== undefined) {
        const retired = retiredKey(currentRow.data, args);
        // Retire before promoting: the one-current-key unique index is checked per statement.
        await client.query({ name: 'baton_rotate_put_signing_key', text: PUT_SIGNING_KEY, values: signingKeyParams(retired) });
      }
      await client.query({
        name: 'baton_rotate_put_signing_key',
        text: PUT_SIGNING_KEY,
        values: signingKeyParams({ ...promote, status: 'current', activatedAt: now }),
      });
      await client.query({
        name: 'baton_insert_signing_key',
        text: 'INSERT INTO signing_keys (tenant_id, kid, alg, status, created_at, remove_after, data) VALUES ($1, $2, $3, $4, $5, $6, $7)',
        values: signingKeyParams({ ...args.next, status: 'next' }),
      });
      return true;
    });
  }

  async pruneSigningKeys(tenantId: string, now: number): Promise<number> {
    const { rowCount } = await this.#db.notifyingQuery(
      'baton_prune_signing_keys',
      'DELETE FROM signing_keys WHERE tenant_id = $1 AND remove_after IS NOT NULL AND remove_after < $2',
      [tenantId, now],
      { tenantId, entity: 'signingKey' },
    );
    return rowCount;
  }
}

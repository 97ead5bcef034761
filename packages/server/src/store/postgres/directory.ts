/** Tenants, users and applications on PostgreSQL. Every write notifies other instances. */
import type { Application, Tenant, User } from '@baton/core';
import { checkPaging, SWEEP_BATCH } from '../checks.ts';
import type { DirectoryPart } from '../parts.ts';
import { type DataRow, json } from '../rows.ts';
import type { PgQueries } from './connection.ts';

export class PostgresDirectory implements DirectoryPart {
  readonly #db: PgQueries;

  constructor(db: PgQueries) {
    this.#db = db;
  }

  async putTenant(tenant: Tenant): Promise<void> {
    await this.#db.notifyingQuery(
      'baton_put_tenant',
      `INSERT INTO tenants (id, data) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET data = EXCLUDED.data`,
      [tenant.id, json(tenant)],
      { tenantId: tenant.id, entity: 'tenant' },
    );
  }

  async getTenant(id: string): Promise<Tenant | undefined> {
    const { rows } = await this.#db.query<DataRow<unknown>>('baton_get_tenant', 'SELECT data FROM tenants WHERE id = $1', [id]);
    return rows[0]?.data as Tenant | undefined;
  }

  async listTenants(): Promise<Tenant[]> {
    const { rows } = await this.#db.query<DataRow<unknown>>('baton_list_tenants', 'SELECT data FROM tenants ORDER BY id', []);
    return rows.map((row) => row.data as Tenant);
  }

  async putUser(user: User): Promise<void> {
    await this.#db.notifyingQuery(
      'baton_put_user',
      `INSERT INTO users (tenant_id, oid, username, data) VALUES ($1, $2, $3, $4)
       ON CONFLICT (tenant_id, oid) DO UPDATE SET username = EXCLUDED.username, data = EXCLUDED.data`,
      [user.tenantId, user.oid, user.username, json(user)],
      { tenantId: user.tenantId, entity: 'user' },
    );
  }

  async getUserByName(tenantId: string, username: string): Promise<User | undefined> {
    const { rows } = await this.#db.query<DataRow<unknown>>(
      'baton_get_user_by_name',
      'SELECT data FROM users WHERE tenant_id = $1 AND username = $2',
      [tenantId, username],
    );
    return rows[0]?.data as User | undefined;
  }

  async getUserById(tenantId: string, oid: string): Promise<User | undefined> {
    const { rows } = await this.#db.query<DataRow<unknown>>('baton_get_user_by_id', 'SELECT data FROM users WHERE tenant_id = $1 AND oid = $2', [
      tenantId,
      oid,
    ]);
    return rows[0]?.data as User | undefined;
  }

  async listUsers(tenantId: string, options?: { limit?: number; offset?: number }): Promise<User[]> {
    const { limit, offset } = checkPaging(options);
    // `LIMIT NULL` is `LIMIT ALL`. Ordered by the (tenant_id, username) unique index.
    const { rows } = await this.#db.query<DataRow<unknown>>(
      'baton_list_users',
      'SELECT data FROM users WHERE tenant_id = $1 ORDER BY username LIMIT $2 OFFSET $3',
      [tenantId, limit ?? null, offset],
    );
    return rows.map((row) => row.data as User);
  }

  async putApplication(app: Application): Promise<void> {
    await this.#db.notifyingQuery(
      'baton_put_application',
      `INSERT INTO applications (tenant_id, client_id, data) VALUES ($1, $2, $3)
       ON CONFLICT (tenant_id, client_id) DO UPDATE SET data = EXCLUDED.data`,
      [app.tenantId, app.clientId, json(app)],
      { tenantId: app.tenantId, entity: 'application' },
    );
  }

  async getApplication(tenantId: string, clientId: string): Promise<Application | undefined> {
    const { rows } = await this.#db.query<DataRow<unknown>>(
      'baton_get_application',
      'SELECT data FROM applications WHERE tenant_id = $1 AND client_id = $2',
      [tenantId, clientId],
    );
    return rows[0]?.data as Application | undefined;
  }

  async listApplications(tenantId: string): Promise<Application[]> {
    const { rows } = await this.#db.query<DataRow<unknown>>(
      'baton_list_applications',
      'SELECT data FROM applications WHERE tenant_id = $1 ORDER BY client_id',
      [tenantId],
    );
    return rows.map((row) => row.data as Application);
  }

  async sweepRegistrations(now: number): Promise<number> {
    const { rows } = await this.#db.query<{ tenant_id: string; client_id: string }>(
      'baton_gone_registrations',
      `SELECT tenant_id, client_id FROM applications
       WHERE data->'registration'->>'kind' = 'dynamic'
         AND ((data->'registration'->>'deletedAt')::float8 <= $1 OR (data->'registration'->>'expiresAt')::float8 <= $1)
       LIMIT $2`,
      [now, SWEEP_BATCH],
    );
    let removed = 0;
    for (const row of rows) {
      // Re-checked in the delete: a registration used (or replaced) since the read stays.
      const { rowCount } = await this.#db.notifyingQuery(
        'baton_sweep_registration',
        `DELETE FROM applications WHERE tenant_id = $1 AND client_id = $2 AND data->'registration'->>'kind' = 'dynamic'
           AND ((data->'registration'->>'deletedAt')::float8 <= $3 OR (data->'registration'->>'expiresAt')::float8 <= $3)`,
        [row.tenant_id, row.client_id, now],
        { tenantId: row.tenant_id, entity: 'application' },
      );
      if (rowCount === 0) continue;
      const consents = await this.#db.query('baton_sweep_registration_consents', 'DELETE FROM consents WHERE tenant_id = $1 AND client_id = $2', [row.tenant_id, row.client_id]);
      removed += rowCount + (consents.rowCount ?? 0);
    }
    return removed;
  }
}

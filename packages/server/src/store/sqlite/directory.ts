/** Tenants, users and applications on SQLite. Every write goes to the change log. */
import type { StatementSync } from 'node:sqlite';
import type { Application, Tenant, User } from '@baton/core';
import { checkPaging, SWEEP_BATCH } from '../checks.ts';
import type { DirectoryPart } from '../parts.ts';
import { json } from '../rows.ts';
import { allRows, parseData, type SqliteConnection, DONE } from './connection.ts';

export class SqliteDirectory implements DirectoryPart {
  readonly #db: SqliteConnection;
  readonly #putTenant: StatementSync;
  readonly #getTenant: StatementSync;
  readonly #listTenants: StatementSync;
  readonly #putUser: StatementSync;
  readonly #getUserByName: StatementSync;
  readonly #getUserById: StatementSync;
  readonly #listUsers: StatementSync;
  readonly #putApplication: StatementSync;
  readonly #getApplication: StatementSync;
  readonly #listApplications: StatementSync;
  readonly #goneRegistrations: StatementSync;
  readonly #deleteApplication: StatementSync;
  readonly #deleteConsentsOf: StatementSync;

  constructor(db: SqliteConnection) {
    this.#db = db;
    this.#putTenant = db.db.prepare('INSERT INTO tenants (id, data) VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET data = excluded.data');
    this.#getTenant = db.db.prepare('SELECT data FROM tenants WHERE id = ?');
    this.#listTenants = db.db.prepare('SELECT data FROM tenants ORDER BY id');
    this.#putUser = db.db.prepare(
      `INSERT INTO users (tenant_id, oid, username, data) VALUES (?, ?, ?, ?)
       ON CONFLICT (tenant_id, oid) DO UPDATE SET username = excluded.username, data = excluded.data`,
    );
    this.#getUserByName = db.db.prepare('SELECT data FROM users WHERE tenant_id = ? AND username = ?');
    this.#getUserById = db.db.prepare('SELECT data FROM users WHERE tenant_id = ? AND oid = ?');
    // Ordered by the (tenant_id, username) unique index so paging never sorts the tenant.
    this.#listUsers = db.db.prepare('SELECT data FROM users WHERE tenant_id = ? ORDER BY username LIMIT ? OFFSET ?');
    this.#putApplication = db.db.prepare(
      `INSERT INTO applications (tenant_id, client_id, data) VALUES (?, ?, ?)
       ON CONFLICT (tenant_id, client_id) DO UPDATE SET data = excluded.data`,
    );
    this.#getApplication = db.db.prepare('SELECT data FROM applications WHERE tenant_id = ? AND client_id = ?');
    this.#listApplications = db.db.prepare('SELECT data FROM applications WHERE tenant_id = ? ORDER BY client_id');
    this.#goneRegistrations = db.db.prepare(
      `SELECT tenant_id, client_id FROM applications
       WHERE json_extract(data, '$.registration.kind') = 'dynamic'
         AND (json_extract(data, '$.registration.deletedAt') <= ?1 OR json_extract(data, '$.registration.expiresAt') <= ?1)
       LIMIT ?2`,
    );
    this.#deleteApplication = db.db.prepare('DELETE FROM applications WHERE tenant_id = ? AND client_id = ?');
    this.#deleteConsentsOf = db.db.prepare('DELETE FROM consents WHERE tenant_id = ? AND client_id = ?');
  }

  async putTenant(tenant: Tenant): Promise<void> {
    this.#db.write((changed) => {
      this.#putTenant.run(tenant.id, json(tenant));
      changed(tenant.id, 'tenant');
    });
  }

  async getTenant(id: string): Promise<Tenant | undefined> {
    const row = this.#getTenant.get(id);
    return row === undefined ? undefined : parseData<Tenant>(row);
  }

  async listTenants(): Promise<Tenant[]> {
    return allRows(this.#listTenants).map((row) => parseData<Tenant>(row));
  }

  putUser(user: User): Promise<void> {
    this.#db.write((changed) => {
      this.#putUser.run(user.tenantId, user.oid, user.username, json(user));
      changed(user.tenantId, 'user');
    });
    return DONE;
  }

  async getUserByName(tenantId: string, username: string): Promise<User | undefined> {
    const row = this.#getUserByName.get(tenantId, username);
    return row === undefined ? undefined : parseData<User>(row);
  }

  async getUserById(tenantId: string, oid: string): Promise<User | undefined> {
    const row = this.#getUserById.get(tenantId, oid);
    return row === undefined ? undefined : parseData<User>(row);
  }

  async listUsers(tenantId: string, options?: { limit?: number; offset?: number }): Promise<User[]> {
    const { limit, offset } = checkPaging(options);
    // `LIMIT -1` is no limit.
    return allRows(this.#listUsers, tenantId, limit ?? -1, offset).map((row) => parseData<User>(row));
  }

  putApplication(app: Application): Promise<void> {
    this.#db.write((changed) => {
      this.#putApplication.run(app.tenantId, app.clientId, json(app));
      changed(app.tenantId, 'application');
    });
    return DONE;
  }

  async getApplication(tenantId: string, clientId: string): Promise<Application | undefined> {
    const row = this.#getApplication.get(tenantId, clientId);
    return row === undefined ? undefined : parseData<Application>(row);
  }

  async listApplications(tenantId: string): Promise<Application[]> {
    return allRows(this.#listApplications, tenantId).map((row) => parseData<Application>(row));
  }

  async sweepRegistrations(now: number): Promise<number> {
    return this.#db.write((changed) => {
      const gone = this.#goneRegistrations.all(now, SWEEP_BATCH) as unknown as { tenant_id: string; client_id: string }[];
      let removed = 0;
      for (const row of gone) {
        removed += Number(this.#deleteApplication.run(row.tenant_id, row.client_id).changes);
        removed += Number(this.#deleteConsentsOf.run(row.tenant_id, row.client_id).changes);
        changed(row.tenant_id, 'application');
      }
      return removed;
    });
  }
}

/** Consents, app role assignments and conditional-access policies on SQLite. */
import type { StatementSync } from 'node:sqlite';
import type { AppRoleAssignment, ConsentGrant, Policy } from '@baton/core';
import { checkPolicies } from '../checks.ts';
import type { AccessPart } from '../parts.ts';
import { consentConditions, consentFilter, consentFromRow, type ConsentRow, json, parseJson, roleFromRow, type RoleRow } from '../rows.ts';
import type { ConsentQuery } from '../types.ts';
import { allRows, parseData, type SqliteConnection, DONE } from './connection.ts';

/** By filter mask: 2 resource, 6 resource+principal, 4 principal, 5 principal+client. */
const CONSENT_INDEX_BY_MASK: readonly string[] = ['', '', 'consents_by_resource', '', 'consents_by_principal', 'consents_by_principal', 'consents_by_resource', ''];

/**
 * The listConsents query for a combination of filters (bit 1 clientId, 2 resource, 4 principal).
 * One statement per combination: an `(? IS NULL OR col = ?)` form would stop SQLite from using an
 * index and scan 10^6 rows. Exported so a test can assert each plan is an index search.
 */
export function consentListSql(mask: number): string {
  const where = consentConditions(mask, () => '?');
  // Without statistics SQLite prefers walking the primary key (already in ORDER BY order) over
  // searching (tenant_id, resource) and sorting: for "every consent to this API" that reads every
  // consent of the tenant. INDEXED BY pins the index whose prefix holds every filter (and fails
  // loudly if a migration ever drops it); the other shapes are prefixes of the primary key.
  const index = CONSENT_INDEX_BY_MASK[mask] ?? '';
  return `SELECT * FROM consents${index === '' ? '' : ` INDEXED BY ${index}`} WHERE ${where.join(' AND ')} ORDER BY client_id, resource, principal`;
}

export class SqliteAccess implements AccessPart {
  readonly #db: SqliteConnection;
  readonly #putConsent: StatementSync;
  readonly #listConsents: readonly StatementSync[];
  readonly #deleteConsent: StatementSync;
  readonly #putRoleAssignment: StatementSync;
  readonly #listRoleAssignments: StatementSync;
  readonly #deleteRoleAssignment: StatementSync;
  readonly #deletePolicies: StatementSync;
  readonly #insertPolicy: StatementSync;
  readonly #listPolicies: StatementSync;

  constructor(db: SqliteConnection) {
    this.#db = db;
    this.#putConsent = db.db.prepare(
      `INSERT INTO consents (tenant_id, client_id, resource, principal, scopes, created_at) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (tenant_id, client_id, resource, principal) DO UPDATE SET scopes = excluded.scopes, created_at = excluded.created_at`,
    );
    this.#listConsents = Array.from({ length: 8 }, (_, mask) => db.db.prepare(consentListSql(mask)));
    this.#deleteConsent = db.db.prepare('DELETE FROM consents WHERE tenant_id = ? AND client_id = ? AND resource = ? AND principal = ?');
    this.#putRoleAssignment = db.db.prepare(
      `INSERT INTO role_assignments (tenant_id, principal_type, principal_id, resource, roles) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (tenant_id, principal_type, principal_id, resource) DO UPDATE SET roles = excluded.roles`,
    );
    this.#listRoleAssignments = db.db.prepare(
      'SELECT * FROM role_assignments WHERE tenant_id = ? AND principal_type = ? AND principal_id = ? ORDER BY resource',
    );
    this.#deleteRoleAssignment = db.db.prepare('DELETE FROM role_assignments WHERE tenant_id = ? AND principal_type = ? AND principal_id = ? AND resource = ?');
    this.#deletePolicies = db.db.prepare('DELETE FROM policies WHERE tenant_id = ?');
    this.#insertPolicy = db.db.prepare('INSERT INTO policies (tenant_id, position, name, data) VALUES (?, ?, ?, ?)');
    this.#listPolicies = db.db.prepare('SELECT data FROM policies WHERE tenant_id = ? ORDER BY position');
  }

  putConsent(grant: ConsentGrant): Promise<void> {
    this.#db.write((changed) => {
      this.#putConsent.run(grant.tenantId, grant.clientId, grant.resource, grant.principal, json(grant.scopes), grant.createdAt);
      changed(grant.tenantId, 'consent');
    });
    return DONE;
  }

  async listConsents(query: ConsentQuery): Promise<ConsentGrant[]> {
    const { mask, params } = consentFilter(query);
    const statement = this.#listConsents[mask] as StatementSync;
    return allRows(statement, ...params).map((row) => consentFromRow(row as ConsentRow<string>, parseJson));
  }

  deleteConsent(tenantId: string, clientId: string, resource: string, principal: string): Promise<boolean> {
    return Promise.resolve(this.#db.write((changed) => {
      const { changes } = this.#deleteConsent.run(tenantId, clientId, resource, principal);
      if (Number(changes) === 0) return false;
      changed(tenantId, 'consent');
      return true;
    }));
  }

  putRoleAssignment(assignment: AppRoleAssignment): Promise<void> {
    this.#db.write((changed) => {
      this.#putRoleAssignment.run(assignment.tenantId, assignment.principalType, assignment.principalId, assignment.resource, json(assignment.roles));
      changed(assignment.tenantId, 'roleAssignment');
    });
    return DONE;
  }

  async listRoleAssignments(
    tenantId: string,
    principalType: AppRoleAssignment['principalType'],
    principalId: string,
  ): Promise<AppRoleAssignment[]> {
    return allRows(this.#listRoleAssignments, tenantId, principalType, principalId).map((row) => roleFromRow(row as RoleRow<string>, parseJson));
  }

  deleteRoleAssignment(tenantId: string, principalType: AppRoleAssignment['principalType'], principalId: string, resource: string): Promise<boolean> {
    return Promise.resolve(this.#db.write((changed) => {
      const { changes } = this.#deleteRoleAssignment.run(tenantId, principalType, principalId, resource);
      if (Number(changes) === 0) return false;
      changed(tenantId, 'roleAssignment');
      return true;
    }));
  }

  replacePolicies(tenantId: string, policies: Policy[]): Promise<void> {
    checkPolicies(tenantId, policies);
    this.#db.write((changed) => {
      this.#deletePolicies.run(tenantId);
      policies.forEach((policy, position) => this.#insertPolicy.run(tenantId, position, policy.name, json(policy)));
      changed(tenantId, 'policy');
    });
    return DONE;
  }

  async listPolicies(tenantId: string): Promise<Policy[]> {
    return allRows(this.#listPolicies, tenantId).map((row) => parseData<Policy>(row));
  }
}

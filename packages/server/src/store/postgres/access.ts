/** Consents, app role assignments and conditional-access policies on PostgreSQL. */
import type { AppRoleAssignment, ConsentGrant, Policy } from '@baton/core';
import { checkPolicies } from '../checks.ts';
import type { AccessPart } from '../parts.ts';
import { asParsed, consentConditions, consentFilter, consentFromRow, type ConsentRow, type DataRow, json, roleFromRow, type RoleRow } from '../rows.ts';
import type { ConsentQuery } from '../types.ts';
import type { PgQueries } from './connection.ts';

/**
 * The listConsents query for a combination of filters (bit 1 clientId, 2 resource, 4 principal).
 * One statement per combination so each is planned against the index whose prefix it fills; a
 * `($2 IS NULL OR col = $2)` form gets one generic plan that scans. Exported for a plan test.
 */
export function consentListSql(mask: number): string {
  const where = consentConditions(mask, (n) => `$${n}`);
  return `SELECT * FROM consents WHERE ${where.join(' AND ')} ORDER BY client_id, resource, principal`;
}

export class PostgresAccess implements AccessPart {
  readonly #db: PgQueries;

  constructor(db: PgQueries) {
    this.#db = db;
  }

  async putConsent(grant: ConsentGrant): Promise<void> {
    await this.#db.notifyingQuery(
      'baton_put_consent',
      `INSERT INTO consents (tenant_id, client_id, resource, principal, scopes, created_at) VALUES ($1, $2, $3, $4, $5, $6)
       ON CONFLICT (tenant_id, client_id, resource, principal) DO UPDATE SET scopes = EXCLUDED.scopes, created_at = EXCLUDED.created_at`,
      [grant.tenantId, grant.clientId, grant.resource, grant.principal, json(grant.scopes), grant.createdAt],
      { tenantId: grant.tenantId, entity: 'consent' },
    );
  }

  async listConsents(query: ConsentQuery): Promise<ConsentGrant[]> {
    const { mask, params } = consentFilter(query);
    const { rows } = await this.#db.query<ConsentRow<string[]>>(`baton_list_consents_${mask}`, consentListSql(mask), params);
    return rows.map((row) => consentFromRow(row, asParsed));
  }

  async deleteConsent(tenantId: string, clientId: string, resource: string, principal: string): Promise<boolean> {
    const { rowCount } = await this.#db.notifyingQuery(
      'baton_delete_consent',
      'DELETE FROM consents WHERE tenant_id = $1 AND client_id = $2 AND resource = $3 AND principal = $4',
      [tenantId, clientId, resource, principal],
      { tenantId, entity: 'consent' },
    );
    return rowCount > 0;
  }

  async putRoleAssignment(assignment: AppRoleAssignment): Promise<void> {
    await this.#db.notifyingQuery(
      'baton_put_role_assignment',
      `INSERT INTO role_assignments (tenant_id, principal_type, principal_id, resource, roles) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (tenant_id, principal_type, principal_id, resource) DO UPDATE SET roles = EXCLUDED.roles`,
      [assignment.tenantId, assignment.principalType, assignment.principalId, assignment.resource, json(assignment.roles)],
      { tenantId: assignment.tenantId, entity: 'roleAssignment' },
    );
  }

  async listRoleAssignments(
    tenantId: string,
    principalType: AppRoleAssignment['principalType'],
    principalId: string,
  ): Promise<AppRoleAssignment[]> {
    const { rows } = await this.#db.query<RoleRow<string[]>>(
      'baton_list_role_assignments',
      'SELECT * FROM role_assignments WHERE tenant_id = $1 AND principal_type = $2 AND principal_id = $3 ORDER BY resource',
      [tenantId, principalType, principalId],
    );
    return rows.map((row) => roleFromRow(row, asParsed));
  }

  async deleteRoleAssignment(tenantId: string, principalType: AppRoleAssignment['principalType'], principalId: string, resource: string): Promise<boolean> {
    const { rowCount } = await this.#db.notifyingQuery(
      'baton_delete_role_assignment',
      'DELETE FROM role_assignments WHERE tenant_id = $1 AND principal_type = $2 AND principal_id = $3 AND resource = $4',
      [tenantId, principalType, principalId, resource],
      { tenantId, entity: 'roleAssignment' },
    );
    return rowCount > 0;
  }

  async replacePolicies(tenantId: string, policies: Policy[]): Promise<void> {
    checkPolicies(tenantId, policies);
    await this.#db.notifyingTransaction({ tenantId, entity: 'policy' }, async (client) => {
      await client.query({ name: 'baton_delete_policies', text: 'DELETE FROM policies WHERE tenant_id = $1', values: [tenantId] });
      for (const [position, policy] of policies.entries()) {
        await client.query({
          name: 'baton_insert_policy',
          text: 'INSERT INTO policies (tenant_id, position, name, data) VALUES ($1, $2, $3, $4)',
          values: [tenantId, position, policy.name, json(policy)],
        });
      }
      return true;
    });
  }

  async listPolicies(tenantId: string): Promise<Policy[]> {
    const { rows } = await this.#db.query<DataRow<unknown>>(
      'baton_list_policies',
      'SELECT data FROM policies WHERE tenant_id = $1 ORDER BY position',
      [tenantId],
    );
    return rows.map((row) => row.data as Policy);
  }
}

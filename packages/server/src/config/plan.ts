/**
 * `baton config plan` / `apply`: what loading the configuration file would change in the store,
 * entity by entity (create, update with the fields that differ, delete), and doing it.
 *
 * The records compared are exactly those `applyConfig` writes at every `baton serve --config`
 * start (compileConfig: a password that still verifies keeps its stored hash, a TOTP seed that
 * still decrypts to the file's keeps its ciphertext), so a plan right after a start is empty, and a
 * change made through the admin API shows up as an update (or, for records the file does not name,
 * as "not in the file"). Nothing in a plan is a secret: fields are named, never shown, and client
 * secrets are counted.
 *
 * What `apply` does with records the file does not name:
 * - conditional-access policies: deleted, always (the file's policies are the tenant's set, as at start);
 * - consents and application role assignments: kept, or deleted with `--prune`;
 * - users, applications and tenants: kept, and listed (the store has no deletion for them: disable
 *   a user, or revoke an application's secrets, with `baton admin`); user role assignments are not
 *   expressible in the file and are never touched.
 */
import type { AppRoleAssignment, ConsentGrant, Policy } from '@baton/core';
import type { Store } from '../store/types.ts';
import { ADMIN_CLIENT_ID } from '../admin/application.ts';
import { applyConfig, type CompiledTenant } from './load.ts';
import { canonicalJson as canonical } from '../canonical.ts';

export type PlanAction = 'create' | 'update' | 'delete' | 'keep';

export interface PlanChange {
  action: PlanAction;
  tenant: string;
  entity: 'tenant' | 'user' | 'application' | 'consent' | 'roleAssignment' | 'policy';
  /** How a person names it: a username, a client id, `tasks-api → docs-api for all`, a policy name. */
  name: string;
  /** For updates: the fields that differ (secrets: how many added and removed). */
  fields?: string[];
  /** For `keep`: why it stays. */
  note?: string;
}

export interface ConfigPlan {
  changes: PlanChange[];
  unchanged: number;
}

/** Field names that differ; `rename` says how to show one (`passwordHash` → `password`). */
function differingFields(before: object, after: object, rename: Record<string, string> = {}): string[] {
  const keys = new Set([...Object.keys(before), ...Object.keys(after)]);
  const out: string[] = [];
  for (const key of [...keys].sort()) {
    const a = (before as Record<string, unknown>)[key];
    const b = (after as Record<string, unknown>)[key];
    if (canonical(a) !== canonical(b)) out.push(rename[key] ?? key);
  }
  return out;
}

const consentName = (c: ConsentGrant, users: Map<string, string>) => `${c.clientId} → ${c.resource} for ${c.principal === 'all' ? 'all' : (users.get(c.principal) ?? c.principal)}`;
const assignmentName = (a: AppRoleAssignment) => `${a.principalId} → ${a.resource}`;

/** Compares the compiled configuration with the store. Reads only. */
export async function planConfig(store: Store, compiled: readonly CompiledTenant[], options: { prune?: boolean } = {}): Promise<ConfigPlan> {
  const changes: PlanChange[] = [];
  let unchanged = 0;
  const compare = (tenant: string, entity: PlanChange['entity'], name: string, stored: object | undefined, next: object, fields: () => string[]) => {
    if (stored === undefined) changes.push({ action: 'create', tenant, entity, name });
    else if (canonical(stored) !== canonical(next)) changes.push({ action: 'update', tenant, entity, name, fields: fields() });
    else unchanged++;
  };
  const named = new Set(compiled.map((c) => c.tenant.id));
  for (const t of await store.listTenants()) {
    if (!named.has(t.id)) changes.push({ action: 'keep', tenant: t.id, entity: 'tenant', name: t.id, note: 'not in the file' });
  }

  for (const c of compiled) {
    const tenantId = c.tenant.id;
    const storedTenant = await store.getTenant(tenantId);
    compare(tenantId, 'tenant', tenantId, storedTenant, c.tenant, () => differingFields(storedTenant!, c.tenant));

    const storedUsers = storedTenant === undefined ? [] : await store.listUsers(tenantId);
    const usernames = new Map(storedUsers.map((u) => [u.oid, u.username]));
    for (const u of c.users) usernames.set(u.oid, u.username);
    const fileUsers = new Set(c.users.map((u) => u.oid));
    for (const user of c.users) {
      const stored = storedUsers.find((s) => s.oid === user.oid);
      compare(tenantId, 'user', user.username, stored, user, () => differingFields(stored!, user, { passwordHash: 'password', totpSecret: 'totpSecret (MFA)', directoryRoles: 'roles' }));
    }
    for (const stored of storedUsers) {
      if (!fileUsers.has(stored.oid)) changes.push({ action: 'keep', tenant: tenantId, entity: 'user', name: stored.username, note: 'not in the file' });
    }

    const storedApps = storedTenant === undefined ? [] : await store.listApplications(tenantId);
    const fileApps = new Set(c.applications.map((a) => a.clientId));
    for (const app of c.applications) {
      const stored = storedApps.find((s) => s.clientId === app.clientId);
      compare(tenantId, 'application', app.clientId, stored, app, () => {
        const fields = differingFields({ ...stored!, secrets: undefined }, { ...app, secrets: undefined }, { jwks: 'keys' });
        const before = new Set(stored!.secrets.map((s) => s.hash));
        const after = new Set(app.secrets.map((s) => s.hash));
        const added = [...after].filter((h) => !before.has(h)).length;
        const removed = [...before].filter((h) => !after.has(h)).length;
        if (added > 0 || removed > 0) fields.push(`secrets (${added} added, ${removed} removed)`);
        else if (canonical(stored!.secrets) !== canonical(app.secrets)) fields.push('secrets (dates)');
        return fields;
      });
    }
    for (const stored of storedApps) {
      if (!fileApps.has(stored.clientId) && stored.clientId !== ADMIN_CLIENT_ID) changes.push({ action: 'keep', tenant: tenantId, entity: 'application', name: stored.clientId, note: 'not in the file' });
    }

    const storedConsents = storedTenant === undefined ? [] : await store.listConsents({ tenantId });
    const consentKey = (g: ConsentGrant) => `${g.clientId}\u0000${g.resource}\u0000${g.principal}`;
    const fileConsents = new Set(c.consents.map(consentKey));
    for (const grant of c.consents) {
      const stored = storedConsents.find((s) => consentKey(s) === consentKey(grant));
      compare(tenantId, 'consent', consentName(grant, usernames), stored, grant, () => differingFields(stored!, grant));
    }
    for (const stored of storedConsents) {
      if (fileConsents.has(consentKey(stored))) continue;
      changes.push(options.prune ? { action: 'delete', tenant: tenantId, entity: 'consent', name: consentName(stored, usernames) } : { action: 'keep', tenant: tenantId, entity: 'consent', name: consentName(stored, usernames), note: 'not in the file; --prune deletes it' });
    }

    const storedAssignments = (await Promise.all(storedApps.map((a) => store.listRoleAssignments(tenantId, 'application', a.clientId)))).flat();
    const assignmentKey = (a: AppRoleAssignment) => `${a.principalId}\u0000${a.resource}`;
    const fileAssignments = new Set(c.roleAssignments.map(assignmentKey));
    for (const assignment of c.roleAssignments) {
      const stored = storedAssignments.find((s) => assignmentKey(s) === assignmentKey(assignment));
      compare(tenantId, 'roleAssignment', assignmentName(assignment), stored, assignment, () => differingFields(stored!, assignment));
    }
    for (const stored of storedAssignments) {
      if (fileAssignments.has(assignmentKey(stored))) continue;
      changes.push(options.prune ? { action: 'delete', tenant: tenantId, entity: 'roleAssignment', name: assignmentName(stored) } : { action: 'keep', tenant: tenantId, entity: 'roleAssignment', name: assignmentName(stored), note: 'not in the file; --prune deletes it' });
    }

    const storedPolicies: Policy[] = storedTenant === undefined ? [] : await store.listPolicies(tenantId);
    for (const policy of c.policies) {
      const stored = storedPolicies.find((p) => p.name === policy.name);
      compare(tenantId, 'policy', policy.name, stored, policy, () => differingFields(stored!, policy));
    }
    for (const stored of storedPolicies) {
      if (!c.policies.some((p) => p.name === stored.name)) changes.push({ action: 'delete', tenant: tenantId, entity: 'policy', name: stored.name });
    }
    // The file's order is the evaluation order: a reordering alone is an update of the set.
    const order = (list: Policy[]) => list.map((p) => p.name).join('\u0000');
    const kept = storedPolicies.filter((p) => c.policies.some((q) => q.name === p.name));
    if (kept.length > 1 && order(kept) !== order(c.policies.filter((p) => kept.some((k) => k.name === p.name)))) {
      changes.push({ action: 'update', tenant: tenantId, entity: 'policy', name: '(order)', fields: ['evaluation order'] });
    }
  }
  return { changes, unchanged };
}

/** Applies the configuration as `baton serve` does at start, then, with `prune`, deletes what the plan marked. */
export async function applyConfigPlan(store: Store, compiled: readonly CompiledTenant[], plan: ConfigPlan): Promise<void> {
  await applyConfig(store, compiled);
  for (const change of plan.changes) {
    if (change.action !== 'delete') continue;
    if (change.entity === 'consent') {
      const tenant = compiled.find((c) => c.tenant.id === change.tenant);
      if (tenant === undefined) continue;
      for (const grant of await store.listConsents({ tenantId: change.tenant })) {
        if (!tenant.consents.some((g) => g.clientId === grant.clientId && g.resource === grant.resource && g.principal === grant.principal)) {
          await store.deleteConsent(change.tenant, grant.clientId, grant.resource, grant.principal);
        }
      }
    } else if (change.entity === 'roleAssignment') {
      const tenant = compiled.find((c) => c.tenant.id === change.tenant);
      if (tenant === undefined) continue;
      const [principalId, resource] = change.name.split(' → ') as [string, string];
      if (!tenant.roleAssignments.some((a) => a.principalId === principalId && a.resource === resource)) {
        await store.deleteRoleAssignment(change.tenant, 'application', principalId, resource);
      }
    }
    // Policies are replaced as a set by applyConfig.
  }
}

/** Counts per action, for the summary line. */
export function planSummary(plan: ConfigPlan): { create: number; update: number; delete: number } {
  const count = (action: PlanAction) => plan.changes.filter((c) => c.action === action).length;
  return { create: count('create'), update: count('update'), delete: count('delete') };
}

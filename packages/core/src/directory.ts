/**
 * `TenantDirectory`: an immutable, in-memory view of one tenant's registrations, built once from
 * plain store records and read on every token request without a store round-trip (DESIGN
 * principle 4). The server keeps one per tenant and rebuilds it when the store reports an
 * `Invalidation` for that tenant; nothing here ever changes after `buildDirectory` returns.
 *
 * Only tenant-wide facts live here. Per-user facts (a user's own consents, a user's app roles,
 * sessions) are fetched per request by the server and handed to the rules beside the directory.
 */
import { ConfigurationError } from './errors.ts';
import { parseCidr } from './policy.ts';
import type {
  Application,
  AppRoleAssignment,
  AppRoleDefinition,
  ConsentGrant,
  Policy,
  ScopeDefinition,
  Tenant,
} from './types.ts';

export interface DirectoryRecords {
  tenant: Tenant;
  applications: readonly Application[];
  /**
   * Consents of the tenant. Only `principal: 'all'` (admin consent) grants are kept; a user's own
   * consent is never tenant-wide, so any other record is ignored rather than widened.
   */
  tenantConsents: readonly ConsentGrant[];
  /** App role assignments. Only `principalType: 'application'` ones are kept (user roles are per request). */
  roleAssignments: readonly AppRoleAssignment[];
  policies: readonly Policy[];
}

export interface TenantDirectory {
  readonly tenant: Tenant;
  /** Every application, in the order given. */
  readonly applications: readonly Application[];
  /** Every policy of the tenant, in the order given. */
  readonly policies: readonly Policy[];
  /** An application (client or API) by client id. */
  application(clientId: string): Application | undefined;
  /**
   * An API (an application with an `identifierUri`) named by its identifier URI or by its client
   * id — the two ways a scope prefix, an RFC 8693 `audience` or an RFC 8707 `resource` name it.
   */
  api(name: string): Application | undefined;
  /** An API by identifier URI only (`api://docs`). */
  apiByIdentifierUri(uri: string): Application | undefined;
  /** A delegated scope an API exposes, by the API's client id and the scope value (`Docs.Read`). */
  scope(apiClientId: string, value: string): ScopeDefinition | undefined;
  /** An app role an API defines, by the API's client id and the role value (`Docs.ReadAll`). */
  appRole(apiClientId: string, value: string): AppRoleDefinition | undefined;
  /**
   * The delegated scopes an admin consented to for every user of the tenant, for (client, API
   * client id), deduplicated in configuration order. Empty when none.
   */
  tenantConsent(clientId: string, resource: string): readonly string[];
  /** Application permissions (role values) assigned to a client on an API, as stored (not yet filtered). */
  applicationRoles(clientId: string, resource: string): readonly string[];
  /** The policies that may apply to an API: those naming it plus those with no `resources` selector. */
  policiesFor(resource: string): readonly Policy[];
  /**
   * Records that were skipped or cannot take effect (a consent for an API that no longer exists, a
   * malformed CIDR that admits nobody), path-qualified, for the server to log when it builds.
   */
  readonly warnings: readonly string[];
}

const EMPTY_LIST: readonly never[] = Object.freeze([]);

/**
 * Builds the immutable directory of one tenant. Records are copied and frozen, so a caller that
 * later mutates its own objects cannot change what the rules see.
 *
 * Throws `ConfigurationError` (path-qualified issues) when the records contradict each other: a
 * record of another tenant, a duplicate client id, identifier URI, scope or role value. Those are
 * store or loader bugs; a directory that silently dropped them would decide on a different tenant
 * than the one stored.
 *
 * Records that merely cannot take effect are kept out of the decision and listed in `warnings`
 * instead of failing the whole tenant: a consent or assignment for an API that no longer exists
 * (it is skipped — it could grant nothing), a malformed CIDR in a policy (it matches no address,
 * so the policy fails closed). The configuration loader refuses both at start.
 *
 * @example
 * const directory = buildDirectory({ tenant, applications, tenantConsents, roleAssignments, policies });
 * directory.api('api://docs')?.clientId; // 'docs-api'
 * directory.tenantConsent('tasks-api', 'docs-api'); // ['Docs.Read', 'Docs.Write']
 */
export function buildDirectory(records: DirectoryRecords): TenantDirectory {
  const issues: string[] = [];
  const warnings: string[] = [];
  const tenant = deepFreeze(structuredClone(records.tenant));
  const tenantId = tenant.id;

  const applications: Application[] = [];
  const byClientId = new Map<string, Application>();
  const byIdentifierUri = new Map<string, Application>();
  const definitions = new Map<string, { scopes: Map<string, ScopeDefinition>; roles: Map<string, AppRoleDefinition> }>();

  records.applications.forEach((source, i) => {
    const at = `applications[${i}]`;
    if (source.tenantId !== tenantId) issues.push(`${at}: belongs to tenant '${source.tenantId}', not '${tenantId}'`);
    if (byClientId.has(source.clientId)) {
      issues.push(`${at}: duplicate clientId '${source.clientId}'`);
      return;
    }
    const app = deepFreeze(structuredClone(source));
    applications.push(app);
    byClientId.set(app.clientId, app);
    if (app.identifierUri === undefined) return;
    if (byIdentifierUri.has(app.identifierUri)) {
      issues.push(`${at}: identifierUri '${app.identifierUri}' is already used by '${byIdentifierUri.get(app.identifierUri)?.clientId}'`);
      return;
    }
    byIdentifierUri.set(app.identifierUri, app);
    const scopes = new Map<string, ScopeDefinition>();
    app.scopes.forEach((scope, j) => {
      if (scopes.has(scope.value)) issues.push(`${at}.scopes[${j}]: duplicate value '${scope.value}'`);
      else scopes.set(scope.value, scope);
    });
    const roles = new Map<string, AppRoleDefinition>();
    app.appRoles.forEach((role, j) => {
      if (roles.has(role.value)) issues.push(`${at}.appRoles[${j}]: duplicate value '${role.value}'`);
      else roles.set(role.value, role);
    });
    definitions.set(app.clientId, { scopes, roles });
  });
  // An identifier URI that equals another application's client id would make `api(name)` ambiguous.
  for (const [uri, app] of byIdentifierUri) {
    const other = byClientId.get(uri);
    if (other !== undefined && other !== app) issues.push(`applications: identifierUri '${uri}' of '${app.clientId}' equals the clientId of another application`);
  }

  /**
   * Admin consents and application role assignments, indexed client → API → values; a record of
   * another tenant is an issue, one for an API the tenant does not define is skipped with a warning.
   */
  const byClientAndApi = <R extends { tenantId: string; resource: string }>(list: readonly R[], name: string, client: (record: R) => string | undefined, values: (record: R) => readonly string[]) => {
    const index = new Map<string, Map<string, string[]>>();
    list.forEach((record, i) => {
      const clientId = client(record);
      if (clientId === undefined) return;
      const at = `${name}[${i}]`;
      if (record.tenantId !== tenantId) issues.push(`${at}: belongs to tenant '${record.tenantId}', not '${tenantId}'`);
      if (!definitions.has(record.resource)) {
        warnings.push(`${at}: skipped, resource '${record.resource}' is not an API of tenant '${tenantId}'`);
        return;
      }
      const held = getOrCreate(getOrCreate(index, clientId, () => new Map<string, string[]>()), record.resource, () => []);
      for (const value of values(record)) if (!held.includes(value)) held.push(value);
    });
    return index;
  };
  const consents = byClientAndApi(records.tenantConsents, 'tenantConsents', (grant) => (grant.principal === 'all' ? grant.clientId : undefined), (grant) => grant.scopes);
  const assignments = byClientAndApi(records.roleAssignments, 'roleAssignments', (a) => (a.principalType === 'application' ? a.principalId : undefined), (a) => a.roles);

  const policies: Policy[] = [];
  const named = new Set<string>();
  const everywhere: Policy[] = [];
  records.policies.forEach((source, i) => {
    const at = `policies[${i}]`;
    if (source.tenantId !== tenantId) issues.push(`${at}: belongs to tenant '${source.tenantId}', not '${tenantId}'`);
    source.require.ipRanges?.forEach((range, j) => {
      if (parseCidr(range) === undefined) warnings.push(`${at}.require.ipRanges[${j}]: '${range}' is not an IPv4 or IPv6 CIDR range; it admits no address`);
    });
    const policy = deepFreeze(structuredClone(source));
    policies.push(policy);
    if (policy.resources.length === 0) everywhere.push(policy);
    for (const resource of policy.resources) named.add(resource);
  });

  if (issues.length > 0) throw new ConfigurationError(issues.map((issue) => `tenant '${tenantId}': ${issue}`));

  // Frozen lists, so a reader cannot widen a consent or an assignment through what it was given.
  for (const index of [consents, assignments]) for (const perResource of index.values()) for (const list of perResource.values()) Object.freeze(list);
  // Policies that name the API come in configuration order with the tenant-wide ones.
  const policiesIndex = new Map<string, readonly Policy[]>();
  for (const resource of named) {
    policiesIndex.set(resource, Object.freeze(policies.filter((p) => p.resources.length === 0 || p.resources.includes(resource))));
  }
  const frozenEverywhere = Object.freeze(everywhere);

  const directory: TenantDirectory = {
    tenant,
    applications: Object.freeze(applications),
    policies: Object.freeze(policies),
    application: (clientId) => byClientId.get(clientId),
    api: (name) => byIdentifierUri.get(name) ?? apiByClientId(name),
    apiByIdentifierUri: (uri) => byIdentifierUri.get(uri),
    scope: (apiClientId, value) => definitions.get(apiClientId)?.scopes.get(value),
    appRole: (apiClientId, value) => definitions.get(apiClientId)?.roles.get(value),
    tenantConsent: (clientId, resource) => consents.get(clientId)?.get(resource) ?? EMPTY_LIST,
    applicationRoles: (clientId, resource) => assignments.get(clientId)?.get(resource) ?? EMPTY_LIST,
    policiesFor: (resource) => policiesIndex.get(resource) ?? frozenEverywhere,
    warnings: Object.freeze(warnings.map((warning) => `tenant '${tenantId}': ${warning}`)),
  };
  return Object.freeze(directory);

  function apiByClientId(clientId: string): Application | undefined {
    const app = byClientId.get(clientId);
    return app?.identifierUri === undefined ? undefined : app;
  }
}

function getOrCreate<K, V>(map: Map<K, V>, key: K, create: () => V): V {
  let value = map.get(key);
  if (value === undefined) {
    value = create();
    map.set(key, value);
  }
  return value;
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const member of Object.values(value)) deepFreeze(member);
  }
  return value;
}

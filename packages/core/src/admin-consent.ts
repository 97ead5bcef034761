/**
 * Tenant-wide (admin) consent, Entra's `/{tenant}/adminconsent?client_id=…`: an administrator grants
 * an application, for every user of the tenant, the permissions it declares (`requiredAccess`) —
 * its delegated scopes (`principal: 'all'` consent) and, for a confidential client, its application
 * permissions (app-role assignments). The endpoint renders pages and writes records; the rules are
 * here, pure:
 *
 *   readAdminConsentRequest    the link's parameters → the client, redirect, state and API, or the error
 *   adminConsentPermissions    what the application declares (on one API, when the link names one)
 *   decideAdminConsent         the administrator accepted → the records to write and the `scope` to report
 */
import { Entra, OAuthError, errors, truncate } from './errors.ts';
import type { TenantDirectory } from './directory.ts';
import { matchRedirectUri } from './redirect-uri.ts';
import { parseScope, qualifiedScope } from './scopes.ts';
import type { Application, AppRoleAssignment, ConsentGrant } from './types.ts';

/** The permissions an admin consent grants. */
export interface AdminConsentPermissions {
  /** Delegated scopes, per API (declared and still defined there). */
  delegated: Array<{ api: Application; scopes: string[] }>;
  /** Application permissions, per API (declared, still defined, assignable to applications). */
  roles: Array<{ api: Application; roles: string[] }>;
}

/** An admin-consent link, read and checked. */
export interface AdminConsentRequest {
  client: Application;
  /** The registered redirect URI the answer goes to; none: a page says it is done. */
  redirectUri: string | undefined;
  state: string | undefined;
  /** The one API the link's `scope` names (`<api>/.default`); undefined: every API the app declares. */
  resource: string | undefined;
  permissions: AdminConsentPermissions;
}

/** Longest `state` carried back to the client; a longer one is dropped, not echoed. */
const MAX_STATE = 2048;

/**
 * Reads an admin-consent link's parameters (`client_id`, `redirect_uri`, `scope`, `state`).
 * Throws the `OAuthError` to show on a page (never redirected: the redirect URI is not trusted yet):
 * no or unknown `client_id` (AADSTS700016), an unregistered `redirect_uri` (AADSTS50011), a `scope`
 * that names no API or two, an application that declares nothing to consent to.
 *
 * @example
 * const consent = readAdminConsentRequest(directory, { client_id: 'reports-api', scope: 'api://docs/.default' });
 */
export function readAdminConsentRequest(directory: TenantDirectory, params: Readonly<Record<string, string | undefined>>): AdminConsentRequest {
  const clientId = params.client_id;
  if (clientId === undefined || clientId === '') throw errors.invalidRequest("The request must contain the 'client_id' parameter.");
  const client = directory.application(clientId);
  if (client === undefined) {
    throw new OAuthError('invalid_request', { description: `Application with identifier '${truncate(clientId, 128)}' was not found in the directory '${directory.tenant.id}'.`, entraCodes: [Entra.unknownClient] });
  }
  let redirectUri: string | undefined;
  if (params.redirect_uri !== undefined && params.redirect_uri !== '') {
    redirectUri = matchRedirectUri(params.redirect_uri, client.redirectUris);
    if (redirectUri === undefined) {
      throw new OAuthError('invalid_request', {
        description: `The redirect URI '${truncate(params.redirect_uri, 200)}' specified in the request does not match the redirect URIs configured for the application '${client.clientId}'.`,
        entraCodes: [Entra.redirectUriMismatch],
      });
    }
  }
  const state = params.state !== undefined && params.state.length <= MAX_STATE ? params.state : undefined;
  const resource = consentedApi(directory, params.scope);
  const permissions = adminConsentPermissions(directory, client, resource);
  if (permissions.delegated.length === 0 && permissions.roles.length === 0) {
    throw new OAuthError('invalid_request', {
      description: `The application '${client.clientId}' declares no permissions (requiredAccess)${resource === undefined ? '' : ' on that API'}: there is nothing to consent to.`,
      entraCodes: [Entra.invalidScope],
    });
  }
  return { client, redirectUri, state, resource, permissions };
}

/** The one API an admin-consent `scope` names (each item `<api>/<anything>`); undefined when absent. */
function consentedApi(directory: TenantDirectory, scope: string | undefined): string | undefined {
  if (scope === undefined || scope === '') return undefined;
  let resource: string | undefined;
  for (const item of parseScope(scope)) {
    const slash = item.lastIndexOf('/');
    const api = slash < 0 ? undefined : directory.api(item.slice(0, slash));
    if (api === undefined) throw errors.invalidScope(`The scope '${truncate(item, 100)}' does not name an API of this tenant: use '<api>/.default'.`);
    if (resource !== undefined && resource !== api.clientId) throw errors.invalidScope('Admin consent is for the permissions on one API at a time.');
    resource = api.clientId;
  }
  return resource;
}

/**
 * What `client` declares in `requiredAccess` (on `resource` only, when given) that still exists:
 * delegated scopes, and application permissions for a confidential client (a public client cannot
 * use them: it cannot authenticate for client credentials).
 */
export function adminConsentPermissions(directory: TenantDirectory, client: Application, resource: string | undefined): AdminConsentPermissions {
  const out: AdminConsentPermissions = { delegated: [], roles: [] };
  for (const access of client.requiredAccess) {
    const api = directory.api(access.resource);
    if (api === undefined || (resource !== undefined && api.clientId !== resource)) continue;
    const scopes = (access.scopes ?? []).filter((value) => directory.scope(api.clientId, value) !== undefined);
    if (scopes.length > 0) out.delegated.push({ api, scopes });
    const roles = client.public ? [] : (access.roles ?? []).filter((value) => directory.appRole(api.clientId, value)?.allowedMemberTypes.includes('Application'));
    if (roles.length > 0) out.roles.push({ api, roles });
  }
  return out;
}

/** What accepting an admin consent writes, and what it reports. */
export interface AdminConsentGrant {
  /** Tenant-wide consents (`principal: 'all'`), each the existing grant merged with the new scopes. */
  consents: ConsentGrant[];
  /** The application's app-role assignments, each merged with the existing ones. */
  roleAssignments: AppRoleAssignment[];
  /** Every permission granted, qualified (`api://docs/Docs.Read`), for the `scope` sent back to the client. */
  scope: string[];
}

/**
 * The administrator accepted: the records that grant `permissions` to `client` for every user, each
 * merged with what the tenant already granted (consent only grows here; revoking is another action).
 *
 * @example
 * const grant = decideAdminConsent(directory, client, permissions, now);
 * for (const consent of grant.consents) await store.putConsent(consent);
 */
export function decideAdminConsent(directory: TenantDirectory, client: Application, permissions: AdminConsentPermissions, now: number): AdminConsentGrant {
  const tenantId = directory.tenant.id;
  const consents: ConsentGrant[] = [];
  const roleAssignments: AppRoleAssignment[] = [];
  const scope: string[] = [];
  for (const { api, scopes } of permissions.delegated) {
    consents.push({ tenantId, clientId: client.clientId, resource: api.clientId, scopes: merged(directory.tenantConsent(client.clientId, api.clientId), scopes), principal: 'all', createdAt: now });
    for (const value of scopes) scope.push(qualifiedScope(api, value));
  }
  for (const { api, roles } of permissions.roles) {
    roleAssignments.push({ tenantId, principalType: 'application', principalId: client.clientId, resource: api.clientId, roles: merged(directory.applicationRoles(client.clientId, api.clientId), roles) });
  }
  for (const { api, roles } of permissions.roles) for (const value of roles) scope.push(qualifiedScope(api, value));
  return { consents, roleAssignments, scope };
}

function merged(existing: readonly string[], added: readonly string[]): string[] {
  const out = [...existing];
  for (const value of added) if (!out.includes(value)) out.push(value);
  return out;
}

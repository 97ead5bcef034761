/**
 * The admin API as an API of every tenant: a built-in application `baton-admin`
 * (`api://baton-admin`) defining one app role, `Baton.Admin`, for applications only. A tenant grants
 * an operator's tool the right to administer it the way Entra grants Microsoft Graph permissions:
 * an app role assignment, in the configuration or through the admin API itself.
 *
 * @example
 * // baton.json, in a tenant:
 * "applications": [{ "clientId": "ops-cli", "name": "Ops CLI", "secrets": ["…"] }],
 * "appRoleAssignments": [{ "client": "ops-cli", "resource": "api://baton-admin", "roles": ["Baton.Admin"] }]
 */
import type { Application } from '@baton/core';
import { stableGuid } from '../config/ids.ts';

export const ADMIN_CLIENT_ID = 'baton-admin';
export const ADMIN_IDENTIFIER_URI = 'api://baton-admin';
export const ADMIN_ROLE = 'Baton.Admin';
/** The role of a security event receiver: it may manage its own SSF streams and poll them (signals/). */
export const SIGNALS_ROLE = 'Baton.Signals';

/** Whether a client id or identifier URI is the built-in admin API's (reserved in configurations). */
export function isAdminApiReference(value: string): boolean {
  return value === ADMIN_CLIENT_ID || value === ADMIN_IDENTIFIER_URI;
}

/** The built-in admin API's registration in `tenantId`: ids derived from names, as every registration's. */
export function adminApplication(tenantId: string): Application {
  return {
    tenantId,
    clientId: ADMIN_CLIENT_ID,
    servicePrincipalId: stableGuid('sp', tenantId, ADMIN_CLIENT_ID),
    name: 'Baton Admin API',
    public: false,
    redirectUris: [],
    secrets: [],
    jwks: [],
    identifierUri: ADMIN_IDENTIFIER_URI,
    scopes: [],
    appRoles: [
      {
        id: stableGuid('role', tenantId, ADMIN_CLIENT_ID, ADMIN_ROLE),
        value: ADMIN_ROLE,
        description: "Administer the tenant through Baton's admin API (users, applications, consents, role assignments, policies)",
        allowedMemberTypes: ['Application'],
      },
      {
        id: stableGuid('role', tenantId, ADMIN_CLIENT_ID, SIGNALS_ROLE),
        value: SIGNALS_ROLE,
        description: 'Receive security events (OpenID Shared Signals: CAEP and RISC) about this tenant: create, manage and poll its own event streams',
        allowedMemberTypes: ['Application'],
      },
    ],
    knownClientApplications: [],
    requiredAccess: [],
    accessTokenLifetimeSeconds: 600,
    signingAlg: 'ES256',
  };
}

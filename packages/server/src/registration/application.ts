/**
 * The application record of a client that registered itself (RFC 7591 dynamic registration, or a
 * Client ID Metadata Document): a public client with redirect URIs and nothing else — no secrets,
 * keys, scopes, roles or required access of its own; what it may get comes from consent.
 */
import type { Application } from '@baton/core';
import { stableGuid } from '../config/ids.ts';

export interface SelfRegisteredClient {
  tenantId: string;
  clientId: string;
  name: string;
  redirectUris: string[];
  registration: NonNullable<Application['registration']>;
}

export function selfRegisteredApplication({ tenantId, clientId, name, redirectUris, registration }: SelfRegisteredClient): Application {
  return {
    tenantId,
    clientId,
    servicePrincipalId: stableGuid('sp', tenantId, clientId),
    name,
    public: true,
    redirectUris,
    secrets: [],
    jwks: [],
    scopes: [],
    appRoles: [],
    knownClientApplications: [],
    requiredAccess: [],
    accessTokenLifetimeSeconds: 3600,
    signingAlg: 'ES256',
    registration,
  };
}

/**
 * Grants are plug-ins (STYLE: oidc-provider's grant modules): each declares its `grantType`, the
 * parameters it reads (everything else is stripped before the handler sees it) and whether it
 * needs a confidential client. The token endpoint knows nothing of any particular grant.
 */
import type { TenantDirectory } from '@baton/core';
import type { FormParams } from '../http/form.ts';
import type { AuthenticatedClient } from '../client-auth.ts';
import type { ServerContext } from '../context.ts';

export interface TokenRequest {
  ctx: ServerContext;
  directory: TenantDirectory;
  client: AuthenticatedClient;
  /** Only the parameters the grant declared. */
  params: FormParams;
  /** Remote address (for conditional access), W3C traceparent (for audit). */
  ip: string;
  traceparent: string | undefined;
  correlationId: string;
}

/** The JSON body of a successful token response (RFC 6749 §5.1 plus Entra's and RFC 8693's members). */
export type TokenResponse = Record<string, string | number>;

export interface Grant {
  grantType: string;
  /** Parameters this grant reads, besides client authentication parameters. */
  parameters: ReadonlySet<string>;
  /** Public clients are refused before the handler runs (`unauthorized_client`). */
  confidentialOnly: boolean;
  handler(request: TokenRequest): Promise<TokenResponse>;
}

const grants = new Map<string, Grant>();

/** Registers a grant; the same public API a third party would use. */
export function registerGrant(grant: Grant): void {
  if (grants.has(grant.grantType)) throw new TypeError(`grant type ${grant.grantType} is already registered`);
  grants.set(grant.grantType, grant);
}

export function grantFor(grantType: string): Grant | undefined {
  return grants.get(grantType);
}

export function grantTypes(): string[] {
  return [...grants.keys()];
}

/** Client authentication parameters, read by client-auth.ts, never passed to a grant. */
export const CLIENT_AUTH_PARAMETERS = new Set(['client_id', 'client_secret', 'client_assertion', 'client_assertion_type']);

/** MSAL telemetry and correlation parameters: accepted and ignored. */
export function isIgnoredParameter(name: string): boolean {
  return name.startsWith('x-client-') || name === 'x-ms-lib-capability' || name === 'client-request-id' || name === 'x-app-name' || name === 'x-app-ver';
}

/**
 * OpenID Connect Discovery 1.0 and RFC 8414 metadata, and the JWKS.
 *
 * Served at every path a client may derive from the issuer `{base}/{tenant}/v2.0`:
 * - `{issuer}/.well-known/openid-configuration` (OIDC; MSAL in OIDC mode uses the issuer as authority)
 * - `{base}/{tenant}/.well-known/openid-configuration` (Entra v1-style authority)
 * - `{base}/.well-known/oauth-authorization-server/{tenant}/v2.0` (RFC 8414 §3.1: inserted well-known)
 * - `{base}/.well-known/oauth-authorization-server/{tenant}` (DESIGN.md)
 */
import { SIGNING_ALGS } from '@baton/core';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { issuerOf, tokenEndpointOf, type ServerContext } from '../context.ts';
import { resolveTenant } from '../tenants.ts';
import { DPOP_SIGNING_ALGS } from '../dpop.ts';

export function metadataFor(ctx: ServerContext, tenantId: string, scopes: string[]): Record<string, unknown> {
  const base = `${ctx.baseUrl}/${tenantId}`;
  return {
    issuer: issuerOf(ctx, tenantId),
    authorization_endpoint: `${base}/oauth2/v2.0/authorize`,
    token_endpoint: tokenEndpointOf(ctx, tenantId),
    jwks_uri: `${base}/discovery/v2.0/keys`,
    userinfo_endpoint: `${ctx.baseUrl}/oidc/userinfo`,
    end_session_endpoint: `${base}/oauth2/v2.0/logout`,
    revocation_endpoint: `${base}/oauth2/v2.0/revoke`,
    introspection_endpoint: `${base}/oauth2/v2.0/introspect`,
    response_types_supported: ['code'],
    response_modes_supported: ['query', 'form_post'],
    grant_types_supported: ctx.grants.types(),
    subject_types_supported: ['pairwise'],
    id_token_signing_alg_values_supported: [...SIGNING_ALGS],
    token_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post', 'private_key_jwt', 'none'],
    token_endpoint_auth_signing_alg_values_supported: ['ES256', 'ES384', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'EdDSA'],
    // RFC 9449 §5.1: the algorithms a DPoP proof may be signed with (dpop.ts).
    dpop_signing_alg_values_supported: [...DPOP_SIGNING_ALGS],
    code_challenge_methods_supported: ['S256'],
    // Client ID Metadata Documents (MCP 2025-11-25): a client_id may be an https URL.
    client_id_metadata_document_supported: ctx.metadataDocuments?.enabled === true,
    // RFC 7591 Dynamic Client Registration, when offered.
    ...(ctx.dynamicRegistration?.enabled === true ? { registration_endpoint: `${base}/oauth2/v2.0/register` } : {}),
    scopes_supported: ['openid', 'profile', 'email', 'offline_access', ...scopes],
    claims_supported: ['iss', 'aud', 'sub', 'oid', 'tid', 'azp', 'client_id', 'scp', 'roles', 'idtyp', 'amr', 'acr', 'auth_time', 'sid', 'act', 'name', 'preferred_username', 'email', 'nonce', 'exp', 'iat', 'nbf', 'jti', 'uti', 'ver'],
    claims_parameter_supported: true,
    prompt_values_supported: ['none', 'login', 'consent', 'select_account'],
    // RFC 9207: the authorization response carries `iss`, so a client can detect mix-up attacks.
    authorization_response_iss_parameter_supported: true,
    revocation_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post', 'private_key_jwt', 'none'],
    introspection_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post', 'private_key_jwt'],
    request_parameter_supported: false,
    request_uri_parameter_supported: false,
    frontchannel_logout_supported: false,
    tenant_region_scope: null,
    cloud_instance_name: new URL(ctx.baseUrl).host,
  };
}

export function discoveryRoutes(app: FastifyInstance, ctx: ServerContext): void {
  const metadata = async (request: FastifyRequest<{ Params: { tenant: string } }>, reply: FastifyReply) => {
    const directory = await resolveTenant(ctx, request.params.tenant);
    const scopes = directory.applications.flatMap((a) => (a.identifierUri ? a.scopes.map((s) => `${a.identifierUri}/${s.value}`) : []));
    return reply.header('cache-control', 'public, max-age=300').send(metadataFor(ctx, directory.tenant.id, scopes));
  };
  app.get('/:tenant/v2.0/.well-known/openid-configuration', metadata);
  app.get('/:tenant/.well-known/openid-configuration', metadata);
  app.get('/.well-known/oauth-authorization-server/:tenant/v2.0', metadata);
  app.get('/.well-known/oauth-authorization-server/:tenant', metadata);

  const jwks = async (request: FastifyRequest<{ Params: { tenant: string } }>, reply: FastifyReply) => {
    const directory = await resolveTenant(ctx, request.params.tenant);
    // Short cache: the next key is published ahead of use, so a 5-minute stale copy still verifies.
    return reply.header('cache-control', 'public, max-age=300').type('application/json').send(await ctx.keyring.jwks(directory.tenant.id));
  };
  app.get('/:tenant/discovery/v2.0/keys', jwks);
  app.get('/:tenant/discovery/keys', jwks);
}

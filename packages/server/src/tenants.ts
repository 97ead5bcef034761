/**
 * Tenants by id, for every endpoint. What a tenant id looks like: it is a URL path segment (`/{tenant}/oauth2/v2.0/token`) and part of
 * every issuer, so lower-case letters, digits and `-`, starting with a letter or digit, at most 64
 * characters. The configuration schema enforces it when a tenant is made; the endpoints check it
 * before a path segment or an `iss` is used to look a tenant up.
 */
import { errors, Entra, type TenantDirectory } from '@baton/core';
import type { ServerContext } from './context.ts';

/** The characters of a tenant id (the length is {@link MAX_TENANT_ID}). */
export const TENANT_ID_CHARS = /^[a-z0-9][a-z0-9-]*$/;

export const MAX_TENANT_ID = 64;

/** Whether `value` can be a tenant id (not whether that tenant exists). */
export function isTenantId(value: string): boolean {
  return value.length <= MAX_TENANT_ID && TENANT_ID_CHARS.test(value);
}

/**
 * The directory of the tenant a path names (`/{tenant}/…`), from the in-memory cache; an unknown
 * or malformed tenant is `invalid_request` (AADSTS90002), with the authority's shape as the hint.
 */
export async function resolveTenant(ctx: ServerContext, tenantId: string): Promise<TenantDirectory> {
  const directory = isTenantId(tenantId) ? await ctx.directories.get(tenantId) : undefined;
  if (!directory) {
    throw errors.invalidRequest(`Tenant '${tenantId.slice(0, 64)}' not found. Check the authority URL: it is {base}/{tenant}.`, Entra.tenantNotFound);
  }
  return directory;
}

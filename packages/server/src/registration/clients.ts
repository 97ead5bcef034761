/**
 * Clients that are not in the configuration: a `client_id` that is an https URL names its Client ID
 * Metadata Document (metadata-document.ts). The authorization endpoint asks here first; the token
 * endpoint then finds the client in the directory like any other (it was kept as a registration).
 */
import { Entra, OAuthError, truncate, type TenantDirectory } from '@baton/core';
import type { ServerContext } from '../context.ts';
import { clientFromDocument, fetchMetadataDocument, isMetadataDocumentUrl } from './metadata-document.ts';
import { registrationGone } from './dynamic.ts';
import { admitWindow } from '../throttle.ts';
import { ENTRA_THROTTLED } from '../limits.ts';

/** The answer for a registration that no longer exists: as for a client id never registered. */
export function unknownRegistration(clientId: string, tenantId: string): OAuthError {
  return new OAuthError('invalid_client', {
    description: `Application with identifier '${truncate(clientId, 128)}' was not found in the directory '${tenantId}' (a dynamic registration that was deleted or never used expires).`,
    entraCodes: [Entra.unknownClient],
  });
}

/** Fetches in flight, per tenant and URL: a burst of authorize requests for one client fetches once. */
const inFlight = new Map<string, Promise<void>>();

/**
 * The tenant's directory, holding the client `clientId` names when it is a metadata-document client
 * that is new or whose cached document is stale (fetched now, and kept as the tenant's
 * registration); otherwise `directory` unchanged. A configured application always wins over a
 * document at the same URL. Throws `invalid_client` when the document cannot be used.
 */
export async function withMetadataDocumentClient(ctx: ServerContext, directory: TenantDirectory, clientId: string | undefined, ip: string): Promise<TenantDirectory> {
  // A dynamic registration deprovisioned or expired unused is an unknown client from here on.
  if (clientId !== undefined && registrationGone(directory.application(clientId), ctx.now())) throw unknownRegistration(clientId, directory.tenant.id);
  const options = ctx.metadataDocuments;
  if (clientId === undefined || options === undefined || !options.enabled || !isMetadataDocumentUrl(clientId)) return directory;
  const known = directory.application(clientId);
  const now = ctx.now();
  if (known !== undefined && (known.registration?.kind !== 'metadata-document' || (known.registration.expiresAt ?? 0) > now)) return directory;
  const tenantId = directory.tenant.id;
  const key = `${tenantId} ${clientId}`;
  let fetching = inFlight.get(key);
  if (fetching === undefined) {
    // Only a fetch counts (a cached document or one already being fetched costs nothing).
    const wait = await admitWindow(ctx, `metadata-document:${tenantId}`, ip, options.fetchesPerIpPerMinute, 60);
    if (wait !== undefined) {
      throw new OAuthError('temporarily_unavailable', {
        status: 429,
        description: `Too many client metadata documents fetched for this address: at most ${options.fetchesPerIpPerMinute} a minute. Try again in ${wait} s.`,
        entraCodes: [ENTRA_THROTTLED],
        headers: { 'retry-after': String(wait) },
      });
    }
    fetching = inFlight.get(key);
  }
  if (fetching === undefined) {
    fetching = (async () => {
      const fetched = await fetchMetadataDocument(clientId, options);
      await ctx.store.putApplication(clientFromDocument(tenantId, clientId, fetched, now));
      ctx.log.info({ client_id: clientId, cache_seconds: fetched.cacheSeconds }, 'client metadata document fetched');
    })().finally(() => inFlight.delete(key));
    inFlight.set(key, fetching);
  }
  await fetching;
  return (await ctx.directories.get(tenantId)) ?? directory;
}

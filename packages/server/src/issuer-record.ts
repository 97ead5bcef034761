/**
 * The issuer a running service answers as, recorded in its store, so commands that work on the
 * store without the service (`baton token issue`) mint tokens for the same `iss`: a token whose
 * issuer names another port or host than the service the API trusts fails there with AADSTS50013.
 *
 * `serve` records it per tenant once it listens (the base URL is known only then, unless
 * `--public-url` gives it). Several instances of one service must present one issuer, which is
 * what `--public-url` is for; without it the last instance to start wins here.
 */
import type { Store } from './store/types.ts';

/** Re-recorded at every start; the expiry only keeps an abandoned data directory from answering forever. */
const RECORD_SECONDS = 366 * 24 * 3600;
const idOf = (tenantId: string) => `issuer-base:${tenantId}`;

/** Records `baseUrl` as the base of every tenant's issuer (`{baseUrl}/{tenant}/v2.0`). */
export async function recordIssuerBase(store: Store, baseUrl: string, now: number): Promise<void> {
  for (const tenant of await store.listTenants()) {
    await store.putEphemeral({ kind: 'service', id: idOf(tenant.id), tenantId: tenant.id, payload: { baseUrl }, expiresAt: now + RECORD_SECONDS, createdAt: now });
  }
}

/** The base URL the service last recorded for a tenant, if any. */
export async function recordedIssuerBase(store: Store, tenantId: string, now: number): Promise<string | undefined> {
  const record = await store.getEphemeral<{ baseUrl?: unknown }>('service', idOf(tenantId), now);
  return typeof record?.payload.baseUrl === 'string' ? record.payload.baseUrl : undefined;
}

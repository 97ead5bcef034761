/**
 * Delegated consent at sign-in: what a client already holds for a user on an API, what the user
 * may still grant, what only an administrator may grant, and — through `knownClientApplications`
 * (Entra's combined consent) — what the API itself receives for that user so its later
 * On-Behalf-Of exchange has its grant.
 *
 * Rules (the same the OBO decision applies, so sign-in and exchange never disagree):
 * - A client's consent on an API = the admin's consent for every user (`principal: 'all'`) ∪ this
 *   user's own consent, minus any scope that needs an administrator (a user's grant of such a scope
 *   is ignored wherever it came from).
 * - A user may consent to scopes without `adminConsentRequired`; the others need an admin.
 */
import type { TenantDirectory } from './directory.ts';
import type { Application, ConsentGrant } from './types.ts';

/**
 * Scopes `clientId` may use on `apiClientId` for the user `userOid`: admin consent ∪ the user's own
 * (scopes that need admin consent are taken from admin grants only).
 *
 * @example
 * consentedScopes(directory, 'tasks-web', 'tasks-api', user.oid, await store.listConsents({ tenantId, principal: user.oid }));
 */
export function consentedScopes(
  directory: TenantDirectory,
  clientId: string,
  apiClientId: string,
  userOid: string,
  userConsents: readonly ConsentGrant[],
): Set<string> {
  const scopes = new Set(directory.tenantConsent(clientId, apiClientId));
  for (const grant of userConsents) {
    if (grant.principal !== userOid || grant.clientId !== clientId || grant.resource !== apiClientId || grant.tenantId !== directory.tenant.id) continue;
    for (const value of grant.scopes) {
      const definition = directory.scope(apiClientId, value);
      if (definition === undefined || definition.adminConsentRequired) continue;
      scopes.add(value);
    }
  }
  return scopes;
}

/** What accepting the consent page also gives the API itself (Entra's combined consent). */
export interface CombinedConsent {
  /** The API of the request, acting as a client of `resource`. */
  clientId: string;
  /** The downstream API's client id. */
  resource: string;
  /** Scopes the user grants by accepting (not yet held, user-consentable). */
  scopes: string[];
  /** Scopes of the API's `requiredAccess` that only an administrator can grant (shown, not granted by a user). */
  adminOnly: string[];
}

export interface ConsentPlan {
  /** The scopes the request is for (for `.default`: the client's configured permissions plus what it holds). */
  requested: string[];
  /** The subset already consented: what a token would carry now. */
  granted: string[];
  /** Requested, not held, and the user may grant them. */
  userConsentable: string[];
  /** Requested, not held, and only an administrator may grant them. */
  adminOnly: string[];
  /** Combined consent for the API's own downstream permissions, when the client is a known client of the API. */
  combined: CombinedConsent[];
}

export interface ConsentPlanInput {
  directory: TenantDirectory;
  client: Application;
  api: Application;
  /** Scope values on `api` the request named (empty for `.default`). */
  scopes: readonly string[];
  isDefault: boolean;
  userOid: string;
  /** The user's own consent records (any client; others are ignored). */
  userConsents: readonly ConsentGrant[];
}

/**
 * Plans the consent step of a sign-in.
 *
 * @example
 * const plan = planConsent({ directory, client: tasksWeb, api: tasksApi, scopes: ['Tasks.ReadWrite'], isDefault: false, userOid, userConsents });
 * if (plan.adminOnly.length > 0) … // needs an administrator
 * else if (plan.userConsentable.length > 0) … // show the consent page
 */
export function planConsent(input: ConsentPlanInput): ConsentPlan {
  const { directory, client, api, userOid, userConsents } = input;
  const held = consentedScopes(directory, client.clientId, api.clientId, userOid, userConsents);
  let requested: string[];
  if (input.isDefault) {
    // `.default`: every permission the client is configured to need on this API, and whatever it holds.
    const configured = client.requiredAccess.filter((ra) => ra.resource === api.clientId).flatMap((ra) => ra.scopes ?? []);
    requested = api.scopes.map((s) => s.value).filter((value) => configured.includes(value) || held.has(value));
  } else {
    requested = [...input.scopes];
  }
  const granted = requested.filter((value) => held.has(value));
  const missing = requested.filter((value) => !held.has(value));
  const adminOnly = missing.filter((value) => directory.scope(api.clientId, value)?.adminConsentRequired === true);
  const userConsentable = missing.filter((value) => !adminOnly.includes(value));

  const combined: CombinedConsent[] = [];
  if (api.knownClientApplications.includes(client.clientId)) {
    for (const access of api.requiredAccess) {
      const downstream = directory.api(access.resource);
      if (downstream === undefined || access.scopes === undefined || access.scopes.length === 0) continue;
      const heldDownstream = consentedScopes(directory, api.clientId, downstream.clientId, userOid, userConsents);
      const wanted = access.scopes.filter((value) => directory.scope(downstream.clientId, value) !== undefined && !heldDownstream.has(value));
      const onlyAdmin = wanted.filter((value) => directory.scope(downstream.clientId, value)?.adminConsentRequired === true);
      const scopes = wanted.filter((value) => !onlyAdmin.includes(value));
      if (scopes.length > 0 || onlyAdmin.length > 0) combined.push({ clientId: api.clientId, resource: downstream.clientId, scopes, adminOnly: onlyAdmin });
    }
  }
  return { requested, granted, userConsentable, adminOnly, combined };
}

/**
 * The consent records to write when the user accepts `plan`: the user's own grant for the client
 * (merged with what the user already granted), and the combined grants for the API. With
 * `asAdmin`, the grants are for every user of the tenant (`principal: 'all'`) and include the
 * scopes that need an administrator.
 *
 * @example
 * for (const grant of consentRecords({ plan, directory, clientId, api: tasksApi.clientId, userOid, userConsents, asAdmin: false, now })) await store.putConsent(grant);
 */
export function consentRecords(input: {
  plan: ConsentPlan;
  directory: TenantDirectory;
  clientId: string;
  api: string;
  userOid: string;
  userConsents: readonly ConsentGrant[];
  asAdmin: boolean;
  now: number;
}): ConsentGrant[] {
  const { plan, directory, userOid, asAdmin, now } = input;
  const tenantId = directory.tenant.id;
  const principal = asAdmin ? 'all' : userOid;
  const records: ConsentGrant[] = [];
  const add = (clientId: string, resource: string, scopes: readonly string[]) => {
    if (scopes.length === 0) return;
    const existing = asAdmin
      ? directory.tenantConsent(clientId, resource)
      : input.userConsents.find((g) => g.principal === userOid && g.clientId === clientId && g.resource === resource && g.tenantId === tenantId)?.scopes ?? [];
    const merged = [...existing];
    for (const value of scopes) if (!merged.includes(value)) merged.push(value);
    if (merged.length === existing.length) return;
    records.push({ tenantId, clientId, resource, scopes: merged, principal, createdAt: now });
  };
  add(input.clientId, input.api, asAdmin ? [...plan.userConsentable, ...plan.adminOnly] : plan.userConsentable);
  for (const combined of plan.combined) add(combined.clientId, combined.resource, asAdmin ? [...combined.scopes, ...combined.adminOnly] : combined.scopes);
  return records;
}

/**
 * Test fixtures: the demo chain configuration (examples/chain/baton.json, the contract copy in this
 * repository) turned into core records and a `TenantDirectory`, plus helpers that mint assertion
 * payloads the way the token service would. Derivations here (GUIDs, lifetimes) are the tests'
 * own; the server's configuration loader is the real one.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import {
  buildDelegatedClaims,
  buildDirectory,
  OAuthError,
  type ActorClaim,
  type Application,
  type AppRoleAssignment,
  type ConsentGrant,
  type DelegatedAccessClaims,
  type MemberType,
  type Policy,
  type Tenant,
  type TenantDirectory,
  type User,
} from '../src/index.ts';

export const NOW = 1_750_000_000;
export const BASE_URL = 'https://baton.test';
export const TENANT = 'contoso';
export const ISSUER = `${BASE_URL}/${TENANT}/v2.0`;
export const PAIRWISE_SECRET = 'test-pairwise-secret-0123456789abcdef';
export const LIFETIME = 3600;

/** The configuration file's shape, as far as the tests read it. */
export interface ChainConfig {
  tenants: Array<{
    id: string;
    name: string;
    tenantId?: string;
    delegation?: { maxDepth?: number };
    users: Array<{ username: string; displayName: string; password: string; totpSecret?: string; enabled?: boolean }>;
    applications: Array<{
      name: string;
      clientId: string;
      public?: boolean;
      redirectUris?: string[];
      secrets?: string[];
      identifierUri?: string;
      scopes?: Array<{ value: string; description: string; adminConsentRequired?: boolean }>;
      appRoles?: Array<{ value: string; description: string; allowedMemberTypes: MemberType[] }>;
      knownClientApplications?: string[];
      requiredAccess?: Array<{ resource: string; scopes?: string[]; roles?: string[] }>;
      delegation?: { maxDepth?: number; mayAct?: Array<{ client: string; downstream?: string[] }> };
    }>;
    consents: Array<{ client: string; resource: string; scopes: string[]; for: string }>;
    appRoleAssignments: Array<{ client: string; resource: string; roles: string[] }>;
    policies: Array<{
      name: string;
      resources: string[];
      scopes?: string[];
      clients?: string[];
      users?: string[];
      require: { mfa?: boolean; maxAuthAgeSeconds?: number; block?: boolean; ipRanges?: string[] };
    }>;
  }>;
}

const CONFIG_URL = new URL('../../../examples/chain/baton.json', import.meta.url);

/**
 * A fresh copy of the demo configuration, to change in a test before building — plus the
 * tenant-wide consent of `tasks-web` to `Tasks.ReadWrite` these tests were written against (the demo
 * itself asks each user for it, so that its first sign-in shows a real consent page).
 */
export function chainConfig(): ChainConfig {
  const config = JSON.parse(readFileSync(CONFIG_URL, 'utf8')) as ChainConfig;
  const contoso = config.tenants[0]!;
  if (!contoso.consents.some((c) => c.client === 'tasks-web' && c.for === 'all')) {
    contoso.consents.unshift({ client: 'tasks-web', resource: 'api://tasks', scopes: ['Tasks.ReadWrite'], for: 'all' });
  }
  return config;
}

/** A stable GUID derived from a name (tests only). */
export function guid(...parts: string[]): string {
  const h = createHash('sha256').update(parts.join('\u0000')).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-8${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

export interface Fixture {
  config: ChainConfig;
  tenant: Tenant;
  users: User[];
  applications: Application[];
  /** Every consent, admin (`principal: 'all'`) and per-user. */
  consents: ConsentGrant[];
  roleAssignments: AppRoleAssignment[];
  policies: Policy[];
  directory: TenantDirectory;
  user(username: string): User;
  app(clientId: string): Application;
  /** The per-user consents of one user, as the server would look them up. */
  userConsents(username: string): ConsentGrant[];
}

/**
 * Turns the demo configuration (optionally changed first) into core records and a directory.
 * Resources given as identifier URIs are resolved to client ids, usernames to oids, as the
 * server's loader does.
 */
export function buildFixture(change?: (config: ChainConfig) => void): Fixture {
  const config = chainConfig();
  change?.(config);
  const source = config.tenants[0];
  if (source === undefined) throw new Error('the chain configuration has no tenant');
  const tenantId = source.id;
  const tenant: Tenant = {
    id: tenantId,
    tid: source.tenantId ?? guid('tenant', tenantId),
    name: source.name,
    maxDelegationDepth: source.delegation?.maxDepth ?? 4,
  };

  const users: User[] = source.users.map((u) => ({
    tenantId,
    oid: guid('user', tenantId, u.username.toLowerCase()),
    username: u.username.toLowerCase(),
    displayName: u.displayName,
    passwordHash: 'not-a-hash-tests-do-not-sign-in',
    totpSecret: u.totpSecret,
    enabled: u.enabled ?? true,
  }));
  const oidOf = (username: string): string => {
    const user = users.find((u) => u.username === username.toLowerCase());
    if (user === undefined) throw new Error(`unknown user ${username}`);
    return user.oid;
  };

  const clientIdOf = (resource: string): string =>
    source.applications.find((a) => a.identifierUri === resource || a.clientId === resource)?.clientId ?? resource;

  const applications: Application[] = source.applications.map((a) => ({
    tenantId,
    clientId: a.clientId,
    servicePrincipalId: guid('sp', tenantId, a.clientId),
    name: a.name,
    public: a.public ?? false,
    redirectUris: a.redirectUris ?? [],
    secrets: (a.secrets ?? []).map((s) => ({ hash: `test$${guid('secret', s)}`, hint: s.slice(0, 3), createdAt: NOW - 86_400 })),
    jwks: [],
    identifierUri: a.identifierUri,
    scopes: (a.scopes ?? []).map((s) => ({
      id: guid('scope', a.clientId, s.value),
      value: s.value,
      description: s.description,
      adminConsentRequired: s.adminConsentRequired ?? false,
    })),
    appRoles: (a.appRoles ?? []).map((r) => ({ id: guid('role', a.clientId, r.value), ...r })),
    knownClientApplications: a.knownClientApplications ?? [],
    requiredAccess: (a.requiredAccess ?? []).map((r) => ({ ...r, resource: clientIdOf(r.resource) })),
    accessTokenLifetimeSeconds: LIFETIME,
    signingAlg: 'ES256',
    ...((a as { dpop?: Application['dpop'] }).dpop !== undefined ? { dpop: (a as { dpop?: Application['dpop'] }).dpop } : {}),
    ...(a.delegation?.maxDepth !== undefined ? { maxDelegationDepth: a.delegation.maxDepth } : {}),
    ...(a.delegation?.mayAct !== undefined
      ? { mayAct: a.delegation.mayAct.map((e) => ({ clientId: e.client, ...(e.downstream ? { downstream: e.downstream.map(clientIdOf) } : {}) })) }
      : {}),
  }));

  const consents: ConsentGrant[] = source.consents.map((c) => ({
    tenantId,
    clientId: c.client,
    resource: clientIdOf(c.resource),
    scopes: c.scopes,
    principal: c.for === 'all' ? 'all' : oidOf(c.for),
    createdAt: NOW - 86_400,
  }));
  // Roles on the token service's built-in admin API (the demo APIs' Baton.Signals) are the server's: not modelled here.
  const roleAssignments: AppRoleAssignment[] = source.appRoleAssignments.filter((r) => r.resource !== 'api://baton-admin').map((r) => ({
    tenantId,
    principalType: 'application',
    principalId: r.client,
    resource: clientIdOf(r.resource),
    roles: r.roles,
  }));
  const policies: Policy[] = source.policies.map((p) => ({
    tenantId,
    name: p.name,
    resources: p.resources.map(clientIdOf),
    scopes: p.scopes,
    clients: p.clients,
    users: p.users?.map(oidOf),
    require: p.require,
  }));

  const directory = buildDirectory({ tenant, applications, tenantConsents: consents, roleAssignments, policies });
  return {
    config,
    tenant,
    users,
    applications,
    consents,
    roleAssignments,
    policies,
    directory,
    user(username) {
      const user = users.find((u) => u.username === username);
      if (user === undefined) throw new Error(`unknown user ${username}`);
      return user;
    },
    app(clientId) {
      const app = applications.find((a) => a.clientId === clientId);
      if (app === undefined) throw new Error(`unknown application ${clientId}`);
      return app;
    },
    userConsents(username) {
      const oid = oidOf(username);
      return consents.filter((c) => c.principal === oid);
    },
  };
}

/** Deterministic `jti`s: UUIDs counting up from a seed. */
export function sequentialIds(seed = 0): () => string {
  let n = seed;
  return () => {
    n += 1;
    return `00000000-0000-4000-8000-${n.toString(16).padStart(12, '0')}`;
  };
}

export interface AssertionSpec {
  /** The application the token was issued to (`azp`). */
  client: string;
  /** The API it is addressed to (`aud`). */
  api: string;
  username?: string;
  scopes: string[];
  amr?: string[];
  acr?: string;
  /** Seconds before `NOW` the user signed in. Default 60. */
  signedInAgo?: number;
  /** Seconds before `NOW` the token was issued. Default 30. */
  issuedAgo?: number;
  sid?: string;
  act?: ActorClaim;
}

/** A delegated access token payload as the token service issues it (built with claims.ts). */
export function assertion(fx: Fixture, spec: AssertionSpec): DelegatedAccessClaims {
  const issuedAt = NOW - (spec.issuedAgo ?? 30);
  return buildDelegatedClaims({
    issuer: ISSUER,
    tenant: fx.tenant,
    clientId: spec.client,
    api: fx.app(spec.api),
    user: fx.user(spec.username ?? 'alice@contoso.test'),
    scopes: spec.scopes,
    auth: { amr: spec.amr ?? ['pwd'], acr: spec.acr ?? '1', authTime: NOW - (spec.signedInAgo ?? 60), sid: spec.sid },
    act: spec.act,
    pairwiseSecret: PAIRWISE_SECRET,
    now: issuedAt,
    newId: sequentialIds(1000),
  });
}

/** A chain of `depth` actors, newest first: `api-depth` … `api-1`. */
export function actorChain(depth: number): ActorClaim | undefined {
  let act: ActorClaim | undefined;
  for (let i = 1; i <= depth; i++) act = act === undefined ? { sub: `api-${i}`, client_id: `api-${i}` } : { sub: `api-${i}`, client_id: `api-${i}`, act };
  return act;
}

export interface ExpectedOAuthError {
  error: string;
  entraCodes: readonly number[];
  suberror?: string | undefined;
  claims?: string | undefined;
  /** Every pattern must match the description. */
  description?: RegExp | readonly RegExp[];
}

/** Asserts `actual` is an `OAuthError` with exactly this `error`, `entraCodes`, `suberror`, `claims`. */
export function assertOAuthError(actual: unknown, expected: ExpectedOAuthError): OAuthError {
  assert.ok(actual instanceof OAuthError, `expected an OAuthError, got ${String(actual)}`);
  assert.equal(actual.error, expected.error, actual.description);
  assert.deepEqual(actual.entraCodes, expected.entraCodes, actual.description);
  assert.equal(actual.suberror, expected.suberror, 'suberror');
  assert.equal(actual.claims, expected.claims, 'claims');
  const patterns = expected.description === undefined ? [] : Array.isArray(expected.description) ? expected.description : [expected.description];
  for (const pattern of patterns as RegExp[]) assert.match(actual.description, pattern);
  // Never a token in what the client sees.
  assert.doesNotMatch(actual.description, /eyJ[A-Za-z0-9_-]{10,}/);
  return actual;
}

/** Runs `fn`, which must throw an `OAuthError` as described. */
export function throwsOAuth(fn: () => unknown, expected: ExpectedOAuthError): OAuthError {
  try {
    fn();
  } catch (error) {
    return assertOAuthError(error, expected);
  }
  assert.fail('expected an OAuthError to be thrown');
}

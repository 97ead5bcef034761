/**
 * Configuration: parse → validate (schema, then references) → compile to domain records → apply.
 *
 * Parsing and checking touch nothing: a bad file exits non-zero before the store is opened.
 * Applying is idempotent: loading the same file twice changes nothing (password hashes are kept
 * when the stored one still verifies; every id is derived from names, never random).
 */
import { readFile } from 'node:fs/promises';
import { ConfigurationError } from '@baton/core';
import { parse as parseJsonc, printParseErrorCode, type ParseError } from 'jsonc-parser';
import type {
  Application,
  AppRoleAssignment,
  ConsentGrant,
  Policy,
  Tenant,
  User,
} from '@baton/core';
import { BatonConfig, formatPath, type ApplicationConfig, type TenantConfig } from './schema.ts';
import type { Store } from '../store/types.ts';
import { hashPassword, verifyPassword } from '../crypto/passwords.ts';
import { hashClientSecret, secretHint, secretStrengthWarning, type Pepper } from '../crypto/secrets.ts';
import type { Kek } from '../crypto/kek.ts';
import { stableGuid } from './ids.ts';
import { ADMIN_CLIENT_ID, adminApplication, isAdminApiReference } from '../admin/application.ts';

export { stableGuid } from './ids.ts';

export async function readConfigFile(path: string): Promise<BatonConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new ConfigurationError([`${path}: cannot read the file (${(error as NodeJS.ErrnoException).code ?? 'error'})`]);
  }
  return parseConfig(text, path);
}

/**
 * `file:line:column: not valid JSON (…)`, the form editors and terminals turn into a link. V8's
 * messages name a position only for some errors, so the place comes from jsonc-parser's scanner
 * (comments and trailing commas count as errors, as they do for JSON.parse).
 */
export function jsonSyntaxProblem(source: string, text: string): string {
  const errors: ParseError[] = [];
  parseJsonc(text, errors, { disallowComments: true, allowTrailingComma: false, allowEmptyContent: false });
  const first = errors[0];
  if (first === undefined) return `${source}: not valid JSON`;
  const before = text.slice(0, first.offset).split('\n');
  const line = before.length;
  const column = (before[before.length - 1] ?? '').length + 1;
  const reason = JSON_ERRORS[printParseErrorCode(first.error)] ?? printParseErrorCode(first.error);
  return `${source}:${line}:${column}: not valid JSON at line ${line}, column ${column}: ${reason}`;
}

const JSON_ERRORS: Record<string, string> = {
  InvalidSymbol: 'unexpected character',
  InvalidNumberFormat: 'not a number',
  PropertyNameExpected: 'a property name in double quotes expected',
  ValueExpected: 'a value expected',
  ColonExpected: "':' expected",
  CommaExpected: "',' expected",
  CloseBraceExpected: "'}' expected",
  CloseBracketExpected: "']' expected",
  EndOfFileExpected: 'text after the end of the JSON value',
  InvalidCommentToken: 'comments are not JSON',
  UnexpectedEndOfComment: 'unterminated comment',
  UnexpectedEndOfString: 'unterminated string',
  UnexpectedEndOfNumber: 'unterminated number',
  InvalidUnicode: 'invalid \\u escape',
  InvalidEscapeCharacter: 'invalid escape',
  InvalidCharacter: 'a control character in a string',
};

/** Parses and fully validates a configuration text. Throws ConfigurationError listing every problem. */
export function parseConfig(text: string, source = 'config'): BatonConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new ConfigurationError([jsonSyntaxProblem(source, text)]);
  }
  const result = BatonConfig.safeParse(raw);
  if (!result.success) {
    throw new ConfigurationError(result.error.issues.map((issue) => `${formatPath(issue.path)}: ${issue.message}`));
  }
  const problems = checkReferences(result.data);
  if (problems.length > 0) throw new ConfigurationError(problems);
  return result.data;
}

/** Cross-references the schema cannot see: duplicates and dangling names. */
export function checkReferences(config: BatonConfig): string[] {
  const problems: string[] = [];
  const tenantIds = new Set<string>();
  config.tenants.forEach((tenant, t) => {
    const at = `tenants[${t}]`;
    if (tenantIds.has(tenant.id)) problems.push(`${at}.id: '${tenant.id}' is defined twice`);
    tenantIds.add(tenant.id);

    const usernames = new Set<string>();
    tenant.users.forEach((user, u) => {
      const name = user.username.toLowerCase();
      if (usernames.has(name)) problems.push(`${at}.users[${u}].username: '${user.username}' is defined twice`);
      usernames.add(name);
    });

    const apps = new Map<string, TenantConfig['applications'][number]>();
    const apis = new Map<string, TenantConfig['applications'][number]>();
    // The built-in admin API (admin/application.ts) is an API of every tenant: assignable, never definable.
    const admin = ADMIN_API_CONFIG;
    apps.set(admin.clientId, admin);
    apis.set(admin.identifierUri!, admin);
    tenant.applications.forEach((app, a) => {
      const here = `${at}.applications[${a}]`;
      if (isAdminApiReference(app.clientId)) problems.push(`${here}.clientId: '${app.clientId}' is reserved for Baton's admin API`);
      if (app.identifierUri !== undefined && isAdminApiReference(app.identifierUri)) problems.push(`${here}.identifierUri: '${app.identifierUri}' is reserved for Baton's admin API`);
      if (isAdminApiReference(app.clientId) || (app.identifierUri !== undefined && isAdminApiReference(app.identifierUri))) return;
      if (apps.has(app.clientId)) problems.push(`${here}.clientId: '${app.clientId}' is defined twice`);
      apps.set(app.clientId, app);
      if (app.identifierUri !== undefined) {
        if (apis.has(app.identifierUri)) problems.push(`${here}.identifierUri: '${app.identifierUri}' is used by two applications`);
        apis.set(app.identifierUri, app);
      }
      if (app.public && app.secrets.length > 0) problems.push(`${here}.secrets: a public client cannot have secrets`);
      if (app.public && app.jwks.length > 0) problems.push(`${here}.jwks: a public client cannot have client keys`);
      if (app.public && app.identifierUri !== undefined) problems.push(`${here}.identifierUri: a public client cannot be an API`);
      if (app.tokenAudience === 'identifierUri') {
        const problem = canonicalResourceProblem(app.identifierUri);
        if (problem !== undefined) problems.push(`${here}.identifierUri: ${problem} (tokenAudience 'identifierUri')`);
      }
      if (app.identifierUri === undefined && (app.scopes.length > 0 || app.appRoles.length > 0)) {
        problems.push(`${here}.identifierUri: an application that defines scopes or appRoles needs an identifierUri`);
      }
      const values = new Set<string>();
      [...app.scopes, ...app.appRoles].forEach((s) => {
        if (values.has(s.value)) problems.push(`${here}: scope or role '${s.value}' is defined twice`);
        values.add(s.value);
      });
    });

    /** Resolves a resource reference (identifierUri or client id of an API). */
    const api = (ref: string) => apis.get(ref) ?? (apps.get(ref)?.identifierUri !== undefined ? apps.get(ref) : undefined);
    const checkScopes = (path: string, resource: string, scopes: readonly string[] | undefined, kind: 'scope' | 'role') => {
      const target = api(resource);
      if (!target) {
        problems.push(`${path}.resource: no API '${resource}' (an identifierUri or the client id of an application that has one)`);
        return;
      }
      (scopes ?? []).forEach((value, i) => {
        const found = kind === 'scope' ? target.scopes.some((s) => s.value === value) : target.appRoles.some((r) => r.value === value);
        if (!found) problems.push(`${path}.${kind === 'scope' ? 'scopes' : 'roles'}[${i}]: '${value}' is not a ${kind} of ${resource}`);
      });
    };

    tenant.applications.forEach((app, a) => {
      const here = `${at}.applications[${a}]`;
      app.knownClientApplications.forEach((id, i) => {
        if (!apps.has(id)) problems.push(`${here}.knownClientApplications[${i}]: no application '${id}'`);
      });
      app.delegation?.mayAct?.forEach((entry, i) => {
        const path = `${here}.delegation.mayAct[${i}]`;
        if (app.identifierUri === undefined) problems.push(`${path}: only an API (an application with an identifierUri) says who may exchange tokens addressed to it`);
        const client = apps.get(entry.client);
        if (client === undefined) problems.push(`${path}.client: no application '${entry.client}'`);
        else if (client.public) problems.push(`${path}.client: '${entry.client}' is a public client, which cannot exchange tokens`);
        entry.downstream?.forEach((ref, j) => {
          if (!api(ref)) problems.push(`${path}.downstream[${j}]: no API '${ref}' (an identifierUri or the client id of an application that has one)`);
        });
      });
      app.requiredAccess.forEach((ra, i) => {
        checkScopes(`${here}.requiredAccess[${i}]`, ra.resource, ra.scopes, 'scope');
        if (ra.roles) checkScopes(`${here}.requiredAccess[${i}]`, ra.resource, ra.roles, 'role');
      });
    });
    tenant.consents.forEach((c, i) => {
      const here = `${at}.consents[${i}]`;
      if (!apps.has(c.client)) problems.push(`${here}.client: no application '${c.client}'`);
      checkScopes(here, c.resource, c.scopes, 'scope');
      if (c.for !== 'all' && !usernames.has(c.for.toLowerCase())) problems.push(`${here}.for: no user '${c.for}' (use "all" for admin consent)`);
    });
    tenant.appRoleAssignments.forEach((r, i) => {
      const here = `${at}.appRoleAssignments[${i}]`;
      const client = apps.get(r.client);
      if (!client) problems.push(`${here}.client: no application '${r.client}'`);
      else if (client.public) problems.push(`${here}.client: '${r.client}' is a public client and cannot hold application permissions`);
      checkScopes(here, r.resource, r.roles, 'role');
      const target = api(r.resource);
      r.roles.forEach((role, j) => {
        const def = target?.appRoles.find((d) => d.value === role);
        if (def && !def.allowedMemberTypes.includes('Application')) {
          problems.push(`${here}.roles[${j}]: '${role}' does not allow Application members`);
        }
      });
    });
    tenant.policies.forEach((p, i) => {
      const here = `${at}.policies[${i}]`;
      p.resources.forEach((ref, j) => {
        if (!api(ref)) problems.push(`${here}.resources[${j}]: no API '${ref}'`);
      });
      (p.clients ?? []).forEach((id, j) => {
        if (!apps.has(id)) problems.push(`${here}.clients[${j}]: no application '${id}'`);
      });
      (p.users ?? []).forEach((name, j) => {
        if (!usernames.has(name.toLowerCase())) problems.push(`${here}.users[${j}]: no user '${name}'`);
      });
      (p.scopes ?? []).forEach((scope, j) => {
        if (!p.resources.some((ref) => api(ref)?.scopes.some((s) => s.value === scope))) {
          problems.push(`${here}.scopes[${j}]: '${scope}' is not a scope of any of the policy's resources`);
        }
      });
    });
  });
  return problems;
}

/** The built-in admin API as the reference checks see an application of the file. */
const ADMIN_API_CONFIG: TenantConfig['applications'][number] = (() => {
  const app = adminApplication('-');
  return {
    clientId: app.clientId,
    name: app.name,
    public: false,
    redirectUris: [],
    secrets: [],
    jwks: [],
    identifierUri: app.identifierUri,
    scopes: [],
    appRoles: app.appRoles.map((r) => ({ value: r.value, description: r.description, allowedMemberTypes: r.allowedMemberTypes })),
    knownClientApplications: [],
    requiredAccess: [],
    accessTokenLifetimeSeconds: app.accessTokenLifetimeSeconds,
    signingAlg: app.signingAlg,
  };
})();

/** Warnings that do not stop a load (short client secrets, ...). Never includes a secret. */
export function configWarnings(config: BatonConfig): string[] {
  const warnings: string[] = [];
  config.tenants.forEach((tenant, t) =>
    tenant.applications.forEach((app, a) =>
      app.secrets.forEach((secret, s) => {
        const warning = secretStrengthWarning(secret);
        if (warning) warnings.push(`tenants[${t}].applications[${a}].secrets[${s}] (${app.clientId}): ${warning}`);
      }),
    ),
  );
  return warnings;
}

export interface CompiledTenant {
  tenant: Tenant;
  users: User[];
  applications: Application[];
  consents: ConsentGrant[];
  roleAssignments: AppRoleAssignment[];
  policies: Policy[];
}

export interface CompileDeps {
  /** Key for client-secret HMACs. */
  pepper: Buffer;
  kek: Kek;
  store: Store;
  /** Epoch seconds. */
  now: number;
}

/** Turns a validated configuration into records, reusing stored password hashes that still match. */
export async function compileConfig(config: BatonConfig, deps: CompileDeps): Promise<CompiledTenant[]> {
  const out: CompiledTenant[] = [];
  for (const t of config.tenants) {
    const tenant: Tenant = {
      id: t.id,
      tid: t.tenantId ?? stableGuid('tenant', t.id),
      name: t.name,
      maxDelegationDepth: t.delegation.maxDepth,
      ...(t.dpop?.nonce === 'required' ? { dpopNonceRequired: true } : {}),
      ...(t.tokens?.caeAccessTokenLifetimeSeconds !== undefined ? { caeAccessTokenLifetimeSeconds: t.tokens.caeAccessTokenLifetimeSeconds } : {}),
    };

    const users: User[] = [];
    const oidByName = new Map<string, string>();
    for (const u of t.users) {
      const username = u.username.toLowerCase();
      const oid = u.objectId ?? stableGuid('user', t.id, username);
      oidByName.set(username, oid);
      const existing = await deps.store.getUserByName(t.id, username);
      const passwordHash =
        existing && (await verifyPassword(u.password, existing.passwordHash)) ? existing.passwordHash : await hashPassword(u.password);
      let totpSecret: string | undefined;
      if (u.totpSecret !== undefined) {
        const aad = `totp|${t.id}|${oid}`;
        const kept = existing?.totpSecret !== undefined && safeDecrypt(deps.kek, existing.totpSecret, aad) === u.totpSecret;
        totpSecret = kept ? existing!.totpSecret : deps.kek.encrypt(Buffer.from(u.totpSecret), aad);
      }
      users.push({
        tenantId: t.id,
        oid,
        username,
        displayName: u.displayName,
        passwordHash,
        totpSecret,
        enabled: u.enabled,
        email: u.email,
        directoryRoles: u.roles,
        revokedBefore: existing?.revokedBefore,
      });
    }

    const byRef = new Map<string, string>([[ADMIN_CLIENT_ID, ADMIN_CLIENT_ID], [adminApplication(t.id).identifierUri!, ADMIN_CLIENT_ID]]);
    for (const a of t.applications) {
      if (a.identifierUri !== undefined) {
        byRef.set(a.identifierUri, a.clientId);
        byRef.set(a.clientId, a.clientId);
      }
    }
    const resolve = (ref: string) => byRef.get(ref) ?? ref;

    const applications: Application[] = [adminApplication(t.id)];
    for (const a of t.applications) {
      applications.push(compileApplication(t.id, a, resolve, await deps.store.getApplication(t.id, a.clientId), deps.pepper, deps.now));
    }

    const consents: ConsentGrant[] = [];
    for (const c of t.consents) {
      const resource = resolve(c.resource);
      const principal = c.for === 'all' ? 'all' : oidByName.get(c.for.toLowerCase())!;
      const before = (await deps.store.listConsents({ tenantId: t.id, clientId: c.client, resource, principal }))[0];
      consents.push({ tenantId: t.id, clientId: c.client, resource, scopes: [...new Set(c.scopes)], principal, createdAt: before?.createdAt ?? deps.now });
    }

    const roleAssignments: AppRoleAssignment[] = t.appRoleAssignments.map((r) => ({
      tenantId: t.id,
      principalType: 'application',
      principalId: r.client,
      resource: resolve(r.resource),
      roles: [...new Set(r.roles)],
    }));

    const policies: Policy[] = t.policies.map((p) => ({
      tenantId: t.id,
      name: p.name,
      resources: p.resources.map(resolve),
      scopes: p.scopes,
      clients: p.clients,
      users: p.users?.map((name) => oidByName.get(name.toLowerCase())!),
      require: p.require,
    }));

    out.push({ tenant, users, applications, consents, roleAssignments, policies });
  }
  return out;
}

/**
 * One application of a configuration (or of an admin API request, which takes the same fields) as
 * the store keeps it: ids derived from names, secrets as keyed hashes (a secret that was stored
 * before keeps its `createdAt`), API references resolved to client ids by `resolve`.
 */
export function compileApplication(
  tenantId: string,
  a: ApplicationConfig,
  resolve: (ref: string) => string,
  existing: Application | undefined,
  pepper: Pepper,
  now: number,
): Application {
  return {
    tenantId,
    clientId: a.clientId,
    servicePrincipalId: stableGuid('sp', tenantId, a.clientId),
    name: a.name,
    public: a.public,
    redirectUris: a.redirectUris,
    secrets: a.secrets.map((secret) => {
      const hash = hashClientSecret(secret, pepper);
      const before = existing?.secrets.find((s) => s.hash === hash);
      return { hash, hint: secretHint(secret), createdAt: before?.createdAt ?? now };
    }),
    jwks: a.jwks as Application['jwks'],
    identifierUri: a.identifierUri,
    scopes: a.scopes.map((s) => ({
      id: stableGuid('scope', tenantId, a.clientId, s.value),
      value: s.value,
      description: s.description,
      adminConsentRequired: s.adminConsentRequired,
    })),
    appRoles: a.appRoles.map((r) => ({
      id: stableGuid('role', tenantId, a.clientId, r.value),
      value: r.value,
      description: r.description,
      allowedMemberTypes: r.allowedMemberTypes,
    })),
    knownClientApplications: a.knownClientApplications,
    requiredAccess: a.requiredAccess.map((ra) => ({
      resource: resolve(ra.resource),
      ...(ra.scopes ? { scopes: ra.scopes } : {}),
      ...(ra.roles ? { roles: ra.roles } : {}),
    })),
    accessTokenLifetimeSeconds: a.accessTokenLifetimeSeconds,
    signingAlg: a.signingAlg,
    ...(a.dpop !== undefined ? { dpop: { incoming: a.dpop.incoming === 'required', exchanged: a.dpop.exchanged === 'required', keys: [...a.dpop.keys] } } : {}),
    ...(a.delegation?.maxDepth !== undefined ? { maxDelegationDepth: a.delegation.maxDepth } : {}),
    ...(a.delegation?.mayAct !== undefined
      ? { mayAct: a.delegation.mayAct.map((e) => ({ clientId: e.client, ...(e.downstream !== undefined ? { downstream: [...new Set(e.downstream.map(resolve))] } : {}) })) }
      : {}),
    ...(a.tokenAudience === 'identifierUri' ? { tokenAudience: 'identifierUri' as const } : {}),
  };
}

function safeDecrypt(kek: Kek, value: string, aad: string): string | undefined {
  try {
    return kek.decrypt(value, aad).toString('utf8');
  } catch {
    return undefined;
  }
}

/** Writes compiled records. Upserts by natural key, so a second load of the same file changes nothing. */
export async function applyConfig(store: Store, compiled: readonly CompiledTenant[]): Promise<void> {
  for (const c of compiled) {
    await store.putTenant(c.tenant);
    for (const user of c.users) await store.putUser(user);
    for (const app of c.applications) await store.putApplication(app);
    for (const consent of c.consents) await store.putConsent(consent);
    for (const assignment of c.roleAssignments) await store.putRoleAssignment(assignment);
    await store.replacePolicies(c.tenant.id, c.policies);
  }
}

/**
 * Why `uri` cannot be the canonical URI of an MCP server (RFC 8707 §2, MCP authorization): it
 * must be an absolute https URL without a fragment (http only on a loopback host, for development).
 */
export function canonicalResourceProblem(uri: string | undefined): string | undefined {
  if (uri === undefined) return 'an API addressed by its identifierUri needs one';
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    return `'${uri}' is not an absolute URL`;
  }
  if (uri.includes('#')) return `'${uri}' has a fragment`;
  const loopback = url.hostname === 'localhost' || url.hostname === '127.0.0.1' || url.hostname === '[::1]';
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && loopback)) return `'${uri}' must be an https URL (http only on localhost, 127.0.0.1 or [::1])`;
  return undefined;
}

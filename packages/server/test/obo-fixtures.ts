/**
 * Shared by the obo-*.test.ts files: the chain configuration with the additions the exchange tests
 * need, a user's incoming token minted exactly as the service mints one after a sign-in, and the
 * two wire forms of the exchange.
 */
import { issueDelegatedToken } from '../src/tokens/issue.ts';
import { auditLogOf, type ExchangeAuditEvent } from '../src/audit.ts';
import { basic, type TestServer } from './harness.ts';

export const OBO_GRANT = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
export const TOKEN_EXCHANGE_GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange';
export const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';

/** Every demo application's secret follows one pattern. */
export const secretOf = (clientId: string) => `${clientId}-demo-secret-for-local-use-only`;

/**
 * The chain configuration plus:
 * - `delegation.maxDepth` 2 (tasks-api then docs-api fit; a third API in the chain does not);
 * - `reports-api` gains `Reports.Export`; alice consented herself to `tasks-api` reading her
 *   reports (`Reports.Read` only); `audit-api` holds admin consent to `Reports.Read` (so a fourth
 *   hop reaches the depth rule);
 * - `tasks-api` holds the application permission `Audit.Read.All` on `audit-api` (an app-only
 *   token of its own, for RFC 8693 `actor_token`);
 * - `vault-api`, whose scopes meet a `block`, a `maxAuthAgeSeconds` and an `ipRanges` policy;
 * - a second tenant, `fabrikam`, with its own `tasks-api`.
 */
export function oboConfigure(raw: any): void {
  const contoso = raw.tenants[0];
  contoso.delegation = { maxDepth: 2 };
  const reports = contoso.applications.find((a: any) => a.clientId === 'reports-api');
  // An application permission for tasks-api, so it can hold an app-only token of its own (RFC 8693 actor_token).
  contoso.applications.find((a: any) => a.clientId === 'audit-api').appRoles = [{ value: 'Audit.Read.All', description: 'Read the audit log', allowedMemberTypes: ['Application'] }];
  contoso.appRoleAssignments.push({ client: 'tasks-api', resource: 'api://audit', roles: ['Audit.Read.All'] });
  reports.scopes.push({ value: 'Reports.Export', description: 'Export your reports' });
  contoso.consents.push(
    { client: 'tasks-api', resource: 'api://reports', scopes: ['Reports.Read'], for: 'alice@contoso.test' },
    { client: 'audit-api', resource: 'api://reports', scopes: ['Reports.Read'], for: 'all' },
  );
  // An API whose scopes each meet one kind of conditional-access policy.
  contoso.applications.push({
    name: 'Vault API',
    clientId: 'vault-api',
    identifierUri: 'api://vault',
    secrets: ['vault-api-Demo-secret-1'],
    scopes: [
      { value: 'Vault.Read', description: 'Blocked' },
      { value: 'Vault.Recent', description: 'Needs a recent sign-in' },
      { value: 'Vault.Office', description: 'Only from the office network' },
    ],
  });
  contoso.consents.push({ client: 'tasks-api', resource: 'api://vault', scopes: ['Vault.Read', 'Vault.Recent', 'Vault.Office'], for: 'all' });
  contoso.policies.push(
    { name: 'Vault is closed', resources: ['api://vault'], scopes: ['Vault.Read'], require: { block: true } },
    { name: 'Recent sign-in for the vault', resources: ['api://vault'], scopes: ['Vault.Recent'], require: { maxAuthAgeSeconds: 600 } },
    { name: 'Office network only', resources: ['api://vault'], scopes: ['Vault.Office'], require: { ipRanges: ['10.0.0.0/8'] } },
  );
  raw.tenants.push({
    id: 'fabrikam',
    name: 'Fabrikam',
    users: [{ username: 'alice@fabrikam.test', displayName: 'Alice of Fabrikam', password: 'fabrikam-Demo-pass-1' }],
    applications: [
      { name: 'Tasks Web', clientId: 'tasks-web', public: true, redirectUris: ['http://127.0.0.1:7000/callback'] },
      { name: 'Tasks API', clientId: 'tasks-api', identifierUri: 'api://tasks', secrets: ['fabrikam-tasks-api-secret-1'], scopes: [{ value: 'Tasks.ReadWrite', description: 'Tasks' }] },
    ],
    consents: [{ client: 'tasks-web', resource: 'api://tasks', scopes: ['Tasks.ReadWrite'], for: 'all' }],
  });
}

export interface UserTokenOptions {
  tenant?: string;
  username?: string;
  /** The client the user signed in to (`azp`). */
  clientId?: string;
  /** The API the token is for. */
  api?: string;
  scopes?: string[];
  amr?: string[];
  authTime?: number;
  sid?: string;
}

/** A user's access token as the service issues it after a sign-in (password only by default). */
export async function userToken(server: TestServer, options: UserTokenOptions = {}): Promise<string> {
  const tenant = options.tenant ?? 'contoso';
  const directory = await server.ctx.directories.get(tenant);
  if (!directory) throw new Error(`no tenant ${tenant}`);
  const user = await server.ctx.store.getUserByName(tenant, options.username ?? `alice@${tenant}.test`);
  if (!user) throw new Error('no such user');
  const api = directory.api(options.api ?? 'api://tasks');
  if (!api) throw new Error('no such api');
  const issued = await issueDelegatedToken(server.ctx, {
    directory,
    user,
    clientId: options.clientId ?? 'tasks-web',
    api,
    scopes: options.scopes ?? ['Tasks.ReadWrite'],
    auth: { amr: options.amr ?? ['pwd'], acr: '1', authTime: options.authTime ?? server.ctx.now(), ...(options.sid ? { sid: options.sid } : {}) },
  });
  return issued.token;
}

/** A sign-in session record as session.ts stores it (kind `session`, id = `sid`). */
export function sessionPayload(oid: string, ip?: string) {
  return { oid, authTime: Math.floor(Date.now() / 1000), amr: ['pwd'], ...(ip ? { ip } : {}), secretHash: 'not-a-cookie' };
}

/** Microsoft's form, client_secret_basic. */
export function obo(server: TestServer, clientId: string, assertion: string, scope: string, extra: Record<string, string> = {}, tenant = 'contoso') {
  return server.post(
    `/${tenant}/oauth2/v2.0/token`,
    { grant_type: OBO_GRANT, requested_token_use: 'on_behalf_of', assertion, scope, ...extra },
    { authorization: basic(clientId, secretOf(clientId)) },
  );
}

/** RFC 8693, client_secret_basic. */
export function exchange(server: TestServer, clientId: string, form: Record<string, string>) {
  return server.post(
    '/contoso/oauth2/v2.0/token',
    { grant_type: TOKEN_EXCHANGE_GRANT, subject_token_type: ACCESS_TOKEN_TYPE, ...form },
    { authorization: basic(clientId, secretOf(clientId)) },
  );
}

/** Collects audit events while `run` runs. */
export async function auditDuring<T>(server: TestServer, run: () => Promise<T>): Promise<{ result: T; events: ExchangeAuditEvent[] }> {
  const events: ExchangeAuditEvent[] = [];
  const stop = auditLogOf(server.ctx).subscribe((event) => events.push(event));
  try {
    return { result: await run(), events };
  } finally {
    stop();
  }
}

/** The last audit event recorded by the server. */
export function lastAudit(server: TestServer): ExchangeAuditEvent {
  const recent = auditLogOf(server.ctx).recent();
  const event = recent[recent.length - 1];
  if (!event) throw new Error('no audit event');
  return event;
}

/**
 * Shared by the admin-*.test.ts files: the chain configuration plus an admin application (`ops`,
 * holding Baton.Admin on the tenant's built-in admin API), a second tenant with its own admin, and
 * a small JSON client for the admin API.
 */
import assert from 'node:assert/strict';
import { basic, type TestServer } from './harness.ts';

export const OPS_SECRET = 'ops-Admin-secret-for-tests-only-1';
export const FABRIKAM_OPS_SECRET = 'fabrikam-ops-Admin-secret-for-tests-1';

export function adminConfigure(raw: any): void {
  const contoso = raw.tenants[0];
  contoso.applications.push({ name: 'Ops', clientId: 'ops', secrets: [OPS_SECRET] });
  contoso.appRoleAssignments.push({ client: 'ops', resource: 'api://baton-admin', roles: ['Baton.Admin'] });
  raw.tenants.push({
    id: 'fabrikam',
    name: 'Fabrikam',
    users: [{ username: 'alice@fabrikam.test', displayName: 'Alice of Fabrikam', password: 'fabrikam-Demo-pass-1' }],
    applications: [{ name: 'Fabrikam Ops', clientId: 'ops', secrets: [FABRIKAM_OPS_SECRET] }],
    appRoleAssignments: [{ client: 'ops', resource: 'baton-admin', roles: ['Baton.Admin'] }],
  });
}

/** An app-only token for the admin API (client credentials). */
export async function adminToken(server: TestServer, options: { tenant?: string; client?: string; secret?: string } = {}): Promise<string> {
  const tenant = options.tenant ?? 'contoso';
  const response = await server.post(`/${tenant}/oauth2/v2.0/token`, { grant_type: 'client_credentials', scope: 'api://baton-admin/.default' }, {
    authorization: basic(options.client ?? 'ops', options.secret ?? (tenant === 'fabrikam' ? FABRIKAM_OPS_SECRET : OPS_SECRET)),
  });
  assert.equal(response.status, 200, JSON.stringify(response.body));
  return response.body.access_token;
}

export interface AdminResponse {
  status: number;
  headers: Headers;
  body: any;
}

export interface AdminCall {
  token?: string | undefined;
  body?: unknown;
  /** Sent as is (with `contentType`), instead of JSON of `body`. */
  raw?: string;
  contentType?: string;
  headers?: Record<string, string>;
}

/** One admin API call: `path` is below `/{tenant}/admin/v1`. */
export async function admin(server: TestServer, method: string, path: string, call: AdminCall = {}, tenant = 'contoso'): Promise<AdminResponse> {
  const headers: Record<string, string> = { ...(call.headers ?? {}) };
  if (call.token !== undefined) headers.authorization = `Bearer ${call.token}`;
  let body: string | undefined;
  if (call.raw !== undefined) {
    body = call.raw;
    headers['content-type'] = call.contentType ?? 'application/json';
  } else if (call.body !== undefined) {
    body = JSON.stringify(call.body);
    headers['content-type'] = call.contentType ?? 'application/json';
  }
  const response = await fetch(`${server.url}/${tenant}/admin/v1${path}`, { method, headers, ...(body !== undefined ? { body } : {}) });
  const text = await response.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // keep the text
  }
  return { status: response.status, headers: response.headers, body: parsed };
}

/** Asserts a problem+json answer. */
export function assertProblem(response: AdminResponse, status: number, slug: string, error?: string): void {
  assert.equal(response.status, status, JSON.stringify(response.body));
  assert.match(response.headers.get('content-type') ?? '', /^application\/problem\+json/);
  assert.equal(response.body.type, `urn:baton:problem:${slug}`);
  assert.equal(response.body.status, status);
  assert.equal(typeof response.body.title, 'string');
  assert.equal(typeof response.body.detail, 'string');
  if (error !== undefined) assert.equal(response.body.error, error);
}

export async function eventually(check: () => Promise<boolean>, what: string, ms = 10_000): Promise<void> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  assert.fail(`timed out waiting for ${what}`);
}

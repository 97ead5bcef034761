/**
 * The demo's administrator application: `demo-admin`, holding `Baton.Admin` on the tenant's
 * built-in admin API, so `baton admin …` works against `npm start`. It lives in the demo's code, not
 * in baton.json (the chain's contract configuration): `baton dev` adds it to the configuration it
 * starts the token service with.
 *
 * @example
 * BATON_TENANT=contoso BATON_CA=.baton/tls/ca.pem \
 * BATON_ADMIN_CLIENT_ID=demo-admin BATON_ADMIN_CLIENT_SECRET=demo-admin-demo-secret-for-local-use-only \
 *   npx baton admin users revoke-sessions alice@contoso.test
 */
import { createOboClient, fetchWithCa } from '@baton/resource';
import type { BatonConfig } from '@baton/server';

export const DEMO_ADMIN = {
  clientId: 'demo-admin',
  /** A demo secret, as public as the demo users' passwords; `DEMO_ADMIN_CLIENT_SECRET` overrides it. */
  secret: process.env.DEMO_ADMIN_CLIENT_SECRET ?? 'demo-admin-demo-secret-for-local-use-only',
} as const;

/** The configuration with the demo's admin application in its first tenant (unchanged if it is there). */
export function withDemoAdmin(config: BatonConfig): BatonConfig {
  return {
    ...config,
    tenants: config.tenants.map((tenant, i) =>
      i !== 0 || tenant.applications.some((a) => a.clientId === DEMO_ADMIN.clientId)
        ? tenant
        : {
            ...tenant,
            applications: [
              ...tenant.applications,
              {
                clientId: DEMO_ADMIN.clientId,
                name: 'Demo Admin (baton admin)',
                public: false,
                redirectUris: [],
                secrets: [DEMO_ADMIN.secret],
                jwks: [],
                scopes: [],
                appRoles: [],
                knownClientApplications: [],
                requiredAccess: [{ resource: 'api://baton-admin', roles: ['Baton.Admin'] }],
                accessTokenLifetimeSeconds: 600,
                signingAlg: 'ES256',
              },
            ],
            appRoleAssignments: [...tenant.appRoleAssignments, { client: DEMO_ADMIN.clientId, resource: 'api://baton-admin', roles: ['Baton.Admin'] }],
          },
    ),
  };
}

/** The admin API refused or could not be reached: what to show on the chain view. */
export class DemoAdminError extends Error {
  override name = 'DemoAdminError';
}

export interface DemoAdmin {
  /** `POST /{tenant}/admin/v1/users/{username}/revoke-sessions`; resolves with the new revocation edge (ISO time). */
  revokeSessions(username: string): Promise<string>;
}

/**
 * The demo admin as a client of the token service's admin API (the chain view's "Revoke sessions"):
 * an app-only token for `api://baton-admin/.default` (the SDK's client credentials, cached), then
 * the admin call — what `baton admin users revoke-sessions` does.
 */
export function createDemoAdmin(options: { authority: string; ca?: string | undefined }): DemoAdmin {
  const authority = new URL(options.authority.replace(/\/$/, ''));
  const tenant = authority.pathname.split('/').filter(Boolean)[0];
  if (tenant === undefined) throw new TypeError(`createDemoAdmin: no tenant in the authority ${options.authority}`);
  const adminBase = `${authority.origin}/${tenant}/admin/v1`;
  const fetch = options.ca === undefined ? globalThis.fetch : fetchWithCa(options.ca);
  const client = createOboClient({ authority: options.authority, clientId: DEMO_ADMIN.clientId, credential: { clientSecret: DEMO_ADMIN.secret }, ...(options.ca === undefined ? {} : { ca: options.ca }) });
  return {
    async revokeSessions(username) {
      let token: string;
      try {
        token = (await client.appToken(['api://baton-admin/.default'])).accessToken;
      } catch (error) {
        throw new DemoAdminError(`The demo admin (${DEMO_ADMIN.clientId}) got no admin token: ${(error as Error).message}`);
      }
      const response = await fetch(`${adminBase}/users/${encodeURIComponent(username)}/revoke-sessions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, accept: 'application/json' },
        signal: AbortSignal.timeout(10_000),
      });
      const body = (await response.json().catch(() => ({}))) as { sessionsRevokedBefore?: unknown; detail?: unknown; title?: unknown };
      if (response.status !== 200) throw new DemoAdminError(`The admin API answered ${response.status}: ${String(body.detail ?? body.title ?? '')}`.trim());
      return typeof body.sessionsRevokedBefore === 'string' ? body.sessionsRevokedBefore : new Date().toISOString();
    },
  };
}

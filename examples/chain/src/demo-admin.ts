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

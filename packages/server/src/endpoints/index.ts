/**
 * The routes the token service ships with, in the order they are added to the app. `startServer`
 * passes these, then the routes its options add, to `buildApp`: every endpoint — token and
 * discovery included — is wired the same way, and nothing registers itself on import.
 */
import type { RoutePlugin } from '../http/app.ts';
import { assetRoutes } from '../pages/assets.ts';
import { tokenRoutes } from './token.ts';
import { discoveryRoutes } from './discovery.ts';
import { authorizeRoutes } from './authorize.ts';
import { interactionRoutes } from './interaction.ts';
import { adminConsentRoutes } from './adminconsent.ts';
import { userinfoRoutes } from './userinfo.ts';
import { logoutRoutes } from './logout.ts';
import { revokeRoutes } from './revoke.ts';
import { introspectRoutes } from './introspect.ts';
import { readinessRoute } from './readiness.ts';
import { adminRoutes } from '../admin/routes.ts';
import { signalRoutes } from '../signals/routes.ts';
import { registrationRoutes } from '../registration/dynamic.ts';

/** `/healthz`: the process answers (a load balancer's liveness probe). */
const healthRoutes: RoutePlugin = (app) => {
  app.get('/healthz', async () => ({ status: 'ok' }));
};

export const BUILT_IN_ROUTES: readonly RoutePlugin[] = Object.freeze([
  healthRoutes,
  readinessRoute,
  tokenRoutes,
  discoveryRoutes,
  // Sign-in (issue 3): pages' assets, /authorize and its interaction pages, admin consent,
  // UserInfo, logout, revocation and introspection.
  assetRoutes,
  authorizeRoutes,
  interactionRoutes,
  adminConsentRoutes,
  userinfoRoutes,
  logoutRoutes,
  revokeRoutes,
  introspectRoutes,
  // The admin API (issue 13): JSON, problem+json, Baton.Admin tokens.
  adminRoutes,
  // Security events (issue 17): SSF metadata, stream management, RFC 8936 polling.
  signalRoutes,
  registrationRoutes,
]);

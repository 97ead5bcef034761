/**
 * The routes of the sign-in feature (issue 3), registered with the HTTP shell through
 * `registerRoutes`: pages' assets, /authorize and its interaction pages, admin consent, UserInfo,
 * logout, revocation and introspection. The grants (authorization_code, refresh_token) register
 * through grants/index.ts.
 */
import { registerRoutes } from '../http/app.ts';
import { assetRoutes } from '../pages/assets.ts';
import { authorizeEndpoint } from './authorize.ts';
import { interactionRoutes } from './interaction.ts';
import { adminConsentRoutes } from './adminconsent.ts';
import { userinfoRoutes } from './userinfo.ts';
import { logoutRoutes } from './logout.ts';
import { revokeRoutes } from './revoke.ts';
import { introspectRoutes } from './introspect.ts';

registerRoutes((app, ctx) => {
  assetRoutes(app);
  const authorize = authorizeEndpoint(ctx);
  app.get('/:tenant/oauth2/v2.0/authorize', authorize);
  app.post('/:tenant/oauth2/v2.0/authorize', authorize);
  interactionRoutes(app, ctx);
  adminConsentRoutes(app, ctx);
  userinfoRoutes(app, ctx);
  logoutRoutes(app, ctx);
  revokeRoutes(app, ctx);
  introspectRoutes(app, ctx);
});

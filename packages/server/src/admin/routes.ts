/**
 * The admin API, `/{tenant}/admin/v1/…` (docs/operations.md, "Admin API"): one scope with its own
 * JSON parsing, problem+json errors and token check (http.ts), and a file per resource.
 */
import type { RoutePlugin } from '../http/app.ts';
import { AdminGuards } from './guard.ts';
import { registerAdminScope } from './http.ts';
import { userRoutes } from './users.ts';
import { applicationRoutes } from './applications.ts';
import { accessRoutes } from './access.ts';
import { eventRoutes } from './events.ts';

export const adminRoutes: RoutePlugin = (app, ctx) => {
  const guards = new AdminGuards(app, ctx);
  registerAdminScope(app, ctx, guards, (scope) => {
    userRoutes(scope);
    applicationRoutes(scope);
    accessRoutes(scope);
    eventRoutes(scope);
  });
};

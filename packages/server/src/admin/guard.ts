/**
 * Who may call the admin API: an application holding `Baton.Admin` on this tenant's built-in admin
 * API, proved by an app-only access token from this tenant's token endpoint (client credentials,
 * `scope=api://baton-admin/.default`). The token is checked by the SDK's own guard
 * (`@baton/resource`, the one every API of the chain uses): the same signature, `typ`, issuer,
 * audience, `tid` and role rules, and the same RFC 6750 challenges.
 *
 * The guard reads this tenant's JWKS from the token service's own JWKS route, in-process
 * (`app.inject`), so a service behind a proxy or with a certificate only clients trust still checks
 * its admin tokens against exactly the keys it publishes.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { createGuard, GuardError, type Guard, type Principal } from '@baton/resource';
import type { TenantDirectory } from '@baton/core';
import { issuerOf, type ServerContext } from '../context.ts';
import { ADMIN_CLIENT_ID, ADMIN_IDENTIFIER_URI, ADMIN_ROLE } from './application.ts';
import { problems } from './problem.ts';
import type { AdminActor } from './audit.ts';

/** The URL the guard is given for the JWKS; never fetched over the network (see `inProcessFetch`). */
const IN_PROCESS_ORIGIN = 'http://127.0.0.1';

export class AdminGuards {
  readonly #app: FastifyInstance;
  readonly #ctx: ServerContext;
  /** Per tenant and issuer (the base URL is known once the server listens). */
  readonly #guards = new Map<string, Guard>();

  constructor(app: FastifyInstance, ctx: ServerContext) {
    this.#app = app;
    this.#ctx = ctx;
  }

  #guardFor(directory: TenantDirectory): Guard {
    const tenantId = directory.tenant.id;
    const issuer = issuerOf(this.#ctx, tenantId);
    const key = `${tenantId} ${issuer}`;
    let guard = this.#guards.get(key);
    if (guard === undefined) {
      const app = this.#app;
      guard = createGuard({
        issuer,
        jwksUri: `${IN_PROCESS_ORIGIN}/${tenantId}/discovery/v2.0/keys`,
        audience: [ADMIN_CLIENT_ID, ADMIN_IDENTIFIER_URI],
        tenants: [directory.tenant.tid],
        realm: `${issuer} admin`,
        async fetch(input) {
          const url = new URL(String(input));
          const response = await app.inject({ method: 'GET', url: url.pathname });
          return new Response(response.body, { status: response.statusCode, headers: { 'content-type': String(response.headers['content-type'] ?? 'application/json') } });
        },
      });
      this.#guards.set(key, guard);
    }
    return guard;
  }

  /**
   * The admin application behind the request's bearer token, or a problem: 401 (no token, a bad or
   * foreign one), 403 `insufficient_scope` (a valid token without `role`, or a user's token).
   * `role` is one of the built-in API's app roles: `Baton.Admin` for the admin API,
   * `Baton.Signals` for the security event streams (signals/routes.ts).
   */
  async authenticate(request: FastifyRequest, directory: TenantDirectory, role: string = ADMIN_ROLE): Promise<AdminActor> {
    let principal: Principal;
    const guard = this.#guardFor(directory);
    try {
      principal = await guard.verify(request.raw.headersDistinct.authorization);
    } catch (error) {
      throw this.#problemOf(error);
    }
    try {
      guard.authorize(principal, { roles: { any: [role] }, allowAppOnly: true });
      if (!principal.appOnly) throw new GuardError('insufficient_scope', 'ERR_DELEGATED_REFUSED', 'This API is for applications (client credentials); a user token cannot call it.', { status: 403, realm: guard.realm });
    } catch (error) {
      throw this.#problemOf(error, role);
    }
    return { clientId: principal.clientId ?? principal.subject, servicePrincipalId: principal.userId };
  }

  #problemOf(error: unknown, role = ADMIN_ROLE) {
    if (!(error instanceof GuardError)) return error;
    if (error.status === 503 || error.wwwAuthenticate === undefined) return problems.unavailable(error);
    if (error.status === 403) return problems.forbidden(error.description, error.wwwAuthenticate, role);
    return problems.unauthenticated(error.description, error.wwwAuthenticate, error.error);
  }
}

/**
 * Rules about a user's standing that more than one flow applies: whether a sign-in or a token
 * predates the revocation of the user's sessions, and which app roles the user holds on an API.
 * Sign-in, the code and refresh grants, the exchange, UserInfo, introspection and admin consent
 * all ask these questions; they are answered here only.
 */
import type { TenantDirectory } from './directory.ts';
import type { Application, AppRoleAssignment, User } from './types.ts';

/**
 * Whether `instant` (epoch seconds: a sign-in's `auth_time`, a token's `iat`) comes before the
 * revocation of the user's sessions (Entra's `revokeSignInSessions`): anything from before it is void.
 * An unknown instant predates nothing.
 *
 * @example
 * if (predatesRevocation(user, claims.iat) || predatesRevocation(user, claims.auth_time)) refuse();
 */
export function predatesRevocation(user: Pick<User, 'revokedBefore'>, instant: number | undefined): boolean {
  return user.revokedBefore !== undefined && instant !== undefined && instant < user.revokedBefore;
}

/**
 * The user's app roles on `api` (for a delegated token's `roles`): assignments to this user on this
 * API, kept only while the role still exists there and may be given to users; each role once.
 *
 * @example
 * userRolesOn(directory, docsApi, user.oid, await store.listRoleAssignments(tenantId, 'user', user.oid)); // ['Docs.Admin']
 */
export function userRolesOn(directory: TenantDirectory, api: Application, userOid: string, assignments: readonly AppRoleAssignment[]): string[] {
  const roles: string[] = [];
  for (const assignment of assignments) {
    if (assignment.principalType !== 'user' || assignment.principalId !== userOid || assignment.resource !== api.clientId) continue;
    for (const value of assignment.roles) {
      const role = directory.appRole(api.clientId, value);
      if (role !== undefined && role.allowedMemberTypes.includes('User') && !roles.includes(value)) roles.push(value);
    }
  }
  return roles;
}

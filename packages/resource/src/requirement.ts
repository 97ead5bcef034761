/**
 * What a route requires of its caller (scopes, app roles, step-up), checked once when the route is
 * built, and the pure checks the guard runs against a principal.
 */

/** A `{ any, all }` requirement: at least one of `any`, every one of `all`. */
export interface AnyAll {
  any?: readonly string[];
  all?: readonly string[];
}

export interface Requirement {
  /** Delegated scopes (`scp`) a user's token must carry. */
  scopes?: AnyAll;
  /**
   * Application permissions an app-only token must carry: its app roles (`roles`, Entra and Baton)
   * or, from RFC 9068 issuers that have no app roles, its granted `scope`. Needs `allowAppOnly: true`.
   * A route with `roles` and no `scopes`/`userRoles` is for applications only.
   */
  roles?: AnyAll;
  /** App roles a *user* must hold (delegated tokens' `roles`). */
  userRoles?: AnyAll;
  /**
   * Accept app-only (client credentials) tokens. Default false: a route that acts for a user must
   * not be reachable by an application acting as itself. Needs `roles`: any application of the
   * tenant can obtain a token for this API without any permission, so an app role is what tells
   * the applications you meant from the others.
   */
  allowAppOnly?: boolean;
  /** RFC 9470: the token's `acr` must be one of these (delegated tokens). */
  acrValues?: readonly string[];
  /** RFC 9470: the user must have authenticated within this many seconds (`auth_time`). */
  maxAge?: number;
  /**
   * DPoP (RFC 9449) on this route: `required` — only DPoP-bound tokens with a valid proof (a bearer
   * token is refused); `allowed` — bearer tokens too. Default: the guard's `dpop.mode`.
   */
  dpop?: 'required' | 'allowed';
}

export function nonEmptyStrings(value: unknown, where: string): string[] {
  if (!Array.isArray(value) || value.length === 0 || value.some((v) => typeof v !== 'string' || v === '')) {
    throw new TypeError(`${where} must be a non-empty array of non-empty strings`);
  }
  return [...(value as string[])];
}

function checkAnyAll(value: AnyAll | undefined, where: string): void {
  if (value === undefined) return;
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new TypeError(`${where} must be { any?: string[], all?: string[] }`);
  if (value.any === undefined && value.all === undefined) throw new TypeError(`${where} needs 'any' or 'all'`);
  if (value.any !== undefined) nonEmptyStrings(value.any, `${where}.any`);
  if (value.all !== undefined) nonEmptyStrings(value.all, `${where}.all`);
}

const validated = new WeakSet<Requirement>();

/**
 * Checks a requirement once (TypeError for programmer mistakes). Adapters call this when the route
 * is built, so a bad requirement fails at start, not at the first request.
 */
export function checkRequirement(requirement: Requirement, where = 'requirement'): Requirement {
  if (validated.has(requirement)) return requirement;
  if (requirement === null || typeof requirement !== 'object') throw new TypeError(`${where} must be an object`);
  checkAnyAll(requirement.scopes, `${where}.scopes`);
  checkAnyAll(requirement.roles, `${where}.roles`);
  checkAnyAll(requirement.userRoles, `${where}.userRoles`);
  if (requirement.allowAppOnly !== undefined && typeof requirement.allowAppOnly !== 'boolean') throw new TypeError(`${where}.allowAppOnly must be a boolean`);
  if (requirement.roles !== undefined && requirement.allowAppOnly !== true) {
    throw new TypeError(`${where}.roles are application permissions, checked on app-only tokens: set allowAppOnly: true (use userRoles for the app roles of users)`);
  }
  if (requirement.allowAppOnly === true && requirement.roles === undefined) {
    throw new TypeError(`${where}.allowAppOnly needs roles: any application can get a token for this API without a permission, an app role says which ones may call`);
  }
  if (requirement.acrValues !== undefined) nonEmptyStrings(requirement.acrValues, `${where}.acrValues`);
  if (requirement.maxAge !== undefined && (!Number.isInteger(requirement.maxAge) || requirement.maxAge < 0)) {
    throw new TypeError(`${where}.maxAge must be a non-negative integer (seconds)`);
  }
  if (requirement.dpop !== undefined && requirement.dpop !== 'required' && requirement.dpop !== 'allowed') throw new TypeError(`${where}.dpop must be 'required' or 'allowed'`);
  validated.add(requirement);
  return requirement;
}

export function satisfies(held: readonly string[], need: AnyAll | undefined): boolean {
  if (need === undefined) return true;
  if (need.all && !need.all.every((s) => held.includes(s))) return false;
  if (need.any && !need.any.some((s) => held.includes(s))) return false;
  return true;
}

/** The scopes or roles of a requirement, for a message or the `scope` of a challenge. */
export function describe(need: AnyAll): string {
  return [...(need.all ?? []), ...(need.any ?? [])].join(' ');
}

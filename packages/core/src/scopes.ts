/**
 * The `scope` parameter (RFC 6749 §3.3) and the RFC 8693 `audience` / RFC 8707 `resource`
 * parameters, resolved against one tenant's directory.
 *
 * A token is for ONE API (DESIGN "Tokens by kind": `aud` is a single client id), so a request
 * naming scopes of two APIs is refused rather than silently narrowed to one of them: the
 * developer would otherwise receive a token that fails at the second API with no hint why.
 */
import { errors, truncate } from './errors.ts';
import type { TenantDirectory } from './directory.ts';
import type { Application } from './types.ts';

/** OpenID Connect scopes: they ask for sign-in facts and refresh tokens, never for an API. */
export const OIDC_SCOPES = ['openid', 'profile', 'email', 'offline_access'] as const;
export type OidcScope = (typeof OIDC_SCOPES)[number];

/** The suffix asking for every scope the client holds (Entra's `/.default`). */
export const DEFAULT_SCOPE = '.default';

/** Limits on the `scope` parameter. Generous for real clients, small enough to bound the work. */
export const SCOPE_LIMITS = { maxScopes: 64, maxScopeLength: 256 } as const;

// RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ) — printable ASCII minus `"` and `\`.
const SCOPE_TOKEN = /^[\x21\x23-\x5b\x5d-\x7e]+$/;
// C0 controls, DEL and C1 controls.
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

/**
 * Splits a `scope` parameter into its items, deduplicated in the order given.
 * An absent or empty parameter gives `[]`: whether a scope is required is the grant's decision.
 *
 * Refuses (as `OAuthError`):
 * - a control character, more than {@link SCOPE_LIMITS.maxScopes} items or an item longer than
 *   {@link SCOPE_LIMITS.maxScopeLength}: `invalid_request` (AADSTS900144) — a malformed request,
 *   not a scope the client could have meant;
 * - an empty item (two spaces, or a leading or trailing space) or a character RFC 6749 §3.3 does
 *   not allow in a scope: `invalid_scope` (AADSTS70011).
 *
 * @example
 * parseScope('openid api://docs/Docs.Read'); // ['openid', 'api://docs/Docs.Read']
 */
export function parseScope(raw: string | undefined): string[] {
  if (raw === undefined || raw === '') return [];
  const { maxScopes, maxScopeLength } = SCOPE_LIMITS;
  // Bound the work before splitting: a longer parameter must break one of the two limits.
  if (raw.length > maxScopes * (maxScopeLength + 1)) {
    throw errors.invalidRequest(`The scope parameter is too long: ask for at most ${maxScopes} scopes of at most ${maxScopeLength} characters each.`);
  }
  if (CONTROL.test(raw)) {
    throw errors.invalidRequest('The scope parameter contains a control character: separate scopes with single spaces (RFC 6749 §3.3).');
  }
  const items = raw.split(' ');
  if (items.length > maxScopes) {
    throw errors.invalidRequest(`The scope parameter names ${items.length} scopes; at most ${maxScopes} are accepted in one request.`);
  }
  const seen = new Set<string>();
  items.forEach((item, index) => {
    if (item === '') {
      throw errors.invalidScope(`The scope parameter has an empty item at position ${index + 1}: separate scopes with exactly one space and no leading or trailing space (RFC 6749 §3.3).`);
    }
    if (item.length > maxScopeLength) {
      throw errors.invalidRequest(`The scope '${truncate(item, 60)}' is longer than ${maxScopeLength} characters.`);
    }
    if (!SCOPE_TOKEN.test(item)) {
      throw errors.invalidScope(`The scope '${truncate(item, 100)}' contains a character RFC 6749 §3.3 does not allow (only printable ASCII without '"' and '\\').`);
    }
    seen.add(item);
  });
  return [...seen];
}

/** Separates OpenID Connect scopes from the scopes that name an API. Order is kept. */
export function splitScopes(items: readonly string[]): { oidc: OidcScope[]; resource: string[] } {
  const oidc: OidcScope[] = [];
  const resource: string[] = [];
  for (const item of items) {
    if (isOidcScope(item)) oidc.push(item);
    else resource.push(item);
  }
  return { oidc, resource };
}

export function isOidcScope(value: string): value is OidcScope {
  return (OIDC_SCOPES as readonly string[]).includes(value);
}

/** Scopes of one API, as a request named them. */
export interface ResolvedScopes {
  /** The one API the scopes belong to. */
  api: Application;
  /** Scope values on that API (`Docs.Read`), deduplicated; empty when `isDefault`. */
  scopes: string[];
  /** The request asked for `<api>/.default`: every scope the client holds consent for. */
  isDefault: boolean;
}

export interface ResolveScopesOptions {
  /**
   * The API an RFC 8693 `audience`/`resource` already named. Unqualified scopes (`Docs.Read`,
   * `.default`) resolve against it, and a qualified scope of any other API is `invalid_target`.
   */
  target?: Application | undefined;
}

/**
 * Resolves resource scopes (not OIDC ones — see {@link splitScopes}) to exactly one API.
 * Accepted forms: `api://docs/Docs.Read` (identifier URI), `docs-api/Docs.Read` (client id) and
 * `api://docs/.default`; with `options.target`, also bare `Docs.Read` and `.default`.
 * Returns `undefined` when `items` is empty and no target was given.
 *
 * Refuses with `invalid_scope` (AADSTS70011), naming the offending value: an unknown API, an
 * unknown scope, an app role asked for as a delegated scope, scopes of two APIs (both named),
 * `.default` mixed with named scopes of the same API, an unqualified scope without a target.
 * A scope of an API other than `options.target` is `invalid_target` (AADSTS500011).
 *
 * @example
 * resolveResourceScopes(directory, ['api://docs/Docs.Read']); // { api: docs-api, scopes: ['Docs.Read'], isDefault: false }
 */
export function resolveResourceScopes(
  directory: TenantDirectory,
  items: readonly string[],
  options: ResolveScopesOptions = {},
): ResolvedScopes | undefined {
  const target = options.target;
  if (items.length === 0) return target === undefined ? undefined : { api: target, scopes: [], isDefault: true };

  let api: Application | undefined;
  const values: string[] = [];
  let isDefault = false;
  for (const item of items) {
    const { api: itemApi, value } = splitItem(directory, item, target);
    if (target !== undefined && itemApi.clientId !== target.clientId) {
      throw errors.invalidTarget(`The scope '${truncate(item, 100)}' belongs to API '${apiName(itemApi)}', but the audience/resource of this request is '${apiName(target)}': ask for scopes of the API the token is for.`);
    }
    if (api !== undefined && itemApi.clientId !== api.clientId) {
      throw errors.invalidScope(
        `The scope parameter names two APIs, '${apiName(api)}' and '${apiName(itemApi)}': an access token is for one API, so request the scopes of each API in its own token request.`,
      );
    }
    api = itemApi;
    if (value === DEFAULT_SCOPE) {
      isDefault = true;
      continue;
    }
    if (directory.scope(itemApi.clientId, value) === undefined) {
      if (directory.appRole(itemApi.clientId, value) !== undefined) {
        throw errors.invalidScope(
          `'${value}' is an app role (application permission) of API '${apiName(itemApi)}', not a delegated scope: an application receives it through client credentials with '${apiName(itemApi)}/.default'.`,
        );
      }
      throw errors.invalidScope(`The scope '${truncate(value, 100)}' does not exist on API '${apiName(itemApi)}'; it exposes ${listOrNone(itemApi.scopes.map((s) => s.value))}.`);
    }
    if (!values.includes(value)) values.push(value);
  }
  // `api` is set: `items` is not empty and every item either resolved or threw.
  const resolved = api as Application;
  if (isDefault && values.length > 0) {
    throw errors.invalidScope(
      `'${apiName(resolved)}/.default' already means every scope the client holds consent for; do not combine it with ${values.map((v) => `'${v}'`).join(', ')}.`,
    );
  }
  return { api: resolved, scopes: values, isDefault };
}

/** The API and scope value a single resource scope names. */
function splitItem(directory: TenantDirectory, item: string, target: Application | undefined): { api: Application; value: string } {
  const slash = item.lastIndexOf('/');
  if (slash < 0) {
    if (target !== undefined) return { api: target, value: item };
    const named = directory.api(item);
    if (named !== undefined) throw errors.invalidScope(namesNoScope(item, named));
    throw errors.invalidScope(`The scope '${truncate(item, 100)}' does not name an API: qualify it with the API's identifier URI or client id, e.g. 'api://docs/${truncate(item, 60)}'.`);
  }
  const prefix = item.slice(0, slash);
  const value = item.slice(slash + 1);
  const api = directory.api(prefix);
  if (api === undefined) {
    const named = directory.api(item);
    if (named !== undefined) throw errors.invalidScope(namesNoScope(item, named));
    throw errors.invalidScope(`The scope '${truncate(item, 100)}' names the API '${truncate(prefix, 100)}', which does not exist in tenant '${directory.tenant.id}'.`);
  }
  if (value === '') throw errors.invalidScope(namesNoScope(item, api));
  return { api, value };
}

function namesNoScope(item: string, api: Application): string {
  return `'${truncate(item, 100)}' names the API '${apiName(api)}' but no scope: ask for '${apiName(api)}/.default' or one of its scopes (${listOrNone(api.scopes.map((s) => s.value))}).`;
}

/**
 * Resolves RFC 8693 `audience` and RFC 8707 `resource` values (each may repeat) to one API,
 * named by identifier URI or client id. `undefined` when neither parameter was given.
 *
 * Refuses with `invalid_target` (AADSTS500011): a value that names no API of the tenant, or
 * values naming two different APIs (RFC 8693 §2.2.2).
 *
 * @example
 * resolveTarget(directory, { audience: ['docs-api'] }); // docs-api
 */
export function resolveTarget(
  directory: TenantDirectory,
  params: { audience?: readonly string[] | string | undefined; resource?: readonly string[] | string | undefined },
): Application | undefined {
  let api: Application | undefined;
  for (const [name, raw] of [['audience', params.audience], ['resource', params.resource]] as const) {
    const values = raw === undefined ? [] : typeof raw === 'string' ? [raw] : raw;
    for (const value of values) {
      const found = directory.api(value);
      if (found === undefined) {
        throw errors.invalidTarget(`The ${name} '${truncate(value, 100)}' is not an API of tenant '${directory.tenant.id}': name it by its identifier URI (api://…) or client id.`);
      }
      if (api !== undefined && found.clientId !== api.clientId) {
        throw errors.invalidTarget(`The audience/resource parameters name two APIs, '${apiName(api)}' and '${apiName(found)}': a token exchange issues a token for one API.`);
      }
      api = found;
    }
  }
  return api;
}

/** A `scope` parameter parsed, split and resolved: what the authorize and token endpoints need. */
export interface ScopeRequest {
  /** Every item, deduplicated, as given. */
  items: string[];
  oidc: OidcScope[];
  /** Undefined when the request named no API (only OIDC scopes) and no target. */
  resource: ResolvedScopes | undefined;
}

/**
 * {@link parseScope} + {@link splitScopes} + {@link resolveResourceScopes} in one call.
 *
 * @example
 * const { oidc, resource } = resolveScopeParameter(directory, 'openid offline_access api://docs/Docs.Read');
 */
export function resolveScopeParameter(directory: TenantDirectory, raw: string | undefined, options: ResolveScopesOptions = {}): ScopeRequest {
  const items = parseScope(raw);
  const { oidc, resource } = splitScopes(items);
  return { items, oidc, resource: resolveResourceScopes(directory, resource, options) };
}

/** The name an API goes by in scopes and messages: its identifier URI, else its client id. */
export function apiName(api: Application): string {
  return api.identifierUri ?? api.clientId;
}

/** `api://docs/Docs.Read`: a scope value qualified with its API, as clients ask for it. */
export function qualifiedScope(api: Application, value: string): string {
  return `${apiName(api)}/${value}`;
}

function listOrNone(values: readonly string[]): string {
  return values.length === 0 ? 'no delegated scopes' : values.join(', ');
}


/**
 * The client credentials grant (RFC 6749 §4.4) as Entra shapes it: a confidential client asks
 * for `<api>/.default` and receives the application permissions (app roles) an administrator
 * assigned to it on that API. Nothing else can be asked for: application permissions are granted,
 * not requested one by one.
 *
 * Unlike Entra, Baton refuses when no permission is assigned instead of issuing a token with no
 * `roles`: an empty app-only token authorises nothing and only moves the failure to the API,
 * where the developer sees a 403 with no hint about the missing assignment.
 */
import { OAuthError, Entra, errors } from './errors.ts';
import type { TenantDirectory } from './directory.ts';
import { apiName, DEFAULT_SCOPE, parseScope, resolveResourceScopes, splitScopes } from './scopes.ts';
import type { Application } from './types.ts';

export interface ClientCredentialsInput {
  directory: TenantDirectory;
  /** The authenticated client. */
  client: Application;
  /** The raw `scope` parameter. */
  scope: string | undefined;
  /** Epoch seconds; part of every rule's signature (DESIGN habit 3) though no check here needs it yet. */
  now: number;
}

export interface ClientCredentialsGrant {
  /** The API the token is for. */
  api: Application;
  /** Application permissions to put in `roles`: assigned, still defined, allowed for applications. Never empty. */
  roles: string[];
  /** The scope to echo in the token response (`api://docs/.default`). */
  scope: string;
}

/**
 * Decides a client credentials request. Throws `OAuthError`:
 * - public client: `unauthorized_client` (AADSTS700025);
 * - no `scope`: `invalid_request` (AADSTS900144);
 * - anything but exactly one `<api>/.default`: `invalid_scope` (AADSTS70011);
 * - no application permission assigned on that API: `invalid_scope` (AADSTS501051).
 *
 * @example
 * const { api, roles } = decideClientCredentials({ directory, client: indexer, scope: 'api://docs/.default', now });
 * const claims = buildAppOnlyClaims({ issuer, tenant: directory.tenant, client: indexer, api, roles, now });
 */
export function decideClientCredentials(input: ClientCredentialsInput): ClientCredentialsGrant {
  const { directory, client } = input;
  if (client.public) {
    throw errors.unauthorizedClient(`The client '${client.clientId}' is a public client: the client credentials grant needs a confidential client that authenticates with a secret or a private_key_jwt assertion.`);
  }
  if (input.scope === undefined || input.scope === '') {
    throw errors.invalidRequest("The request must contain a 'scope' parameter: for client credentials, the API's '.default' scope, e.g. 'api://docs/.default'.");
  }
  const items = parseScope(input.scope);
  const { oidc, resource } = splitScopes(items);
  if (oidc.length > 0) {
    throw onlyDefault(`OpenID Connect scopes (${oidc.join(', ')}) have no meaning without a user`);
  }
  const resolved = resolveResourceScopes(directory, resource);
  if (resolved === undefined) throw onlyDefault('the request names no API');
  const { api } = resolved;
  if (!resolved.isDefault) {
    throw onlyDefault(`'${resolved.scopes.map((s) => `${apiName(api)}/${s}`).join(' ')}' names delegated scopes, which need a user`, api);
  }

  const roles = directory.applicationRoles(client.clientId, api.clientId).filter((value) => {
    const role = directory.appRole(api.clientId, value);
    return role !== undefined && role.allowedMemberTypes.includes('Application');
  });
  if (roles.length === 0) {
    const offered = api.appRoles.filter((r) => r.allowedMemberTypes.includes('Application')).map((r) => r.value);
    throw new OAuthError('invalid_scope', {
      description:
        `The application '${client.clientId}' has no application permission assigned on API '${apiName(api)}': ` +
        (offered.length === 0
          ? 'the API defines no app role for applications, so it cannot be called with an app-only token.'
          : `an administrator must assign it one of the API's app roles (${offered.join(', ')}).`),
      entraCodes: [Entra.noRoleAssigned],
    });
  }
  return { api, roles, scope: `${apiName(api)}/${DEFAULT_SCOPE}` };
}

function onlyDefault(reason: string, api?: Application): OAuthError {
  const example = api === undefined ? 'api://docs/.default' : `${apiName(api)}/${DEFAULT_SCOPE}`;
  return errors.invalidScope(`The client credentials grant only accepts the '.default' scope of one API (e.g. '${example}'): ${reason}. The token carries the application permissions an administrator assigned.`);
}

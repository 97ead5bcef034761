/**
 * Grants are plug-ins (STYLE: oidc-provider's grant modules): each declares its `grantType`, the
 * parameters it reads (everything else is stripped before the handler sees it) and whether it
 * needs a confidential client. The token endpoint knows nothing of any particular grant: it asks
 * the server's {@link GrantRegistry}.
 */
import type { Grant, GrantLookup } from '../context.ts';

// What a grant is (`Grant`, the `TokenRequest` it handles, the `TokenResponse` it returns) is declared
// in context.ts beside `ServerContext`, which holds the server's grants: the two refer to each other.
export type { Grant, TokenRequest, TokenResponse } from '../context.ts';

/**
 * The grants one token service answers, kept per server instance (as node-oidc-provider keeps
 * `registerGrantType` per provider): no module-level state, so two servers in one process may
 * offer different grants. Built from `startServer({ grants })` — the built-in grants plus the ones
 * given — and read by the token endpoint and discovery.
 *
 * @example
 * // A third party's grant, next to the built-in ones:
 * await startServer({ dataDir, config, grants: [deviceCodeGrant] });
 */
export class GrantRegistry implements GrantLookup {
  readonly #grants = new Map<string, Grant>();

  constructor(grants: Iterable<Grant> = []) {
    for (const grant of grants) this.register(grant);
  }

  /** Adds a grant; a second grant for the same `grant_type` is a programming error. */
  register(grant: Grant): this {
    if (this.#grants.has(grant.grantType)) throw new TypeError(`grant type ${grant.grantType} is already registered`);
    this.#grants.set(grant.grantType, grant);
    return this;
  }

  /** The grant for a `grant_type` parameter, if this server offers it. */
  get(grantType: string): Grant | undefined {
    return this.#grants.get(grantType);
  }

  /** The grant types offered, in registration order (discovery's `grant_types_supported`). */
  types(): string[] {
    return [...this.#grants.keys()];
  }
}

/** Client authentication parameters, read by client-auth.ts, never passed to a grant. */
export const CLIENT_AUTH_PARAMETERS = new Set(['client_id', 'client_secret', 'client_assertion', 'client_assertion_type']);

/** MSAL telemetry and correlation parameters: accepted and ignored. */
export function isIgnoredParameter(name: string): boolean {
  return name.startsWith('x-client-') || name === 'x-ms-lib-capability' || name === 'client-request-id' || name === 'x-app-name' || name === 'x-app-ver';
}

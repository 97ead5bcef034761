/**
 * What every endpoint needs, gathered once at start. Endpoints read the tenant directory from
 * memory (DESIGN principle 4: no store round-trip where a cache with correct invalidation will do);
 * the cache drops a tenant's copy when the store reports a change, from this instance or another.
 */
import { buildDirectory, type Application, type DpopConfirmation, type DpopNonces, type TenantDirectory } from '@baton/core';
import type { KeyObject } from 'node:crypto';
import type { Logger } from 'pino';
import type { Store } from './store/types.ts';
import type { Keyring } from './keys/keyring.ts';
import type { Kek } from './crypto/kek.ts';
import type { TokenEndpointLimits } from './limits.ts';
import type { MetadataDocumentOptions } from './registration/metadata-document.ts';
import type { DynamicRegistrationOptions } from './registration/dynamic.ts';
import type { FormParams } from './http/form.ts';
import type { ServerMetrics } from './observe/metrics.ts';

export interface ServerContext {
  readonly store: Store;
  readonly keyring: Keyring;
  readonly kek: Kek;
  /** HMAC key for client secrets (a KeyObject: imported once, not on every HMAC). */
  readonly pepper: KeyObject;
  /** HMAC key for pairwise `sub` values. */
  readonly pairwiseKey: KeyObject;
  /** Server-provided DPoP nonces (RFC 9449 §8), keyed from the KEK so every instance accepts every other's (dpop.ts). */
  readonly dpopNonces: DpopNonces;
  readonly log: Logger;
  readonly directories: DirectoryCache;
  /** The grants this server's token endpoint answers (built-in ones plus `startServer({ grants })`: grants/registry.ts). */
  readonly grants: GrantLookup;
  /** Epoch seconds; injected so tests can move time. */
  now(): number;
  /** `https://localhost:8443`; set once the server listens. */
  baseUrl: string;
  /** Token endpoint abuse limits (config `limits.tokenEndpoint`; limits.ts's defaults when absent). */
  readonly tokenEndpointLimits?: TokenEndpointLimits | undefined;
  /** Client ID Metadata Documents (config `registration.metadataDocuments`; off when absent). */
  readonly metadataDocuments?: MetadataDocumentOptions | undefined;
  /** RFC 7591 Dynamic Client Registration (config `registration.dynamic`; off when absent). */
  readonly dynamicRegistration?: DynamicRegistrationOptions | undefined;
  /** Prometheus metrics (observe/metrics.ts) when `startServer({ metrics })` asked for them. */
  readonly metrics?: ServerMetrics | undefined;
}

/** The server's grants as endpoints read them (grants/registry.ts's `GrantRegistry` is the one kept). */
export interface GrantLookup {
  /** The grant for a `grant_type` parameter, if this server offers it. */
  get(grantType: string): Grant | undefined;
  /** The grant types offered, in registration order (discovery's `grant_types_supported`). */
  types(): string[];
}

/**
 * A grant type at the token endpoint: a plug-in (STYLE: oidc-provider's grant modules) that declares
 * its `grant_type`, the parameters it reads (everything else is stripped before the handler sees it)
 * and whether it needs a confidential client. Declared here, with `ServerContext`, because the two
 * refer to each other (a grant's request carries the context; the context holds the grants).
 */
export interface Grant {
  grantType: string;
  /** Parameters this grant reads, besides client authentication parameters. */
  parameters: ReadonlySet<string>;
  /** Public clients are refused before the handler runs (`unauthorized_client`). */
  confidentialOnly: boolean;
  handler(request: TokenRequest): Promise<TokenResponse>;
}

export interface TokenRequest {
  ctx: ServerContext;
  directory: TenantDirectory;
  client: AuthenticatedClient;
  /** Only the parameters the grant declared. */
  params: FormParams;
  /** Remote address (for conditional access), W3C traceparent (for audit). */
  ip: string;
  traceparent: string | undefined;
  correlationId: string;
  /**
   * The request's DPoP proof (RFC 9449), checked by the token endpoint (dpop.ts): the key the
   * tokens issued must be bound to (`cnf.jkt`, `token_type: DPoP`). Undefined: no proof.
   */
  dpop?: DpopConfirmation | undefined;
}

/** The JSON body of a successful token response (RFC 6749 §5.1 plus Entra's and RFC 8693's members). */
export type TokenResponse = Record<string, string | number>;

export type ClientAuthMethod = 'client_secret_basic' | 'client_secret_post' | 'private_key_jwt' | 'none';

/** A client that proved who it is at the token endpoint (client-auth.ts), or a public one that named itself. */
export interface AuthenticatedClient {
  app: Application;
  method: ClientAuthMethod;
}

export const issuerOf = (ctx: Pick<ServerContext, 'baseUrl'>, tenantId: string) => `${ctx.baseUrl}/${tenantId}/v2.0`;
export const tokenEndpointOf = (ctx: Pick<ServerContext, 'baseUrl'>, tenantId: string) => `${ctx.baseUrl}/${tenantId}/oauth2/v2.0/token`;

/** Per-tenant directories, built on first use and rebuilt after an invalidation. */
export class DirectoryCache {
  readonly #store: Store;
  readonly #entries = new Map<string, Promise<TenantDirectory | undefined>>();
  #generation = 0;
  readonly #unsubscribe: () => void;

  readonly #warn: (message: string) => void;

  constructor(store: Store, warn: (message: string) => void = () => {}) {
    this.#store = store;
    this.#warn = warn;
    this.#unsubscribe = store.onInvalidate((change) => {
      if (change.entity === 'signingKey' || change.entity === 'user') return;
      this.#generation++;
      if (change.tenantId === '*') this.#entries.clear();
      else this.#entries.delete(change.tenantId);
    });
  }

  /** The tenant's directory, or undefined for an unknown tenant. */
  get(tenantId: string): Promise<TenantDirectory | undefined> {
    let entry = this.#entries.get(tenantId);
    if (entry === undefined) {
      const generation = this.#generation;
      entry = this.#load(tenantId);
      this.#entries.set(tenantId, entry);
      // A change that lands while we load must not leave the stale copy cached.
      entry.then(
        () => { if (generation !== this.#generation && this.#entries.get(tenantId) === entry) this.#entries.delete(tenantId); },
        () => { if (this.#entries.get(tenantId) === entry) this.#entries.delete(tenantId); },
      );
    }
    return entry;
  }

  async #load(tenantId: string): Promise<TenantDirectory | undefined> {
    const tenant = await this.#store.getTenant(tenantId);
    if (tenant === undefined) return undefined;
    const [applications, tenantConsents, policies] = await Promise.all([
      this.#store.listApplications(tenantId),
      this.#store.listConsents({ tenantId, principal: 'all' }),
      this.#store.listPolicies(tenantId),
    ]);
    const roleAssignments = (
      await Promise.all(applications.map((app) => this.#store.listRoleAssignments(tenantId, 'application', app.clientId)))
    ).flat();
    const directory = buildDirectory({ tenant, applications, tenantConsents, roleAssignments, policies });
    // Records the directory had to skip (a consent for a deleted API, a bad CIDR) are an operator's problem.
    for (const warning of directory.warnings) this.#warn(`tenant ${tenantId}: ${warning}`);
    return directory;
  }

  close(): void {
    this.#unsubscribe();
    this.#entries.clear();
  }
}

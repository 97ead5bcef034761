/**
 * The domain of the token service, as plain data. Every store engine persists exactly these shapes;
 * every token rule reads them. Times are epoch seconds unless the name says otherwise.
 */
import type { JsonWebKey } from 'node:crypto';


export type SigningAlg = 'ES256' | 'RS256' | 'PS256';
export const SIGNING_ALGS: readonly SigningAlg[] = ['ES256', 'RS256', 'PS256'];

export interface Tenant {
  /** The path segment: `/{id}/oauth2/v2.0/token`. */
  id: string;
  /** The `tid` claim: a stable GUID derived from `id` unless configured. */
  tid: string;
  name: string;
  /** `delegation.maxDepth`: how many APIs may stand in one `act` chain. */
  maxDelegationDepth: number;
  /**
   * `dpop.nonce: 'required'`: every DPoP proof at the token endpoint must carry a fresh server nonce
   * (RFC 9449 §8; `use_dpop_nonce` with the `DPoP-Nonce` header otherwise). Absent: not required.
   */
  dpopNonceRequired?: boolean | undefined;
  /**
   * `tokens.caeAccessTokenLifetimeSeconds`: delegated access tokens for a client that declared the
   * `cp1` capability (it handles CAE claims challenges) live this long instead of the API's lifetime
   * when that is shorter. Absent: the same lifetime for every client.
   */
  caeAccessTokenLifetimeSeconds?: number | undefined;
}

/** An API's DPoP policy (RFC 9449), `applications[].dpop` in the configuration. */
export interface DpopPolicy {
  /** Tokens addressed to this API must be DPoP-bound: no grant issues it an unbound one, and it exchanges only bound ones. */
  incoming: boolean;
  /** This API's own exchanges must carry a DPoP proof, so the tokens it gets for downstream APIs are bound to its key. */
  exchanged: boolean;
  /** RFC 7638 thumbprints of this API's own DPoP keys; when given, its exchange proofs must be made with one of them. */
  keys: string[];
}

export interface User {
  tenantId: string;
  /** The `oid` claim: stable GUID. */
  oid: string;
  /** Lower-cased sign-in name (`alice@contoso.test`). */
  username: string;
  displayName: string;
  /** `scrypt$N$r$p$salt$hash` (base64url parts); never the password. */
  passwordHash: string;
  /** Base32 TOTP secret (RFC 6238); present = MFA enrolled. Stored encrypted by the server. */
  totpSecret?: string | undefined;
  enabled: boolean;
  /** Tokens and sessions issued before this instant are refused (Entra's revokeSignInSessions). */
  revokedBefore?: number | undefined;
  email?: string | undefined;
  /** Directory roles such as `admin` (may grant tenant-wide consent). */
  directoryRoles?: string[] | undefined;
}

export interface ScopeDefinition {
  /** Stable GUID (Entra's permission id). */
  id: string;
  value: string;
  description: string;
  adminConsentRequired: boolean;
}

export type MemberType = 'User' | 'Application';

export interface AppRoleDefinition {
  id: string;
  value: string;
  description: string;
  allowedMemberTypes: MemberType[];
}

export interface ClientSecretRecord {
  /** `hmac-sha256$<base64url>` keyed with the server pepper; never the secret. */
  hash: string;
  /** First three characters, as Entra shows (`tas…`), to tell secrets apart. */
  hint: string;
  createdAt: number;
  expiresAt?: number | undefined;
}

export interface RequiredAccess {
  /** The API's client id (resolved from `identifierUri` at load). */
  resource: string;
  scopes?: string[] | undefined;
  roles?: string[] | undefined;
}

export interface Application {
  tenantId: string;
  clientId: string;
  /** Service principal object id: `sub`/`oid` of app-only tokens. Stable GUID. */
  servicePrincipalId: string;
  name: string;
  /** Public clients have no secret and must use PKCE; they cannot use OBO or client credentials. */
  public: boolean;
  redirectUris: string[];
  secrets: ClientSecretRecord[];
  /** Public keys (JWK) accepted for `private_key_jwt` (RFC 7523). */
  jwks: JsonWebKey[];
  /** Makes the application an API. */
  identifierUri?: string | undefined;
  scopes: ScopeDefinition[];
  appRoles: AppRoleDefinition[];
  knownClientApplications: string[];
  requiredAccess: RequiredAccess[];
  /** Lifetime of access tokens issued for this API. */
  accessTokenLifetimeSeconds: number;
  /** Algorithm of access tokens issued for this API. */
  signingAlg: SigningAlg;
  /**
   * This API's own `delegation.maxDepth`: how many APIs may stand in the `act` chain of a token
   * addressed to it. The stricter of this and the tenant's limit applies; absent: the tenant's.
   */
  maxDelegationDepth?: number | undefined;
  /** This API's DPoP policy; absent: DPoP allowed, never required. */
  dpop?: DpopPolicy | undefined;
  /**
   * This API's `delegation.mayAct` (RFC 8693 §4.4 `may_act`): the middle tiers that may exchange a
   * token addressed to this API, each optionally only for some downstream APIs. Absent: only the
   * API itself exchanges its tokens (the `assertion-audience` rule), for any downstream API its
   * consents reach. Present: the list is exclusive (the API itself too must be named to exchange),
   * and the tokens addressed to this API carry a `may_act` claim naming the middle tiers.
   */
  mayAct?: MayActEntry[] | undefined;
  /**
   * What tokens for this API carry as `aud`: absent, its client id (Baton's default: one value to
   * check); `'identifierUri'`, its identifier URI — an MCP server's canonical URI, the RFC 8707
   * `resource` its clients send, which the MCP authorization specification requires as `aud`.
   */
  tokenAudience?: 'identifierUri' | undefined;
  /**
   * A client that registered itself rather than being configured: `metadata-document` (its client id
   * is the https URL of its Client ID Metadata Document, fetched by the token service) or `dynamic`
   * (RFC 7591). Absent for configured applications. The consent page names such clients as not pre-registered.
   */
  registration?: ClientRegistration | undefined;
}

export interface ClientRegistration {
  /** `metadata-document`: a Client ID Metadata Document; `dynamic`: RFC 7591 Dynamic Client Registration. */
  kind: 'metadata-document' | 'dynamic';
  /** Epoch seconds of the fetch (or registration). */
  registeredAt: number;
  /**
   * metadata-document: when the cached document is stale (fetched again at the next authorization
   * request). dynamic: when the registration stops working if no code was redeemed by then (cleared at first use).
   */
  expiresAt?: number | undefined;
  /** dynamic: the keyed hash of the RFC 7592 registration access token (never the token). */
  accessTokenHash?: string | undefined;
  /** dynamic: deprovisioned (RFC 7592 DELETE) at this instant; the client id no longer works. */
  deletedAt?: number | undefined;
  /** dynamic: the registered `grant_types` and `scope`, and the address it registered from. */
  grantTypes?: string[] | undefined;
  scope?: string | undefined;
  ip?: string | undefined;
  /** `logo_uri` and `client_uri` from the metadata (https only). */
  logoUri?: string | undefined;
  clientUri?: string | undefined;
}

/** One middle tier an API's registration allows to exchange tokens addressed to it (`delegation.mayAct`). */
export interface MayActEntry {
  /** The middle tier's client id. */
  clientId: string;
  /** The downstream APIs (client ids) it may exchange for; absent: any. */
  downstream?: string[] | undefined;
}

/** `principal: 'all'` is admin consent for every user of the tenant; otherwise a user's `oid`. */
export interface ConsentGrant {
  tenantId: string;
  clientId: string;
  /** The API's client id. */
  resource: string;
  scopes: string[];
  principal: 'all' | string;
  createdAt: number;
}

/** An app role given to an application (application permission) or a user. */
export interface AppRoleAssignment {
  tenantId: string;
  principalType: 'application' | 'user';
  /** Client id for applications, `oid` for users. */
  principalId: string;
  /** The API's client id. */
  resource: string;
  roles: string[];
}

export interface PolicyRequirements {
  mfa?: boolean | undefined;
  maxAuthAgeSeconds?: number | undefined;
  block?: boolean | undefined;
  /** CIDR ranges the original sign-in must come from. */
  ipRanges?: string[] | undefined;
}

/** A conditional-access policy. Empty selectors match everything. */
export interface Policy {
  tenantId: string;
  name: string;
  /** API client ids. */
  resources: string[];
  scopes?: string[] | undefined;
  /** Client ids of the application asking. */
  clients?: string[] | undefined;
  /** User `oid`s. */
  users?: string[] | undefined;
  require: PolicyRequirements;
}

export type KeyStatus = 'next' | 'current' | 'retired';

export interface SigningKeyRecord {
  tenantId: string;
  kid: string;
  alg: SigningAlg;
  status: KeyStatus;
  /** Public JWK, as published. */
  publicJwk: JsonWebKey;
  /** PKCS#8 DER, AES-256-GCM under the key-encryption key: `v1.<iv>.<tag>.<ciphertext>` (base64url). */
  encryptedPrivateKey: string;
  createdAt: number;
  activatedAt?: number | undefined;
  retiredAt?: number | undefined;
  /** After this instant the key leaves the JWKS (retired + grace). */
  removeAfter?: number | undefined;
}

/** Sign-in facts carried unchanged along a chain (DESIGN rule 7). */
export interface AuthenticationContext {
  /** `amr` values (RFC 8176): `pwd`, `mfa`, `otp`. */
  amr: string[];
  acr: string;
  /** Epoch seconds of the original sign-in. */
  authTime: number;
  /** The client IP at sign-in. */
  ip?: string | undefined;
  /** Session id (`sid`). */
  sid?: string | undefined;
}

/** RFC 8693 §4.1 actor claim: newest first. */
export interface ActorClaim {
  sub: string;
  /** The actor token's issuer, when the actor was named by an RFC 8693 `actor_token`. */
  iss?: string;
  client_id?: string;
  act?: ActorClaim;
}

/** RFC 8693 §4.4 `may_act`: a party eligible to act for the token's subject (Baton names middle tiers by client id). */
export interface MayActClaim {
  sub: string;
  client_id: string;
}

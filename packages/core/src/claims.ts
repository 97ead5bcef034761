/**
 * Access token claims (RFC 9068 §2.2 plus Entra v2 claims), by kind — DESIGN "Tokens by kind".
 *
 * Baton's choices, applied everywhere:
 * - `aud` is the API's client id, so an API validates one value — unless the API is registered with
 *   `tokenAudience: 'identifierUri'` (an MCP server: `aud` is then its canonical URI, RFC 8707), see {@link audienceOf}.
 * - `azp` (Entra) and `client_id` (RFC 9068) both name the application that asked.
 * - A delegated `sub` is pairwise per (user, API): two APIs cannot correlate a user by `sub`
 *   (they share `oid`, which is the directory's stable id, as in Entra).
 * - App-only tokens say `idtyp: 'app'`; that, and the absence of `scp`, is how an API tells them apart.
 *
 * The builders are pure except for the random `jti`, which `newId` replaces in tests.
 */
import { createHmac, KeyObject, randomUUID, type BinaryLike } from 'node:crypto';
import type { ActorClaim, Application, MayActClaim, Tenant } from './types.ts';
import { WeakMemo } from './memo.ts';

/** The server secret keying pairwise subjects. Rotating it changes every delegated `sub`. */
export type PairwiseSecret = BinaryLike | KeyObject;

/** Returns a fresh UUID for `jti`. Defaults to `crypto.randomUUID`. */
export type IdGenerator = () => string;

/** Claims every Baton access token carries. A `type` (not an interface) so it is a `Record<string, unknown>`. */
export type AccessTokenClaims = {
  iss: string;
  /** The API's client id, or its identifier URI ({@link audienceOf}). */
  aud: string;
  sub: string;
  oid: string;
  tid: string;
  azp: string;
  client_id: string;
  iat: number;
  nbf: number;
  exp: number;
  jti: string;
  uti: string;
  ver: '2.0';
  roles?: string[];
  /** RFC 7800 / RFC 9449 §6: the DPoP key the token is bound to (its RFC 7638 thumbprint). */
  cnf?: { jkt: string };
};

export type AppOnlyAccessClaims = AccessTokenClaims & {
  idtyp: 'app';
  roles: string[];
};

export type DelegatedAccessClaims = AccessTokenClaims & {
  /** Granted delegated scopes, space separated (never empty). */
  scp: string;
  amr: string[];
  acr?: string;
  auth_time?: number;
  sid?: string;
  /** RFC 8693 §4.1: the current actor first, earlier actors nested. */
  act?: ActorClaim;
  /** RFC 8693 §4.4: the middle tiers the API's `delegation.mayAct` allows to exchange this token (an array when several). */
  may_act?: MayActClaim | MayActClaim[];
  preferred_username?: string;
  name?: string;
  /** The client capabilities the token's client declared (`cp1`: it handles CAE claims challenges). */
  xms_cc?: string[];
};

/**
 * The pairwise subject of a user at an API: base64url(HMAC-SHA-256(secret, `tid|oid|apiClientId`)).
 * Stable for one (tenant, user, API), unrelated across APIs.
 *
 * @example
 * pairwiseSubject(secret, tenant.tid, user.oid, 'docs-api'); // 43 base64url characters
 */
export function pairwiseSubject(secret: PairwiseSecret, tid: string, oid: string, apiClientId: string): string {
  // `|` cannot occur in a GUID or a client id we issue, so the input is unambiguous.
  const input = `${tid}|${oid}|${apiClientId}`;
  const hmac = () => createHmac('sha256', secret).update(input).digest('base64url');
  return secret instanceof KeyObject ? pairwiseMemo.get(secret, input, hmac) : hmac();
}

/**
 * Pairwise subjects already computed, per key: the same users come back all day, and each token
 * issued for one would otherwise cost an HMAC (~5 µs under load). A pure function's memo, keyed by
 * public inputs; bounded.
 */
const pairwiseMemo = new WeakMemo<KeyObject, string>(10_000);

/**
 * Entra's `uti` is a compact token identifier. Baton derives it from `jti` so the two always
 * name the same token: the 16 bytes of a UUID in base64url (22 characters).
 */
export function utiFromJti(jti: string): string {
  const hex = jti.replaceAll('-', '');
  if (/^[0-9a-f]{32}$/i.test(hex)) return Buffer.from(hex, 'hex').toString('base64url');
  return Buffer.from(jti, 'utf8').toString('base64url');
}

/**
 * `iat`/`nbf`/`exp` for a token issued `now` for `api`: the API's access token lifetime (or
 * `lifetimeSeconds`, a CAE-capable client's), and never past `notAfter` (the end of the sign-in
 * session behind a delegated token).
 * Throws `TypeError` if `notAfter` is not after `now`: the caller must refuse before building.
 */
export function tokenTimes(api: Application, now: number, notAfter?: number, lifetimeSeconds?: number): { iat: number; nbf: number; exp: number } {
  const lifetime = lifetimeSeconds ?? api.accessTokenLifetimeSeconds;
  if (!Number.isSafeInteger(lifetime) || lifetime <= 0) throw new TypeError(`API ${api.clientId} has an invalid accessTokenLifetimeSeconds`);
  if (!Number.isSafeInteger(now)) throw new TypeError('now must be integer epoch seconds');
  if (notAfter !== undefined && !(notAfter > now)) throw new TypeError('the session ends before the token would start; refuse the request instead');
  return { iat: now, nbf: now, exp: notAfter === undefined ? now + lifetime : Math.min(now + lifetime, notAfter) };
}

export interface AppOnlyClaimsInput {
  /** `{base}/{tenant}/v2.0`. */
  issuer: string;
  tenant: Tenant;
  /** The application the token is issued to. */
  client: Application;
  /** The API the token is for. */
  api: Application;
  /** Application permissions granted (already filtered, see `decideClientCredentials`). Never empty. */
  roles: readonly string[];
  now: number;
  newId?: IdGenerator | undefined;
  /** The DPoP key the token is bound to (`cnf.jkt`), when the request carried a proof. */
  jkt?: string | undefined;
}

/**
 * Claims of an app-only (client credentials) access token.
 *
 * @example
 * const claims = buildAppOnlyClaims({ issuer, tenant, client: indexer, api: docsApi, roles: ['Docs.ReadAll'], now });
 * signer.sign(claims, 'at+jwt');
 */
export function buildAppOnlyClaims(input: AppOnlyClaimsInput): AppOnlyAccessClaims {
  const { client } = input;
  if (input.roles.length === 0) throw new TypeError('an app-only token needs at least one role; refuse the request instead');
  const claims: AppOnlyAccessClaims = {
    ...commonClaims(input, client.clientId),
    sub: client.servicePrincipalId,
    oid: client.servicePrincipalId,
    idtyp: 'app',
    roles: [...input.roles],
  };
  if (input.jkt !== undefined) claims.cnf = { jkt: input.jkt };
  return claims;
}

/**
 * The `aud` of access tokens for `api`: its client id, or its identifier URI when the API is
 * registered with `tokenAudience: 'identifierUri'` (MCP servers: the MCP authorization
 * specification wants `aud` to be the server's canonical URI, the `resource` its clients send).
 *
 * @example
 * audienceOf(docsApi); // 'docs-api'
 * audienceOf(docsMcp); // 'https://mcp.contoso.test/mcp'
 */
export function audienceOf(api: Application): string {
  return api.tokenAudience === 'identifierUri' && api.identifierUri !== undefined ? api.identifierUri : api.clientId;
}

/**
 * What every access token carries, app-only or delegated: issuer, audience (the API), tenant, the
 * client it was issued to, its times (never past `notAfter`), and its ids.
 */
function commonClaims(
  input: { issuer: string; tenant: Tenant; api: Application; now: number; newId?: IdGenerator | undefined },
  clientId: string,
  notAfter?: number,
  lifetimeSeconds?: number,
): { iss: string; aud: string; tid: string; azp: string; client_id: string; iat: number; nbf: number; exp: number; jti: string; uti: string; ver: '2.0' } {
  const jti = (input.newId ?? randomUUID)();
  return {
    iss: input.issuer,
    aud: audienceOf(input.api),
    tid: input.tenant.tid,
    azp: clientId,
    client_id: clientId,
    ...tokenTimes(input.api, input.now, notAfter, lifetimeSeconds),
    jti,
    uti: utiFromJti(jti),
    ver: '2.0',
  };
}

/** The sign-in facts a delegated token carries unchanged along a chain (DESIGN rule 7). */
export interface SignInFacts {
  amr: readonly string[];
  acr?: string | undefined;
  /** Epoch seconds of the original sign-in. */
  authTime?: number | undefined;
  sid?: string | undefined;
}

export interface DelegatedClaimsInput {
  issuer: string;
  tenant: Tenant;
  /** Client id of the application that asked (`azp`, `client_id`). */
  clientId: string;
  api: Application;
  user: { oid: string };
  /** Granted scope values on `api` (`Docs.Read`). Never empty. */
  scopes: readonly string[];
  /** The user's app roles on `api`, if any. */
  roles?: readonly string[] | undefined;
  auth: SignInFacts;
  act?: ActorClaim | undefined;
  /** The token never outlives the sign-in session: `exp` is at most this. */
  sessionExpiresAt?: number | undefined;
  /** Profile claims, when the client was granted them (`profile` scope at sign-in). */
  profile?: { preferred_username?: string | undefined; name?: string | undefined } | undefined;
  pairwiseSecret: PairwiseSecret;
  now: number;
  newId?: IdGenerator | undefined;
  /** The DPoP key the token is bound to (`cnf.jkt`), when the request carried a proof. */
  jkt?: string | undefined;
  /** Client capabilities the request declared ({@link clientCapabilities}); `cp1` is carried as `xms_cc`. */
  clientCapabilities?: readonly string[] | undefined;
}

/** The client capability of a client that handles CAE claims challenges (Entra's `cp1`). */
export const CAE_CAPABILITY = 'cp1';

/**
 * The lifetime of a token for a client that declared `cp1`: the tenant's
 * `caeAccessTokenLifetimeSeconds` when it is set and longer than the API's (such a client answers a
 * revocation's claims challenge, so its token may live longer), else the API's.
 */
export function caeLifetime(tenant: Tenant, api: Application, capabilities: readonly string[] | undefined): number | undefined {
  if (capabilities === undefined || !capabilities.includes(CAE_CAPABILITY)) return undefined;
  const longer = tenant.caeAccessTokenLifetimeSeconds;
  return longer !== undefined && longer > api.accessTokenLifetimeSeconds ? longer : undefined;
}

/**
 * Claims of a delegated access token (after a sign-in, a refresh or an exchange).
 *
 * @example
 * const claims = buildDelegatedClaims({ issuer, tenant, clientId: 'tasks-web', api: tasksApi, user,
 *   scopes: ['Tasks.ReadWrite'], auth: { amr: ['pwd'], acr: '1', authTime, sid }, pairwiseSecret, now });
 */
export function buildDelegatedClaims(input: DelegatedClaimsInput): DelegatedAccessClaims {
  const { api, auth } = input;
  if (input.scopes.length === 0) throw new TypeError('a delegated token needs at least one scope; refuse the request instead');
  const claims: DelegatedAccessClaims = {
    ...commonClaims(input, input.clientId, input.sessionExpiresAt, caeLifetime(input.tenant, api, input.clientCapabilities)),
    sub: pairwiseSubject(input.pairwiseSecret, input.tenant.tid, input.user.oid, api.clientId),
    oid: input.user.oid,
    scp: input.scopes.join(' '),
    amr: [...auth.amr],
  };
  if (input.roles !== undefined && input.roles.length > 0) claims.roles = [...input.roles];
  if (auth.acr !== undefined) claims.acr = auth.acr;
  if (auth.authTime !== undefined) claims.auth_time = auth.authTime;
  if (auth.sid !== undefined) claims.sid = auth.sid;
  if (input.act !== undefined) claims.act = input.act;
  const mayAct = mayActClaimFor(api);
  if (mayAct !== undefined) claims.may_act = mayAct;
  if (input.profile?.preferred_username !== undefined) claims.preferred_username = input.profile.preferred_username;
  if (input.profile?.name !== undefined) claims.name = input.profile.name;
  if (input.jkt !== undefined) claims.cnf = { jkt: input.jkt };
  if (input.clientCapabilities?.includes(CAE_CAPABILITY)) claims.xms_cc = [CAE_CAPABILITY];
  return claims;
}

/**
 * The `may_act` claim a token addressed to `api` carries (RFC 8693 §4.4): the middle tiers its
 * `delegation.mayAct` names, each as `{ sub, client_id }` (its client id, as `act` names actors) —
 * one object when it names one, an array when several. Undefined when the API names none.
 */
export function mayActClaimFor(api: Application): MayActClaim | MayActClaim[] | undefined {
  const entries = api.mayAct;
  if (entries === undefined || entries.length === 0) return undefined;
  const parties = entries.map((e) => ({ sub: e.clientId, client_id: e.clientId }));
  return parties.length === 1 ? parties[0] : parties;
}

/** One actor of a token's `act` chain, or one party of its `may_act`, as read from the token. */
export interface ActorEntry {
  sub: string;
  client_id: string | undefined;
  /** The actor's issuer, when the token names it (an actor named by an RFC 8693 `actor_token`). */
  iss?: string;
}

/** Nesting depth beyond which an `act` claim is refused as malformed. */
const MAX_ACTORS = 32;

/**
 * A token's RFC 8693 §4.1 `act` claim as a list, outermost (the most recent actor) first, each with
 * its `sub`, `client_id` and `iss`. `[]` when absent; `null` when malformed (an actor that is not
 * an object with a string `sub`, a non-string `client_id` or `iss`, nesting deeper than 32).
 *
 * @example
 * actorsOf({ sub: 'docs-api', client_id: 'docs-api', act: { sub: 'tasks-api', client_id: 'tasks-api' } });
 * // [{ sub: 'docs-api', client_id: 'docs-api' }, { sub: 'tasks-api', client_id: 'tasks-api' }]
 */
export function actorsOf(act: unknown): ActorEntry[] | null {
  const actors: ActorEntry[] = [];
  for (let node = act; node !== undefined; node = (node as { act?: unknown }).act) {
    const entry = actorEntry(node);
    if (entry === null || actors.length >= MAX_ACTORS) return null;
    actors.push(entry);
  }
  return actors;
}

/**
 * A token's RFC 8693 §4.4 `may_act` claim as a list of parties: RFC 8693 makes it one object naming
 * one party, Baton writes an array of such objects when an API allows several middle tiers. `[]`
 * when absent; `null` when malformed.
 */
export function mayActOf(value: unknown): ActorEntry[] | null {
  if (value === undefined) return [];
  const parties = Array.isArray(value) ? value : [value];
  if (parties.length === 0 || parties.length > MAX_ACTORS) return null;
  const out: ActorEntry[] = [];
  for (const party of parties) {
    const entry = actorEntry(party);
    if (entry === null) return null;
    out.push(entry);
  }
  return out;
}

function actorEntry(node: unknown): ActorEntry | null {
  if (node === null || typeof node !== 'object' || Array.isArray(node)) return null;
  const { sub, client_id: clientId, iss } = node as { sub?: unknown; client_id?: unknown; iss?: unknown };
  if (typeof sub !== 'string' || (clientId !== undefined && typeof clientId !== 'string') || (iss !== undefined && typeof iss !== 'string')) return null;
  const entry: ActorEntry = { sub, client_id: clientId };
  if (iss !== undefined) entry.iss = iss;
  return entry;
}

/**
 * Who is calling: the verified access token's claims, read once into a plain, frozen object.
 */
import { actorsOf, mayActOf, rolesOf, scopesOf, JwtError } from '@baton/core';

/**
 * One API that exchanged the token on the way here (RFC 8693 §4.1 `act`), or one middle tier the
 * token's API allows to exchange it (RFC 8693 §4.4 `may_act`).
 */
export interface Actor {
  sub: string;
  client_id: string | undefined;
  /** The actor's issuer, when the token names it (Baton: an actor named by an RFC 8693 `actor_token`). */
  iss?: string;
}

export interface Principal {
  /**
   * The user's stable id: `oid` (Entra, Baton), or `sub` for issuers without `oid`. For app-only
   * tokens it is the calling application's service principal (Entra puts it in `oid` as well).
   */
  readonly userId: string;
  /** `tid`, when the issuer is multi-tenant (Entra, Baton). */
  readonly tenantId: string | undefined;
  /** `sub`: pairwise per API in Entra and Baton, so not a user id to share with other APIs. */
  readonly subject: string;
  /** The application that asked for the token: `azp` ?? `client_id` (RFC 9068) ?? `appid` (Entra v1). */
  readonly clientId: string | undefined;
  /** Delegated scopes (`scp`, or RFC 9068 `scope`). */
  readonly scopes: readonly string[];
  /** App roles: the user's (delegated) or the application permissions (app-only). */
  readonly roles: readonly string[];
  /** The token carries no user: client credentials. */
  readonly appOnly: boolean;
  /** The APIs that exchanged this token on the way here, most recent first (outermost `act` first). */
  readonly chain: readonly Actor[];
  /**
   * Who may exchange this token (RFC 8693 `may_act`, one object or — Baton, for several — an array):
   * the middle tiers the API's registration allows to act for the user with it. Empty when the
   * token says nothing.
   */
  readonly mayAct: readonly Actor[];
  /** Every claim of the token, frozen. */
  readonly claims: Readonly<Record<string, unknown>>;
  /** The raw access token, for the On-Behalf-Of exchange. Never log it. */
  readonly token: string;
}

/** `act` → chain, outermost first (core's `actorsOf`). A malformed `act` fails the token (fail closed). */
export function chainOf(payload: Record<string, unknown>): Actor[] {
  const chain = actorsOf(payload.act);
  if (chain === null) throw new JwtError('ERR_JWT_CLAIM_INVALID', "the 'act' claim is malformed or nested too deeply", 'act');
  return chain.map((actor) => Object.freeze(actor));
}

/** `may_act` → the parties it names (core's `mayActOf`). A malformed `may_act` fails the token (fail closed). */
export function mayActOfToken(payload: Record<string, unknown>): Actor[] {
  const parties = mayActOf(payload.may_act);
  if (parties === null) throw new JwtError('ERR_JWT_CLAIM_INVALID', "the 'may_act' claim is malformed", 'may_act');
  return parties.map((party) => Object.freeze(party));
}

/**
 * App-only or delegated:
 * - `idtyp` says so when present (Entra optional claim, Baton always for app tokens);
 * - Entra-style `scp` means delegated;
 * - RFC 9068 `scope` means delegated unless `sub` is the client itself (RFC 9068 §2.2: for client
 *   credentials, `sub` identifies the client);
 * - no scopes at all: app-only.
 */
export function isAppOnly(payload: Record<string, unknown>, clientId: string | undefined): boolean {
  if (payload.idtyp === 'app') return true;
  if (payload.idtyp === 'user') return false;
  if (typeof payload.scp === 'string' && payload.scp.trim() !== '') return false;
  if (typeof payload.scope === 'string' && payload.scope.trim() !== '') return clientId !== undefined && payload.sub === clientId;
  return true;
}

function deepFreeze<T>(value: T, depth = 0): T {
  if (depth < 16 && value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    for (const v of Object.values(value as Record<string, unknown>)) deepFreeze(v, depth + 1);
    Object.freeze(value);
  }
  return value;
}

/** Builds the principal from verified claims. The payload is frozen in place. */
export function principalFrom(payload: Record<string, unknown>, token: string): Principal {
  if (typeof payload.sub !== 'string' || payload.sub === '') throw new JwtError('ERR_JWT_CLAIM_MISSING', "the token has no 'sub' claim", 'sub');
  const str = (name: string) => (typeof payload[name] === 'string' && payload[name] !== '' ? (payload[name] as string) : undefined);
  const clientId = str('azp') ?? str('client_id') ?? str('appid');
  const chain = chainOf(payload);
  const mayAct = mayActOfToken(payload);
  return Object.freeze({
    userId: str('oid') ?? payload.sub,
    tenantId: str('tid'),
    subject: payload.sub,
    clientId,
    scopes: Object.freeze(scopesOf(payload)),
    roles: Object.freeze(rolesOf(payload)),
    appOnly: isAppOnly(payload, clientId),
    chain: Object.freeze(chain),
    mayAct: Object.freeze(mayAct),
    claims: deepFreeze(payload),
    token,
  });
}

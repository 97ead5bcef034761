/**
 * `refresh_token` (RFC 6749 §6, RFC 9700 §4.14), as named steps:
 * findToken → boundToClient → boundToKey (DPoP) → resolveScopes → claimsChallenge → userStillAllowed →
 * sessionStillLive → consentStillPresent → conditionalAccess → issue → rotate (consume once) → respond.
 *
 * Every check that can refuse runs on a read of the token BEFORE it is consumed (issue 12): a
 * refresh refused for a missing consent, a policy, a claims challenge or a malformed scope leaves
 * the token usable, so the client's next ordinary refresh works. Only a token that was already
 * consumed — a replay, or the loser of two concurrent redemptions — revokes the family (RFC 9700
 * §4.14.2). The refusals that revoke the family too (user deleted, the user's sessions revoked,
 * the sign-in session ended) are the ones no later refresh could pass anyway.
 *
 * Like Entra's, a Baton refresh token is multi-resource: the `scope` parameter may name another
 * API, and the client gets a token for it if it holds consent for this user. Without `scope`, the
 * original grant is renewed. OIDC scopes never widen past the original grant.
 */
import {
  OAuthError,
  Entra,
  apiName,
  consentedScopes,
  evaluatePolicies,
  isOidcScope,
  parseClaimsRequest,
  clientCapabilitiesOf,
  policyError,
  predatesRevocation,
  qualifiedScope,
  resolveResourceIndicator,
  resolveScopeParameter,
  unmetDemands,
  dpopRequiredBy,
  type Application,
  type DpopConfirmation,
  type OidcScope,
  type TenantDirectory,
  type User,
} from '@baton/core';
import type { ServerContext } from '../context.ts';
import type { Grant, TokenRequest } from './registry.ts';
import { looksLikeRefreshToken, refreshTokenId, type RefreshTokenPayload, type RefreshTokenRecord } from '../tokens/refresh.ts';
import { signInTokenResponse } from '../tokens/response.ts';
import { sessionBySid, type Session } from '../session.ts';

function refused(description: string, entra: number = Entra.refreshTokenRevoked, extra: { suberror?: 'consent_required' | 'bad_token' } = {}): OAuthError {
  return new OAuthError('invalid_grant', { description, entraCodes: [entra], ...extra });
}

async function findToken(ctx: ServerContext, tenantId: string, token: string | undefined): Promise<RefreshTokenRecord> {
  if (token === undefined || token === '') {
    throw new OAuthError('invalid_request', { description: "The request body must contain the 'refresh_token' parameter.", entraCodes: [Entra.malformedRequest] });
  }
  if (!looksLikeRefreshToken(token)) throw refused('The refresh token is malformed.', Entra.refreshTokenRevoked, { suberror: 'bad_token' });
  const now = ctx.now();
  const id = refreshTokenId(token);
  const record = await ctx.store.getEphemeral<RefreshTokenPayload>('refresh', id, now);
  if (record !== undefined && record.tenantId === tenantId) return record;
  if (record !== undefined) throw refused('The refresh token was issued by another tenant.');
  const result = await ctx.store.consumeEphemeral<RefreshTokenPayload>('refresh', id, now);
  if (result.status === 'replayed') await revokeOnReuse(ctx, result.record);
  if (result.status === 'replayed' || result.status === 'revoked') {
    throw refused('The refresh token has already been used or was revoked. For safety every token of this sign-in was revoked: sign in again.', Entra.refreshTokenRevoked, { suberror: 'bad_token' });
  }
  throw refused('The refresh token is invalid or has expired: sign in again.', Entra.refreshTokenExpired, { suberror: 'bad_token' });
}

async function revokeOnReuse(ctx: ServerContext, record: RefreshTokenRecord): Promise<void> {
  if (record.familyId === undefined) return;
  const revoked = await ctx.store.revokeFamily(record.tenantId, record.familyId, ctx.now());
  ctx.log.warn({ client_id: record.payload.clientId, family: record.familyId, revoked }, 'refresh token reuse detected: family revoked');
}

/**
 * RFC 9449 §5: a refresh token bound to a DPoP key (a public client's) is used only with a proof
 * of that key. Not consumed on refusal: a thief without the key must not burn the owner's token.
 */
function boundToKey(record: RefreshTokenRecord, dpop: DpopConfirmation | undefined): void {
  const jkt = record.payload.jkt;
  if (jkt === undefined) return;
  if (dpop === undefined || dpop.jkt !== jkt) {
    throw refused(
      dpop === undefined
        ? 'The refresh token is bound to a DPoP key: send a DPoP proof made with that key.'
        : 'The refresh token is bound to another DPoP key than the one this proof was made with.',
      Entra.dpopKeyMismatch,
    );
  }
}

function boundToClient(record: RefreshTokenRecord, clientId: string): void {
  // Not consumed: a token stolen and presented by another client must not burn the owner's token.
  if (record.payload.clientId !== clientId) throw refused(`The refresh token was issued to another client, not to '${clientId}'.`);
}

async function rotate(ctx: ServerContext, record: RefreshTokenRecord): Promise<void> {
  const result = await ctx.store.consumeEphemeral<RefreshTokenPayload>('refresh', record.id, ctx.now());
  if (result.status === 'ok') return;
  // Two redemptions raced: the loser is a reuse.
  if (result.status === 'replayed') await revokeOnReuse(ctx, record);
  throw refused('The refresh token has already been used or was revoked. For safety every token of this sign-in was revoked: sign in again.', Entra.refreshTokenRevoked, { suberror: 'bad_token' });
}

async function userStillAllowed(ctx: ServerContext, record: RefreshTokenRecord): Promise<User> {
  const user = await ctx.store.getUserById(record.tenantId, record.payload.oid);
  const revoke = async () => record.familyId !== undefined && ctx.store.revokeFamily(record.tenantId, record.familyId, ctx.now());
  if (user === undefined) {
    await revoke();
    throw refused('The user no longer exists in the directory.', Entra.userNotFound);
  }
  if (!user.enabled) throw refused("The user's account is disabled: an administrator must enable it.", Entra.userDisabled);
  const signedInAt = record.payload.auth.authTime ?? record.createdAt;
  if (predatesRevocation(user, signedInAt)) {
    await revoke();
    throw refused("The user's sign-in sessions were revoked: sign in again.", Entra.sessionRevoked);
  }
  return user;
}

async function sessionStillLive(ctx: ServerContext, record: RefreshTokenRecord): Promise<Session | undefined> {
  const sid = record.payload.auth.sid;
  if (sid === undefined) return undefined;
  const session = await sessionBySid(ctx, record.tenantId, sid);
  if (session === undefined) {
    if (record.familyId !== undefined) await ctx.store.revokeFamily(record.tenantId, record.familyId, ctx.now());
    throw refused('The sign-in session behind the refresh token has ended (signed out or expired): sign in again.', Entra.sessionRevoked);
  }
  return session;
}

interface Target {
  api: Application | undefined;
  /** Requested scope values on `api` (empty with isDefault). */
  scopes: string[];
  isDefault: boolean;
  oidc: OidcScope[];
}

function resolveScopes(directory: TenantDirectory, record: RefreshTokenRecord, scope: string | undefined, resource: string | undefined): Target {
  const original = record.payload;
  const originalApi = original.resource === undefined ? undefined : directory.application(original.resource);
  // RFC 8707: `resource` names the API (an MCP client sends its server's canonical URI on every refresh).
  const target = resource === undefined || resource === '' ? undefined : resolveResourceIndicator(directory, resource);
  if (scope === undefined || scope.trim() === '') {
    if (original.resource !== undefined && originalApi === undefined) throw refused('The API of the original grant no longer exists.');
    // The same resource (or none named): the original grant is renewed, `aud` unchanged.
    if (target === undefined || target.clientId === originalApi?.clientId) return { api: originalApi, scopes: original.scopes, isDefault: false, oidc: original.oidcScopes };
    // Another API: every scope the client holds consent for there, as `<api>/.default` would ask.
    return { api: target, scopes: [], isDefault: true, oidc: original.oidcScopes };
  }
  const requested = resolveScopeParameter(directory, scope.trim().split(/\s+/).join(' '), { target });
  // OIDC scopes never widen (RFC 6749 §6); extra ones are dropped rather than refused (MSAL always sends them).
  const oidc = requested.oidc.filter((s) => isOidcScope(s) && original.oidcScopes.includes(s));
  if (requested.resource === undefined) {
    return { api: undefined, scopes: [], isDefault: false, oidc };
  }
  return { api: requested.resource.api, scopes: requested.resource.scopes, isDefault: requested.resource.isDefault, oidc };
}

async function consentStillPresent(ctx: ServerContext, directory: TenantDirectory, clientId: string, user: User, target: Target): Promise<string[]> {
  const api = target.api;
  if (api === undefined) return [];
  const userConsents = await ctx.store.listConsents({ tenantId: directory.tenant.id, clientId, principal: user.oid });
  const held = consentedScopes(directory, clientId, api.clientId, user.oid, userConsents);
  const requested = target.isDefault ? api.scopes.map((s) => s.value) : target.scopes;
  const granted = api.scopes.map((s) => s.value).filter((value) => requested.includes(value) && held.has(value));
  const missing = target.isDefault ? (granted.length === 0 ? requested : []) : requested.filter((value) => !held.has(value));
  if (missing.length > 0 || granted.length === 0) {
    throw new OAuthError('invalid_grant', {
      description: `The user or administrator has not consented to use the application '${clientId}' with ${missing.map((v) => `'${qualifiedScope(api, v)}'`).join(', ') || `API '${apiName(api)}'`}. Send an interactive authorization request for these scopes.`,
      entraCodes: [Entra.consentRequired],
      suberror: 'consent_required',
    });
  }
  return granted;
}

async function handler({ ctx, directory, client, params, ip, dpop }: TokenRequest) {
  const tenantId = directory.tenant.id;
  const now = ctx.now();
  const record = await findToken(ctx, tenantId, params.refresh_token);
  boundToClient(record, client.app.clientId);
  boundToKey(record, dpop);
  // Everything that can refuse runs before `rotate`: a refused refresh must not burn the token.
  const target = resolveScopes(directory, record, params.scope, params.resource);
  dpopRequiredBy(target.api, dpop, 'pass');
  const demands = params.claims === undefined || params.claims === '' ? undefined : parseClaimsRequest(params.claims);
  // A claims challenge passed to a silent request (MSAL: acquireTokenSilent({ claims })) that the sign-in cannot meet:
  // interaction_required before anything else (a CAE challenge after a revocation asks for a sign-in after it, which
  // no refresh can give, whatever else the refresh token's user and session have become).
  if (demands !== undefined) {
    const unmet = unmetDemands(demands, { amr: record.payload.auth.amr, authTime: record.payload.auth.authTime });
    if (unmet.mfa || unmet.signIn || demands.authContexts.length > 0) {
      throw new OAuthError('interaction_required', {
        description: 'The claims challenge asks for a stronger or newer sign-in than the refresh token carries: send an interactive authorization request with the claims parameter.',
        entraCodes: [unmet.mfa ? Entra.mfaRequired : Entra.signInFrequency],
        claims: params.claims,
      });
    }
  }

  const user = await userStillAllowed(ctx, record);
  const session = await sessionStillLive(ctx, record);
  const granted = await consentStillPresent(ctx, directory, client.app.clientId, user, target);

  const auth = record.payload.auth;
  if (target.api !== undefined) {
    const result = evaluatePolicies({
      policies: directory.policiesFor(target.api.clientId),
      resource: target.api.clientId,
      scopes: granted,
      clientId: client.app.clientId,
      userOid: user.oid,
      auth: { amr: auth.amr, acr: auth.acr, authTime: auth.authTime, ip: session?.ip },
      ip,
      now,
    });
    if (!result.ok) throw policyError(result, apiName(target.api));
  }
  // Every check passed. The token is consumed once its successor is stored (`redeem`), so a store
  // failure before that leaves it usable for the retry; losing the consume is a replay.
  const response = await signInTokenResponse(ctx, {
    directory,
    user,
    clientId: client.app.clientId,
    resource: target.api === undefined ? undefined : { api: target.api, scopes: granted },
    oidcScopes: target.oidc,
    auth,
    sessionExpiresAt: session?.expiresAt ?? record.payload.notAfter,
    clientInfo: params.client_info === '1',
    familyId: record.familyId,
    act: record.payload.act,
    dpop,
    // A public client's refresh token stays bound to its key (or is bound from now on).
    refreshJkt: client.app.public ? (record.payload.jkt ?? dpop?.jkt) : undefined,
    // Rotation keeps the original grant: a later refresh without `scope` renews it, not this one.
    refreshGrant: { resource: record.payload.resource, scopes: record.payload.scopes, oidcScopes: record.payload.oidcScopes },
    redeem: () => rotate(ctx, record),
    clientCapabilities: clientCapabilitiesOf(demands),
  });
  return response;
}

export const refreshTokenGrant: Grant = {
  grantType: 'refresh_token',
  parameters: new Set(['refresh_token', 'scope', 'client_info', 'claims', 'resource']),
  confidentialOnly: false,
  handler,
};

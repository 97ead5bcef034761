/**
 * `authorization_code` (RFC 6749 §4.1.3, RFC 7636 §4.6, OIDC Core §3.1.3), as named steps:
 * findCode → boundToClient → boundToRedirectUri → proofOfPossession → boundToKey (DPoP) → notExpired →
 * userStillAllowed → sessionStillLive → apiStillExists → sameResource → issue → consumeOnce → respond.
 *
 * Every check runs on a read of the code before it is consumed, so a refused redemption — wrong
 * client, redirect URI or verifier, a user disabled or signed out since — writes nothing and does
 * not burn the legitimate client's code (as oidc-provider does; RFC 6749 §4.1.2 asks only that a
 * code be used once, and a refused redemption did not use it). A code that cannot succeed later
 * simply expires (10 minutes). Consumption is the store's atomic single use; a second redemption
 * (a replay, or the loser of a race) revokes the refresh tokens the first one received
 * (RFC 6749 §4.1.2: "SHOULD revoke … all tokens previously issued based on that authorization
 * code"). Entra answers these refusals with the same `invalid_grant` codes used here.
 */
import { apiName, clientCapabilitiesOf, Entra, dpopRequiredBy, parseClaimsRequest, errors, predatesRevocation, resolveResourceIndicator, truncate, verifyPkce, type Application, type DpopConfirmation, type TenantDirectory, type User } from '@baton/core';
import type { ServerContext } from '../context.ts';
import type { Grant, TokenRequest } from './registry.ts';
import { codeId, type CodePayload } from '../tokens/code.ts';
import { signInTokenResponse } from '../tokens/response.ts';
import { sessionBySid, type Session } from '../session.ts';
import { markRegistrationUsed } from '../registration/dynamic.ts';
import type { EphemeralRecord } from '../store/types.ts';

type CodeRecord = EphemeralRecord<CodePayload>;


async function findCode(ctx: ServerContext, tenantId: string, code: string | undefined): Promise<CodeRecord> {
  if (code === undefined || code === '') {
    throw errors.invalidRequest("The request body must contain the 'code' parameter.");
  }
  const now = ctx.now();
  if (!/^[A-Za-z0-9_-]{43}$/.test(code)) throw errors.invalidGrant('The authorization code is malformed.', Entra.invalidGrant);
  const id = codeId(code);
  const record = await ctx.store.getEphemeral<CodePayload>('code', id, now);
  if (record !== undefined && record.tenantId === tenantId) return record;
  if (record !== undefined) throw errors.invalidGrant('The authorization code was issued by another tenant.', Entra.invalidGrant);
  // Not redeemable: find out whether it is a replay (revoke what the first redemption issued).
  const result = await ctx.store.consumeEphemeral<CodePayload>('code', id, now);
  if (result.status === 'replayed' || result.status === 'revoked') {
    if (result.status === 'replayed' && result.record.familyId !== undefined && result.record.tenantId === tenantId) {
      const revoked = await ctx.store.revokeFamily(tenantId, result.record.familyId, now);
      ctx.log.warn({ client_id: result.record.payload.clientId, family: result.record.familyId, revoked }, 'authorization code replayed: tokens it issued are revoked');
    }
    throw errors.invalidGrant('The authorization code has already been redeemed. The tokens issued for it are revoked; start a new sign-in.', Entra.codeRedeemed);
  }
  throw errors.invalidGrant('The authorization code is invalid or has expired. Start a new sign-in.', Entra.invalidGrant);
}

function boundToClient(record: CodeRecord, clientId: string): void {
  if (record.payload.clientId !== clientId) {
    throw errors.invalidGrant(`The authorization code was issued to another client, not to '${clientId}'.`, Entra.invalidGrant);
  }
}

function boundToRedirectUri(record: CodeRecord, redirectUri: string | undefined): void {
  // RFC 6749 §4.1.3: required, and identical, because the authorization request included it.
  if (redirectUri !== record.payload.redirectUri) {
    throw errors.invalidGrant(
      redirectUri === undefined
        ? "The request body must contain the 'redirect_uri' the authorization request used."
        : 'The redirect_uri does not match the one the authorization code was issued for.',
      Entra.codeRedirectMismatch,
    );
  }
}

function proofOfPossession(record: CodeRecord, verifier: string | undefined): void {
  const challenge = record.payload.codeChallenge;
  if (challenge === undefined) {
    // RFC 9700 §4.8.2: a verifier for a code issued without a challenge is a downgrade attempt.
    if (verifier !== undefined) throw errors.invalidGrant('A code_verifier was sent, but the authorization request had no code_challenge.', Entra.pkceMismatch);
    return;
  }
  if (verifier === undefined || verifier === '') {
    throw errors.invalidGrant("The request body must contain the 'code_verifier' (PKCE): the authorization request sent a code_challenge.", Entra.pkceMismatch);
  }
  if (!verifyPkce(verifier, challenge)) throw errors.invalidGrant('The code_verifier does not match the code_challenge supplied in the authorization request.', Entra.pkceMismatch);
}

/** RFC 9449 §10: a code whose authorization request named `dpop_jkt` is redeemed with a proof of that key. */
function boundToKey(record: CodeRecord, dpop: DpopConfirmation | undefined): void {
  const jkt = record.payload.dpopJkt;
  if (jkt === undefined) return;
  if (dpop === undefined || dpop.jkt !== jkt) {
    throw errors.invalidGrant(
      dpop === undefined
        ? "The authorization request bound the code to a DPoP key (dpop_jkt): redeem it with a DPoP proof made with that key."
        : 'The DPoP proof is made with another key than the dpop_jkt the authorization request named.',
      Entra.dpopKeyMismatch,
    );
  }
}

function notExpired(ctx: ServerContext, record: CodeRecord): void {
  if (record.payload.exp <= ctx.now()) throw errors.invalidGrant('The authorization code has expired. Start a new sign-in.', Entra.codeExpired);
}

async function consumeOnce(ctx: ServerContext, record: CodeRecord): Promise<void> {
  const now = ctx.now();
  const result = await ctx.store.consumeEphemeral<CodePayload>('code', record.id, now);
  if (result.status === 'ok') return;
  // Another request redeemed it between our read and our consume: a replay race. Revoke what the winner got.
  if (result.status === 'replayed' && record.familyId !== undefined) await ctx.store.revokeFamily(record.tenantId, record.familyId, now);
  throw errors.invalidGrant('The authorization code has already been redeemed. The tokens issued for it are revoked; start a new sign-in.', Entra.codeRedeemed);
}

async function userStillAllowed(ctx: ServerContext, record: CodeRecord): Promise<User> {
  const user = await ctx.store.getUserById(record.tenantId, record.payload.oid);
  if (user === undefined) throw errors.invalidGrant('The user no longer exists in the directory.', Entra.userNotFound);
  if (!user.enabled) throw errors.invalidGrant("The user's account is disabled.", Entra.userDisabled);
  if (predatesRevocation(user, record.payload.auth.authTime)) {
    throw errors.invalidGrant("The user's sign-in sessions were revoked: sign in again.", Entra.sessionRevoked);
  }
  return user;
}

async function sessionStillLive(ctx: ServerContext, record: CodeRecord): Promise<Session> {
  const session = await sessionBySid(ctx, record.tenantId, record.payload.auth.sid);
  if (session === undefined) throw errors.invalidGrant('The sign-in session behind the authorization code has ended (signed out): sign in again.', Entra.sessionRevoked);
  return session;
}

/**
 * RFC 8707 §2.2: a `resource` at the token endpoint must name the API the authorization was for
 * (an MCP client sends the MCP server's canonical URI again); another one is `invalid_target`.
 * The code is not burnt by this refusal.
 */
function sameResource(directory: TenantDirectory, api: Application | undefined, resource: string | undefined): void {
  if (resource === undefined || resource === '') return;
  const named = resolveResourceIndicator(directory, resource);
  if (api === undefined || named.clientId !== api.clientId) {
    throw errors.invalidTarget(
      `The resource '${truncate(resource, 100)}' is not the one the authorization was granted for (${api === undefined ? 'no API' : `'${apiName(api)}'`}): a code is redeemed for the resource it was issued for (RFC 8707).`,
    );
  }
}

async function handler({ ctx, directory, client, params, dpop }: TokenRequest) {
  const tenantId = directory.tenant.id;
  const record = await findCode(ctx, tenantId, params.code);
  boundToClient(record, client.app.clientId);
  boundToRedirectUri(record, params.redirect_uri);
  proofOfPossession(record, params.code_verifier);
  boundToKey(record, dpop);
  notExpired(ctx, record);
  const user = await userStillAllowed(ctx, record);
  const session = await sessionStillLive(ctx, record);

  const { payload } = record;
  let resource: { api: Application; scopes: string[] } | undefined;
  if (payload.resource !== undefined) {
    const api = directory.application(payload.resource.api);
    if (api === undefined) throw errors.invalidGrant('The API the authorization code was issued for no longer exists.', Entra.invalidGrant);
    resource = { api, scopes: payload.resource.scopes };
  }
  dpopRequiredBy(resource?.api, dpop, 'pass');
  sameResource(directory, resource?.api, params.resource);
  // A dynamic registration that redeems a code no longer expires unused (idempotent: written before
  // the code is consumed, so nothing is written after it).
  await markRegistrationUsed(ctx, client.app);
  // Every check passed. The code is consumed once the tokens are made and stored (`redeem`), so a
  // store failure before that leaves it redeemable; losing the consume is a replay.
  const response = await signInTokenResponse(ctx, {
    directory,
    user,
    clientId: client.app.clientId,
    resource,
    oidcScopes: payload.oidcScopes,
    auth: payload.auth,
    sessionExpiresAt: session.expiresAt,
    nonce: payload.nonce,
    clientInfo: params.client_info === '1',
    familyId: record.familyId,
    dpop,
    // RFC 9449 §5: a public client's refresh token is bound to its DPoP key.
    refreshJkt: client.app.public ? dpop?.jkt : undefined,
    redeem: () => consumeOnce(ctx, record),
    clientCapabilities: clientCapabilitiesOf(params.claims === undefined || params.claims === '' ? undefined : parseClaimsRequest(params.claims)),
  });
  ctx.log.info({ client_id: client.app.clientId, family: record.familyId, sid: payload.auth.sid }, 'authorization code redeemed');
  return response;
}

export const authorizationCodeGrant: Grant = {
  grantType: 'authorization_code',
  // `scope` (MSAL sends it) is accepted and ignored: the code decides what is granted. `claims` is
  // read for the client capabilities it declares (MSAL's `clientCapabilities`: `cp1`), nothing more.
  parameters: new Set(['code', 'redirect_uri', 'code_verifier', 'scope', 'client_info', 'claims', 'resource']),
  confidentialOnly: false,
  handler,
};

/** Signs ID tokens (OIDC Core §2) with the tenant's ES256 key; claims come from core's `buildIdTokenClaims`. */
import { buildIdTokenClaims, type OidcScope, type SignInFacts, type TenantDirectory, type User } from '@baton/core';
import { issuerOf, type ServerContext } from '../context.ts';

export interface IdTokenRequest {
  directory: TenantDirectory;
  user: User;
  clientId: string;
  scopes: readonly OidcScope[];
  nonce?: string | undefined;
  auth: SignInFacts;
  accessToken?: string | undefined;
  sessionExpiresAt?: number | undefined;
}

export async function issueIdToken(ctx: ServerContext, request: IdTokenRequest): Promise<string> {
  const tenantId = request.directory.tenant.id;
  const signer = await ctx.keyring.signer(tenantId, 'ES256');
  const claims = buildIdTokenClaims({
    issuer: issuerOf(ctx, tenantId),
    tenant: request.directory.tenant,
    clientId: request.clientId,
    user: request.user,
    scopes: request.scopes,
    nonce: request.nonce,
    auth: request.auth,
    accessToken: request.accessToken,
    alg: signer.alg,
    pairwiseSecret: ctx.pairwiseKey,
    now: ctx.now(),
    notAfter: request.sessionExpiresAt,
  });
  const signing = signer.signAsync(claims, 'JWT');
  return ctx.metrics ? ctx.metrics.jws('sign', signer.alg, signing) : signing;
}

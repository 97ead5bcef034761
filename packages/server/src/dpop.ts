/**
 * DPoP at the token endpoint (RFC 9449 §5): the proof a token request carries is checked once,
 * before the grant runs, and the grant binds what it issues to the proof's key (`cnf.jkt`,
 * `token_type: DPoP`). Every grant sees the same `TokenRequest.dpop`.
 *
 * The checks are core's `checkDpopProofAsync` (one JWS, `typ`, `alg` allow-list, a public `jwk`, the
 * signature, `htm`, `htu`, the `iat` window); here, what needs state: the tenant's nonce policy
 * (stateless HMAC nonces every instance accepts: core's `DpopNonces` keyed from the KEK), and the
 * `jti` replay check in the store's one-time values, atomic across instances on SQLite and
 * PostgreSQL. Every refusal is `invalid_dpop_proof` (400, 9100010) or `use_dpop_nonce` (400,
 * 9100011, with the nonce in `DPoP-Nonce`), never a 500.
 */
import {
  DPOP_ALGS,
  DPOP_FUTURE_SECONDS,
  DPOP_MAX_AGE_SECONDS,
  DpopProofError,
  Entra,
  OAuthError,
  checkDpopProofAsync,
  singleDpopHeader,
  type DpopConfirmation,
  type TenantDirectory,
} from '@baton/core';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { tokenEndpointOf, type ServerContext } from './context.ts';

/** The algorithms discovery advertises (`dpop_signing_alg_values_supported`) and proofs may use. */
export const DPOP_SIGNING_ALGS = DPOP_ALGS;

/** The `DPoP-Nonce` response header (RFC 9449 §8.1). */
export const DPOP_NONCE_HEADER = 'dpop-nonce';

/**
 * Reads and checks the request's DPoP proof, if it has one: undefined without a `DPoP` header,
 * the key's thumbprint otherwise. Under a tenant's nonce policy the current nonce is also set on
 * the reply (success or refusal), so the client's next proof can carry it.
 */
export async function readTokenRequestProof(ctx: ServerContext, directory: TenantDirectory, request: FastifyRequest<{ Params: { tenant: string } }>, reply: FastifyReply): Promise<DpopConfirmation | undefined> {
  const tenantId = directory.tenant.id;
  const now = ctx.now();
  const nonceRequired = directory.tenant.dpopNonceRequired === true;
  const nonce = nonceRequired ? ctx.dpopNonces.current(tenantId, now) : undefined;
  if (nonce !== undefined) reply.header(DPOP_NONCE_HEADER, nonce);
  try {
    const header = singleDpopHeader(request.raw.headersDistinct?.dpop ?? request.headers.dpop);
    if (header === undefined) return undefined;
    // The signature on libuv's pool, as the grants verify and sign: the event loop goes on meanwhile.
    const proof = await checkDpopProofAsync(header, { method: 'POST', url: tokenEndpointOf(ctx, request.params.tenant) }, { now });
    if (nonceRequired && !ctx.dpopNonces.accepts(tenantId, proof.nonce, now)) {
      throw new DpopProofError('nonce', `Tenant '${tenantId}' requires a server nonce in each DPoP proof: repeat the request with a proof whose nonce is the DPoP-Nonce header of this response.`);
    }
    // Single use across instances, remembered for as long as the proof's iat is acceptable
    // (a proof replay record: committed without waiting for the disk, docs/dpop.md).
    const fresh = await ctx.store.useProofOnce(`dpop:${tenantId}`, `${proof.jkt}:${proof.jti}`, proof.iat + DPOP_MAX_AGE_SECONDS + DPOP_FUTURE_SECONDS, now);
    if (!fresh) throw new DpopProofError('replay', 'The DPoP proof was already used (its jti was seen before): make a fresh proof for each request.');
    return { jkt: proof.jkt };
  } catch (error) {
    if (error instanceof DpopProofError) throw dpopOAuthError(error, nonce);
    throw error;
  }
}

/** A refused proof as the token endpoint answers it. */
export function dpopOAuthError(error: DpopProofError, nonce: string | undefined): OAuthError {
  return new OAuthError(error.error, {
    description: error.message,
    entraCodes: [error.error === 'use_dpop_nonce' ? Entra.dpopNonceRequired : Entra.dpopProofInvalid],
    detail: `dpop=${error.failure}`,
    ...(nonce !== undefined ? { headers: { [DPOP_NONCE_HEADER]: nonce } } : {}),
  });
}

/** The `token_type` of a token response: `DPoP` when the access token is bound (RFC 9449 §5). */
export function tokenTypeOf(dpop: DpopConfirmation | undefined): 'DPoP' | 'Bearer' {
  return dpop === undefined ? 'Bearer' : 'DPoP';
}

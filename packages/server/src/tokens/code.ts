/**
 * Authorization codes (RFC 6749 §4.1.2): 256 random bits, stored by SHA-256 (kind `code`), single
 * use through the store's atomic consume, bound to the client, the redirect URI and the PKCE
 * challenge.
 *
 * The record outlives the code's own lifetime by an hour so a replay is recognised as a replay
 * (RFC 6749 §4.1.2: "the authorization server … SHOULD revoke (when possible) all tokens
 * previously issued based on that authorization code") rather than as an unknown code. The code's
 * `familyId` is the family of the refresh tokens it issues, so one `revokeFamily` undoes them.
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import type { OidcScope } from '@baton/core';
import type { ServerContext } from '../context.ts';

/** Entra's codes live about ten minutes; so do Baton's. */
export const CODE_LIFETIME_SECONDS = 600;
/** How long a redeemed or expired code is remembered to recognise replays. */
const CODE_RECORD_SECONDS = CODE_LIFETIME_SECONDS + 3600;

export interface CodePayload {
  clientId: string;
  redirectUri: string;
  codeChallenge?: string | undefined;
  /** RFC 9449 §10: the authorization request's `dpop_jkt`; the code is redeemed only with a proof of this key. */
  dpopJkt?: string | undefined;
  oid: string;
  resource?: { api: string; scopes: string[] } | undefined;
  oidcScopes: OidcScope[];
  nonce?: string | undefined;
  auth: { amr: string[]; acr: string; authTime: number; sid: string };
  /** Epoch seconds: the code is refused (AADSTS70008) after this. */
  exp: number;
}

export function codeId(code: string): string {
  return createHash('sha256').update(code).digest('base64url');
}

/** Issues a code; returns it (the store keeps only its hash). */
export async function issueCode(ctx: ServerContext, tenantId: string, payload: Omit<CodePayload, 'exp'>): Promise<string> {
  const now = ctx.now();
  const code = randomBytes(32).toString('base64url');
  await ctx.store.putEphemeral<CodePayload>({
    kind: 'code',
    id: codeId(code),
    tenantId,
    payload: { ...payload, exp: now + CODE_LIFETIME_SECONDS },
    familyId: randomUUID(),
    expiresAt: now + CODE_RECORD_SECONDS,
    createdAt: now,
  });
  return code;
}

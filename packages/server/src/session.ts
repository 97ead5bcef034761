/**
 * SSO sessions: what the browser proved, kept in the store (kind `session`, id = `sid`) so every
 * instance sees it, and named by a cookie `{sid}.{secret}`.
 *
 * `sid` is public (it travels in tokens as the `sid` claim and the OBO rules look the session up
 * by it); the secret half of the cookie is not, and only its SHA-256 is stored. An API that sees
 * `sid` in a token therefore cannot forge the cookie, and a copy of the database cannot either.
 *
 * The session bounds everything derived from the sign-in: access tokens never outlive it, refresh
 * tokens die with it, and ending it (logout) revokes them.
 */
import { createHash, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { acrFor, type ExchangeSession } from '@baton/core';
import type { ServerContext } from './context.ts';
import { clearCookie, readCookie, sessionCookieName, setCookie } from './cookies.ts';

/** How long a sign-in lasts (absolute): the SSO session, and with it every refresh token it issued. */
export const SESSION_LIFETIME_SECONDS = 14 * 24 * 3600;

interface SessionPayload {
  oid: string;
  authTime: number;
  amr: string[];
  ip?: string | undefined;
  /** base64url SHA-256 of the cookie secret. */
  secretHash: string;
}

export interface Session {
  sid: string;
  tenantId: string;
  oid: string;
  authTime: number;
  amr: string[];
  acr: string;
  ip?: string | undefined;
  expiresAt: number;
}

function hash(secret: string): string {
  return createHash('sha256').update(secret).digest('base64url');
}

function toSession(tenantId: string, sid: string, payload: SessionPayload, expiresAt: number): Session {
  // Defensive: a record written by something else (a test, an import) may lack `amr`.
  const amr = Array.isArray(payload.amr) ? payload.amr : [];
  return { sid, tenantId, oid: payload.oid, authTime: payload.authTime, amr, acr: acrFor(amr), ip: payload.ip, expiresAt };
}

/** Starts a session after a successful password step and sets its cookie. */
export async function createSession(
  ctx: ServerContext,
  reply: FastifyReply,
  tenantId: string,
  facts: { oid: string; amr: string[]; ip?: string | undefined },
): Promise<Session> {
  const now = ctx.now();
  const sid = randomUUID();
  const secret = randomBytes(32).toString('base64url');
  const expiresAt = now + SESSION_LIFETIME_SECONDS;
  const payload: SessionPayload = { oid: facts.oid, authTime: now, amr: facts.amr, ip: facts.ip, secretHash: hash(secret) };
  // familyId = sid: logout revokes the session with one revokeFamily call.
  await ctx.store.putEphemeral<SessionPayload>({ kind: 'session', id: sid, tenantId, payload, familyId: sid, expiresAt, createdAt: now });
  setCookie(reply, sessionCookieName(tenantId), `${sid}.${secret}`);
  return toSession(tenantId, sid, payload, expiresAt);
}

/** The session the request's cookie names, if it is live and the cookie's secret matches. */
export async function sessionFromCookie(ctx: ServerContext, request: FastifyRequest, tenantId: string): Promise<Session | undefined> {
  const value = readCookie(request, sessionCookieName(tenantId));
  if (value === undefined) return undefined;
  const match = /^([0-9a-f-]{36})\.([A-Za-z0-9_-]{43})$/.exec(value);
  if (match === null) return undefined;
  const [, sid, secret] = match as unknown as [string, string, string];
  const record = await ctx.store.getEphemeral<SessionPayload>('session', sid, ctx.now());
  if (record === undefined || record.tenantId !== tenantId) return undefined;
  const expected = Buffer.from(record.payload.secretHash);
  const actual = Buffer.from(hash(secret));
  if (expected.length !== actual.length || !timingSafeEqual(expected, actual)) return undefined;
  return toSession(tenantId, sid, record.payload, record.expiresAt);
}

/** Adds `amr` values (a second factor) to a live session. */
export async function elevateSession(ctx: ServerContext, session: Session, amr: readonly string[]): Promise<Session> {
  const record = await ctx.store.getEphemeral<SessionPayload>('session', session.sid, ctx.now());
  if (record === undefined) throw new Error('session ended during the step-up');
  const merged = [...record.payload.amr];
  for (const value of amr) if (!merged.includes(value)) merged.push(value);
  const payload: SessionPayload = { ...record.payload, amr: merged };
  await ctx.store.putEphemeral<SessionPayload>({ ...record, payload });
  return toSession(session.tenantId, session.sid, payload, record.expiresAt);
}

/** Ends a session: the record is revoked (every instance stops accepting it and what it issued). */
export async function endSession(ctx: ServerContext, reply: FastifyReply | undefined, tenantId: string, sid: string): Promise<void> {
  await ctx.store.revokeFamily(tenantId, sid, ctx.now());
  if (reply !== undefined) clearCookie(reply, sessionCookieName(tenantId));
}

/** A session by `sid` (no cookie): for refresh, UserInfo, introspection and the OBO `session-live` rule. */
export async function sessionBySid(ctx: ServerContext, tenantId: string, sid: string): Promise<Session | undefined> {
  if (sid.length > 64) return undefined;
  const record = await ctx.store.getEphemeral<SessionPayload>('session', sid, ctx.now());
  if (record === undefined || record.tenantId !== tenantId) return undefined;
  return toSession(tenantId, sid, record.payload, record.expiresAt);
}

/**
 * The session behind a token's `sid`, in the shape core's `decideExchange` takes. Only live
 * sessions are found (unexpired, not signed out or revoked), so one that is not found has ended:
 * the decision refuses (fail closed). A session of another user is treated as not found: a `sid`
 * is not a secret.
 *
 * @example
 * const session = await exchangeSession(ctx, tenantId, plan.reads.sid, oid);
 */
export async function exchangeSession(ctx: ServerContext, tenantId: string, sid: string, oid: string): Promise<ExchangeSession | undefined> {
  const session = await sessionBySid(ctx, tenantId, sid);
  if (session === undefined || session.oid !== oid) return undefined;
  return { live: true, expiresAt: session.expiresAt, ip: session.ip };
}

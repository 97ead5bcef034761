/**
 * Security Event Tokens (RFC 8417) as SSF 1.0 profiles them: `typ: secevent+jwt`, signed with the
 * tenant's current ES256 key (the key its JWKS publishes), `iss` the tenant's issuer, `aud` the
 * stream's audience, a fresh `jti`, `iat`, the subject in a top-level `sub_id` (RFC 9493 / SSF
 * complex subjects), and one event in `events`.
 *
 * A user is named in the stream's subject format: `iss_sub` with the pairwise `sub` the receiver's
 * own tokens carry for her (so an API matches it against the tokens it holds), `email`, or
 * `opaque` (her object id, the `oid` claim). A session adds `session: { format: 'opaque', id: sid }`
 * (the `sid` claim of every token issued from that sign-in, along the whole chain); the tenant is
 * always named (`tenant: { format: 'opaque', id: tid }`).
 */
import { randomUUID } from 'node:crypto';
import { pairwiseSubject, type TenantDirectory } from '@baton/core';
import { issuerOf, type ServerContext } from '../context.ts';
import { canonicalJson } from '../canonical.ts';
import type { SignalStream } from '../store/types.ts';
import type { EventSubject, SecurityEvent } from './events.ts';

export const SET_TYPE = 'secevent+jwt';
export const SET_ALG = 'ES256';

export type SubjectIdentifier = Record<string, unknown> & { format: string };

/** The identifier of the user alone, in the stream's format (what add/remove subject compare with). */
function userIdentifier(ctx: ServerContext, directory: TenantDirectory, stream: SignalStream, oid: string, email: string | undefined): SubjectIdentifier {
  if (stream.subjectFormat === 'email' && email !== undefined) return { format: 'email', email };
  if (stream.subjectFormat === 'opaque') return { format: 'opaque', id: oid };
  return { format: 'iss_sub', iss: issuerOf(ctx, directory.tenant.id), sub: pairwiseSubject(ctx.pairwiseKey, directory.tenant.tid, oid, stream.clientId) };
}

/** `sub_id` of an event in `stream`. */
export function subjectIn(ctx: ServerContext, directory: TenantDirectory, stream: SignalStream, subject: EventSubject): SubjectIdentifier {
  const tenant = { format: 'opaque', id: directory.tenant.tid };
  if (subject.kind === 'application') return { format: 'complex', application: { format: 'opaque', id: subject.clientId }, tenant };
  if (subject.kind === 'tenant') return { format: 'complex', tenant };
  return {
    format: 'complex',
    user: userIdentifier(ctx, directory, stream, subject.oid, subject.email),
    ...(subject.sid !== undefined ? { session: { format: 'opaque', id: subject.sid } } : {}),
    tenant,
  };
}

/** The keys a removed subject is matched by: the complex subject's members, and the identifier itself. */
export function subjectKeys(subject: SubjectIdentifier): string[] {
  const keys = [canonicalJson(subject)];
  if (subject.format === 'complex') {
    for (const member of ['user', 'application', 'session']) {
      const value = subject[member];
      if (value !== undefined) keys.push(canonicalJson(value));
    }
  }
  return keys;
}

/** Whether the receiver removed this subject (or the user or application in it) from the stream. */
export function removedFrom(stream: SignalStream, subject: SubjectIdentifier): boolean {
  if (stream.removedSubjects.length === 0) return false;
  const removed = new Set(stream.removedSubjects);
  return subjectKeys(subject).some((key) => removed.has(key));
}

export interface SignedSet {
  jti: string;
  set: string;
}

/** Signs one SET carrying `events` (one event type → its members) about `subId` for `stream`. */
export async function signSet(ctx: ServerContext, stream: SignalStream, subId: SubjectIdentifier, events: Record<string, Record<string, unknown>>, txn?: string): Promise<SignedSet> {
  const jti = randomUUID();
  const payload: Record<string, unknown> = {
    iss: issuerOf(ctx, stream.tenantId),
    aud: stream.audience,
    jti,
    iat: ctx.now(),
    ...(txn !== undefined ? { txn } : {}),
    sub_id: subId,
    events,
  };
  const signer = await ctx.keyring.signer(stream.tenantId, SET_ALG);
  return { jti, set: await signer.signAsync(payload, SET_TYPE) };
}

/** Signs `event` for `stream`, or undefined when the stream does not carry it. */
export async function setFor(ctx: ServerContext, directory: TenantDirectory, stream: SignalStream, event: SecurityEvent, txn?: string): Promise<SignedSet | undefined> {
  if (!stream.eventsRequested.includes(event.type)) return undefined;
  const subId = subjectIn(ctx, directory, stream, event.subject);
  if (removedFrom(stream, subId)) return undefined;
  return signSet(ctx, stream, subId, { [event.type]: event.payload }, txn);
}

/**
 * The rows of Baton's tables as both store engines see them: the parameter lists of rows they
 * write, mapping rows they read back to domain records, and what a consume that claimed nothing
 * answers. The SQL stays in each engine; argument checks are in `checks.ts`.
 *
 * The one difference in how rows come back is the JSON columns: SQLite stores them as TEXT and
 * hands back the string, PostgreSQL stores them as JSON and hands back the parsed value. Row types
 * take that stored form as a type parameter `J`, and the mappers take the matching decoder
 * (`parseJson` for SQLite, `asParsed` for PostgreSQL).
 */
import { createHash } from 'node:crypto';
import type { AppRoleAssignment, ConsentGrant, SigningKeyRecord } from '@baton/core';
import type { AdminEventRecord, ConsentQuery, ConsumeResult, EphemeralKind, EphemeralRecord, QueuedSet, SignalStream } from './types.ts';

/** Turns a JSON column, as the engine returns it, into its value. */
export type DecodeJson<J> = (stored: J) => unknown;

/** For engines that return JSON columns as text (SQLite). */
export function parseJson(stored: string): unknown {
  return JSON.parse(stored);
}

/** For engines that return JSON columns already parsed (PostgreSQL `JSON`). */
export function asParsed(stored: unknown): unknown {
  return stored;
}

export function json(value: unknown): string {
  return JSON.stringify(value);
}

/** `useOnce` ids are caller- (often attacker-) chosen and unbounded: key on a fixed-size digest. */
export function useOnceKey(id: string): string {
  return createHash('sha256').update(id, 'utf8').digest('base64url');
}

// — rows —

export interface DataRow<J> {
  data: J;
}

export interface ConsentRow<J> {
  tenant_id: string;
  client_id: string;
  resource: string;
  principal: string;
  scopes: J;
  created_at: number;
}

export interface RoleRow<J> {
  tenant_id: string;
  principal_type: AppRoleAssignment['principalType'];
  principal_id: string;
  resource: string;
  roles: J;
}

export interface EphemeralRow<J> {
  kind: string;
  id: string;
  tenant_id: string;
  family_id: string | null;
  payload: J;
  expires_at: number;
  created_at: number;
  consumed_at: number | null;
  revoked_at: number | null;
}

export function consentFromRow<J>(row: ConsentRow<J>, decode: DecodeJson<J>): ConsentGrant {
  return {
    tenantId: row.tenant_id,
    clientId: row.client_id,
    resource: row.resource,
    principal: row.principal,
    scopes: decode(row.scopes) as string[],
    createdAt: row.created_at,
  };
}

export function roleFromRow<J>(row: RoleRow<J>, decode: DecodeJson<J>): AppRoleAssignment {
  return {
    tenantId: row.tenant_id,
    principalType: row.principal_type,
    principalId: row.principal_id,
    resource: row.resource,
    roles: decode(row.roles) as string[],
  };
}

export function ephemeralFromRow<T, J>(row: EphemeralRow<J>, decode: DecodeJson<J>): EphemeralRecord<T> {
  const record: EphemeralRecord<T> = {
    kind: row.kind as EphemeralKind,
    id: row.id,
    tenantId: row.tenant_id,
    payload: decode(row.payload) as T,
    expiresAt: row.expires_at,
    createdAt: row.created_at,
  };
  // Optional fields stay absent when unset, so a record round-trips deep-equal.
  if (row.family_id !== null) record.familyId = row.family_id;
  if (row.consumed_at !== null) record.consumedAt = row.consumed_at;
  if (row.revoked_at !== null) record.revokedAt = row.revoked_at;
  return record;
}

/**
 * The answer of `consumeEphemeral` when the atomic claim took nothing: `row` is the stored value
 * read afterwards (undefined when there is none).
 */
export function unclaimedResult<T, J>(row: EphemeralRow<J> | undefined, now: number, decode: DecodeJson<J>): ConsumeResult<T> {
  // Expired reads as unknown whatever else happened to it: the row may be swept at any time.
  if (row === undefined || row.expires_at <= now) return { status: 'missing' };
  // Revocation outranks replay: the family is dead either way, and the caller need not revoke it again.
  if (row.revoked_at !== null) return { status: 'revoked', record: ephemeralFromRow<T, J>(row, decode) };
  return { status: 'replayed', record: ephemeralFromRow<T, J>(row, decode) };
}

// — parameters of rows written —

/** `(tenant_id, kid, alg, status, created_at, remove_after, data)` of `signing_keys`. */
export function signingKeyParams(key: SigningKeyRecord): [string, string, string, string, number, number | null, string] {
  return [key.tenantId, key.kid, key.alg, key.status, key.createdAt, key.removeAfter ?? null, json(key)];
}

/** `(kind, id, tenant_id, family_id, payload, expires_at, created_at, consumed_at, revoked_at)` of `ephemeral`. */
export function ephemeralParams<T>(
  record: EphemeralRecord<T>,
): [string, string, string, string | null, string, number, number, number | null, number | null] {
  return [
    record.kind,
    record.id,
    record.tenantId,
    record.familyId ?? null,
    json(record.payload),
    record.expiresAt,
    record.createdAt,
    record.consumedAt ?? null,
    record.revokedAt ?? null,
  ];
}

/**
 * The WHERE conditions of a listConsents query for a filter mask (see `consentFilter`), with each
 * engine's placeholder for the n-th bound value (1 is the tenant).
 */
export function consentConditions(mask: number, placeholder: (n: number) => string): string[] {
  const where = [`tenant_id = ${placeholder(1)}`];
  if (mask & 1) where.push(`client_id = ${placeholder(where.length + 1)}`);
  if (mask & 2) where.push(`resource = ${placeholder(where.length + 1)}`);
  if (mask & 4) where.push(`principal = ${placeholder(where.length + 1)}`);
  return where;
}

/**
 * How `putEphemeral` resolves a conflict, after `INSERT INTO ephemeral (kind, id, tenant_id,
 * family_id, payload, expires_at, created_at, consumed_at, revoked_at) VALUES (…)`, in SQL both
 * engines read alike.
 */
export const EPHEMERAL_UPSERT = `
  ON CONFLICT (kind, id) DO UPDATE SET tenant_id = excluded.tenant_id, family_id = excluded.family_id,
    payload = excluded.payload, expires_at = excluded.expires_at, created_at = excluded.created_at,
    -- Consumption and revocation are sticky while the stored value lives: a put built
    -- from a read taken before another instance revoked the session (or redeemed the
    -- code) must not bring it back. An id reused after expiry starts afresh.
    consumed_at = CASE WHEN ephemeral.expires_at > excluded.created_at
      THEN coalesce(ephemeral.consumed_at, excluded.consumed_at) ELSE excluded.consumed_at END,
    revoked_at = CASE WHEN ephemeral.expires_at > excluded.created_at
      THEN coalesce(ephemeral.revoked_at, excluded.revoked_at) ELSE excluded.revoked_at END`;

/**
 * Which filters a listConsents query sets, as a mask (bit 1 clientId, 2 resource, 4 principal),
 * and the values to bind, tenant first then in bit order.
 */
export function consentFilter(query: ConsentQuery): { mask: number; params: string[] } {
  const params: string[] = [query.tenantId];
  let mask = 0;
  if (query.clientId !== undefined) {
    mask |= 1;
    params.push(query.clientId);
  }
  if (query.resource !== undefined) {
    mask |= 2;
    params.push(query.resource);
  }
  if (query.principal !== undefined) {
    mask |= 4;
    params.push(query.principal);
  }
  return { mask, params };
}

// — security event streams —

export interface StreamRow<J> {
  tenant_id: string;
  stream_id: string;
  client_id: string;
  data: J;
}

export interface SetRow {
  tenant_id: string;
  stream_id: string;
  jti: string;
  set_jwt: string;
  created_at: number;
  expires_at: number;
  next_attempt_at: number | null;
  attempts: number;
}

/** The stream's columns beside its JSON body (which holds everything but the keys). */
export function streamParams(stream: SignalStream): [string, string, string, string] {
  const { tenantId, streamId, clientId, ...data } = stream;
  return [tenantId, streamId, clientId, json(data)];
}

export function streamFromRow<J>(row: StreamRow<J>, decode: DecodeJson<J>): SignalStream {
  const data = decode(row.data) as Omit<SignalStream, 'tenantId' | 'streamId' | 'clientId'>;
  return { ...data, tenantId: row.tenant_id, streamId: row.stream_id, clientId: row.client_id };
}

export function setParams(set: QueuedSet): [string, string, string, string, number, number, number | null, number] {
  return [set.tenantId, set.streamId, set.jti, set.set, set.createdAt, set.expiresAt, set.nextAttemptAt ?? null, set.attempts];
}

export function setFromRow(row: SetRow): QueuedSet {
  return {
    tenantId: row.tenant_id,
    streamId: row.stream_id,
    jti: row.jti,
    set: row.set_jwt,
    createdAt: Number(row.created_at),
    expiresAt: Number(row.expires_at),
    ...(row.next_attempt_at !== null ? { nextAttemptAt: Number(row.next_attempt_at) } : {}),
    attempts: Number(row.attempts),
  };
}

export interface AdminEventRow<D> {
  seq: number | string;
  tenant_id: string;
  id: string;
  at: number;
  entity: string;
  target: string;
  data: D;
}

export function adminEventFromRow<D>(row: AdminEventRow<D>, parse: (data: D) => unknown): { seq: number; record: AdminEventRecord } {
  return {
    seq: Number(row.seq),
    record: { tenantId: row.tenant_id, id: row.id, at: Number(row.at), entity: row.entity, target: row.target, event: parse(row.data) },
  };
}

/**
 * A store engine is six resource modules — the directory (tenants, users, applications), access
 * (consents, app role assignments, conditional-access policies), signing keys, one-time values
 * (codes, refresh tokens, sessions, TOTP steps, throttle slots), proof replay records (DPoP proof
 * and client-assertion `jti`s: one-time values committed without waiting for the disk) and
 * signals (security event streams, queued SETs) — behind the one `Store` interface. `PartitionedStore` is that interface written once: each method hands the call to the
 * module that owns the resource, so an engine only says how it connects, migrates, closes and
 * hears other instances' changes. The methods are `async` so that anything thrown, even while the
 * parts are first built, reaches the caller as a rejection, as the interface promises.
 */
import type { Application, AppRoleAssignment, ConsentGrant, Policy, SigningKeyRecord, Tenant, User } from '@baton/core';
import type {
  AdminEventQuery,
  AdminEventRecord,
  AtomicWrite,
  ConsentQuery,
  ConsumeResult,
  EphemeralKind,
  EphemeralRecord,
  Invalidation,
  QueuedSet,
  SignalStream,
  Store,
} from './types.ts';

/** Registrations: tenants, users, applications. */
export type DirectoryPart = Pick<
  Store,
  'putTenant' | 'getTenant' | 'listTenants' | 'putUser' | 'getUserByName' | 'getUserById' | 'listUsers' | 'putApplication' | 'getApplication' | 'listApplications'
> & {
  /**
   * Removes dynamic client registrations (RFC 7591) deleted (RFC 7592) or expired unused by `now`,
   * with the consents given to them (part of `Store.sweep`); their tenants' caches hear it.
   */
  sweepRegistrations(now: number): Promise<number>;
};

/** Who may do what: consents, app role assignments, conditional-access policies. */
export type AccessPart = Pick<
  Store,
  'putConsent' | 'listConsents' | 'deleteConsent' | 'putRoleAssignment' | 'listRoleAssignments' | 'deleteRoleAssignment' | 'replacePolicies' | 'listPolicies'
>;

/** Signing keys and their rotation. */
export type SigningKeyPart = Pick<Store, 'putSigningKey' | 'listSigningKeys' | 'rotateSigningKey' | 'pruneSigningKeys'>;

/** Single-use and expiring values. */
export type OneTimePart = Pick<
  Store,
  'useOnce' | 'putEphemeral' | 'getEphemeral' | 'consumeEphemeral' | 'deleteEphemeral' | 'revokeFamily' | 'sweep'
>;

/**
 * Replay records of short-lived signed proofs (`Store.useProofOnce`): rows of the one-time values'
 * `used_once` table (swept with them), written through a connection that does not wait for the
 * disk at commit. Its own part because it is its own connection (SQLite) or pool (PostgreSQL).
 */
export type ProofReplayPart = Pick<Store, 'useProofOnce'>;

/** Security event streams (SSF), the SETs queued in them, and the admin change log they come from. */
export type SignalsPart = Pick<
  Store,
  'putStream' | 'getStream' | 'listStreams' | 'deleteStream' | 'queueSets' | 'pollSets' | 'claimPushSets' | 'settlePushSet' | 'appendAdminEvent' | 'listAdminEvents'
> & {
  /** Removes expired queued SETs (part of `Store.sweep`). */
  sweepSets(now: number): Promise<number>;
};

export interface StoreParts {
  directory: DirectoryPart;
  access: AccessPart;
  signingKeys: SigningKeyPart;
  oneTime: OneTimePart;
  proofReplay: ProofReplayPart;
  signals: SignalsPart;
}

/**
 * Hands one write of `Store.atomically` to the part that owns it. An engine calls it with parts
 * bound to its transaction.
 */
export function applyWrite(parts: StoreParts, write: AtomicWrite): Promise<unknown> {
  switch (write.op) {
    case 'putUser':
      return parts.directory.putUser(...write.args);
    case 'putApplication':
      return parts.directory.putApplication(...write.args);
    case 'putConsent':
      return parts.access.putConsent(...write.args);
    case 'deleteConsent':
      return parts.access.deleteConsent(...write.args);
    case 'putRoleAssignment':
      return parts.access.putRoleAssignment(...write.args);
    case 'deleteRoleAssignment':
      return parts.access.deleteRoleAssignment(...write.args);
    case 'replacePolicies':
      return parts.access.replacePolicies(...write.args);
    case 'queueSets':
      return parts.signals.queueSets(...write.args);
    case 'appendAdminEvent':
      return parts.signals.appendAdminEvent(...write.args);
  }
}

export abstract class PartitionedStore implements Store {
  abstract readonly engine: Store['engine'];
  abstract migrate(): Promise<void>;
  abstract close(): Promise<void>;
  abstract onInvalidate(listener: (change: Invalidation) => void): () => void;
  abstract atomically(writes: readonly AtomicWrite[]): Promise<void>;
  /** The engine's resource modules; may be built on first use (after migrations). */
  protected abstract get parts(): StoreParts;

  // — tenants, users, applications —

  async putTenant(tenant: Tenant): Promise<void> {
    return this.parts.directory.putTenant(tenant);
  }

  async getTenant(id: string): Promise<Tenant | undefined> {
    return this.parts.directory.getTenant(id);
  }

  async listTenants(): Promise<Tenant[]> {
    return this.parts.directory.listTenants();
  }

  async putUser(user: User): Promise<void> {
    return this.parts.directory.putUser(user);
  }

  async getUserByName(tenantId: string, username: string): Promise<User | undefined> {
    return this.parts.directory.getUserByName(tenantId, username);
  }

  async getUserById(tenantId: string, oid: string): Promise<User | undefined> {
    return this.parts.directory.getUserById(tenantId, oid);
  }

  async listUsers(tenantId: string, options?: { limit?: number; offset?: number }): Promise<User[]> {
    return this.parts.directory.listUsers(tenantId, options);
  }

  async putApplication(app: Application): Promise<void> {
    return this.parts.directory.putApplication(app);
  }

  async getApplication(tenantId: string, clientId: string): Promise<Application | undefined> {
    return this.parts.directory.getApplication(tenantId, clientId);
  }

  async listApplications(tenantId: string): Promise<Application[]> {
    return this.parts.directory.listApplications(tenantId);
  }

  // — consents, role assignments, policies —

  async putConsent(grant: ConsentGrant): Promise<void> {
    return this.parts.access.putConsent(grant);
  }

  async listConsents(query: ConsentQuery): Promise<ConsentGrant[]> {
    return this.parts.access.listConsents(query);
  }

  async deleteConsent(tenantId: string, clientId: string, resource: string, principal: string): Promise<boolean> {
    return this.parts.access.deleteConsent(tenantId, clientId, resource, principal);
  }

  async putRoleAssignment(assignment: AppRoleAssignment): Promise<void> {
    return this.parts.access.putRoleAssignment(assignment);
  }

  async listRoleAssignments(tenantId: string, principalType: AppRoleAssignment['principalType'], principalId: string): Promise<AppRoleAssignment[]> {
    return this.parts.access.listRoleAssignments(tenantId, principalType, principalId);
  }

  async deleteRoleAssignment(tenantId: string, principalType: AppRoleAssignment['principalType'], principalId: string, resource: string): Promise<boolean> {
    return this.parts.access.deleteRoleAssignment(tenantId, principalType, principalId, resource);
  }

  async replacePolicies(tenantId: string, policies: Policy[]): Promise<void> {
    return this.parts.access.replacePolicies(tenantId, policies);
  }

  async listPolicies(tenantId: string): Promise<Policy[]> {
    return this.parts.access.listPolicies(tenantId);
  }

  // — signing keys —

  async putSigningKey(key: SigningKeyRecord): Promise<void> {
    return this.parts.signingKeys.putSigningKey(key);
  }

  async listSigningKeys(tenantId: string): Promise<SigningKeyRecord[]> {
    return this.parts.signingKeys.listSigningKeys(tenantId);
  }

  async rotateSigningKey(args: Parameters<Store['rotateSigningKey']>[0]): Promise<boolean> {
    return this.parts.signingKeys.rotateSigningKey(args);
  }

  async pruneSigningKeys(tenantId: string, now: number): Promise<number> {
    return this.parts.signingKeys.pruneSigningKeys(tenantId, now);
  }

  // — one-time values —

  async useOnce(namespace: string, id: string, expiresAt: number, now: number): Promise<boolean> {
    return this.parts.oneTime.useOnce(namespace, id, expiresAt, now);
  }

  async useProofOnce(namespace: string, id: string, expiresAt: number, now: number): Promise<boolean> {
    return this.parts.proofReplay.useProofOnce(namespace, id, expiresAt, now);
  }

  async putEphemeral<T>(record: EphemeralRecord<T>): Promise<void> {
    return this.parts.oneTime.putEphemeral(record);
  }

  async getEphemeral<T>(kind: EphemeralKind, id: string, now: number): Promise<EphemeralRecord<T> | undefined> {
    return this.parts.oneTime.getEphemeral<T>(kind, id, now);
  }

  async consumeEphemeral<T>(kind: EphemeralKind, id: string, now: number): Promise<ConsumeResult<T>> {
    return this.parts.oneTime.consumeEphemeral<T>(kind, id, now);
  }

  async deleteEphemeral(kind: EphemeralKind, id: string): Promise<void> {
    return this.parts.oneTime.deleteEphemeral(kind, id);
  }

  async revokeFamily(tenantId: string, familyId: string, now: number): Promise<number> {
    return this.parts.oneTime.revokeFamily(tenantId, familyId, now);
  }

  async sweep(now: number): Promise<number> {
    return (await this.parts.oneTime.sweep(now)) + (await this.parts.signals.sweepSets(now)) + (await this.parts.directory.sweepRegistrations(now));
  }

  // — security event streams —

  async putStream(stream: SignalStream): Promise<void> {
    return this.parts.signals.putStream(stream);
  }

  async getStream(tenantId: string, streamId: string): Promise<SignalStream | undefined> {
    return this.parts.signals.getStream(tenantId, streamId);
  }

  async listStreams(tenantId: string): Promise<SignalStream[]> {
    return this.parts.signals.listStreams(tenantId);
  }

  async deleteStream(tenantId: string, streamId: string): Promise<boolean> {
    return this.parts.signals.deleteStream(tenantId, streamId);
  }

  async queueSets(sets: readonly QueuedSet[]): Promise<void> {
    return this.parts.signals.queueSets(sets);
  }

  async pollSets(tenantId: string, streamId: string, ack: readonly string[], max: number, now: number): Promise<{ sets: QueuedSet[]; more: boolean }> {
    return this.parts.signals.pollSets(tenantId, streamId, ack, max, now);
  }

  async claimPushSets(now: number, leaseUntil: number, limit: number): Promise<QueuedSet[]> {
    return this.parts.signals.claimPushSets(now, leaseUntil, limit);
  }

  async settlePushSet(tenantId: string, streamId: string, jti: string, retryAt: number | undefined, attempts: number): Promise<void> {
    return this.parts.signals.settlePushSet(tenantId, streamId, jti, retryAt, attempts);
  }

  // — the admin change log —

  async appendAdminEvent(record: AdminEventRecord): Promise<void> {
    return this.parts.signals.appendAdminEvent(record);
  }

  async listAdminEvents(query: AdminEventQuery): Promise<{ seq: number; record: AdminEventRecord }[]> {
    return this.parts.signals.listAdminEvents(query);
  }
}

/**
 * The one store interface (DESIGN principle 3). Two engines implement it — `sqlite.ts` on
 * `node:sqlite`, `postgres.ts` on `pg` — and both pass `test/store-contract.ts`.
 *
 * Rules every engine keeps:
 * - Registrations are upserted by natural key, so loading a configuration twice changes nothing.
 * - Single-use values are consumed atomically (`UPDATE … WHERE consumed_at IS NULL RETURNING`),
 *   never find-then-consume: two instances on one database must agree on who won.
 * - Expired one-time values are invisible (and swept by `sweep()`), whatever the clock of the row.
 * - Times are epoch seconds, passed in by the caller (the store never reads the clock), so tests
 *   and rules share one injected clock.
 * - Registrations need their tenant to exist; usernames are unique per tenant; policy names are
 *   unique per tenant; at most one `current` signing key per (tenant, alg).
 * - An optional field stored as `undefined` comes back absent.
 */
import type {
  Application,
  AppRoleAssignment,
  ConsentGrant,
  Policy,
  SigningKeyRecord,
  Tenant,
  User,
} from '@baton/core';

/** Kinds of one-time / ephemeral values. Each kind is its own namespace of ids. */
export type EphemeralKind =
  | 'code' // authorization codes (id = hash of the code)
  | 'refresh' // refresh tokens (id = hash of the token; family = the rotation family)
  | 'session' // SSO sessions (id = sid)
  | 'interaction' // an authorize request waiting for the user (sign-in, MFA, consent)
  | 'csrf'
  | 'audit'
  | 'service'; // what the running service announced (the base URL of its issuers), for the CLI

export interface EphemeralRecord<T = Record<string, unknown>> {
  kind: EphemeralKind;
  id: string;
  tenantId: string;
  payload: T;
  /** Groups values revoked together (a refresh token family, everything one code issued, a session). */
  familyId?: string | undefined;
  /** Epoch seconds. */
  expiresAt: number;
  createdAt: number;
  consumedAt?: number | undefined;
  revokedAt?: number | undefined;
}

export type ConsumeResult<T> =
  /** First consumption: the caller owns it. */
  | { status: 'ok'; record: EphemeralRecord<T> }
  /** Consumed before (a replay): the record, so the caller can revoke its family. */
  | { status: 'replayed'; record: EphemeralRecord<T> }
  /** The family was revoked. */
  | { status: 'revoked'; record: EphemeralRecord<T> }
  /** Unknown or expired. */
  | { status: 'missing' };

export interface ConsentQuery {
  tenantId: string;
  clientId?: string;
  resource?: string;
  /** `'all'` or a user oid; both kinds when absent. */
  principal?: string;
}

/** How a stream's SETs reach its receiver: pushed to its endpoint (RFC 8935) or polled by it (RFC 8936). */
export type DeliveryMethod = 'push' | 'poll';

/**
 * A Shared Signals (SSF 1.0) event stream: one receiver application's subscription to the security
 * events of one tenant. Not cached: read from the store when an event is due and at each request.
 */
export interface SignalStream {
  tenantId: string;
  /** Unique within the tenant; the receiver names it in every management call. */
  streamId: string;
  /** The receiver application that created it: the only caller that may read, change or poll it. */
  clientId: string;
  /** The SETs' `aud`. */
  audience: string;
  /** Event type URIs the receiver asked for (already narrowed to those supported). */
  eventsRequested: string[];
  delivery: { method: DeliveryMethod; endpointUrl?: string | undefined; authorizationHeader?: string | undefined };
  description?: string | undefined;
  status: 'enabled' | 'paused' | 'disabled';
  reason?: string | undefined;
  /** How a user is named in `sub_id` (`iss_sub` with the pairwise `sub` this receiver sees in its tokens, `email`, `opaque` object id). */
  subjectFormat: 'iss_sub' | 'email' | 'opaque';
  /** Subjects removed by the receiver (canonical JSON of each subject identifier): no event about them. */
  removedSubjects: string[];
  /** Epoch seconds. */
  createdAt: number;
  updatedAt: number;
}

/** A signed Security Event Token waiting in a stream until it is acknowledged (poll) or delivered (push). */
export interface QueuedSet {
  tenantId: string;
  streamId: string;
  jti: string;
  /** The SET, a compact JWS. */
  set: string;
  createdAt: number;
  /** Dropped (never delivered) after this instant. */
  expiresAt: number;
  /** Push: when the next delivery attempt is due. Absent for a polled stream. */
  nextAttemptAt?: number | undefined;
  /** Push attempts made so far. */
  attempts: number;
}

/**
 * One change made through the admin API, as the admin change log (admin/audit.ts) keeps it: `event`
 * is the whole change event (who, what, the record before and after as the admin API shows it:
 * never a secret). `at` is its instant in epoch milliseconds.
 */
export interface AdminEventRecord {
  tenantId: string;
  id: string;
  at: number;
  entity: string;
  target: string;
  event: unknown;
}

export interface AdminEventQuery {
  tenantId: string;
  entity?: string | undefined;
  target?: string | undefined;
  /** Only events at or after this instant (epoch milliseconds). */
  since?: number | undefined;
  /** Only events after this `seq` (the cursor). */
  after?: number | undefined;
  /** At most this many, in `seq` order. */
  limit: number;
}

/** The store writes `atomically` can combine. */
export type AtomicWriteOp =
  | 'putUser'
  | 'putApplication'
  | 'putConsent'
  | 'deleteConsent'
  | 'putRoleAssignment'
  | 'deleteRoleAssignment'
  | 'replacePolicies'
  | 'queueSets'
  | 'appendAdminEvent';

/** One store write, as data: `{ op: 'putUser', args: [user] }`. */
export type AtomicWrite = { [K in AtomicWriteOp]: { op: K; args: Parameters<Store[K]> } }[AtomicWriteOp];

/** What changed, for in-memory caches (the directory) to drop their copy. */
export interface Invalidation {
  tenantId: string;
  /** `*` when unknown. */
  entity: 'tenant' | 'user' | 'application' | 'consent' | 'roleAssignment' | 'policy' | 'signingKey' | '*';
}

export interface Store {
  readonly engine: 'sqlite' | 'postgres';

  /** Applies pending migrations. Safe when two instances start at once (advisory lock / BEGIN IMMEDIATE). */
  migrate(): Promise<void>;
  close(): Promise<void>;

  /**
   * Subscribes to changes made by this instance or another one on the same database
   * (PostgreSQL LISTEN/NOTIFY; SQLite `PRAGMA data_version` polling). Returns an unsubscribe.
   */
  onInvalidate(listener: (change: Invalidation) => void): () => void;

  // — tenants —
  putTenant(tenant: Tenant): Promise<void>;
  getTenant(id: string): Promise<Tenant | undefined>;
  listTenants(): Promise<Tenant[]>;

  // — users —
  putUser(user: User): Promise<void>;
  getUserByName(tenantId: string, username: string): Promise<User | undefined>;
  getUserById(tenantId: string, oid: string): Promise<User | undefined>;
  listUsers(tenantId: string, options?: { limit?: number; offset?: number }): Promise<User[]>;

  // — applications (clients and APIs) —
  putApplication(app: Application): Promise<void>;
  getApplication(tenantId: string, clientId: string): Promise<Application | undefined>;
  listApplications(tenantId: string): Promise<Application[]>;

  // — consent —
  /** Upsert by (tenant, client, resource, principal); `scopes` replaces the stored set. */
  putConsent(grant: ConsentGrant): Promise<void>;
  listConsents(query: ConsentQuery): Promise<ConsentGrant[]>;
  deleteConsent(tenantId: string, clientId: string, resource: string, principal: string): Promise<boolean>;

  // — app role assignments —
  /** Upsert by (tenant, principalType, principalId, resource). */
  putRoleAssignment(assignment: AppRoleAssignment): Promise<void>;
  listRoleAssignments(tenantId: string, principalType: AppRoleAssignment['principalType'], principalId: string): Promise<AppRoleAssignment[]>;
  /** Removes the assignment of (tenant, principalType, principalId, resource); says whether there was one. */
  deleteRoleAssignment(tenantId: string, principalType: AppRoleAssignment['principalType'], principalId: string, resource: string): Promise<boolean>;

  // — conditional access —
  /** Replaces the tenant's policies as a set (policies are declarative). */
  replacePolicies(tenantId: string, policies: Policy[]): Promise<void>;
  listPolicies(tenantId: string): Promise<Policy[]>;

  // — signing keys —
  putSigningKey(key: SigningKeyRecord): Promise<void>;
  listSigningKeys(tenantId: string): Promise<SigningKeyRecord[]>;
  /**
   * Moves keys between states in one transaction: `promoteKid` becomes current, the old current
   * becomes retired with `removeAfter`, `next` is inserted with status `next`. Compare-and-set:
   * returns false if `expectCurrentKid` is no longer current (another instance rotated first) or
   * `promoteKid` is not a `next` key; throws TypeError for an unknown kid or one of another alg.
   */
  rotateSigningKey(args: {
    tenantId: string;
    alg: SigningKeyRecord['alg'];
    expectCurrentKid: string | undefined;
    promoteKid: string;
    next: SigningKeyRecord;
    now: number;
    retireGraceSeconds: number;
  }): Promise<boolean>;
  /** Drops keys whose `removeAfter` has passed. */
  pruneSigningKeys(tenantId: string, now: number): Promise<number>;

  // — one-time values —
  /**
   * Records `id` once (client assertion `jti`, RFC 7523 §3 item 7). Returns true the first time,
   * false when already seen and not expired. Atomic across instances.
   */
  useOnce(namespace: string, id: string, expiresAt: number, now: number): Promise<boolean>;
  /**
   * `useOnce` for the replay record of a short-lived signed proof (a DPoP proof's `jti`, a client
   * assertion's `jti`): the same answers, as atomic across instances, and sharing `useOnce`'s
   * records and `sweep`, but committed without waiting for the disk (SQLite: a connection with
   * `synchronous=NORMAL` under WAL; PostgreSQL: `synchronous_commit=off`). A crash of the
   * process keeps every record; only a crash of the operating system (or the database server)
   * can lose the last ones, and a lost record matters only until the proof itself expires
   * (docs/dpop.md, "The replay record"). Not for anything whose loss outlives its proof.
   */
  useProofOnce(namespace: string, id: string, expiresAt: number, now: number): Promise<boolean>;

  /**
   * Creates or replaces an ephemeral value. While the stored value is unexpired, its consumed and
   * revoked marks are kept (sticky): an instance writing back a copy it read earlier can never
   * bring a revoked session or a redeemed code back to life. An id reused after expiry starts fresh.
   */
  putEphemeral<T>(record: EphemeralRecord<T>): Promise<void>;
  /** Unexpired, unconsumed, unrevoked record, or undefined. */
  getEphemeral<T>(kind: EphemeralKind, id: string, now: number): Promise<EphemeralRecord<T> | undefined>;
  /** Atomic single use; see ConsumeResult. */
  consumeEphemeral<T>(kind: EphemeralKind, id: string, now: number): Promise<ConsumeResult<T>>;
  /** Deletes an ephemeral value (e.g. a finished interaction). */
  deleteEphemeral(kind: EphemeralKind, id: string): Promise<void>;
  /** Revokes every value of a family (all kinds). Returns how many were revoked. */
  revokeFamily(tenantId: string, familyId: string, now: number): Promise<number>;

  // — security event streams (SSF) and their queued SETs —
  /** Creates or replaces the stream (tenant, streamId). */
  putStream(stream: SignalStream): Promise<void>;
  getStream(tenantId: string, streamId: string): Promise<SignalStream | undefined>;
  listStreams(tenantId: string): Promise<SignalStream[]>;
  /** Deletes the stream and every SET still queued in it; says whether there was one. */
  deleteStream(tenantId: string, streamId: string): Promise<boolean>;
  /** Queues SETs; one whose stream no longer exists, or whose (stream, jti) is queued already, is skipped. */
  queueSets(sets: readonly QueuedSet[]): Promise<void>;
  /**
   * RFC 8936 in one call: removes the acknowledged `ack` jtis of the stream, then returns up to
   * `max` unexpired queued SETs, oldest first, and whether more are waiting. An unacknowledged SET
   * is returned again by the next poll (never lost; the receiver de-duplicates by `jti`).
   */
  pollSets(tenantId: string, streamId: string, ack: readonly string[], max: number, now: number): Promise<{ sets: QueuedSet[]; more: boolean }>;
  /**
   * Claims up to `limit` push SETs due at `now` (of any tenant) for one delivery attempt: each is
   * leased until `leaseUntil`, atomically, so two instances never push the same SET at once.
   */
  claimPushSets(now: number, leaseUntil: number, limit: number): Promise<QueuedSet[]>;
  /** After an attempt: `retryAt` undefined removes the SET (delivered, or refused for good); else it is due again then. */
  settlePushSet(tenantId: string, streamId: string, jti: string, retryAt: number | undefined, attempts: number): Promise<void>;

  // — the admin change log —
  /** Appends one admin change event (its `id` is unique). */
  appendAdminEvent(record: AdminEventRecord): Promise<void>;
  /** A tenant's admin change events, oldest first, with their `seq` (a cursor for `after`). */
  listAdminEvents(query: AdminEventQuery): Promise<{ seq: number; record: AdminEventRecord }[]>;

  /**
   * Runs the writes in ONE transaction, in order: all of them or none (an admin change, its change
   * event and the SETs it causes, admin/changes.ts). Cache notifications are sent iff it commits.
   */
  atomically(writes: readonly AtomicWrite[]): Promise<void>;

  /**
   * Removes expired ephemeral and one-time values, expired queued SETs, and dynamic client
   * registrations deleted or expired unused (with their consents). Returns rows removed.
   */
  sweep(now: number): Promise<number>;
}

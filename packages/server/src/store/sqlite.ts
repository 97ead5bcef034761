/**
 * The embedded store engine on Node's built-in `node:sqlite` (DESIGN principle 3).
 *
 * Every statement is prepared once and reused. The methods are `async` to honour the Store
 * interface, but each runs its SQL synchronously to completion, so within one process a
 * multi-statement write (a key rotation, a policy replacement) cannot interleave with another.
 * Across processes on one file, writes take the database write lock (`BEGIN IMMEDIATE`) and wait
 * for it up to `busy_timeout`.
 */
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import type { Application, AppRoleAssignment, ConsentGrant, Policy, SigningKeyRecord, Tenant, User } from '@baton/core';
import { migrateSqlite } from './migrations.ts';
import {
  checkPaging,
  checkPolicies,
  checkPromote,
  checkRotation,
  consentFilter,
  consentFromRow,
  type ConsentRow,
  type DataRow,
  emitTo,
  ephemeralFromRow,
  ephemeralParams,
  type EphemeralRow,
  json,
  parseJson,
  retiredKey,
  roleFromRow,
  type RoleRow,
  type RotateArgs,
  signingKeyParams,
  type Subscription,
  unclaimedResult,
  useOnceKey,
} from './shared.ts';
import type { ConsentQuery, ConsumeResult, EphemeralKind, EphemeralRecord, Invalidation, Store } from './types.ts';

export interface SqliteStoreOptions {
  /** How long a write waits for another process holding the write lock. Default 5000 ms. */
  busyTimeoutMs?: number;
  /** How often to look for writes made by other processes on the same file. Default 500 ms. */
  pollIntervalMs?: number;
}

/** How many change-log rows are kept for other processes to read (older ones become `*`). */
const CHANGE_LOG_KEEP = 1000;

type Entity = Invalidation['entity'];
type Changed = (tenantId: string, entity: Entity) => void;

interface ChangeRow {
  seq: number;
  tenant_id: string;
  entity: string;
}

/** By filter mask: 2 resource, 6 resource+principal, 4 principal, 5 principal+client. */
const CONSENT_INDEX_BY_MASK: readonly string[] = ['', '', 'consents_by_resource', '', 'consents_by_principal', 'consents_by_principal', 'consents_by_resource', ''];

/**
 * The listConsents query for a combination of filters (bit 1 clientId, 2 resource, 4 principal).
 * One statement per combination: an `(? IS NULL OR col = ?)` form would stop SQLite from using an
 * index and scan 10^6 rows. Exported so a test can assert each plan is an index search.
 */
export function consentListSql(mask: number): string {
  const where = ['tenant_id = ?'];
  if (mask & 1) where.push('client_id = ?');
  if (mask & 2) where.push('resource = ?');
  if (mask & 4) where.push('principal = ?');
  // Without statistics SQLite prefers walking the primary key (already in ORDER BY order) over
  // searching (tenant_id, resource) and sorting: for "every consent to this API" that reads every
  // consent of the tenant. INDEXED BY pins the index whose prefix holds every filter (and fails
  // loudly if a migration ever drops it); the other shapes are prefixes of the primary key.
  const index = CONSENT_INDEX_BY_MASK[mask] ?? '';
  return `SELECT * FROM consents${index === '' ? '' : ` INDEXED BY ${index}`} WHERE ${where.join(' AND ')} ORDER BY client_id, resource, principal`;
}

function prepareStatements(db: DatabaseSync) {
  return {
    begin: db.prepare('BEGIN IMMEDIATE'),
    commit: db.prepare('COMMIT'),
    rollback: db.prepare('ROLLBACK'),

    dataVersion: db.prepare('PRAGMA data_version'),
    logChange: db.prepare('INSERT INTO baton_changes (tenant_id, entity) VALUES (?, ?) RETURNING seq'),
    pruneChanges: db.prepare('DELETE FROM baton_changes WHERE seq <= ?'),
    lastChange: db.prepare('SELECT coalesce(max(seq), 0) AS seq FROM baton_changes'),
    changesSince: db.prepare('SELECT seq, tenant_id, entity FROM baton_changes WHERE seq > ? ORDER BY seq LIMIT ?'),

    putTenant: db.prepare('INSERT INTO tenants (id, data) VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET data = excluded.data'),
    getTenant: db.prepare('SELECT data FROM tenants WHERE id = ?'),
    listTenants: db.prepare('SELECT data FROM tenants ORDER BY id'),

    putUser: db.prepare(
      `INSERT INTO users (tenant_id, oid, username, data) VALUES (?, ?, ?, ?)
       ON CONFLICT (tenant_id, oid) DO UPDATE SET username = excluded.username, data = excluded.data`,
    ),
    getUserByName: db.prepare('SELECT data FROM users WHERE tenant_id = ? AND username = ?'),
    getUserById: db.prepare('SELECT data FROM users WHERE tenant_id = ? AND oid = ?'),
    // Ordered by the (tenant_id, username) unique index so paging never sorts the tenant.
    listUsers: db.prepare('SELECT data FROM users WHERE tenant_id = ? ORDER BY username LIMIT ? OFFSET ?'),

    putApplication: db.prepare(
      `INSERT INTO applications (tenant_id, client_id, data) VALUES (?, ?, ?)
       ON CONFLICT (tenant_id, client_id) DO UPDATE SET data = excluded.data`,
    ),
    getApplication: db.prepare('SELECT data FROM applications WHERE tenant_id = ? AND client_id = ?'),
    listApplications: db.prepare('SELECT data FROM applications WHERE tenant_id = ? ORDER BY client_id'),

    putConsent: db.prepare(
      `INSERT INTO consents (tenant_id, client_id, resource, principal, scopes, created_at) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (tenant_id, client_id, resource, principal) DO UPDATE SET scopes = excluded.scopes, created_at = excluded.created_at`,
    ),
    listConsents: Array.from({ length: 8 }, (_, mask) => db.prepare(consentListSql(mask))),
    deleteConsent: db.prepare('DELETE FROM consents WHERE tenant_id = ? AND client_id = ? AND resource = ? AND principal = ?'),

    putRoleAssignment: db.prepare(
      `INSERT INTO role_assignments (tenant_id, principal_type, principal_id, resource, roles) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (tenant_id, principal_type, principal_id, resource) DO UPDATE SET roles = excluded.roles`,
    ),
    listRoleAssignments: db.prepare(
      'SELECT * FROM role_assignments WHERE tenant_id = ? AND principal_type = ? AND principal_id = ? ORDER BY resource',
    ),

    deletePolicies: db.prepare('DELETE FROM policies WHERE tenant_id = ?'),
    insertPolicy: db.prepare('INSERT INTO policies (tenant_id, position, name, data) VALUES (?, ?, ?, ?)'),
    listPolicies: db.prepare('SELECT data FROM policies WHERE tenant_id = ? ORDER BY position'),

    putSigningKey: db.prepare(
      `INSERT INTO signing_keys (tenant_id, kid, alg, status, created_at, remove_after, data) VALUES (?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (tenant_id, kid) DO UPDATE SET alg = excluded.alg, status = excluded.status,
         created_at = excluded.created_at, remove_after = excluded.remove_after, data = excluded.data`,
    ),
    insertSigningKey: db.prepare(
      'INSERT INTO signing_keys (tenant_id, kid, alg, status, created_at, remove_after, data) VALUES (?, ?, ?, ?, ?, ?, ?)',
    ),
    getSigningKey: db.prepare('SELECT data FROM signing_keys WHERE tenant_id = ? AND kid = ?'),
    currentSigningKey: db.prepare("SELECT kid, data FROM signing_keys WHERE tenant_id = ? AND alg = ? AND status = 'current'"),
    listSigningKeys: db.prepare('SELECT data FROM signing_keys WHERE tenant_id = ? ORDER BY created_at, kid'),
    pruneSigningKeys: db.prepare('DELETE FROM signing_keys WHERE tenant_id = ? AND remove_after IS NOT NULL AND remove_after < ?'),

    // One statement: the insert wins, or the conflict branch revives an expired row; a live row
    // returns nothing. No read-then-write window for a replayed `jti` to slip through.
    useOnce: db.prepare(
      `INSERT INTO used_once (namespace, id, expires_at) VALUES (?1, ?2, ?3)
       ON CONFLICT (namespace, id) DO UPDATE SET expires_at = excluded.expires_at WHERE used_once.expires_at <= ?4
       RETURNING 1 AS ok`,
    ),

    putEphemeral: db.prepare(
      `INSERT INTO ephemeral (kind, id, tenant_id, family_id, payload, expires_at, created_at, consumed_at, revoked_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (kind, id) DO UPDATE SET tenant_id = excluded.tenant_id, family_id = excluded.family_id,
         payload = excluded.payload, expires_at = excluded.expires_at, created_at = excluded.created_at,
         -- Consumption and revocation are sticky while the stored value lives: a put built
         -- from a read taken before another instance revoked the session (or redeemed the
         -- code) must not bring it back. An id reused after expiry starts afresh.
         consumed_at = CASE WHEN ephemeral.expires_at > excluded.created_at
           THEN coalesce(ephemeral.consumed_at, excluded.consumed_at) ELSE excluded.consumed_at END,
         revoked_at = CASE WHEN ephemeral.expires_at > excluded.created_at
           THEN coalesce(ephemeral.revoked_at, excluded.revoked_at) ELSE excluded.revoked_at END`,
    ),
    getEphemeral: db.prepare(
      `SELECT * FROM ephemeral WHERE kind = ? AND id = ? AND expires_at > ? AND consumed_at IS NULL AND revoked_at IS NULL`,
    ),
    // Atomic single use (STYLE habit 6): the WHERE clause is the check, the UPDATE is the claim.
    consumeEphemeral: db.prepare(
      `UPDATE ephemeral SET consumed_at = ?3
       WHERE kind = ?1 AND id = ?2 AND consumed_at IS NULL AND revoked_at IS NULL AND expires_at > ?3
       RETURNING *`,
    ),
    findEphemeral: db.prepare('SELECT * FROM ephemeral WHERE kind = ? AND id = ?'),
    deleteEphemeral: db.prepare('DELETE FROM ephemeral WHERE kind = ? AND id = ?'),
    revokeFamily: db.prepare(
      'UPDATE ephemeral SET revoked_at = ? WHERE tenant_id = ? AND family_id = ? AND revoked_at IS NULL',
    ),
    sweepEphemeral: db.prepare('DELETE FROM ephemeral WHERE expires_at <= ?'),
    sweepUsedOnce: db.prepare('DELETE FROM used_once WHERE expires_at <= ?'),
  };
}

type Statements = ReturnType<typeof prepareStatements>;

function parse<T>(row: unknown): T {
  return parseJson((row as DataRow<string>).data) as T;
}

function rows(statement: StatementSync, ...params: (string | number | null)[]): unknown[] {
  return statement.all(...params);
}

export class SqliteStore implements Store {
  readonly engine = 'sqlite' as const;
  readonly #db: DatabaseSync;
  readonly #memory: boolean;
  readonly #pollIntervalMs: number;
  #statements: Statements | undefined;
  readonly #subscriptions = new Set<Subscription>();
  #timer: NodeJS.Timeout | undefined;
  #dataVersion = 0;
  #lastSeq = 0;
  #closed = false;

  /**
   * @param path a file path, or `':memory:'` for a private in-memory database.
   * @example
   * const store = new SqliteStore('/var/lib/baton/baton.sqlite');
   * await store.migrate();
   */
  constructor(path: string, options: SqliteStoreOptions = {}) {
    const busyTimeoutMs = options.busyTimeoutMs ?? 5000;
    this.#pollIntervalMs = options.pollIntervalMs ?? 500;
    this.#memory = path === ':memory:' || path === '';
    this.#db = new DatabaseSync(path, { enableForeignKeyConstraints: true, timeout: busyTimeoutMs });
    // busy_timeout before journal_mode: switching to WAL needs the lock another starter may hold.
    this.#db.exec(`PRAGMA busy_timeout = ${Math.trunc(busyTimeoutMs)}`);
    this.#db.exec('PRAGMA foreign_keys = ON');
    // WAL: readers never block the writer, and other processes can poll data_version cheaply.
    if (!this.#memory) this.#db.exec('PRAGMA journal_mode = WAL');
  }

  async migrate(): Promise<void> {
    migrateSqlite(this.#db);
    this.#statements ??= prepareStatements(this.#db);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#stopPolling();
    this.#subscriptions.clear();
    this.#db.close();
  }

  onInvalidate(listener: (change: Invalidation) => void): () => void {
    // A wrapper per call, so subscribing one function twice needs two unsubscribes.
    const subscription: Subscription = { listener };
    this.#subscriptions.add(subscription);
    this.#startPolling();
    return () => {
      this.#subscriptions.delete(subscription);
      if (this.#subscriptions.size === 0) this.#stopPolling();
    };
  }

  // — tenants —

  async putTenant(tenant: Tenant): Promise<void> {
    this.#write((changed) => {
      this.#s.putTenant.run(tenant.id, json(tenant));
      changed(tenant.id, 'tenant');
    });
  }

  async getTenant(id: string): Promise<Tenant | undefined> {
    const row = this.#s.getTenant.get(id);
    return row === undefined ? undefined : parse<Tenant>(row);
  }

  async listTenants(): Promise<Tenant[]> {
    return rows(this.#s.listTenants).map((row) => parse<Tenant>(row));
  }

  // — users —

  async putUser(user: User): Promise<void> {
    this.#write((changed) => {
      this.#s.putUser.run(user.tenantId, user.oid, user.username, json(user));
      changed(user.tenantId, 'user');
    });
  }

  async getUserByName(tenantId: string, username: string): Promise<User | undefined> {
    const row = this.#s.getUserByName.get(tenantId, username);
    return row === undefined ? undefined : parse<User>(row);
  }

  async getUserById(tenantId: string, oid: string): Promise<User | undefined> {
    const row = this.#s.getUserById.get(tenantId, oid);
    return row === undefined ? undefined : parse<User>(row);
  }

  async listUsers(tenantId: string, options?: { limit?: number; offset?: number }): Promise<User[]> {
    const { limit, offset } = checkPaging(options);
    // `LIMIT -1` is no limit.
    return rows(this.#s.listUsers, tenantId, limit ?? -1, offset).map((row) => parse<User>(row));
  }

  // — applications —

  async putApplication(app: Application): Promise<void> {
    this.#write((changed) => {
      this.#s.putApplication.run(app.tenantId, app.clientId, json(app));
      changed(app.tenantId, 'application');
    });
  }

  async getApplication(tenantId: string, clientId: string): Promise<Application | undefined> {
    const row = this.#s.getApplication.get(tenantId, clientId);
    return row === undefined ? undefined : parse<Application>(row);
  }

  async listApplications(tenantId: string): Promise<Application[]> {
    return rows(this.#s.listApplications, tenantId).map((row) => parse<Application>(row));
  }

  // — consent —

  async putConsent(grant: ConsentGrant): Promise<void> {
    this.#write((changed) => {
      this.#s.putConsent.run(grant.tenantId, grant.clientId, grant.resource, grant.principal, json(grant.scopes), grant.createdAt);
      changed(grant.tenantId, 'consent');
    });
  }

  async listConsents(query: ConsentQuery): Promise<ConsentGrant[]> {
    const { mask, params } = consentFilter(query);
    const statement = this.#s.listConsents[mask] as StatementSync;
    return rows(statement, ...params).map((row) => consentFromRow(row as ConsentRow<string>, parseJson));
  }

  async deleteConsent(tenantId: string, clientId: string, resource: string, principal: string): Promise<boolean> {
    return this.#write((changed) => {
      const { changes } = this.#s.deleteConsent.run(tenantId, clientId, resource, principal);
      if (Number(changes) === 0) return false;
      changed(tenantId, 'consent');
      return true;
    });
  }

  // — app role assignments —

  async putRoleAssignment(assignment: AppRoleAssignment): Promise<void> {
    this.#write((changed) => {
      this.#s.putRoleAssignment.run(
        assignment.tenantId,
        assignment.principalType,
        assignment.principalId,
        assignment.resource,
        json(assignment.roles),
      );
      changed(assignment.tenantId, 'roleAssignment');
    });
  }

  async listRoleAssignments(
    tenantId: string,
    principalType: AppRoleAssignment['principalType'],
    principalId: string,
  ): Promise<AppRoleAssignment[]> {
    return rows(this.#s.listRoleAssignments, tenantId, principalType, principalId).map((row) => roleFromRow(row as RoleRow<string>, parseJson));
  }

  // — conditional access —

  async replacePolicies(tenantId: string, policies: Policy[]): Promise<void> {
    checkPolicies(tenantId, policies);
    this.#write((changed) => {
      this.#s.deletePolicies.run(tenantId);
      policies.forEach((policy, position) => this.#s.insertPolicy.run(tenantId, position, policy.name, json(policy)));
      changed(tenantId, 'policy');
    });
  }

  async listPolicies(tenantId: string): Promise<Policy[]> {
    return rows(this.#s.listPolicies, tenantId).map((row) => parse<Policy>(row));
  }

  // — signing keys —

  async putSigningKey(key: SigningKeyRecord): Promise<void> {
    this.#write((changed) => {
      this.#putKey(this.#s.putSigningKey, key);
      changed(key.tenantId, 'signingKey');
    });
  }

  async listSigningKeys(tenantId: string): Promise<SigningKeyRecord[]> {
    return rows(this.#s.listSigningKeys, tenantId).map((row) => parse<SigningKeyRecord>(row));
  }

  async rotateSigningKey(args: RotateArgs): Promise<boolean> {
    checkRotation(args);
    const { tenantId, alg, now } = args;
    return this.#write((changed) => {
      // Inside BEGIN IMMEDIATE: no other connection can change the keys between this read and
      // the writes below, so the compare and the set are one step.
      const current = this.#s.currentSigningKey.get(tenantId, alg) as { kid: string; data: string } | undefined;
      if (current?.kid !== args.expectCurrentKid) return false;
      const promoteRow = this.#s.getSigningKey.get(tenantId, args.promoteKid);
      const promote = promoteRow === undefined ? undefined : parse<SigningKeyRecord>(promoteRow);
      checkPromote(promote, args);
      if (promote.status !== 'next') return false;
      if (current !== undefined) {
        // Retire before promoting: the one-current-key index is checked per statement.
        this.#putKey(this.#s.putSigningKey, retiredKey(parse<SigningKeyRecord>(current), args));
      }
      this.#putKey(this.#s.putSigningKey, { ...promote, status: 'current', activatedAt: now });
      this.#putKey(this.#s.insertSigningKey, { ...args.next, status: 'next' });
      changed(tenantId, 'signingKey');
      return true;
    });
  }

  async pruneSigningKeys(tenantId: string, now: number): Promise<number> {
    return this.#write((changed) => {
      const removed = Number(this.#s.pruneSigningKeys.run(tenantId, now).changes);
      if (removed > 0) changed(tenantId, 'signingKey');
      return removed;
    });
  }

  // — one-time values —

  async useOnce(namespace: string, id: string, expiresAt: number, now: number): Promise<boolean> {
    return this.#s.useOnce.get(namespace, useOnceKey(id), expiresAt, now) !== undefined;
  }

  async putEphemeral<T>(record: EphemeralRecord<T>): Promise<void> {
    this.#s.putEphemeral.run(...ephemeralParams(record));
  }

  async getEphemeral<T>(kind: EphemeralKind, id: string, now: number): Promise<EphemeralRecord<T> | undefined> {
    const row = this.#s.getEphemeral.get(kind, id, now) as EphemeralRow<string> | undefined;
    return row === undefined ? undefined : ephemeralFromRow<T, string>(row, parseJson);
  }

  async consumeEphemeral<T>(kind: EphemeralKind, id: string, now: number): Promise<ConsumeResult<T>> {
    const claimed = this.#s.consumeEphemeral.get(kind, id, now) as EphemeralRow<string> | undefined;
    if (claimed !== undefined) return { status: 'ok', record: ephemeralFromRow<T, string>(claimed, parseJson) };
    const row = this.#s.findEphemeral.get(kind, id) as EphemeralRow<string> | undefined;
    return unclaimedResult<T, string>(row, now, parseJson);
  }

  async deleteEphemeral(kind: EphemeralKind, id: string): Promise<void> {
    this.#s.deleteEphemeral.run(kind, id);
  }

  async revokeFamily(tenantId: string, familyId: string, now: number): Promise<number> {
    return Number(this.#s.revokeFamily.run(now, tenantId, familyId).changes);
  }

  async sweep(now: number): Promise<number> {
    return this.#tx(() => Number(this.#s.sweepEphemeral.run(now).changes) + Number(this.#s.sweepUsedOnce.run(now).changes));
  }

  // — internals —

  get #s(): Statements {
    // Prepared on first use when the caller skipped migrate() on an already-migrated file.
    this.#statements ??= prepareStatements(this.#db);
    return this.#statements;
  }

  #putKey(statement: StatementSync, key: SigningKeyRecord): void {
    statement.run(...signingKeyParams(key));
  }

  #tx<T>(fn: () => T): T {
    this.#s.begin.run();
    try {
      const result = fn();
      this.#s.commit.run();
      return result;
    } catch (error) {
      if (this.#db.isTransaction) this.#s.rollback.run();
      throw error;
    }
  }

  /** A registration write: its changes go to the change log in the same transaction, then to local listeners. */
  #write<T>(fn: (changed: Changed) => T): T {
    const changes: Invalidation[] = [];
    const result = this.#tx(() => {
      const value = fn((tenantId, entity) => changes.push({ tenantId, entity }));
      let seq = 0;
      for (const change of changes) seq = Number((this.#s.logChange.get(change.tenantId, change.entity) as { seq: number }).seq);
      if (seq > CHANGE_LOG_KEEP) this.#s.pruneChanges.run(seq - CHANGE_LOG_KEEP);
      return value;
    });
    // Synchronously, before the caller's await resumes: a cache is dropped before anyone can
    // read the value this write replaced.
    for (const change of changes) this.#emit(change);
    return result;
  }

  #emit(change: Invalidation): void {
    emitTo(this.#subscriptions, change);
  }

  #startPolling(): void {
    // An in-memory database has no other connection that could write to it.
    if (this.#memory || this.#timer !== undefined || this.#closed) return;
    this.#dataVersion = Number((this.#s.dataVersion.get() as { data_version: number }).data_version);
    this.#lastSeq = Number((this.#s.lastChange.get() as { seq: number }).seq);
    this.#timer = setInterval(() => this.#poll(), this.#pollIntervalMs);
    // A cache-invalidation timer must never keep a finished process alive.
    this.#timer.unref();
  }

  #stopPolling(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #poll(): void {
    let changes: Invalidation[];
    try {
      // data_version moves only when another connection commits; our own writes were emitted already.
      const version = Number((this.#s.dataVersion.get() as { data_version: number }).data_version);
      if (version === this.#dataVersion) return;
      this.#dataVersion = version;
      const found = rows(this.#s.changesSince, this.#lastSeq, CHANGE_LOG_KEEP + 1) as ChangeRow[];
      if (found.length === 0) return; // only one-time values changed
      const first = found[0] as ChangeRow;
      const last = found[found.length - 1] as ChangeRow;
      if (first.seq !== this.#lastSeq + 1 || found.length > CHANGE_LOG_KEEP) {
        // We fell behind the pruned log: some changes are unknown, so everything is suspect.
        this.#lastSeq = Number((this.#s.lastChange.get() as { seq: number }).seq);
        changes = [{ tenantId: '*', entity: '*' }];
      } else {
        this.#lastSeq = last.seq;
        const seen = new Set<string>();
        changes = [];
        for (const row of found) {
          const key = JSON.stringify([row.tenant_id, row.entity]);
          if (seen.has(key)) continue;
          seen.add(key);
          changes.push({ tenantId: row.tenant_id, entity: row.entity as Entity });
        }
      }
    } catch {
      // The file could not be read this time (closed, I/O error): caches cannot know what they
      // missed, so they drop everything rather than serve a registration that may have changed.
      if (this.#closed) return;
      changes = [{ tenantId: '*', entity: '*' }];
    }
    for (const change of changes) this.#emit(change);
  }
}

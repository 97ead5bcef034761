/**
 * The multi-instance store engine on PostgreSQL (`pg`), DESIGN principle 3.
 *
 * - Every table lives in one schema, selected per connection through the startup `search_path`,
 *   so several deployments (or test runs) can share a database.
 * - Single-use values are claimed by one statement (`INSERT … ON CONFLICT … WHERE`,
 *   `UPDATE … WHERE consumed_at IS NULL RETURNING`): row locks decide the winner across instances.
 * - Key rotation holds a transaction-scoped advisory lock per (schema, tenant, alg), so the
 *   compare-and-set also covers "no current key yet", where there is no row to lock.
 * - Registration writes send `pg_notify` in the same statement or transaction, so a notification
 *   exists exactly when the change committed; a dedicated LISTEN connection delivers those of
 *   other instances to `onInvalidate` listeners and reconnects when it drops.
 */
import { randomUUID } from 'node:crypto';
import { Client, Pool } from 'pg';
import type { Notification, PoolClient, QueryResultRow } from 'pg';
import type { Application, AppRoleAssignment, ConsentGrant, Policy, SigningKeyRecord, Tenant, User } from '@baton/core';
import { advisoryLockKey, migratePostgres, SCHEMA_NAME } from './migrations.ts';
import {
  asParsed,
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

export interface PostgresStoreOptions {
  /** Schema holding every table (created by `migrate()` if missing). Default `public`. */
  schema?: string;
  /** Pool size. Default 10. */
  max?: number;
  /** How long to wait for a connection before failing. Default 10000 ms. */
  connectionTimeoutMillis?: number;
  /** Longest wait between attempts to re-establish the LISTEN connection. Default 5000 ms. */
  maxReconnectDelayMs?: number;
  /**
   * Errors that belong to no call: an idle pooled connection or the LISTEN connection dropping.
   * The store recovers from both by itself; this is for logging. Default: ignored.
   */
  onError?: (error: Error) => void;
}

/** The NOTIFY channel. One per database: the payload names the schema, listeners filter on it. */
export const INVALIDATION_CHANNEL = 'baton_invalidate';

/** PostgreSQL refuses NOTIFY payloads of 8000 bytes or more; beyond this we send `tenantId: '*'`. */
const MAX_PAYLOAD_BYTES = 7000;

const ENTITIES: ReadonlySet<string> = new Set<Invalidation['entity']>([
  'tenant',
  'user',
  'application',
  'consent',
  'roleAssignment',
  'policy',
  'signingKey',
  '*',
]);

interface NotifyPayload {
  schema: string;
  source: string;
  tenantId: string;
  entity: Invalidation['entity'];
}

/**
 * The listConsents query for a combination of filters (bit 1 clientId, 2 resource, 4 principal).
 * One statement per combination so each is planned against the index whose prefix it fills; a
 * `($2 IS NULL OR col = $2)` form gets one generic plan that scans. Exported for a plan test.
 */
export function consentListSql(mask: number): string {
  const where = ['tenant_id = $1'];
  let n = 1;
  if (mask & 1) where.push(`client_id = $${++n}`);
  if (mask & 2) where.push(`resource = $${++n}`);
  if (mask & 4) where.push(`principal = $${++n}`);
  return `SELECT * FROM consents WHERE ${where.join(' AND ')} ORDER BY client_id, resource, principal`;
}

/**
 * The pool's connection settings with `-c search_path=<schema>` in the startup options. `pg` lets
 * an `options` parameter in the URL override the config's, which would silently put every query
 * back in `public`; so any `options` the URL carries (some hosted services route by them) move
 * into ours.
 */
function withSearchPath(connectionString: string, schema: string): { connectionString: string; options: string } {
  const ours = `-c search_path=${schema}`;
  let url: URL;
  try {
    url = new URL(connectionString);
  } catch {
    // Not a URL (a key=value string): pg reads it as is.
    return { connectionString, options: ours };
  }
  const existing = url.searchParams.get('options');
  if (existing === null) return { connectionString, options: ours };
  url.searchParams.delete('options');
  return { connectionString: url.toString(), options: `${existing} ${ours}` };
}

const PUT_SIGNING_KEY = `
  INSERT INTO signing_keys (tenant_id, kid, alg, status, created_at, remove_after, data) VALUES ($1, $2, $3, $4, $5, $6, $7)
  ON CONFLICT (tenant_id, kid) DO UPDATE SET alg = EXCLUDED.alg, status = EXCLUDED.status,
    created_at = EXCLUDED.created_at, remove_after = EXCLUDED.remove_after, data = EXCLUDED.data`;

export class PostgresStore implements Store {
  readonly engine = 'postgres' as const;
  readonly #pool: Pool;
  readonly #connectionString: string;
  readonly #schema: string;
  readonly #connectionTimeoutMillis: number;
  readonly #maxReconnectDelayMs: number;
  readonly #onError: (error: Error) => void;
  /** Tells our own notifications apart: they were emitted locally when the write returned. */
  readonly #source = randomUUID();
  readonly #subscriptions = new Set<Subscription>();
  #listener: Client | undefined;
  #listening: Promise<void> | undefined;
  #reconnectTimer: NodeJS.Timeout | undefined;
  #reconnectDelayMs = 0;
  #closing: Promise<void> | undefined;

  /**
   * @param connectionString `postgres://user@host:5432/db` (never logged: it may hold a password).
   * @example
   * const store = new PostgresStore(process.env.DATABASE_URL!, { schema: 'baton' });
   * await store.migrate();
   */
  constructor(connectionString: string, options: PostgresStoreOptions = {}) {
    const schema = options.schema ?? 'public';
    // The name goes into startup options and DDL as an identifier; only plain names are safe there.
    if (!SCHEMA_NAME.test(schema)) throw new TypeError('PostgresStore: schema must match /^[a-z_][a-z0-9_]{0,62}$/');
    this.#schema = schema;
    this.#connectionString = connectionString;
    this.#connectionTimeoutMillis = options.connectionTimeoutMillis ?? 10_000;
    this.#maxReconnectDelayMs = options.maxReconnectDelayMs ?? 5000;
    this.#onError = options.onError ?? (() => {});
    this.#pool = new Pool({
      ...withSearchPath(connectionString, schema),
      application_name: 'baton',
      max: options.max ?? 10,
      connectionTimeoutMillis: this.#connectionTimeoutMillis,
    });
    // Without a handler, an idle connection killed by the server would crash the process; the
    // pool already discards it and opens a fresh one for the next query.
    this.#pool.on('error', (error) => this.#onError(error));
  }

  /** Applies pending migrations, then starts listening for other instances' changes. */
  async migrate(): Promise<void> {
    if (this.#closing) throw new Error('PostgresStore: closed');
    const client = await this.#pool.connect();
    try {
      await migratePostgres(client, this.#schema);
      client.release();
    } catch (error) {
      // A failed migration may leave the connection mid-transaction: destroy it, never reuse it.
      client.release(error instanceof Error ? error : true);
      throw error;
    }
    await this.#listen();
  }

  async close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#subscriptions.clear();
      if (this.#reconnectTimer !== undefined) clearTimeout(this.#reconnectTimer);
      this.#reconnectTimer = undefined;
      const listener = this.#listener;
      this.#listener = undefined;
      await Promise.allSettled([listener?.end(), this.#pool.end()]);
    })();
    return this.#closing;
  }

  onInvalidate(listener: (change: Invalidation) => void): () => void {
    const subscription: Subscription = { listener };
    this.#subscriptions.add(subscription);
    // migrate() normally started it already; this covers a store used on a migrated schema.
    this.#listen().catch(() => this.#scheduleReconnect());
    return () => {
      this.#subscriptions.delete(subscription);
    };
  }

  // — tenants —

  async putTenant(tenant: Tenant): Promise<void> {
    await this.#notifyingQuery(
      'baton_put_tenant',
      `INSERT INTO tenants (id, data) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET data = EXCLUDED.data`,
      [tenant.id, json(tenant)],
      { tenantId: tenant.id, entity: 'tenant' },
    );
  }

  async getTenant(id: string): Promise<Tenant | undefined> {
    const { rows } = await this.#query<DataRow<unknown>>('baton_get_tenant', 'SELECT data FROM tenants WHERE id = $1', [id]);
    return rows[0]?.data as Tenant | undefined;
  }

  async listTenants(): Promise<Tenant[]> {
    const { rows } = await this.#query<DataRow<unknown>>('baton_list_tenants', 'SELECT data FROM tenants ORDER BY id', []);
    return rows.map((row) => row.data as Tenant);
  }

  // — users —

  async putUser(user: User): Promise<void> {
    await this.#notifyingQuery(
      'baton_put_user',
      `INSERT INTO users (tenant_id, oid, username, data) VALUES ($1, $2, $3, $4)
       ON CONFLICT (tenant_id, oid) DO UPDATE SET username = EXCLUDED.username, data = EXCLUDED.data`,
      [user.tenantId, user.oid, user.username, json(user)],
      { tenantId: user.tenantId, entity: 'user' },
    );
  }

  async getUserByName(tenantId: string, username: string): Promise<User | undefined> {
    const { rows } = await this.#query<DataRow<unknown>>(
      'baton_get_user_by_name',
      'SELECT data FROM users WHERE tenant_id = $1 AND username = $2',
      [tenantId, username],
    );
    return rows[0]?.data as User | undefined;
  }

  async getUserById(tenantId: string, oid: string): Promise<User | undefined> {
    const { rows } = await this.#query<DataRow<unknown>>('baton_get_user_by_id', 'SELECT data FROM users WHERE tenant_id = $1 AND oid = $2', [
      tenantId,
      oid,
    ]);
    return rows[0]?.data as User | undefined;
  }

  async listUsers(tenantId: string, options?: { limit?: number; offset?: number }): Promise<User[]> {
    const { limit, offset } = checkPaging(options);
    // `LIMIT NULL` is `LIMIT ALL`. Ordered by the (tenant_id, username) unique index.
    const { rows } = await this.#query<DataRow<unknown>>(
      'baton_list_users',
      'SELECT data FROM users WHERE tenant_id = $1 ORDER BY username LIMIT $2 OFFSET $3',
      [tenantId, limit ?? null, offset],
    );
    return rows.map((row) => row.data as User);
  }

  // — applications —

  async putApplication(app: Application): Promise<void> {
    await this.#notifyingQuery(
      'baton_put_application',
      `INSERT INTO applications (tenant_id, client_id, data) VALUES ($1, $2, $3)
       ON CONFLICT (tenant_id, client_id) DO UPDATE SET data = EXCLUDED.data`,
      [app.tenantId, app.clientId, json(app)],
      { tenantId: app.tenantId, entity: 'application' },
    );
  }

  async getApplication(tenantId: string, clientId: string): Promise<Application | undefined> {
    const { rows } = await this.#query<DataRow<unknown>>(
      'baton_get_application',
      'SELECT data FROM applications WHERE tenant_id = $1 AND client_id = $2',
      [tenantId, clientId],
    );
    return rows[0]?.data as Application | undefined;
  }

  async listApplications(tenantId: string): Promise<Application[]> {
    const { rows } = await this.#query<DataRow<unknown>>(
      'baton_list_applications',
      'SELECT data FROM applications WHERE tenant_id = $1 ORDER BY client_id',
      [tenantId],
    );
    return rows.map((row) => row.data as Application);
  }

  // — consent —

  async putConsent(grant: ConsentGrant): Promise<void> {
    await this.#notifyingQuery(
      'baton_put_consent',
      `INSERT INTO consents (tenant_id, client_id, resource, principal, scopes, created_at) VALUES ($1, $2, $3, $4, $5, $6)
       ON CONFLICT (tenant_id, client_id, resource, principal) DO UPDATE SET scopes = EXCLUDED.scopes, created_at = EXCLUDED.created_at`,
      [grant.tenantId, grant.clientId, grant.resource, grant.principal, json(grant.scopes), grant.createdAt],
      { tenantId: grant.tenantId, entity: 'consent' },
    );
  }

  async listConsents(query: ConsentQuery): Promise<ConsentGrant[]> {
    const { mask, params } = consentFilter(query);
    const { rows } = await this.#query<ConsentRow<string[]>>(`baton_list_consents_${mask}`, consentListSql(mask), params);
    return rows.map((row) => consentFromRow(row, asParsed));
  }

  async deleteConsent(tenantId: string, clientId: string, resource: string, principal: string): Promise<boolean> {
    const { rowCount } = await this.#notifyingQuery(
      'baton_delete_consent',
      'DELETE FROM consents WHERE tenant_id = $1 AND client_id = $2 AND resource = $3 AND principal = $4',
      [tenantId, clientId, resource, principal],
      { tenantId, entity: 'consent' },
    );
    return rowCount > 0;
  }

  // — app role assignments —

  async putRoleAssignment(assignment: AppRoleAssignment): Promise<void> {
    await this.#notifyingQuery(
      'baton_put_role_assignment',
      `INSERT INTO role_assignments (tenant_id, principal_type, principal_id, resource, roles) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (tenant_id, principal_type, principal_id, resource) DO UPDATE SET roles = EXCLUDED.roles`,
      [assignment.tenantId, assignment.principalType, assignment.principalId, assignment.resource, json(assignment.roles)],
      { tenantId: assignment.tenantId, entity: 'roleAssignment' },
    );
  }

  async listRoleAssignments(
    tenantId: string,
    principalType: AppRoleAssignment['principalType'],
    principalId: string,
  ): Promise<AppRoleAssignment[]> {
    const { rows } = await this.#query<RoleRow<string[]>>(
      'baton_list_role_assignments',
      'SELECT * FROM role_assignments WHERE tenant_id = $1 AND principal_type = $2 AND principal_id = $3 ORDER BY resource',
      [tenantId, principalType, principalId],
    );
    return rows.map((row) => roleFromRow(row, asParsed));
  }

  // — conditional access —

  async replacePolicies(tenantId: string, policies: Policy[]): Promise<void> {
    checkPolicies(tenantId, policies);
    await this.#transaction(async (client) => {
      await client.query({ name: 'baton_delete_policies', text: 'DELETE FROM policies WHERE tenant_id = $1', values: [tenantId] });
      for (const [position, policy] of policies.entries()) {
        await client.query({
          name: 'baton_insert_policy',
          text: 'INSERT INTO policies (tenant_id, position, name, data) VALUES ($1, $2, $3, $4)',
          values: [tenantId, position, policy.name, json(policy)],
        });
      }
      await this.#notify(client, { tenantId, entity: 'policy' });
    });
    this.#emit({ tenantId, entity: 'policy' });
  }

  async listPolicies(tenantId: string): Promise<Policy[]> {
    const { rows } = await this.#query<DataRow<unknown>>(
      'baton_list_policies',
      'SELECT data FROM policies WHERE tenant_id = $1 ORDER BY position',
      [tenantId],
    );
    return rows.map((row) => row.data as Policy);
  }

  // — signing keys —

  async putSigningKey(key: SigningKeyRecord): Promise<void> {
    await this.#notifyingQuery('baton_put_signing_key', PUT_SIGNING_KEY, signingKeyParams(key), {
      tenantId: key.tenantId,
      entity: 'signingKey',
    });
  }

  async listSigningKeys(tenantId: string): Promise<SigningKeyRecord[]> {
    const { rows } = await this.#query<DataRow<unknown>>(
      'baton_list_signing_keys',
      'SELECT data FROM signing_keys WHERE tenant_id = $1 ORDER BY created_at, kid',
      [tenantId],
    );
    return rows.map((row) => row.data as SigningKeyRecord);
  }

  async rotateSigningKey(args: RotateArgs): Promise<boolean> {
    checkRotation(args);
    const { tenantId, alg, now } = args;
    const rotated = await this.#transaction(async (client) => {
      // Serialises rotations of this tenant's `alg` keys across instances. A row lock would not
      // do: when no key is current yet there is no row, and both instances would promote.
      await client.query('SELECT pg_advisory_xact_lock($1::bigint)', [advisoryLockKey('baton.rotate', this.#schema, tenantId, alg)]);
      const current = await client.query<{ kid: string; data: SigningKeyRecord }>({
        name: 'baton_current_signing_key',
        text: "SELECT kid, data FROM signing_keys WHERE tenant_id = $1 AND alg = $2 AND status = 'current'",
        values: [tenantId, alg],
      });
      const currentRow = current.rows[0];
      if (currentRow?.kid !== args.expectCurrentKid) return false;
      const found = await client.query<DataRow<unknown>>({
        name: 'baton_get_signing_key',
        text: 'SELECT data FROM signing_keys WHERE tenant_id = $1 AND kid = $2',
        values: [tenantId, args.promoteKid],
      });
      const promote = found.rows[0]?.data as SigningKeyRecord | undefined;
      checkPromote(promote, args);
      if (promote.status !== 'next') return false;
      if (currentRow !== undefined) {
        const retired = retiredKey(currentRow.data, args);
        // Retire before promoting: the one-current-key unique index is checked per statement.
        await client.query({ name: 'baton_rotate_put_signing_key', text: PUT_SIGNING_KEY, values: signingKeyParams(retired) });
      }
      await client.query({
        name: 'baton_rotate_put_signing_key',
        text: PUT_SIGNING_KEY,
        values: signingKeyParams({ ...promote, status: 'current', activatedAt: now }),
      });
      await client.query({
        name: 'baton_insert_signing_key',
        text: 'INSERT INTO signing_keys (tenant_id, kid, alg, status, created_at, remove_after, data) VALUES ($1, $2, $3, $4, $5, $6, $7)',
        values: signingKeyParams({ ...args.next, status: 'next' }),
      });
      await this.#notify(client, { tenantId, entity: 'signingKey' });
      return true;
    });
    if (rotated) this.#emit({ tenantId, entity: 'signingKey' });
    return rotated;
  }

  async pruneSigningKeys(tenantId: string, now: number): Promise<number> {
    const { rowCount } = await this.#notifyingQuery(
      'baton_prune_signing_keys',
      'DELETE FROM signing_keys WHERE tenant_id = $1 AND remove_after IS NOT NULL AND remove_after < $2',
      [tenantId, now],
      { tenantId, entity: 'signingKey' },
    );
    return rowCount;
  }

  // — one-time values —

  async useOnce(namespace: string, id: string, expiresAt: number, now: number): Promise<boolean> {
    // One statement: the insert wins, or the conflict branch revives an expired row; a live row
    // returns nothing. A concurrent insert of the same key waits for the first to commit and
    // then re-checks the WHERE against it, so exactly one caller across instances sees a row.
    const { rowCount } = await this.#query(
      'baton_use_once',
      `INSERT INTO used_once (namespace, id, expires_at) VALUES ($1, $2, $3)
       ON CONFLICT (namespace, id) DO UPDATE SET expires_at = EXCLUDED.expires_at WHERE used_once.expires_at <= $4
       RETURNING 1`,
      [namespace, useOnceKey(id), expiresAt, now],
    );
    return rowCount === 1;
  }

  async putEphemeral<T>(record: EphemeralRecord<T>): Promise<void> {
    await this.#query(
      'baton_put_ephemeral',
      `INSERT INTO ephemeral (kind, id, tenant_id, family_id, payload, expires_at, created_at, consumed_at, revoked_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
       ON CONFLICT (kind, id) DO UPDATE SET tenant_id = EXCLUDED.tenant_id, family_id = EXCLUDED.family_id,
         payload = EXCLUDED.payload, expires_at = EXCLUDED.expires_at, created_at = EXCLUDED.created_at,
         -- Consumption and revocation are sticky while the stored value lives: a put built
         -- from a read taken before another instance revoked the session (or redeemed the
         -- code) must not bring it back. An id reused after expiry starts afresh.
         consumed_at = CASE WHEN ephemeral.expires_at > EXCLUDED.created_at
           THEN coalesce(ephemeral.consumed_at, EXCLUDED.consumed_at) ELSE EXCLUDED.consumed_at END,
         revoked_at = CASE WHEN ephemeral.expires_at > EXCLUDED.created_at
           THEN coalesce(ephemeral.revoked_at, EXCLUDED.revoked_at) ELSE EXCLUDED.revoked_at END`,
      ephemeralParams(record),
    );
  }

  async getEphemeral<T>(kind: EphemeralKind, id: string, now: number): Promise<EphemeralRecord<T> | undefined> {
    const { rows } = await this.#query<EphemeralRow<unknown>>(
      'baton_get_ephemeral',
      'SELECT * FROM ephemeral WHERE kind = $1 AND id = $2 AND expires_at > $3 AND consumed_at IS NULL AND revoked_at IS NULL',
      [kind, id, now],
    );
    const row = rows[0];
    return row === undefined ? undefined : ephemeralFromRow<T, unknown>(row, asParsed);
  }

  async consumeEphemeral<T>(kind: EphemeralKind, id: string, now: number): Promise<ConsumeResult<T>> {
    // Atomic single use (STYLE habit 6): the WHERE clause is the check, the UPDATE is the claim.
    // A second instance blocks on the row lock, re-evaluates the WHERE and claims nothing.
    const claimed = await this.#query<EphemeralRow<unknown>>(
      'baton_consume_ephemeral',
      `UPDATE ephemeral SET consumed_at = $3
       WHERE kind = $1 AND id = $2 AND consumed_at IS NULL AND revoked_at IS NULL AND expires_at > $3
       RETURNING *`,
      [kind, id, now],
    );
    const won = claimed.rows[0];
    if (won !== undefined) return { status: 'ok', record: ephemeralFromRow<T, unknown>(won, asParsed) };
    const { rows } = await this.#query<EphemeralRow<unknown>>('baton_find_ephemeral', 'SELECT * FROM ephemeral WHERE kind = $1 AND id = $2', [
      kind,
      id,
    ]);
    return unclaimedResult<T, unknown>(rows[0], now, asParsed);
  }

  async deleteEphemeral(kind: EphemeralKind, id: string): Promise<void> {
    await this.#query('baton_delete_ephemeral', 'DELETE FROM ephemeral WHERE kind = $1 AND id = $2', [kind, id]);
  }

  async revokeFamily(tenantId: string, familyId: string, now: number): Promise<number> {
    const { rowCount } = await this.#query(
      'baton_revoke_family',
      'UPDATE ephemeral SET revoked_at = $3 WHERE tenant_id = $1 AND family_id = $2 AND revoked_at IS NULL',
      [tenantId, familyId, now],
    );
    return rowCount ?? 0;
  }

  async sweep(now: number): Promise<number> {
    const { rows } = await this.#query<{ removed: number }>(
      'baton_sweep',
      `WITH e AS (DELETE FROM ephemeral WHERE expires_at <= $1 RETURNING 1),
            u AS (DELETE FROM used_once WHERE expires_at <= $1 RETURNING 1)
       SELECT ((SELECT count(*) FROM e) + (SELECT count(*) FROM u))::int AS removed`,
      [now],
    );
    return rows[0]?.removed ?? 0;
  }

  // — internals —

  /** A named (server-side prepared, once per connection) statement on the pool. */
  #query<R extends QueryResultRow = QueryResultRow>(name: string, text: string, values: unknown[]) {
    return this.#pool.query<R>({ name, text, values });
  }

  #payload(change: Invalidation): string {
    const payload: NotifyPayload = { schema: this.#schema, source: this.#source, ...change };
    const text = json(payload);
    // A 10 KB tenant id must not turn into a failed write: say "some tenant" instead.
    return Buffer.byteLength(text) <= MAX_PAYLOAD_BYTES ? text : json({ ...payload, tenantId: '*' });
  }

  /**
   * One statement that writes and, for each row it wrote, notifies: a data-modifying CTE runs in
   * the statement's own transaction, so the notification is sent iff the write commits, and a
   * delete that matched nothing notifies nobody. Emits locally after the commit.
   */
  async #notifyingQuery(name: string, write: string, values: unknown[], change: Invalidation): Promise<{ rowCount: number }> {
    const n = values.length + 1;
    const { rows } = await this.#query<{ n: number }>(
      name,
      `WITH w AS (${write} RETURNING 1), c AS (SELECT count(*)::int AS n FROM w)
       SELECT n, CASE WHEN n > 0 THEN pg_notify('${INVALIDATION_CHANNEL}', $${n}) END AS notified FROM c`,
      [...values, this.#payload(change)],
    );
    const rowCount = rows[0]?.n ?? 0;
    if (rowCount > 0) this.#emit(change);
    return { rowCount };
  }

  async #notify(client: PoolClient, change: Invalidation): Promise<void> {
    await client.query({ name: 'baton_notify', text: `SELECT pg_notify('${INVALIDATION_CHANNEL}', $1)`, values: [this.#payload(change)] });
  }

  async #transaction<T>(fn: (client: PoolClient) => Promise<T>): Promise<T> {
    const client = await this.#pool.connect();
    try {
      await client.query('BEGIN');
      const result = await fn(client);
      await client.query('COMMIT');
      client.release();
      return result;
    } catch (error) {
      try {
        await client.query('ROLLBACK');
        client.release();
      } catch (rollbackError) {
        // The connection is unusable; destroy it rather than hand a half-open transaction to the next caller.
        client.release(rollbackError instanceof Error ? rollbackError : true);
      }
      throw error;
    }
  }

  #emit(change: Invalidation): void {
    emitTo(this.#subscriptions, change);
  }

  #listen(): Promise<void> {
    if (this.#closing) return Promise.resolve();
    this.#listening ??= this.#connectListener().catch((error: unknown) => {
      this.#listening = undefined;
      throw error;
    });
    return this.#listening;
  }

  async #connectListener(): Promise<void> {
    const client = new Client({
      connectionString: this.#connectionString,
      // The schema in the name lets an operator (or a test) find this instance's listener.
      application_name: `baton-listener:${this.#schema}`,
      connectionTimeoutMillis: this.#connectionTimeoutMillis,
    });
    client.on('notification', (message) => this.#onNotification(message));
    client.on('error', (error) => this.#listenerLost(client, error));
    client.on('end', () => this.#listenerLost(client));
    try {
      await client.connect();
      await client.query(`LISTEN ${INVALIDATION_CHANNEL}`);
    } catch (error) {
      client.removeAllListeners('end');
      await client.end().catch(() => {});
      throw error;
    }
    if (this.#closing) {
      await client.end().catch(() => {});
      return;
    }
    this.#listener = client;
    this.#reconnectDelayMs = 0;
  }

  #listenerLost(client: Client, error?: Error): void {
    if (error !== undefined) this.#onError(error);
    if (this.#closing || client !== this.#listener) return;
    this.#listener = undefined;
    this.#listening = undefined;
    client.end().catch(() => {});
    this.#scheduleReconnect();
  }

  #scheduleReconnect(): void {
    if (this.#closing || this.#reconnectTimer !== undefined) return;
    this.#reconnectDelayMs = Math.min(Math.max(this.#reconnectDelayMs * 2, 100), this.#maxReconnectDelayMs);
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = undefined;
      this.#listen().then(
        // Whatever was notified while we were away is lost: every cache must start over.
        () => this.#emit({ tenantId: '*', entity: '*' }),
        (error: unknown) => {
          if (error instanceof Error) this.#onError(error);
          this.#scheduleReconnect();
        },
      );
    }, this.#reconnectDelayMs);
    // Reconnecting is no reason to keep a process alive that has nothing else to do.
    this.#reconnectTimer.unref();
  }

  #onNotification(message: Notification): void {
    if (message.channel !== INVALIDATION_CHANNEL) return;
    let payload: Partial<NotifyPayload>;
    try {
      payload = JSON.parse(message.payload ?? '') as Partial<NotifyPayload>;
    } catch {
      // Not ours to read, but on our channel: dropping every cache is the safe reading.
      this.#emit({ tenantId: '*', entity: '*' });
      return;
    }
    if (payload.schema !== this.#schema || payload.source === this.#source) return;
    const entity = typeof payload.entity === 'string' && ENTITIES.has(payload.entity) ? payload.entity : '*';
    const tenantId = typeof payload.tenantId === 'string' ? payload.tenantId : '*';
    this.#emit({ tenantId, entity });
  }
}

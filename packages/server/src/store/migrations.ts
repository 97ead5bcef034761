/**
 * Versioned schema migrations for both store engines, applied on start and recorded in
 * `baton_migrations`. A migration is never edited once released: add a new version instead.
 *
 * Both runners are safe when several instances start at once against one database:
 * - SQLite: `BEGIN IMMEDIATE` takes the write lock before the applied versions are read, and
 *   `busy_timeout` makes the other connections wait for it instead of failing.
 * - PostgreSQL: `pg_advisory_xact_lock` serialises migrators for one schema; DDL is
 *   transactional, so a crash half-way leaves nothing behind and the lock is released at the end.
 *
 * Key columns are `COLLATE "C"` on PostgreSQL so that ordering and equality are byte-wise, as they
 * are in SQLite (BINARY): both engines return lists in the same order for any input.
 * Record bodies are `json` (not `jsonb`) on PostgreSQL: we never query inside them, `json` keeps
 * the text exactly, and `jsonb` rejects `\u0000`, which would let a NUL byte in a user-supplied
 * field (an authorize request's `state`, a `login_hint`) turn a write into a server error.
 */
import { createHash } from 'node:crypto';
import type { DatabaseSync } from 'node:sqlite';
import type { PoolClient } from 'pg';

export interface Migration {
  version: number;
  name: string;
  sqlite: string;
  postgres: string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'initial schema',
    sqlite: `
      CREATE TABLE tenants (
        id TEXT PRIMARY KEY,
        data TEXT NOT NULL
      );

      CREATE TABLE users (
        tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
        oid TEXT NOT NULL,
        username TEXT NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (tenant_id, oid),
        UNIQUE (tenant_id, username)
      );

      CREATE TABLE applications (
        tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
        client_id TEXT NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (tenant_id, client_id)
      );

      -- One index per leading filter, so every ConsentQuery shape is an index range, never a scan.
      CREATE TABLE consents (
        tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
        client_id TEXT NOT NULL,
        resource TEXT NOT NULL,
        principal TEXT NOT NULL,
        scopes TEXT NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (tenant_id, client_id, resource, principal)
      );
      CREATE INDEX consents_by_principal ON consents (tenant_id, principal, client_id, resource);
      CREATE INDEX consents_by_resource ON consents (tenant_id, resource, principal, client_id);

      CREATE TABLE role_assignments (
        tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
        principal_type TEXT NOT NULL CHECK (principal_type IN ('application', 'user')),
        principal_id TEXT NOT NULL,
        resource TEXT NOT NULL,
        roles TEXT NOT NULL,
        PRIMARY KEY (tenant_id, principal_type, principal_id, resource)
      );

      -- Names are unique so that "blocked by policy X" in a log names one policy.
      CREATE TABLE policies (
        tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        name TEXT NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (tenant_id, position),
        UNIQUE (tenant_id, name)
      );

      CREATE TABLE signing_keys (
        tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
        kid TEXT NOT NULL,
        alg TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('next', 'current', 'retired')),
        created_at REAL NOT NULL,
        remove_after REAL,
        data TEXT NOT NULL,
        PRIMARY KEY (tenant_id, kid)
      );
      -- Two instances rotating at once must never leave two current keys for one algorithm.
      CREATE UNIQUE INDEX signing_keys_one_current ON signing_keys (tenant_id, alg) WHERE status = 'current';
      CREATE INDEX signing_keys_remove_after ON signing_keys (tenant_id, remove_after) WHERE remove_after IS NOT NULL;

      CREATE TABLE used_once (
        namespace TEXT NOT NULL,
        id TEXT NOT NULL,
        expires_at REAL NOT NULL,
        PRIMARY KEY (namespace, id)
      ) WITHOUT ROWID;
      CREATE INDEX used_once_expires ON used_once (expires_at);

      CREATE TABLE ephemeral (
        kind TEXT NOT NULL,
        id TEXT NOT NULL,
        tenant_id TEXT NOT NULL,
        family_id TEXT,
        payload TEXT NOT NULL,
        expires_at REAL NOT NULL,
        created_at REAL NOT NULL,
        consumed_at REAL,
        revoked_at REAL,
        PRIMARY KEY (kind, id)
      );
      CREATE INDEX ephemeral_family ON ephemeral (tenant_id, family_id) WHERE family_id IS NOT NULL;
      CREATE INDEX ephemeral_expires ON ephemeral (expires_at);

      -- SQLite has no NOTIFY: registration writes append here in their own transaction, and other
      -- processes read it when PRAGMA data_version moves. Ephemeral writes (codes, refresh tokens)
      -- do not, so a busy token endpoint does not flush every directory cache twice a second.
      CREATE TABLE baton_changes (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        tenant_id TEXT NOT NULL,
        entity TEXT NOT NULL
      );
    `,
    postgres: `
      CREATE TABLE tenants (
        id TEXT COLLATE "C" PRIMARY KEY,
        data JSON NOT NULL
      );

      CREATE TABLE users (
        tenant_id TEXT COLLATE "C" NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
        oid TEXT COLLATE "C" NOT NULL,
        username TEXT COLLATE "C" NOT NULL,
        data JSON NOT NULL,
        PRIMARY KEY (tenant_id, oid),
        UNIQUE (tenant_id, username)
      );

      CREATE TABLE applications (
        tenant_id TEXT COLLATE "C" NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
        client_id TEXT COLLATE "C" NOT NULL,
        data JSON NOT NULL,
        PRIMARY KEY (tenant_id, client_id)
      );

      CREATE TABLE consents (
        tenant_id TEXT COLLATE "C" NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
        client_id TEXT COLLATE "C" NOT NULL,
        resource TEXT COLLATE "C" NOT NULL,
        principal TEXT COLLATE "C" NOT NULL,
        scopes JSON NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (tenant_id, client_id, resource, principal)
      );
      CREATE INDEX consents_by_principal ON consents (tenant_id, principal, client_id, resource);
      CREATE INDEX consents_by_resource ON consents (tenant_id, resource, principal, client_id);

      CREATE TABLE role_assignments (
        tenant_id TEXT COLLATE "C" NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
        principal_type TEXT COLLATE "C" NOT NULL CHECK (principal_type IN ('application', 'user')),
        principal_id TEXT COLLATE "C" NOT NULL,
        resource TEXT COLLATE "C" NOT NULL,
        roles JSON NOT NULL,
        PRIMARY KEY (tenant_id, principal_type, principal_id, resource)
      );

      CREATE TABLE policies (
        tenant_id TEXT COLLATE "C" NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        name TEXT COLLATE "C" NOT NULL,
        data JSON NOT NULL,
        PRIMARY KEY (tenant_id, position),
        UNIQUE (tenant_id, name)
      );

      CREATE TABLE signing_keys (
        tenant_id TEXT COLLATE "C" NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
        kid TEXT COLLATE "C" NOT NULL,
        alg TEXT COLLATE "C" NOT NULL,
        status TEXT COLLATE "C" NOT NULL CHECK (status IN ('next', 'current', 'retired')),
        created_at DOUBLE PRECISION NOT NULL,
        remove_after DOUBLE PRECISION,
        data JSON NOT NULL,
        PRIMARY KEY (tenant_id, kid)
      );
      CREATE UNIQUE INDEX signing_keys_one_current ON signing_keys (tenant_id, alg) WHERE status = 'current';
      CREATE INDEX signing_keys_remove_after ON signing_keys (tenant_id, remove_after) WHERE remove_after IS NOT NULL;

      CREATE TABLE used_once (
        namespace TEXT COLLATE "C" NOT NULL,
        id TEXT COLLATE "C" NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (namespace, id)
      );
      CREATE INDEX used_once_expires ON used_once (expires_at);

      CREATE TABLE ephemeral (
        kind TEXT COLLATE "C" NOT NULL,
        id TEXT COLLATE "C" NOT NULL,
        tenant_id TEXT COLLATE "C" NOT NULL,
        family_id TEXT COLLATE "C",
        payload JSON NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        consumed_at DOUBLE PRECISION,
        revoked_at DOUBLE PRECISION,
        PRIMARY KEY (kind, id)
      );
      CREATE INDEX ephemeral_family ON ephemeral (tenant_id, family_id) WHERE family_id IS NOT NULL;
      CREATE INDEX ephemeral_expires ON ephemeral (expires_at);
    `,
  },
  {
    version: 2,
    name: 'security event streams',
    // SSF streams and the SETs queued in each until acknowledged (poll) or delivered (push).
    // Polls read a stream's SETs in queue order (SQLite: rowid; PostgreSQL: seq); the push worker
    // finds due SETs by next_attempt_at (NULL for a polled stream).
    sqlite: `
      CREATE TABLE ssf_streams (
        tenant_id TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
        stream_id TEXT NOT NULL,
        client_id TEXT NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (tenant_id, stream_id)
      );

      CREATE TABLE ssf_sets (
        tenant_id TEXT NOT NULL,
        stream_id TEXT NOT NULL,
        jti TEXT NOT NULL,
        set_jwt TEXT NOT NULL,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        next_attempt_at REAL,
        attempts INTEGER NOT NULL DEFAULT 0,
        UNIQUE (tenant_id, stream_id, jti),
        FOREIGN KEY (tenant_id, stream_id) REFERENCES ssf_streams (tenant_id, stream_id) ON DELETE CASCADE
      );
      CREATE INDEX ssf_sets_due ON ssf_sets (next_attempt_at) WHERE next_attempt_at IS NOT NULL;
      CREATE INDEX ssf_sets_expires ON ssf_sets (expires_at);
    `,
    postgres: `
      CREATE TABLE ssf_streams (
        tenant_id TEXT COLLATE "C" NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
        stream_id TEXT COLLATE "C" NOT NULL,
        client_id TEXT COLLATE "C" NOT NULL,
        data JSON NOT NULL,
        PRIMARY KEY (tenant_id, stream_id)
      );

      CREATE TABLE ssf_sets (
        seq BIGSERIAL PRIMARY KEY,
        tenant_id TEXT COLLATE "C" NOT NULL,
        stream_id TEXT COLLATE "C" NOT NULL,
        jti TEXT COLLATE "C" NOT NULL,
        set_jwt TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL,
        next_attempt_at DOUBLE PRECISION,
        attempts INTEGER NOT NULL DEFAULT 0,
        UNIQUE (tenant_id, stream_id, jti),
        FOREIGN KEY (tenant_id, stream_id) REFERENCES ssf_streams (tenant_id, stream_id) ON DELETE CASCADE
      );
      CREATE INDEX ssf_sets_due ON ssf_sets (next_attempt_at) WHERE next_attempt_at IS NOT NULL;
      CREATE INDEX ssf_sets_expires ON ssf_sets (expires_at);
    `,
  },
  {
    version: 3,
    name: 'admin change log',
    // One row per change made through the admin API (admin/audit.ts), written in the change's own
    // transaction with the SETs it causes. Read in seq order (the admin API's events cursor).
    sqlite: `
      CREATE TABLE admin_events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        tenant_id TEXT NOT NULL,
        id TEXT NOT NULL UNIQUE,
        at REAL NOT NULL,
        entity TEXT NOT NULL,
        target TEXT NOT NULL,
        data TEXT NOT NULL
      );
      CREATE INDEX admin_events_by_tenant ON admin_events (tenant_id, seq);
    `,
    postgres: `
      CREATE TABLE admin_events (
        seq BIGSERIAL PRIMARY KEY,
        tenant_id TEXT COLLATE "C" NOT NULL,
        id TEXT COLLATE "C" NOT NULL UNIQUE,
        at DOUBLE PRECISION NOT NULL,
        entity TEXT COLLATE "C" NOT NULL,
        target TEXT COLLATE "C" NOT NULL,
        data JSON NOT NULL
      );
      CREATE INDEX admin_events_by_tenant ON admin_events (tenant_id, seq);
    `,
  },
];

interface AppliedMigration {
  version: number;
  name: string;
}

/**
 * The migrations still to apply. Refuses a database that a newer Baton migrated (running old code
 * against a schema it does not know could silently drop what the new columns enforce) and one
 * whose recorded history disagrees with this list (an edited migration).
 */
export function pendingMigrations(applied: readonly AppliedMigration[], all: readonly Migration[] = MIGRATIONS): Migration[] {
  const known = new Map(all.map((m) => [m.version, m]));
  const latest = all.reduce((max, m) => Math.max(max, m.version), 0);
  const done = new Set<number>();
  for (const row of applied) {
    const version = Number(row.version);
    const migration = known.get(version);
    if (migration === undefined) {
      throw new Error(
        `store: the database schema is at version ${version}, newer than this Baton knows (${latest}); upgrade Baton`,
      );
    }
    if (migration.name !== row.name) {
      throw new Error(
        `store: migration ${version} is recorded as "${row.name}" but this Baton calls it "${migration.name}"`,
      );
    }
    done.add(version);
  }
  return [...all].sort((a, b) => a.version - b.version).filter((m) => !done.has(m.version));
}

const SQLITE_MIGRATIONS_TABLE = `
  CREATE TABLE IF NOT EXISTS baton_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
  )`;

/** Applies pending migrations on a SQLite connection (which must have a busy timeout set). */
export function migrateSqlite(db: DatabaseSync, all: readonly Migration[] = MIGRATIONS): void {
  // IMMEDIATE takes the write lock now, so two processes cannot both read "version 0" and both
  // run version 1; the second waits (busy_timeout) and then sees it applied.
  db.exec('BEGIN IMMEDIATE');
  try {
    db.exec(SQLITE_MIGRATIONS_TABLE);
    const applied = db.prepare('SELECT version, name FROM baton_migrations ORDER BY version').all() as unknown as AppliedMigration[];
    const record = db.prepare('INSERT INTO baton_migrations (version, name) VALUES (?, ?)');
    for (const migration of pendingMigrations(applied, all)) {
      db.exec(migration.sqlite);
      record.run(migration.version, migration.name);
    }
    db.exec('COMMIT');
  } catch (error) {
    if (db.isTransaction) db.exec('ROLLBACK');
    throw error;
  }
}

/** A 64-bit advisory-lock key (as a decimal string for `$1::bigint`) derived from `parts`. */
export function advisoryLockKey(...parts: string[]): string {
  // JSON keeps the parts unambiguous (`a/b` + `c` differs from `a` + `b/c`).
  return createHash('sha256').update(JSON.stringify(parts)).digest().readBigInt64BE(0).toString();
}

/** Schema names are put into SQL and startup options as identifiers, so only plain ones pass. */
export const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

/** Applies pending migrations in `schema` (created if missing) on a pooled PostgreSQL client. */
export async function migratePostgres(client: PoolClient, schema: string, all: readonly Migration[] = MIGRATIONS): Promise<void> {
  if (!SCHEMA_NAME.test(schema)) throw new TypeError('store: schema must match /^[a-z_][a-z0-9_]{0,62}$/');
  const quoted = `"${schema}"`;
  await client.query('BEGIN');
  try {
    // Concurrent `CREATE SCHEMA/TABLE IF NOT EXISTS` can still fail with a unique violation in
    // PostgreSQL; taking this lock first makes every other migrator of the schema wait instead.
    await client.query('SELECT pg_advisory_xact_lock($1::bigint)', [advisoryLockKey('baton.migrate', schema)]);
    const exists = await client.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema]);
    // Checked first so a role without CREATE on the database can run on a schema made for it.
    if (exists.rowCount === 0) await client.query(`CREATE SCHEMA ${quoted}`);
    await client.query(`SET LOCAL search_path TO ${quoted}`);
    await client.query(`
      CREATE TABLE IF NOT EXISTS baton_migrations (
        version INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
      )`);
    const applied = await client.query<AppliedMigration>('SELECT version, name FROM baton_migrations ORDER BY version');
    for (const migration of pendingMigrations(applied.rows, all)) {
      await client.query(migration.postgres);
      await client.query('INSERT INTO baton_migrations (version, name) VALUES ($1, $2)', [migration.version, migration.name]);
    }
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {
      // The connection is broken; the caller releases it as broken and the server rolls back.
    });
    throw error;
  }
}

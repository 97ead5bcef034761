/**
 * Opens the configured store engine, migrated and ready.
 *
 * @example
 * const store = await openStore({ dataDir: './.baton' });                        // SQLite file
 * const store = await openStore({ url: 'sqlite::memory:' });                     // tests
 * const store = await openStore({ url: process.env.DATABASE_URL, schema: 'baton' }); // PostgreSQL
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigurationError } from '@baton/core';
import type { Store } from './types.ts';

export type * from './types.ts';
// node:sqlite loads only when a SQLite store opens: on Node 22 loading it prints an
// ExperimentalWarning, which `config check` or a PostgreSQL deployment has no reason to show.
export type { SqliteStore, SqliteStoreOptions } from './sqlite.ts';
export type { PostgresStore, PostgresStoreOptions } from './postgres.ts';
export { MIGRATIONS } from './migrations.ts';
export type { Migration } from './migrations.ts';

export interface OpenStoreOptions {
  /**
   * `postgres://…` / `postgresql://…` selects PostgreSQL; `sqlite::memory:` an in-memory SQLite
   * database; `sqlite:<path>` a SQLite file. Absent: SQLite at `<dataDir>/baton.sqlite`.
   */
  url?: string;
  /** Directory for the SQLite file (created if missing, owner-only). */
  dataDir?: string;
  /** PostgreSQL schema holding Baton's tables. Default `public`. Ignored for SQLite. */
  schema?: string;
}

const SQLITE_FILE = 'baton.sqlite';

export async function openStore(options: OpenStoreOptions): Promise<Store> {
  const store = await createStore(options);
  try {
    await store.migrate();
  } catch (error) {
    await store.close();
    throw error;
  }
  return store;
}

async function createStore(options: OpenStoreOptions): Promise<Store> {
  const { url } = options;
  if (url !== undefined && /^postgres(ql)?:\/\//i.test(url)) {
    // Loaded only when chosen, so an embedded SQLite deployment never loads `pg`.
    const { PostgresStore } = await import('./postgres.ts');
    return options.schema === undefined ? new PostgresStore(url) : new PostgresStore(url, { schema: options.schema });
  }
  const { SqliteStore } = await import('./sqlite.ts');
  if (url === 'sqlite::memory:') return new SqliteStore(':memory:');
  if (url !== undefined && url.startsWith('sqlite:')) {
    const path = url.slice('sqlite:'.length);
    if (path === '') throw new ConfigurationError(['store.url: sqlite: needs a file path, or use sqlite::memory:']);
    return new SqliteStore(path);
  }
  if (url !== undefined) {
    // Only the scheme: the rest of a database URL may carry a password.
    const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(url)?.[1] ?? '(none)';
    throw new ConfigurationError([`store.url: unsupported scheme "${scheme}"; use postgres://, postgresql:// or sqlite:`]);
  }
  if (options.dataDir === undefined || options.dataDir === '') {
    // Nothing that must survive a restart may live only in memory (DESIGN principle 3): no silent default.
    throw new ConfigurationError(['store: set store.url or store.dataDir']);
  }
  // Owner-only: the file holds password hashes and (encrypted) signing keys and TOTP secrets.
  mkdirSync(options.dataDir, { recursive: true, mode: 0o700 });
  return new SqliteStore(join(options.dataDir, SQLITE_FILE));
}

/**
 * The example APIs keep their data in SQLite (Node's built-in `node:sqlite`), one file per API under
 * the data directory, so a second `npm start` finds the tasks and documents of the first.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { DatabaseSync } from 'node:sqlite';

/** Opens (creating if needed) a database file; `':memory:'` for a throwaway one. */
export function openDatabase(file: string, schema: string): DatabaseSync {
  if (file !== ':memory:') mkdirSync(dirname(file), { recursive: true });
  const db = new DatabaseSync(file);
  db.exec('PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 2000;');
  db.exec(schema);
  return db;
}

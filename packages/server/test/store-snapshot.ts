/**
 * A snapshot of everything a SQLite-backed token service has stored, read through a second
 * connection to its file: "a refused request changes nothing in the store" is asserted by comparing
 * two snapshots. Rows that expired by `now` are left out, so the background sweep (which deletes
 * only those) cannot make two snapshots differ.
 */
import { DatabaseSync } from 'node:sqlite';
import { join } from 'node:path';

/** Every table, every row, in a stable order: equal strings mean nothing was written. */
export function storeSnapshot(dataDir: string, now = Date.now() / 1000): Map<string, string[]> {
  const db = new DatabaseSync(join(dataDir, 'baton.sqlite'), { readOnly: true });
  try {
    const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name").all() as { name: string }[];
    const snapshot = new Map<string, string[]>();
    for (const { name } of tables) {
      const rows = db.prepare(`SELECT * FROM "${name}"`).all() as Record<string, unknown>[];
      snapshot.set(
        name,
        rows
          .filter((row) => typeof row.expires_at !== 'number' || row.expires_at > now)
          .map((row) => JSON.stringify(row))
          .sort(),
      );
    }
    return snapshot;
  } finally {
    db.close();
  }
}

/** What changed between two snapshots, per table: rows added and rows gone (empty = nothing written). */
export function snapshotDiff(before: Map<string, string[]>, after: Map<string, string[]>): Record<string, { added: string[]; removed: string[] }> {
  const diff: Record<string, { added: string[]; removed: string[] }> = {};
  for (const table of new Set([...before.keys(), ...after.keys()])) {
    const a = new Set(before.get(table) ?? []);
    const b = new Set(after.get(table) ?? []);
    const added = [...b].filter((row) => !a.has(row));
    const removed = [...a].filter((row) => !b.has(row));
    if (added.length > 0 || removed.length > 0) diff[table] = { added, removed };
  }
  return diff;
}

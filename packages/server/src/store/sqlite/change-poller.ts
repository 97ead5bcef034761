/**
 * How a SQLite store hears writes made by other processes on the same file: `PRAGMA
 * data_version` moves only when another connection commits, and then the `baton_changes` log
 * says which tenants and entities changed. Our own writes were emitted when they committed.
 */
import type { DatabaseSync, StatementSync } from 'node:sqlite';
import type { InvalidationListeners } from '../listeners.ts';
import type { Invalidation } from '../types.ts';
import { allRows, CHANGE_LOG_KEEP } from './connection.ts';

interface ChangeRow {
  seq: number;
  tenant_id: string;
  entity: string;
}

export class ChangePoller {
  readonly #listeners: InvalidationListeners;
  readonly #intervalMs: number;
  readonly #isClosed: () => boolean;
  readonly #dataVersionStatement: StatementSync;
  readonly #lastChange: StatementSync;
  readonly #changesSince: StatementSync;
  #timer: NodeJS.Timeout | undefined;
  #dataVersion = 0;
  #lastSeq = 0;

  constructor(db: DatabaseSync, listeners: InvalidationListeners, intervalMs: number, isClosed: () => boolean) {
    this.#listeners = listeners;
    this.#intervalMs = intervalMs;
    this.#isClosed = isClosed;
    this.#dataVersionStatement = db.prepare('PRAGMA data_version');
    this.#lastChange = db.prepare('SELECT coalesce(max(seq), 0) AS seq FROM baton_changes');
    this.#changesSince = db.prepare('SELECT seq, tenant_id, entity FROM baton_changes WHERE seq > ? ORDER BY seq LIMIT ?');
  }

  start(): void {
    if (this.#timer !== undefined) return;
    this.#dataVersion = this.#readDataVersion();
    this.#lastSeq = this.#readLastSeq();
    this.#timer = setInterval(() => this.#poll(), this.#intervalMs);
    // A cache-invalidation timer must never keep a finished process alive.
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #readDataVersion(): number {
    return Number((this.#dataVersionStatement.get() as { data_version: number }).data_version);
  }

  #readLastSeq(): number {
    return Number((this.#lastChange.get() as { seq: number }).seq);
  }

  #poll(): void {
    let changes: Invalidation[];
    try {
      changes = this.#changesByOthers();
    } catch {
      // The file could not be read this time (closed, I/O error): caches cannot know what they
      // missed, so they drop everything rather than serve a registration that may have changed.
      if (this.#isClosed()) return;
      changes = [{ tenantId: '*', entity: '*' }];
    }
    for (const change of changes) this.#listeners.emit(change);
  }

  /** What other connections changed since the last poll, each (tenant, entity) once. */
  #changesByOthers(): Invalidation[] {
    // data_version moves only when another connection commits; our own writes were emitted already.
    const version = this.#readDataVersion();
    if (version === this.#dataVersion) return [];
    this.#dataVersion = version;
    const found = allRows(this.#changesSince, this.#lastSeq, CHANGE_LOG_KEEP + 1) as ChangeRow[];
    if (found.length === 0) return []; // only one-time values changed
    const first = found[0] as ChangeRow;
    const last = found[found.length - 1] as ChangeRow;
    if (first.seq !== this.#lastSeq + 1 || found.length > CHANGE_LOG_KEEP) {
      // We fell behind the pruned log: some changes are unknown, so everything is suspect.
      this.#lastSeq = this.#readLastSeq();
      return [{ tenantId: '*', entity: '*' }];
    }
    this.#lastSeq = last.seq;
    const seen = new Set<string>();
    const changes: Invalidation[] = [];
    for (const row of found) {
      const key = JSON.stringify([row.tenant_id, row.entity]);
      if (seen.has(key)) continue;
      seen.add(key);
      changes.push({ tenantId: row.tenant_id, entity: row.entity as Invalidation['entity'] });
    }
    return changes;
  }
}

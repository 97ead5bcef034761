/**
 * Security event streams and their queued SETs on SQLite. Each claim is one statement
 * (`UPDATE … WHERE rowid IN (SELECT …) RETURNING`): the write lock makes it atomic across the
 * processes sharing the file. Streams are not cached, so these writes skip the change log.
 */
import type { StatementSync } from 'node:sqlite';
import type { SignalsPart } from '../parts.ts';
import { adminEventFromRow, type AdminEventRow, json, parseJson, setFromRow, setParams, streamFromRow, streamParams, type SetRow, type StreamRow } from '../rows.ts';
import type { AdminEventQuery, AdminEventRecord, QueuedSet, SignalStream } from '../types.ts';
import { DONE, type SqliteConnection } from './connection.ts';

export class SqliteSignals implements SignalsPart {
  readonly #db: SqliteConnection;
  readonly #putStream: StatementSync;
  readonly #getStream: StatementSync;
  readonly #listStreams: StatementSync;
  readonly #deleteStream: StatementSync;
  readonly #queue: StatementSync;
  readonly #ack: StatementSync;
  readonly #pending: StatementSync;
  readonly #claim: StatementSync;
  readonly #delete: StatementSync;
  readonly #retry: StatementSync;
  readonly #sweep: StatementSync;
  readonly #appendAdminEvent: StatementSync;
  readonly #listAdminEvents: StatementSync;

  constructor(db: SqliteConnection) {
    this.#db = db;
    this.#putStream = db.db.prepare(
      `INSERT INTO ssf_streams (tenant_id, stream_id, client_id, data) VALUES (?, ?, ?, ?)
       ON CONFLICT (tenant_id, stream_id) DO UPDATE SET client_id = excluded.client_id, data = excluded.data`,
    );
    this.#getStream = db.db.prepare('SELECT * FROM ssf_streams WHERE tenant_id = ? AND stream_id = ?');
    this.#listStreams = db.db.prepare('SELECT * FROM ssf_streams WHERE tenant_id = ? ORDER BY stream_id');
    this.#deleteStream = db.db.prepare('DELETE FROM ssf_streams WHERE tenant_id = ? AND stream_id = ?');
    // The stream may have been deleted since the event was signed: then nothing is queued.
    this.#queue = db.db.prepare(
      `INSERT INTO ssf_sets (tenant_id, stream_id, jti, set_jwt, created_at, expires_at, next_attempt_at, attempts)
       SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8 WHERE EXISTS (SELECT 1 FROM ssf_streams WHERE tenant_id = ?1 AND stream_id = ?2)
       ON CONFLICT (tenant_id, stream_id, jti) DO NOTHING`,
    );
    this.#ack = db.db.prepare('DELETE FROM ssf_sets WHERE tenant_id = ? AND stream_id = ? AND jti = ?');
    this.#pending = db.db.prepare('SELECT * FROM ssf_sets WHERE tenant_id = ? AND stream_id = ? AND expires_at > ? ORDER BY rowid LIMIT ?');
    this.#claim = db.db.prepare(
      `UPDATE ssf_sets SET next_attempt_at = ?2
       WHERE rowid IN (SELECT rowid FROM ssf_sets WHERE next_attempt_at IS NOT NULL AND next_attempt_at <= ?1 AND expires_at > ?1 ORDER BY next_attempt_at LIMIT ?3)
       RETURNING *`,
    );
    this.#delete = this.#ack;
    this.#retry = db.db.prepare('UPDATE ssf_sets SET next_attempt_at = ?, attempts = ? WHERE tenant_id = ? AND stream_id = ? AND jti = ?');
    this.#sweep = db.db.prepare('DELETE FROM ssf_sets WHERE expires_at <= ?');
    this.#appendAdminEvent = db.db.prepare('INSERT INTO admin_events (tenant_id, id, at, entity, target, data) VALUES (?, ?, ?, ?, ?, ?)');
    // Walks the tenant's log in seq order from the cursor; the filters are checked on the way.
    this.#listAdminEvents = db.db.prepare(
      `SELECT seq, tenant_id, id, at, entity, target, data FROM admin_events
       WHERE tenant_id = ?1 AND seq > ?2 AND at >= ?3 AND (?4 IS NULL OR entity = ?4) AND (?5 IS NULL OR target = ?5)
       ORDER BY seq LIMIT ?6`,
    );
  }

  async putStream(stream: SignalStream): Promise<void> {
    this.#putStream.run(...streamParams(stream));
  }

  async getStream(tenantId: string, streamId: string): Promise<SignalStream | undefined> {
    const row = this.#getStream.get(tenantId, streamId) as StreamRow<string> | undefined;
    return row === undefined ? undefined : streamFromRow(row, parseJson);
  }

  async listStreams(tenantId: string): Promise<SignalStream[]> {
    return (this.#listStreams.all(tenantId) as unknown as StreamRow<string>[]).map((row) => streamFromRow(row, parseJson));
  }

  async deleteStream(tenantId: string, streamId: string): Promise<boolean> {
    return Number(this.#deleteStream.run(tenantId, streamId).changes) > 0;
  }

  queueSets(sets: readonly QueuedSet[]): Promise<void> {
    if (sets.length === 0) return DONE;
    this.#db.transaction(() => {
      for (const set of sets) this.#queue.run(...setParams(set));
    });
    return DONE;
  }

  async pollSets(tenantId: string, streamId: string, ack: readonly string[], max: number, now: number): Promise<{ sets: QueuedSet[]; more: boolean }> {
    return this.#db.transaction(() => {
      for (const jti of ack) this.#ack.run(tenantId, streamId, jti);
      const rows = this.#pending.all(tenantId, streamId, now, max + 1) as unknown as SetRow[];
      return { sets: rows.slice(0, max).map(setFromRow), more: rows.length > max };
    });
  }

  async claimPushSets(now: number, leaseUntil: number, limit: number): Promise<QueuedSet[]> {
    return (this.#claim.all(now, leaseUntil, limit) as unknown as SetRow[]).map(setFromRow);
  }

  async settlePushSet(tenantId: string, streamId: string, jti: string, retryAt: number | undefined, attempts: number): Promise<void> {
    if (retryAt === undefined) this.#delete.run(tenantId, streamId, jti);
    else this.#retry.run(retryAt, attempts, tenantId, streamId, jti);
  }

  appendAdminEvent(record: AdminEventRecord): Promise<void> {
    this.#db.transaction(() => this.#appendAdminEvent.run(record.tenantId, record.id, record.at, record.entity, record.target, json(record.event)));
    return DONE;
  }

  async listAdminEvents(query: AdminEventQuery): Promise<{ seq: number; record: AdminEventRecord }[]> {
    const rows = this.#listAdminEvents.all(query.tenantId, query.after ?? 0, query.since ?? 0, query.entity ?? null, query.target ?? null, query.limit);
    return (rows as unknown as AdminEventRow<string>[]).map((row) => adminEventFromRow(row, parseJson));
  }

  async sweepSets(now: number): Promise<number> {
    return Number(this.#sweep.run(now).changes);
  }
}

/**
 * Security event streams and their queued SETs on PostgreSQL. The push claim is one statement
 * over `FOR UPDATE SKIP LOCKED` rows, so two instances claiming at once take different SETs;
 * a poll acknowledges and reads in one statement. Streams are not cached: no notification.
 */
import type { SignalsPart } from '../parts.ts';
import { adminEventFromRow, type AdminEventRow, asParsed, json, setFromRow, setParams, streamFromRow, streamParams, type SetRow, type StreamRow } from '../rows.ts';
import type { AdminEventQuery, AdminEventRecord, QueuedSet, SignalStream } from '../types.ts';
import type { PgQueries } from './connection.ts';

export class PostgresSignals implements SignalsPart {
  readonly #db: PgQueries;

  constructor(db: PgQueries) {
    this.#db = db;
  }

  async putStream(stream: SignalStream): Promise<void> {
    await this.#db.query(
      'baton_put_stream',
      `INSERT INTO ssf_streams (tenant_id, stream_id, client_id, data) VALUES ($1, $2, $3, $4)
       ON CONFLICT (tenant_id, stream_id) DO UPDATE SET client_id = EXCLUDED.client_id, data = EXCLUDED.data`,
      streamParams(stream),
    );
  }

  async getStream(tenantId: string, streamId: string): Promise<SignalStream | undefined> {
    const { rows } = await this.#db.query<StreamRow<unknown>>('baton_get_stream', 'SELECT * FROM ssf_streams WHERE tenant_id = $1 AND stream_id = $2', [tenantId, streamId]);
    return rows[0] === undefined ? undefined : streamFromRow(rows[0], asParsed);
  }

  async listStreams(tenantId: string): Promise<SignalStream[]> {
    const { rows } = await this.#db.query<StreamRow<unknown>>('baton_list_streams', 'SELECT * FROM ssf_streams WHERE tenant_id = $1 ORDER BY stream_id', [tenantId]);
    return rows.map((row) => streamFromRow(row, asParsed));
  }

  async deleteStream(tenantId: string, streamId: string): Promise<boolean> {
    const { rowCount } = await this.#db.query('baton_delete_stream', 'DELETE FROM ssf_streams WHERE tenant_id = $1 AND stream_id = $2', [tenantId, streamId]);
    return (rowCount ?? 0) > 0;
  }

  async queueSets(sets: readonly QueuedSet[]): Promise<void> {
    if (sets.length === 0) return;
    const columns = sets.map(setParams);
    // One statement for every SET of one event, queued in the order given (seq follows ORDER BY);
    // a stream deleted meanwhile gets none.
    await this.#db.query(
      'baton_queue_sets',
      `INSERT INTO ssf_sets (tenant_id, stream_id, jti, set_jwt, created_at, expires_at, next_attempt_at, attempts)
       SELECT s.tenant_id, s.stream_id, s.jti, s.set_jwt, s.created_at, s.expires_at, s.next_attempt_at, s.attempts
       FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::float8[], $6::float8[], $7::float8[], $8::int[]) WITH ORDINALITY
         AS s (tenant_id, stream_id, jti, set_jwt, created_at, expires_at, next_attempt_at, attempts, n)
       WHERE EXISTS (SELECT 1 FROM ssf_streams t WHERE t.tenant_id = s.tenant_id AND t.stream_id = s.stream_id)
       ORDER BY s.n
       ON CONFLICT (tenant_id, stream_id, jti) DO NOTHING`,
      [0, 1, 2, 3, 4, 5, 6, 7].map((i) => columns.map((c) => c[i])),
    );
  }

  async pollSets(tenantId: string, streamId: string, ack: readonly string[], max: number, now: number): Promise<{ sets: QueuedSet[]; more: boolean }> {
    // The CTE's delete runs to completion whether read or not; it and the select see one snapshot,
    // so the acknowledged rows are excluded by name.
    const { rows } = await this.#db.query<SetRow>(
      'baton_poll_sets',
      `WITH acked AS (DELETE FROM ssf_sets WHERE tenant_id = $1 AND stream_id = $2 AND jti = ANY($3::text[]) RETURNING 1)
       SELECT tenant_id, stream_id, jti, set_jwt, created_at, expires_at, next_attempt_at, attempts FROM ssf_sets
       WHERE tenant_id = $1 AND stream_id = $2 AND NOT (jti = ANY($3::text[])) AND expires_at > $4
       ORDER BY seq LIMIT $5`,
      [tenantId, streamId, [...ack], now, max + 1],
    );
    return { sets: rows.slice(0, max).map(setFromRow), more: rows.length > max };
  }

  async claimPushSets(now: number, leaseUntil: number, limit: number): Promise<QueuedSet[]> {
    const { rows } = await this.#db.query<SetRow>(
      'baton_claim_push_sets',
      `UPDATE ssf_sets s SET next_attempt_at = $2
       FROM (SELECT seq FROM ssf_sets WHERE next_attempt_at IS NOT NULL AND next_attempt_at <= $1 AND expires_at > $1
             ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED) due
       WHERE s.seq = due.seq
       RETURNING s.tenant_id, s.stream_id, s.jti, s.set_jwt, s.created_at, s.expires_at, s.next_attempt_at, s.attempts`,
      [now, leaseUntil, limit],
    );
    return rows.map(setFromRow);
  }

  async settlePushSet(tenantId: string, streamId: string, jti: string, retryAt: number | undefined, attempts: number): Promise<void> {
    if (retryAt === undefined) {
      await this.#db.query('baton_delete_set', 'DELETE FROM ssf_sets WHERE tenant_id = $1 AND stream_id = $2 AND jti = $3', [tenantId, streamId, jti]);
    } else {
      await this.#db.query('baton_retry_set', 'UPDATE ssf_sets SET next_attempt_at = $4, attempts = $5 WHERE tenant_id = $1 AND stream_id = $2 AND jti = $3', [
        tenantId,
        streamId,
        jti,
        retryAt,
        attempts,
      ]);
    }
  }

  async appendAdminEvent(record: AdminEventRecord): Promise<void> {
    await this.#db.query(
      'baton_append_admin_event',
      'INSERT INTO admin_events (tenant_id, id, at, entity, target, data) VALUES ($1, $2, $3, $4, $5, $6)',
      [record.tenantId, record.id, record.at, record.entity, record.target, json(record.event)],
    );
  }

  async listAdminEvents(query: AdminEventQuery): Promise<{ seq: number; record: AdminEventRecord }[]> {
    // Walks the tenant's log in seq order from the cursor; the filters are checked on the way.
    const { rows } = await this.#db.query<AdminEventRow<unknown>>(
      'baton_list_admin_events',
      `SELECT seq, tenant_id, id, at, entity, target, data FROM admin_events
       WHERE tenant_id = $1 AND seq > $2 AND at >= $3 AND ($4::text IS NULL OR entity = $4) AND ($5::text IS NULL OR target = $5)
       ORDER BY seq LIMIT $6`,
      [query.tenantId, query.after ?? 0, query.since ?? 0, query.entity ?? null, query.target ?? null, query.limit],
    );
    return rows.map((row) => adminEventFromRow(row, asParsed));
  }

  async sweepSets(now: number): Promise<number> {
    const { rowCount } = await this.#db.query('baton_sweep_sets', 'DELETE FROM ssf_sets WHERE expires_at <= $1', [now]);
    return rowCount ?? 0;
  }
}

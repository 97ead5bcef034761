/**
 * The admin change log, read back: `GET /{tenant}/admin/v1/events` (issue 13: "an audit event for
 * every change: who, what, before/after, never a secret"). Each event was stored in its change's
 * own transaction (changes.ts); the list is oldest first, filtered by the record's type, its id
 * and an instant, paged by a cursor that names the last event seen (so a page never shifts when
 * new changes are made while a client reads).
 */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { AdminChangeEvent } from './audit.ts';
import { ADMIN_PREFIX, adminOf, DEFAULT_PAGE, MAX_PAGE, parseWith } from './http.ts';
import { problems } from './problem.ts';
import { findUser } from './users.ts';

const ENTITIES = ['user', 'application', 'consent', 'roleAssignment', 'policy'] as const;

/** ISO 8601 date or date-time with a zone (what `time` holds), e.g. `2026-12-05T10:00:00Z`. */
const INSTANT = /^\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:\d{2}))?$/;

const EventQuery = z.strictObject({
  type: z.enum(ENTITIES).optional(),
  id: z.string().min(1).max(256).optional(),
  since: z.string().max(40).regex(INSTANT, 'an ISO 8601 date or date-time with a zone, e.g. 2026-12-05T10:00:00Z').optional(),
  limit: z.string().optional(),
  cursor: z.string().optional(),
});

const CURSOR = /^e1:(\d{1,15})$/;

function readLimit(value: string | undefined): number {
  if (value === undefined) return DEFAULT_PAGE;
  if (!/^\d{1,4}$/.test(value) || Number(value) < 1 || Number(value) > MAX_PAGE) throw problems.invalidQuery(`limit must be a whole number from 1 to ${MAX_PAGE}.`);
  return Number(value);
}

function readCursor(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const match = value.length <= 64 ? CURSOR.exec(Buffer.from(value, 'base64url').toString('utf8')) : null;
  if (match === null) throw problems.invalidQuery('cursor is not one this API gave out; start again without it.');
  return Number(match[1]);
}

/** An event as the API shows it: the stored change event without the instance-local feed number. */
function presentEvent(stored: unknown): Omit<AdminChangeEvent, 'seq'> {
  const { seq: _seq, ...event } = stored as AdminChangeEvent;
  return event;
}

export function eventRoutes(app: FastifyInstance): void {
  app.get(`${ADMIN_PREFIX}/events`, async (request, reply) => {
    const req = adminOf(request);
    const query = parseWith(EventQuery, request.query, 'query');
    const limit = readLimit(query.limit);
    const after = readCursor(query.cursor);
    let since: number | undefined;
    if (query.since !== undefined) {
      since = Date.parse(query.since);
      if (!Number.isFinite(since)) throw problems.invalidQuery(`since: not a valid instant: ${query.since}`);
    }
    if (query.id !== undefined && query.type === undefined) throw problems.invalidQuery('id: give the record type too (type=user, application, consent, roleAssignment or policy).');
    let target = query.id;
    // Users are logged by object id; a username names the same user.
    if (query.type === 'user' && target !== undefined) target = (await findUser(req, target))?.oid ?? target;
    const rows = await req.ctx.store.listAdminEvents({ tenantId: req.tenantId, entity: query.type, target, since, after, limit: limit + 1 });
    const items = rows.slice(0, limit).map((row) => presentEvent(row.record.event));
    if (rows.length <= limit) return reply.send({ items });
    const next = Buffer.from(`e1:${rows[limit - 1]!.seq}`).toString('base64url');
    const url = new URL(request.url, 'http://x');
    url.searchParams.set('cursor', next);
    url.searchParams.set('limit', String(limit));
    reply.header('link', `<${url.pathname}${url.search}>; rel="next"`);
    return reply.send({ items, next });
  });
}

/**
 * The admin API's HTTP conventions, written once: JSON bodies only (strictly validated: an unknown
 * field is an error, not ignored), a body limit, problem+json errors, ETags and `If-Match`,
 * cursor paging, and the admin token checked before anything else is read.
 */
import { createHash } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { TenantDirectory } from '@baton/core';
import type { z } from 'zod';
import { isTenantId } from '../tenants.ts';
import type { ServerContext } from '../context.ts';
import { problems, ProblemError, sendProblem, toProblem } from './problem.ts';
import type { AdminActor } from './audit.ts';
import type { AdminGuards } from './guard.ts';
import { canonicalJson as canonical } from '../canonical.ts';

/** The largest body the admin API reads (an application with many scopes fits easily). */
export const ADMIN_BODY_LIMIT = 64 * 1024;
export const ADMIN_PREFIX = '/:tenant/admin/v1';

/** What every admin handler gets: the tenant, the caller, and where the change log needs them. */
export interface AdminRequest {
  ctx: ServerContext;
  directory: TenantDirectory;
  tenantId: string;
  actor: AdminActor;
  requestId: string;
  ip: string;
  /** `If-Match` as sent (undefined when absent). */
  ifMatch: string | undefined;
}

declare module 'fastify' {
  interface FastifyRequest {
    admin?: AdminRequest;
  }
}

/** Where an admin-style scope lives and which app role of the built-in API its callers need. */
export interface AdminScopeOptions {
  /** Path prefix of the scope's routes (default `/:tenant/admin/v1`); unknown paths below it are 404. */
  prefix?: string;
  /** Default `Baton.Admin`. */
  role?: string;
}

/**
 * Adds the admin scope to `app`: its own JSON parser and error handler (the rest of the service
 * takes form bodies only and answers OAuth errors), the token check, and `routes`. The security
 * event streams (signals/routes.ts) are such a scope too, with their own prefix and role.
 */
export function registerAdminScope(app: FastifyInstance, ctx: ServerContext, guards: AdminGuards, routes: (scope: FastifyInstance) => void, options: AdminScopeOptions = {}): void {
  const prefix = options.prefix ?? ADMIN_PREFIX;
  app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('application/json', { parseAs: 'string', bodyLimit: ADMIN_BODY_LIMIT }, (_request, body, done) => {
      try {
        done(null, JSON.parse(body as string));
      } catch {
        done(problems.malformedJson(), undefined);
      }
    });
    scope.setErrorHandler((error, request, reply) => {
      const problem = toProblem(error, ADMIN_BODY_LIMIT);
      if (problem.status >= 500) ctx.log[problem.status === 503 ? 'warn' : 'error']({ err: { message: (problem.cause as Error | undefined)?.message ?? problem.detail }, reqId: request.id, url: request.routeOptions.url }, 'admin API error');
      return sendProblem(request, reply, problem);
    });
    // The token first: an anonymous caller learns nothing about bodies, records or tenants.
    scope.addHook('onRequest', async (request) => {
      const tenantId = (request.params as { tenant?: string }).tenant ?? '';
      const directory = isTenantId(tenantId) ? await ctx.directories.get(tenantId) : undefined;
      if (directory === undefined) throw problems.notFound(`Tenant '${tenantId.slice(0, 64)}'`);
      const actor = await guards.authenticate(request, directory, options.role);
      const ifMatch = request.headers['if-match'];
      request.admin = { ctx, directory, tenantId, actor, requestId: request.id, ip: request.ip, ifMatch: typeof ifMatch === 'string' ? ifMatch : undefined };
    });
    scope.addHook('onSend', async (_request, reply) => {
      reply.header('cache-control', 'no-store');
    });
    routes(scope);
    scope.all(`${prefix}/*`, async (request) => {
      throw problems.notFound(`${request.method} ${request.url.split('?')[0]!.slice(0, 200)}`);
    });
  });
}

/** The admin context of a request that passed the scope's token check. */
export function adminOf(request: FastifyRequest): AdminRequest {
  if (request.admin === undefined) throw problems.server(new Error('admin route without the admin scope'));
  return request.admin;
}

/** Validates a body (or query) against a strict schema; every problem named by its path. */
export function parseWith<S extends z.ZodType>(schema: S, value: unknown, what: 'body' | 'query' = 'body'): z.infer<S> {
  if (what === 'body' && (value === null || typeof value !== 'object' || Array.isArray(value))) throw problems.invalidBody('The body must be a JSON object.');
  const result = schema.safeParse(value ?? {});
  if (result.success) return result.data;
  const errors = result.error.issues.map((issue) => ({
    path: issue.path.map(String).join('.') || '(root)',
    message: issue.code === 'unrecognized_keys' ? `unknown field${issue.keys.length > 1 ? 's' : ''}: ${issue.keys.join(', ')}` : issue.message,
  }));
  const first = errors[0]!;
  if (what === 'query') throw problems.invalidQuery(`${first.path}: ${first.message}`);
  throw problems.invalidBody(`${first.path}: ${first.message}`, errors);
}

/** A strong ETag of a stored record (RFC 9110 §8.8.3): its canonical JSON's SHA-256. */
export function etagOf(record: unknown): string {
  return `"${createHash('sha256').update(canonical(record)).digest('base64url').slice(0, 27)}"`;
}

export function sameRecord(a: unknown, b: unknown): boolean {
  return canonical(a) === canonical(b);
}

/**
 * RFC 9110 §13.1.1 with strong comparison: `*` matches any current record; otherwise one of the
 * listed tags must equal the record's. Missing → 428 when required; not matching → 412.
 */
export function checkIfMatch(ifMatch: string | undefined, current: unknown, required: boolean): void {
  if (ifMatch === undefined) {
    if (required) throw problems.preconditionRequired();
    return;
  }
  const value = ifMatch.trim();
  if (value === '*') return;
  const tags = value.split(',').map((t) => t.trim());
  if (!tags.includes(etagOf(current))) throw problems.preconditionFailed();
}

export const DEFAULT_PAGE = 50;
export const MAX_PAGE = 200;

/** `?limit=&cursor=`: the cursor is opaque to clients (base64url of the next offset, versioned). */
export function readPage(query: unknown): { limit: number; offset: number } {
  const q = (query ?? {}) as Record<string, unknown>;
  let limit = DEFAULT_PAGE;
  if (q.limit !== undefined) {
    if (typeof q.limit !== 'string' || !/^\d{1,4}$/.test(q.limit) || Number(q.limit) < 1 || Number(q.limit) > MAX_PAGE) {
      throw problems.invalidQuery(`limit must be a whole number from 1 to ${MAX_PAGE}.`);
    }
    limit = Number(q.limit);
  }
  let offset = 0;
  if (q.cursor !== undefined) {
    const decoded = typeof q.cursor === 'string' && q.cursor.length <= 64 ? Buffer.from(q.cursor, 'base64url').toString('utf8') : '';
    const match = /^o1:(\d{1,9})$/.exec(decoded);
    if (match === null) throw problems.invalidQuery('cursor is not one this API gave out; start again without it.');
    offset = Number(match[1]);
  }
  return { limit, offset };
}

/** A page of `items`; `more` says whether there is a next one (then `next` and a `Link: rel="next"`). */
export function sendPage(request: FastifyRequest, reply: FastifyReply, items: unknown[], page: { limit: number; offset: number }, more: boolean) {
  if (!more) return reply.send({ items });
  const next = Buffer.from(`o1:${page.offset + page.limit}`).toString('base64url');
  const url = new URL(request.url, 'http://x');
  url.searchParams.set('cursor', next);
  url.searchParams.set('limit', String(page.limit));
  reply.header('link', `<${url.pathname}${url.search}>; rel="next"`);
  return reply.send({ items, next });
}

/** Sends a record with its ETag. */
export function sendRecord(reply: FastifyReply, stored: unknown, shown: unknown, status = 200) {
  return reply.code(status).header('etag', etagOf(stored)).send(shown);
}

export { ProblemError, problems };

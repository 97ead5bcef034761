/**
 * The Shared Signals Framework 1.0 transmitter's HTTP side, per tenant:
 *
 * - transmitter metadata: `{base}/.well-known/ssf-configuration/{tenant}/v2.0` (SSF §7.2: the
 *   well-known path inserted before the issuer's path) and `{issuer}/.well-known/ssf-configuration`;
 * - stream management below `/{tenant}/ssf/v1` (SSF §8.1): `streams` (POST create, GET read one or
 *   all, PATCH update, PUT replace, DELETE), `streams/status` (GET, POST), `subjects/add`,
 *   `subjects/remove`, `verify`;
 * - the poll endpoint of each polled stream, `/{tenant}/ssf/v1/poll/{stream_id}` (RFC 8936).
 *
 * Callers are receiver applications holding `Baton.Signals` on the tenant's built-in
 * `api://baton-admin`, with an app-only token from this tenant (client credentials): the admin
 * API's own scope (admin/http.ts) and token check (admin/guard.ts), with problem+json errors. A
 * receiver sees and changes only the streams it created.
 */
import { randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { z } from 'zod';
import type { RoutePlugin } from '../http/app.ts';
import { issuerOf, type ServerContext } from '../context.ts';
import { isTenantId } from '../tenants.ts';
import { canonicalJson } from '../canonical.ts';
import { AdminGuards } from '../admin/guard.ts';
import { SIGNALS_ROLE } from '../admin/application.ts';
import { adminOf, parseWith, registerAdminScope, type AdminRequest } from '../admin/http.ts';
import { problems } from '../admin/problem.ts';
import type { SignalStream } from '../store/types.ts';
import { SUPPORTED_EVENTS } from './events.ts';
import { transmitterOf } from './transmitter.ts';

export const SSF_PREFIX = '/:tenant/ssf/v1';
export const PUSH_METHOD = 'urn:ietf:rfc:8935';
export const POLL_METHOD = 'urn:ietf:rfc:8936';
/** Streams one receiver may hold in a tenant. */
export const MAX_STREAMS_PER_RECEIVER = 16;
/** A poll without `returnImmediately: true` waits this long for a SET before answering none (RFC 8936 §2.4). */
export const LONG_POLL_MS = 10_000;
/** SETs per poll answer when the receiver names no `maxEvents`, and at most. */
export const DEFAULT_MAX_EVENTS = 100;
export const MAX_EVENTS = 1000;
const MAX_SUBJECT_JSON = 1024;
const MAX_REMOVED_SUBJECTS = 10_000;

function ssfBase(ctx: ServerContext, tenantId: string): string {
  return `${ctx.baseUrl}/${tenantId}/ssf/v1`;
}

/** Transmitter configuration metadata (SSF §7.1). */
export function ssfMetadata(ctx: ServerContext, tenantId: string): Record<string, unknown> {
  const base = ssfBase(ctx, tenantId);
  return {
    spec_version: '1_0',
    issuer: issuerOf(ctx, tenantId),
    jwks_uri: `${ctx.baseUrl}/${tenantId}/discovery/v2.0/keys`,
    delivery_methods_supported: [PUSH_METHOD, POLL_METHOD],
    configuration_endpoint: `${base}/streams`,
    status_endpoint: `${base}/streams/status`,
    add_subject_endpoint: `${base}/subjects/add`,
    remove_subject_endpoint: `${base}/subjects/remove`,
    verification_endpoint: `${base}/verify`,
    critical_subject_members: ['tenant'],
    authorization_schemes: [{ spec_urn: 'urn:ietf:rfc:6749' }],
    default_subjects: 'ALL',
  };
}

/** A stream as the receiver sees it (SSF §8.1.1); the push authorization header is never shown. */
export function presentStream(ctx: ServerContext, stream: SignalStream) {
  return {
    stream_id: stream.streamId,
    iss: issuerOf(ctx, stream.tenantId),
    aud: stream.audience,
    events_supported: SUPPORTED_EVENTS,
    events_requested: stream.eventsRequested,
    events_delivered: stream.eventsRequested.filter((e) => SUPPORTED_EVENTS.includes(e)),
    delivery: {
      method: stream.delivery.method === 'push' ? PUSH_METHOD : POLL_METHOD,
      endpoint_url: stream.delivery.method === 'poll' ? `${ssfBase(ctx, stream.tenantId)}/poll/${stream.streamId}` : stream.delivery.endpointUrl,
    },
    ...(stream.description !== undefined ? { description: stream.description } : {}),
    min_verification_interval: 0,
    subject_format: stream.subjectFormat,
  };
}

const EventType = z.string().min(1).max(256);
const Delivery = z.strictObject({
  method: z.enum([PUSH_METHOD, POLL_METHOD]),
  endpoint_url: z.string().max(2048).optional(),
  /** Push: sent as `Authorization` with every SET (RFC 8935 §2). */
  authorization_header: z.string().min(1).max(4096).optional(),
});
/** Read-only members a receiver may send back as it read them (ignored). */
const readOnly = {
  stream_id: z.string().max(64).optional(),
  iss: z.string().max(2048).optional(),
  aud: z.union([z.string().max(2048), z.array(z.string().max(2048)).max(8)]).optional(),
  events_supported: z.array(EventType).max(64).optional(),
  events_delivered: z.array(EventType).max(64).optional(),
  min_verification_interval: z.number().optional(),
  inactivity_timeout: z.number().optional(),
};
const StreamFields = {
  events_requested: z.array(EventType).max(64),
  delivery: Delivery,
  description: z.string().max(256),
  subject_format: z.enum(['iss_sub', 'email', 'opaque']),
};
const StreamCreate = z.strictObject({
  ...readOnly,
  events_requested: StreamFields.events_requested.default([]),
  delivery: StreamFields.delivery.default({ method: POLL_METHOD }),
  description: StreamFields.description.optional(),
  subject_format: StreamFields.subject_format.default('iss_sub'),
});
const StreamUpdate = z.strictObject({
  ...readOnly,
  stream_id: z.string().min(1).max(64),
  events_requested: StreamFields.events_requested.optional(),
  delivery: StreamFields.delivery.optional(),
  description: StreamFields.description.optional(),
  subject_format: StreamFields.subject_format.optional(),
});
const StreamQuery = z.strictObject({ stream_id: z.string().min(1).max(64).optional() });
const StreamIdQuery = z.strictObject({ stream_id: z.string().min(1).max(64) });
const StatusUpdate = z.strictObject({ stream_id: z.string().min(1).max(64), status: z.enum(['enabled', 'paused', 'disabled']), reason: z.string().max(256).optional() });
const Subject = z.record(z.string(), z.unknown()).refine((s) => typeof s.format === 'string' && s.format.length > 0, 'a subject identifier has a format');
const SubjectChange = z.strictObject({ stream_id: z.string().min(1).max(64), subject: Subject, verified: z.boolean().optional() });
const Verify = z.strictObject({ stream_id: z.string().min(1).max(64), state: z.string().max(256).optional() });
const Poll = z.strictObject({
  ack: z.array(z.string().min(1).max(128)).max(MAX_EVENTS).optional(),
  setErrs: z.record(z.string().min(1).max(128), z.strictObject({ err: z.string().max(64), description: z.string().max(1024).optional() })).optional(),
  maxEvents: z.number().int().min(0).max(MAX_EVENTS).optional(),
  returnImmediately: z.boolean().optional(),
});

/** Push endpoints: https, or plain http to this machine only (a receiver beside the service). */
function checkPushEndpoint(url: string | undefined): string {
  if (url === undefined) throw problems.invalidBody('delivery.endpoint_url: a push stream needs the receiver endpoint (RFC 8935).', [{ path: 'delivery.endpoint_url', message: 'required for push' }]);
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw problems.invalidBody('delivery.endpoint_url: not a URL.', [{ path: 'delivery.endpoint_url', message: 'not a URL' }]);
  }
  const loopback = ['127.0.0.1', '[::1]', 'localhost'].includes(parsed.hostname);
  if (parsed.protocol !== 'https:' && !(parsed.protocol === 'http:' && loopback)) {
    throw problems.invalidBody('delivery.endpoint_url: must be https (plain http only to 127.0.0.1, [::1] or localhost).', [{ path: 'delivery.endpoint_url', message: 'must be https' }]);
  }
  if (parsed.username !== '' || parsed.password !== '' || parsed.hash !== '') {
    throw problems.invalidBody('delivery.endpoint_url: no credentials or fragment in the URL.', [{ path: 'delivery.endpoint_url', message: 'no credentials or fragment' }]);
  }
  return parsed.href;
}

function deliveryOf(input: z.infer<typeof Delivery>): SignalStream['delivery'] {
  if (input.method === POLL_METHOD) {
    if (input.authorization_header !== undefined) throw problems.invalidBody('delivery.authorization_header: only for push delivery.');
    return { method: 'poll' };
  }
  return { method: 'push', endpointUrl: checkPushEndpoint(input.endpoint_url), authorizationHeader: input.authorization_header };
}

function eventsOf(requested: readonly string[]): string[] {
  return [...new Set(requested.filter((e) => SUPPORTED_EVENTS.includes(e)))];
}

/** The caller's own stream, or 404 (another receiver's stream does not exist for it). */
async function ownStream(req: AdminRequest, streamId: string): Promise<SignalStream> {
  const stream = await req.ctx.store.getStream(req.tenantId, streamId);
  if (stream === undefined || stream.clientId !== req.actor.clientId) throw problems.notFound(`Stream '${streamId.slice(0, 64)}'`);
  return stream;
}

function sendStream(reply: FastifyReply, req: AdminRequest, stream: SignalStream, status = 200) {
  return reply.code(status).send(presentStream(req.ctx, stream));
}

function streamRoutes(app: FastifyInstance): void {
  app.post(`${SSF_PREFIX}/streams`, async (request, reply) => {
    const req = adminOf(request);
    const input = parseWith(StreamCreate, request.body);
    const owned = (await req.ctx.store.listStreams(req.tenantId)).filter((s) => s.clientId === req.actor.clientId);
    if (owned.length >= MAX_STREAMS_PER_RECEIVER) throw problems.conflict(`'${req.actor.clientId}' already has ${MAX_STREAMS_PER_RECEIVER} streams; delete one first.`);
    const now = req.ctx.now();
    const stream: SignalStream = {
      tenantId: req.tenantId,
      streamId: randomUUID(),
      clientId: req.actor.clientId,
      audience: req.actor.clientId,
      eventsRequested: eventsOf(input.events_requested),
      delivery: deliveryOf(input.delivery),
      description: input.description,
      status: 'enabled',
      subjectFormat: input.subject_format,
      removedSubjects: [],
      createdAt: now,
      updatedAt: now,
    };
    await req.ctx.store.putStream(stream);
    req.ctx.log.info({ tenant: req.tenantId, stream: stream.streamId, client_id: stream.clientId, delivery: stream.delivery.method }, 'security event stream created');
    return sendStream(reply, req, stream, 201);
  });

  app.get(`${SSF_PREFIX}/streams`, async (request, reply) => {
    const req = adminOf(request);
    const { stream_id } = parseWith(StreamQuery, request.query, 'query');
    if (stream_id !== undefined) return sendStream(reply, req, await ownStream(req, stream_id));
    const owned = (await req.ctx.store.listStreams(req.tenantId)).filter((s) => s.clientId === req.actor.clientId);
    return reply.send(owned.map((s) => presentStream(req.ctx, s)));
  });

  const change = (replace: boolean) => async (request: any, reply: FastifyReply) => {
    const req = adminOf(request);
    const input = replace ? parseWith(StreamCreate.extend({ stream_id: z.string().min(1).max(64) }), request.body) : parseWith(StreamUpdate, request.body);
    const current = await ownStream(req, input.stream_id!);
    const next: SignalStream = {
      ...current,
      eventsRequested: input.events_requested !== undefined ? eventsOf(input.events_requested) : current.eventsRequested,
      delivery: input.delivery !== undefined ? deliveryOf(input.delivery) : current.delivery,
      description: replace ? input.description : (input.description ?? current.description),
      subjectFormat: input.subject_format ?? current.subjectFormat,
      updatedAt: req.ctx.now(),
    };
    await req.ctx.store.putStream(next);
    return sendStream(reply, req, next);
  };
  app.patch(`${SSF_PREFIX}/streams`, change(false));
  app.put(`${SSF_PREFIX}/streams`, change(true));

  app.delete(`${SSF_PREFIX}/streams`, async (request, reply) => {
    const req = adminOf(request);
    const { stream_id } = parseWith(StreamIdQuery, request.query, 'query');
    await ownStream(req, stream_id);
    await req.ctx.store.deleteStream(req.tenantId, stream_id);
    req.ctx.log.info({ tenant: req.tenantId, stream: stream_id, client_id: req.actor.clientId }, 'security event stream deleted');
    return reply.code(204).send();
  });

  app.get(`${SSF_PREFIX}/streams/status`, async (request, reply) => {
    const req = adminOf(request);
    const { stream_id } = parseWith(StreamIdQuery, request.query, 'query');
    const stream = await ownStream(req, stream_id);
    return reply.send({ stream_id, status: stream.status, ...(stream.reason !== undefined ? { reason: stream.reason } : {}) });
  });

  app.post(`${SSF_PREFIX}/streams/status`, async (request, reply) => {
    const req = adminOf(request);
    const input = parseWith(StatusUpdate, request.body);
    const current = await ownStream(req, input.stream_id);
    const next: SignalStream = { ...current, status: input.status, reason: input.reason, updatedAt: req.ctx.now() };
    await req.ctx.store.putStream(next);
    return reply.send({ stream_id: next.streamId, status: next.status, ...(next.reason !== undefined ? { reason: next.reason } : {}) });
  });

  const subjectChange = (add: boolean) => async (request: any, reply: FastifyReply) => {
    const req = adminOf(request);
    const input = parseWith(SubjectChange, request.body);
    const key = canonicalJson(input.subject);
    if (key.length > MAX_SUBJECT_JSON) throw problems.invalidBody(`subject: at most ${MAX_SUBJECT_JSON} characters of JSON.`);
    const current = await ownStream(req, input.stream_id);
    const removed = new Set(current.removedSubjects);
    if (add) removed.delete(key);
    else {
      if (removed.size >= MAX_REMOVED_SUBJECTS) throw problems.conflict(`The stream already has ${MAX_REMOVED_SUBJECTS} removed subjects.`);
      removed.add(key);
    }
    await req.ctx.store.putStream({ ...current, removedSubjects: [...removed], updatedAt: req.ctx.now() });
    return add ? reply.code(200).send({}) : reply.code(204).send();
  };
  app.post(`${SSF_PREFIX}/subjects/add`, subjectChange(true));
  app.post(`${SSF_PREFIX}/subjects/remove`, subjectChange(false));

  app.post(`${SSF_PREFIX}/verify`, async (request, reply) => {
    const req = adminOf(request);
    const input = parseWith(Verify, request.body);
    const stream = await ownStream(req, input.stream_id);
    if (stream.status !== 'disabled') await transmitterOf(req.ctx).verify(stream, input.state);
    return reply.code(204).send();
  });

  // RFC 8936: acknowledge, report errors, and receive the next SETs, in one request.
  app.post(`${SSF_PREFIX}/poll/:stream`, async (request, reply) => {
    const req = adminOf(request);
    const input = parseWith(Poll, request.body ?? {});
    const stream = await ownStream(req, (request.params as { stream: string }).stream);
    if (stream.delivery.method !== 'poll') throw problems.conflict('This stream is delivered by push (RFC 8935); it cannot be polled.');
    const errs = Object.entries(input.setErrs ?? {});
    for (const [jti, error] of errs) req.ctx.log.warn({ tenant: req.tenantId, stream: stream.streamId, jti, err: error.err, description: error.description }, 'a receiver reported a SET it could not accept');
    const ack = [...(input.ack ?? []), ...errs.map(([jti]) => jti)];
    const max = input.maxEvents ?? DEFAULT_MAX_EVENTS;
    const transmitter = transmitterOf(req.ctx);
    // The caller hung up (the response closed before it was sent): stop waiting for it.
    const aborted = new AbortController();
    reply.raw.once('close', () => aborted.abort());
    const until = Date.now() + (input.returnImmediately === true || max === 0 ? 0 : LONG_POLL_MS);
    const answer = await transmitter.longPoll(async () => {
      let found = await req.ctx.store.pollSets(req.tenantId, stream.streamId, ack, stream.status === 'enabled' ? max : 0, req.ctx.now());
      while (found.sets.length === 0 && max > 0 && Date.now() < until && !aborted.signal.aborted && !transmitter.closing) {
        await transmitter.waitForSets(req.tenantId, stream.streamId, Math.min(500, until - Date.now()), aborted.signal);
        const current = await req.ctx.store.getStream(req.tenantId, stream.streamId);
        if (current === undefined) throw problems.notFound(`Stream '${stream.streamId}'`);
        found = await req.ctx.store.pollSets(req.tenantId, stream.streamId, [], current.status === 'enabled' ? max : 0, req.ctx.now());
      }
      return found;
    });
    // Shutting down: this long poll's connection must not linger in keep-alive (or half-closed, with
    // a client that went away) and hold the server's close up until its timeout.
    if (transmitter.closing) {
      reply.header('connection', 'close');
      reply.raw.once('finish', () => request.raw.socket?.destroy());
    }
    return reply.send({ sets: Object.fromEntries(answer.sets.map((s) => [s.jti, s.set])), moreAvailable: answer.more });
  });
}

/** The management and poll endpoints: the admin API's scope with the SSF role. */
export const signalRoutes: RoutePlugin = (app, ctx) => {
  const guards = new AdminGuards(app, ctx);
  registerAdminScope(app, ctx, guards, streamRoutes, { prefix: SSF_PREFIX, role: SIGNALS_ROLE });

  const metadata = async (request: { params: unknown }, reply: FastifyReply) => {
    const tenantId = (request.params as { tenant: string }).tenant;
    if (!isTenantId(tenantId) || (await ctx.directories.get(tenantId)) === undefined) {
      return reply.code(404).type('application/json').send({ error: 'invalid_tenant', error_description: `Tenant '${tenantId.slice(0, 64)}' not found.` });
    }
    return reply.header('cache-control', 'public, max-age=3600').send(ssfMetadata(ctx, tenantId));
  };
  app.get('/.well-known/ssf-configuration/:tenant/v2.0', metadata);
  app.get('/:tenant/v2.0/.well-known/ssf-configuration', metadata);
};

/**
 * Rendering errors. Anything that is not an OAuthError leaves the server as a plain
 * `server_error` (500) with no detail; the detail and stack go to the log only.
 */
import { randomUUID } from 'node:crypto';
import { OAuthError, Entra } from '@baton/core';
import type { FastifyReply, FastifyRequest } from 'fastify';

/** Entra's timestamp format: `2026-11-24 14:16:32Z`. */
export function entraTimestamp(date = new Date()): string {
  return `${date.toISOString().slice(0, 19).replace('T', ' ')}Z`;
}

/** Maps framework errors (body too large, bad content type, malformed JSON) to OAuth errors. */
export function toOAuthError(error: unknown): OAuthError {
  if (error instanceof OAuthError) return error;
  // Anything may be thrown, null and strings included: read it as an object that may lack every field.
  const e = (error !== null && typeof error === 'object' ? error : {}) as { statusCode?: number; code?: string; message?: string };
  switch (e.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new OAuthError('invalid_request', { status: 413, description: 'The request body is too large.', entraCodes: [Entra.malformedRequest] });
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      // RFC 6749 §5.2: an OAuth error is 400 "unless specified otherwise" — not 415 — so OAuth
      // clients, which read the JSON of any 400, show the developer this description.
      return new OAuthError('invalid_request', {
        description: "The request body must be sent as 'application/x-www-form-urlencoded' (RFC 6749 §3.2); JSON and other content types are not accepted.",
        entraCodes: [Entra.malformedRequest],
      });
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return new OAuthError('invalid_request', { description: 'The request body is malformed.', entraCodes: [Entra.malformedRequest] });
  }
  if (storeUnavailable(error)) {
    // The store is restarting or unreachable: the client should retry, and nothing was done (every
    // grant writes in one transaction or not at all). A 503 with Retry-After, not a 500.
    return new OAuthError('temporarily_unavailable', {
      status: 503,
      description: 'The service is temporarily unable to reach its database. Retry after the time in the Retry-After header.',
      headers: { 'retry-after': '2' },
      detail: e.message,
      cause: error,
    });
  }
  if (typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
    return new OAuthError('invalid_request', { status: e.statusCode, description: 'The request is malformed.', entraCodes: [Entra.malformedRequest], detail: e.code });
  }
  return new OAuthError('server_error', { description: 'The server could not complete the request.', detail: e.message, cause: error });
}

/** Connection-level failures of the store (node-postgres, the network, SQLite's lock), as opposed to bugs. */
const UNAVAILABLE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', '57P01', '57P02', '57P03', '53300']);
const UNAVAILABLE_MESSAGES = /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|database is locked/i;

/** Whether `error` says the store cannot be reached right now (PostgreSQL restarting, SQLite busy past its timeout). */
export function storeUnavailable(error: unknown): boolean {
  const e = error as { code?: unknown; message?: unknown } | null;
  if (e === null || typeof e !== 'object') return false;
  const code = typeof e.code === 'string' ? e.code : '';
  // SQLSTATE class 08: connection exception.
  return UNAVAILABLE_CODES.has(code) || code.startsWith('08') || (typeof e.message === 'string' && UNAVAILABLE_MESSAGES.test(e.message));
}

/** Correlation id: MSAL's `client-request-id` (query or header) when it is a sane GUID-like value. */
export function correlationId(request: FastifyRequest): string {
  const query = request.query as Record<string, unknown> | undefined;
  const fromQuery = query?.['client-request-id'];
  const fromHeader = request.headers['client-request-id'];
  const value = typeof fromQuery === 'string' ? fromQuery : typeof fromHeader === 'string' ? fromHeader : undefined;
  return value !== undefined && /^[A-Za-z0-9-]{1,64}$/.test(value) ? value : randomUUID();
}

export function sendOAuthError(request: FastifyRequest, reply: FastifyReply, error: OAuthError, errorUriBase?: string): FastifyReply {
  const correlation = correlationId(request);
  const body = error.toJSON({
    timestamp: entraTimestamp(),
    traceId: request.id,
    correlationId: correlation,
    ...(errorUriBase && error.expose ? { errorUri: `${errorUriBase}/error?code=${error.entraCodes[0] ?? ''}` } : {}),
  });
  for (const [name, value] of Object.entries(error.headers)) reply.header(name, value);
  return reply
    .code(error.expose ? error.status : 500)
    .header('cache-control', 'no-store')
    .header('pragma', 'no-cache')
    .header('client-request-id', correlation)
    .type('application/json; charset=utf-8')
    .send(body);
}

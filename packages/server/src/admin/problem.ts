/**
 * The admin API's errors: RFC 9457 problem details (`application/problem+json`) with `type`,
 * `title`, `status` and `detail`, plus an OAuth-style `error` code where a client library knows one
 * (`invalid_token`, `insufficient_scope`, `invalid_request`), and `errors` (path + message per
 * field) for a body that fails validation. Types are URNs (`urn:baton:problem:<slug>`), listed in
 * docs/operations.md; they name the problem, they are not links.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { storeUnavailable } from '../http/errors.ts';

export interface FieldProblem {
  path: string;
  message: string;
}

export class ProblemError extends Error {
  override name = 'ProblemError';
  readonly status: number;
  readonly slug: string;
  readonly title: string;
  readonly detail: string;
  readonly error: string | undefined;
  readonly headers: Record<string, string>;
  readonly errors: readonly FieldProblem[] | undefined;

  constructor(status: number, slug: string, title: string, detail: string, options: { error?: string; headers?: Record<string, string>; errors?: readonly FieldProblem[]; cause?: unknown } = {}) {
    super(detail, options.cause === undefined ? undefined : { cause: options.cause });
    this.status = status;
    this.slug = slug;
    this.title = title;
    this.detail = detail;
    this.error = options.error;
    this.headers = options.headers ?? {};
    this.errors = options.errors;
  }

  toJSON(instance: string): Record<string, unknown> {
    return {
      type: `urn:baton:problem:${this.slug}`,
      title: this.title,
      status: this.status,
      detail: this.detail,
      instance,
      ...(this.error !== undefined ? { error: this.error } : {}),
      ...(this.errors !== undefined ? { errors: this.errors } : {}),
    };
  }
}

/** Every problem the admin API answers, in one place. */
export const problems = {
  invalidBody: (detail: string, errors?: readonly FieldProblem[]) => new ProblemError(400, 'invalid-body', 'The request body is invalid', detail, { error: 'invalid_request', ...(errors ? { errors } : {}) }),
  invalidQuery: (detail: string) => new ProblemError(400, 'invalid-query', 'A query parameter is invalid', detail, { error: 'invalid_request' }),
  malformedJson: () => new ProblemError(400, 'malformed-json', 'The request body is not valid JSON', 'The body could not be parsed as JSON (RFC 8259).', { error: 'invalid_request' }),
  unauthenticated: (detail: string, wwwAuthenticate: string, error?: string) =>
    new ProblemError(401, 'unauthenticated', 'An admin access token is required', detail, { headers: { 'www-authenticate': wwwAuthenticate }, ...(error ? { error } : {}) }),
  forbidden: (detail: string, wwwAuthenticate: string, role = 'Baton.Admin') =>
    new ProblemError(403, 'insufficient-role', `The token does not carry the ${role} role`, detail, { error: 'insufficient_scope', headers: { 'www-authenticate': wwwAuthenticate } }),
  notFound: (what: string) => new ProblemError(404, 'not-found', 'Not found', `${what} does not exist.`),
  methodNotAllowed: (allow: string) => new ProblemError(405, 'method-not-allowed', 'Method not allowed', `This resource answers ${allow}.`, { headers: { allow } }),
  conflict: (detail: string) => new ProblemError(409, 'conflict', 'Conflict', detail),
  preconditionFailed: () =>
    new ProblemError(412, 'precondition-failed', 'The resource changed', 'If-Match does not match the current ETag: someone changed the resource since you read it. Read it again and retry.'),
  payloadTooLarge: (limit: number) => new ProblemError(413, 'payload-too-large', 'The request body is too large', `The admin API takes bodies of at most ${limit} bytes.`, { error: 'invalid_request' }),
  unsupportedMediaType: () =>
    new ProblemError(415, 'unsupported-media-type', 'Unsupported content type', "The admin API takes 'application/json' bodies only.", { error: 'invalid_request', headers: { 'accept-post': 'application/json' } }),
  preconditionRequired: () =>
    new ProblemError(428, 'precondition-required', 'If-Match is required', 'Send the ETag of your last read in If-Match, so a concurrent change is not overwritten (RFC 9110 §13.1.1).'),
  unavailable: (cause: unknown) =>
    new ProblemError(503, 'store-unavailable', 'Temporarily unavailable', 'The service cannot reach its database right now; nothing was changed. Retry after the time in Retry-After.', {
      error: 'temporarily_unavailable',
      headers: { 'retry-after': '2' },
      cause,
    }),
  server: (cause: unknown) => new ProblemError(500, 'server-error', 'Internal server error', 'The server could not complete the request; nothing more is said here (the operator log has the detail).', { cause }),
};

/** Any thrown value as a problem: framework refusals by their code, the store's outages as 503, the rest 500. */
export function toProblem(error: unknown, bodyLimit: number): ProblemError {
  if (error instanceof ProblemError) return error;
  const e = (error !== null && typeof error === 'object' ? error : {}) as { statusCode?: number; code?: string };
  switch (e.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return problems.payloadTooLarge(bodyLimit);
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return problems.unsupportedMediaType();
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return problems.invalidBody('The body is empty; send a JSON object.');
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return problems.invalidBody('The body does not match its Content-Length.');
  }
  if (storeUnavailable(error)) return problems.unavailable(error);
  if (typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
    return new ProblemError(e.statusCode, 'bad-request', 'The request is malformed', 'The request could not be read.', { error: 'invalid_request' });
  }
  return problems.server(error);
}

export function sendProblem(request: FastifyRequest, reply: FastifyReply, problem: ProblemError): FastifyReply {
  for (const [name, value] of Object.entries(problem.headers)) reply.header(name, value);
  return reply
    .code(problem.status)
    .header('cache-control', 'no-store')
    .type('application/problem+json; charset=utf-8')
    .send(problem.toJSON(request.url.split('?')[0]!.slice(0, 300)));
}

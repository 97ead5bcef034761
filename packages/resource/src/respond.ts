/**
 * What every adapter sends for a refused request: the status, `WWW-Authenticate`, `Cache-Control:
 * no-store`, and a small JSON body (none when the request had no credentials, RFC 6750 §3.1).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { DownstreamUnavailableError, GuardError } from './errors.ts';

export interface ErrorResponse {
  status: number;
  headers: Record<string, string>;
  body: string | undefined;
}

/**
 * The response for a `GuardError` (including `ClaimsChallengeError`) or a `DownstreamUnavailableError`
 * (502 problem+json); `undefined` for anything else.
 */
export function errorResponse(error: unknown): ErrorResponse | undefined {
  if (error instanceof DownstreamUnavailableError) {
    return { status: 502, headers: { 'cache-control': 'no-store', 'content-type': 'application/problem+json' }, body: JSON.stringify(error.toProblem()) };
  }
  if (!(error instanceof GuardError)) return undefined;
  const json = error.toJSON();
  const headers: Record<string, string> = { 'cache-control': 'no-store', ...error.headers };
  if (error.status === 503) headers['retry-after'] = '5';
  if (json !== undefined) headers['content-type'] = 'application/json';
  return { status: error.status, headers, body: json === undefined ? undefined : JSON.stringify(json) };
}

/** A Fetch `Response` for a `GuardError`; `undefined` for anything else (Hono's `app.onError`). */
export function errorFetchResponse(error: unknown): Response | undefined {
  const r = errorResponse(error);
  return r === undefined ? undefined : new Response(r.body ?? null, { status: r.status, headers: r.headers });
}

/** Writes the response for a `GuardError` on a `node:http` response. False if `error` is not one (or headers are gone). */
export function writeErrorResponse(res: ServerResponse, error: unknown): boolean {
  const r = errorResponse(error);
  if (r === undefined || res.headersSent) return false;
  res.writeHead(r.status, { ...r.headers, 'content-length': r.body === undefined ? 0 : Buffer.byteLength(r.body) });
  res.end(r.body);
  return true;
}

/** Every `Authorization` value of a Node request: duplicates kept (Node's `headers` drops them). */
export function authorizationOf(req: IncomingMessage): string[] | undefined {
  return req.headersDistinct.authorization;
}

/** The inbound trace headers, for `runWithPrincipal`. */
export function traceOf(req: IncomingMessage): { traceparent: string[] | undefined; tracestate: string[] | undefined } {
  return { traceparent: req.headersDistinct.traceparent, tracestate: req.headersDistinct.tracestate };
}

/** The largest push (RFC 8935) body read: one SET. */
export const MAX_PUSH_BYTES = 64 * 1024;

/** A request body as text, at most `limit` bytes (undefined beyond). */
export function readBody(req: IncomingMessage, limit = MAX_PUSH_BYTES): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) over = true;
      else chunks.push(chunk);
    });
    req.on('end', () => resolve(over ? undefined : Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

/** The 413 of a push body over the limit, in RFC 8935's error shape. */
export const PUSH_TOO_LARGE = { status: 413, headers: { 'content-type': 'application/json', 'cache-control': 'no-store' }, body: JSON.stringify({ err: 'invalid_request', description: `At most ${MAX_PUSH_BYTES} bytes.` }) };

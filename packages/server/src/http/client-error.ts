/**
 * Requests Node's HTTP parser refuses before Fastify routes them (headers over 16 KiB, a malformed
 * request line, a request that took too long to arrive): answered in the same OAuth error shape as
 * everything else (RFC 6749 §5.2 JSON, `invalid_request`), never Fastify's own `{"error":"Bad
 * Request","message":…}`, and the connection is closed (the parser cannot resynchronise).
 */
import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';

function answer(code: string | undefined): { status: number; description: string } {
  switch (code) {
    case 'HPE_HEADER_OVERFLOW':
      return { status: 431, description: 'The request line and headers are too large (at most 16 KiB).' };
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return { status: 408, description: 'The request did not arrive in time.' };
    default:
      return { status: 400, description: 'The request is not valid HTTP.' };
  }
}

/** Fastify's `clientErrorHandler`: writes a JSON OAuth error if the socket can take it, then closes it. */
export function clientErrorHandler(error: Error & { code?: string }, socket: Socket): void {
  // A reset connection has nobody to answer (https://nodejs.org/api/http.html#event-clienterror).
  if (error.code === 'ECONNRESET' || socket.destroyed) return;
  if (socket.writable) {
    const { status, description } = answer(error.code);
    const body = JSON.stringify({ error: 'invalid_request', error_description: `AADSTS900144: ${description}`, error_codes: [900144] });
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\n` +
        `cache-control: no-store\r\nx-content-type-options: nosniff\r\nconnection: close\r\n\r\n${body}`,
    );
  }
  socket.destroy();
}

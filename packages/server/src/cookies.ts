/**
 * Cookies of the sign-in flow (RFC 6265). Every name and value Baton sets is made of token
 * characters (base64url, a GUID, a tenant id), so no encoding is needed; the serializer refuses
 * anything else rather than encode it. (@fastify/cookie's standalone parse/serialize only work once
 * its plugin has been registered, and registering plugins is the HTTP shell's business.)
 *
 * - The SSO session cookie `__Host-baton-session-{tenant}`: HttpOnly, Secure, SameSite=Lax,
 *   Path=/, no Domain (the `__Host-` prefix makes the browser enforce the last three).
 * - The interaction cookie `__Secure-baton-interaction`, scoped by Path to one interaction
 *   (`/{tenant}/oauth2/v2.0/interaction/{id}`), so two tabs signing in at once do not clash. It
 *   binds the sign-in pages to the browser that started the authorization request.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';

export const INTERACTION_COOKIE = '__Secure-baton-interaction';

export function sessionCookieName(tenantId: string): string {
  return `__Host-baton-session-${tenantId}`;
}

const TOKEN = /^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$/;
const VALUE = /^[A-Za-z0-9!#$%&'()*+\-./:<=>?@[\]^_`{|}~]*$/;

/** The first cookie called `name` in the request (RFC 6265 §5.4 sends the most specific path first). */
export function readCookie(request: FastifyRequest, name: string): string | undefined {
  const header = request.headers.cookie;
  if (typeof header !== 'string' || header.length > 16 * 1024) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    if (part.slice(0, eq).trim() !== name) continue;
    let value = part.slice(eq + 1).trim();
    if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
    return VALUE.test(value) ? value : undefined;
  }
  return undefined;
}

function serialize(name: string, value: string, attributes: { path: string; maxAge?: number | undefined; expired?: boolean }): string {
  if (!TOKEN.test(name) || !VALUE.test(value) || !/^\/[A-Za-z0-9\-._~/]*$/.test(attributes.path)) throw new TypeError(`cookie ${name}: name, value or path is not cookie-safe`);
  const parts = [`${name}=${value}`, `Path=${attributes.path}`];
  if (attributes.maxAge !== undefined) parts.push(`Max-Age=${Math.max(0, Math.floor(attributes.maxAge))}`);
  if (attributes.expired) parts.push('Expires=Thu, 01 Jan 1970 00:00:00 GMT');
  parts.push('HttpOnly', 'Secure', 'SameSite=Lax');
  return parts.join('; ');
}

export interface CookieOptions {
  path?: string;
  /** Seconds; absent = a browser-session cookie. */
  maxAge?: number | undefined;
}

export function setCookie(reply: FastifyReply, name: string, value: string, options: CookieOptions = {}): void {
  appendSetCookie(reply, serialize(name, value, { path: options.path ?? '/', maxAge: options.maxAge }));
}

export function clearCookie(reply: FastifyReply, name: string, path = '/'): void {
  appendSetCookie(reply, serialize(name, '', { path, maxAge: 0, expired: true }));
}

function appendSetCookie(reply: FastifyReply, cookie: string): void {
  const existing = reply.getHeader('set-cookie');
  const list = existing === undefined ? [] : Array.isArray(existing) ? existing.map(String) : [String(existing)];
  reply.header('set-cookie', [...list, cookie]);
}

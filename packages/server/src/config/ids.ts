/** Ids derived from names: stable across loads, instances and the admin API. */
import { createHash } from 'node:crypto';

/** A GUID derived from a name (SHA-256, RFC 9562 v8 layout): stable across loads and instances. */
export function stableGuid(...parts: string[]): string {
  const h = createHash('sha256').update(`baton:${parts.join('\u0000')}`).digest();
  h[6] = (h[6]! & 0x0f) | 0x80;
  h[8] = (h[8]! & 0x3f) | 0x80;
  const x = h.subarray(0, 16).toString('hex');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20, 32)}`;
}


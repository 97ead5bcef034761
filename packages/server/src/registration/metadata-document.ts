/**
 * OAuth Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document; MCP 2025-11-25):
 * a `client_id` that is an https URL names a JSON document the client publishes there. Baton fetches
 * it at the authorization endpoint and keeps it as a public client registration of the tenant
 * (`Application.registration.kind = 'metadata-document'`), cached as the document's HTTP caching
 * headers allow.
 *
 * Fetching a URL an anonymous party chose is a server-side request forgery risk, so the fetch is
 * fenced:
 * - https only, default port or any, no userinfo, no fragment, a path (not `/`);
 * - the host name is resolved once and EVERY address must be public: no private (RFC 1918, ULA),
 *   loopback, link-local, CGNAT, multicast or unspecified address — and the connection goes to the
 *   checked address (the resolution is pinned), so a second DNS answer cannot swap in 127.0.0.1
 *   (DNS rebinding). Loopback only when `allowLoopback` is set: the documented development
 *   allow-list, for clients run on the developer's machine;
 * - no redirects (a 3xx is a refusal), a size limit (5 KiB by default, counted as the body
 *   arrives), one deadline for the whole fetch (5 s by default);
 * - at most `fetchesPerIpPerMinute` fetches for one client address (clients.ts; a cached document
 *   costs no fetch);
 * - the document must be a JSON object whose `client_id` equals the URL exactly, with
 *   `redirect_uris`, a public client (`token_endpoint_auth_method` `none` or absent; no secret).
 */
import { lookup as dnsLookup } from 'node:dns/promises';
import { request as httpsRequest } from 'node:https';
import { BlockList, isIP, type LookupFunction } from 'node:net';
import { OAuthError, Entra, truncate, type Application } from '@baton/core';
import { selfRegisteredApplication } from './application.ts';

export interface MetadataDocumentOptions {
  /** Accept `client_id`s that are https URLs (`client_id_metadata_document_supported`). Default false. */
  enabled: boolean;
  /** Development allow-list: documents on loopback addresses (127.0.0.0/8, ::1) are fetched. Default false. */
  allowLoopback: boolean;
  /** Largest document, in bytes. Default 5120. */
  maxBytes: number;
  /** Deadline for the whole fetch, in milliseconds. Default 5000. */
  timeoutMs: number;
  /** Longest a document is kept without fetching it again, in seconds (its `max-age` is honoured below that). Default 86400. */
  maxCacheSeconds: number;
  /** Kept this long when the response says nothing about caching, in seconds. Default 300. */
  defaultCacheSeconds: number;
  /**
   * Documents fetched for one client address per minute (per tenant, counted across instances).
   * An anonymous party chooses the URL: without a cap, one address could make Baton fetch (and keep
   * as registrations) documents as fast as it can send authorization requests. Default 30.
   */
  fetchesPerIpPerMinute: number;
}

export const DEFAULT_METADATA_DOCUMENT_OPTIONS: MetadataDocumentOptions = {
  enabled: false,
  allowLoopback: false,
  maxBytes: 5120,
  timeoutMs: 5000,
  maxCacheSeconds: 86400,
  defaultCacheSeconds: 300,
  fetchesPerIpPerMinute: 30,
};

export function resolveMetadataDocumentOptions(config: Partial<MetadataDocumentOptions> | undefined): MetadataDocumentOptions {
  return { ...DEFAULT_METADATA_DOCUMENT_OPTIONS, ...Object.fromEntries(Object.entries(config ?? {}).filter(([, v]) => v !== undefined)) };
}

/** Longest `client_id` URL accepted. */
export const MAX_CLIENT_ID_URL = 2048;

/** A `client_id` that names a metadata document: https, a host, a path other than `/`, no userinfo, fragment or dot segment. */
export function isMetadataDocumentUrl(value: string): boolean {
  if (value.length > MAX_CLIENT_ID_URL || !value.startsWith('https://') || /[\s\u0000-\u001f\u007f#\\]/.test(value)) return false;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return false;
  }
  // The URL as written: no normalisation may change it (`/a/../b`, `%2e`, upper-case host).
  if (url.href !== value || url.username !== '' || url.password !== '' || url.pathname === '/' || url.hash !== '') return false;
  return !url.pathname.split('/').some((segment) => segment === '.' || segment === '..' || /^%2e/i.test(segment));
}

/** Addresses a fetch never goes to (IPv4 and IPv6; IPv4-mapped IPv6 addresses are checked as IPv4). */
const BLOCKED = new BlockList();
for (const [net, prefix] of [['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['169.254.0.0', 16], ['172.16.0.0', 12], ['192.0.0.0', 24], ['192.0.2.0', 24], ['192.168.0.0', 16], ['198.18.0.0', 15], ['198.51.100.0', 24], ['203.0.113.0', 24], ['224.0.0.0', 4], ['240.0.0.0', 4]] as const) BLOCKED.addSubnet(net, prefix, 'ipv4');
for (const [net, prefix] of [['::', 128], ['64:ff9b::', 96], ['100::', 64], ['2001:db8::', 32], ['fc00::', 7], ['fe80::', 10], ['ff00::', 8]] as const) BLOCKED.addSubnet(net, prefix, 'ipv6');
const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');

/** Why `address` may not be fetched from, or `undefined` when it may. */
export function addressProblem(address: string, allowLoopback: boolean): string | undefined {
  let family = isIP(address);
  let checked = address;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) {
    checked = mapped[1] as string;
    family = 4;
  }
  if (family === 0) return 'not an IP address';
  const type = family === 4 ? 'ipv4' : 'ipv6';
  if (LOOPBACK.check(checked, type)) return allowLoopback ? undefined : 'a loopback address (allowed only with registration.metadataDocuments.allowLoopback, for development)';
  if (BLOCKED.check(checked, type)) return 'a private, link-local or reserved address';
  return undefined;
}

/** A refusal of a client whose metadata document cannot be used: shown on an error page, never redirected. */
function refused(clientId: string, why: string): OAuthError {
  return new OAuthError('invalid_client', {
    description: `The client metadata document at '${truncate(clientId, 200)}' cannot be used: ${why}.`,
    entraCodes: [Entra.unknownClient],
  });
}

export interface FetchedDocument {
  document: Record<string, unknown>;
  /** Seconds the document may be kept (0: use it for this request only). */
  cacheSeconds: number;
}

/** Fetches a metadata document within the fences above. Throws `invalid_client` naming what was wrong. */
export async function fetchMetadataDocument(clientId: string, options: MetadataDocumentOptions): Promise<FetchedDocument> {
  const url = new URL(clientId);
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const deadline = AbortSignal.timeout(options.timeoutMs);
  let address: string;
  let family: number;
  if (isIP(host) !== 0) {
    address = host;
    family = isIP(host);
  } else {
    let answers: Array<{ address: string; family: number }>;
    try {
      answers = await dnsLookup(host, { all: true, verbatim: true });
    } catch {
      throw refused(clientId, `its host '${truncate(host, 100)}' does not resolve`);
    }
    if (answers.length === 0) throw refused(clientId, `its host '${truncate(host, 100)}' does not resolve`);
    // Every answer must be acceptable: a name that also points inside is not fetched at all.
    for (const answer of answers) {
      const problem = addressProblem(answer.address, options.allowLoopback);
      if (problem !== undefined) throw refused(clientId, `its host resolves to ${answer.address}, ${problem}`);
    }
    ({ address, family } = answers[0] as { address: string; family: number });
  }
  const problem = addressProblem(address, options.allowLoopback);
  if (problem !== undefined) throw refused(clientId, `its address ${address} is ${problem}`);
  if (deadline.aborted) throw refused(clientId, `it did not arrive within ${options.timeoutMs} ms`);

  return new Promise<FetchedDocument>((resolve, reject) => {
    let settled = false;
    const fail = (why: string) => {
      if (settled) return;
      settled = true;
      req.destroy();
      reject(refused(clientId, why));
    };
    const req = httpsRequest(
      {
        host,
        port: url.port === '' ? 443 : Number(url.port),
        path: `${url.pathname}${url.search}`,
        method: 'GET',
        headers: { accept: 'application/json', 'user-agent': 'Baton (client metadata document fetch)' },
        // The connection goes to the address checked above, whatever DNS answers now (no rebinding).
        lookup: ((_hostname: string, lookupOptions: { all?: boolean }, callback: (error: null, address: unknown, family?: number) => void) => {
          if (lookupOptions.all) callback(null, [{ address, family }]);
          else callback(null, address, family);
        }) as unknown as LookupFunction,
        servername: isIP(host) === 0 ? host : undefined,
        signal: deadline,
        agent: false,
      },
      (res) => {
        const status = res.statusCode ?? 0;
        if (status >= 300 && status < 400) return fail(`it answered ${status} (a redirect): the document must be served at the client_id URL itself`);
        if (status !== 200) return fail(`it answered HTTP ${status}`);
        const declared = Number(res.headers['content-length']);
        if (Number.isFinite(declared) && declared > options.maxBytes) return fail(`it is larger than ${options.maxBytes} bytes`);
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > options.maxBytes) return fail(`it is larger than ${options.maxBytes} bytes`);
          chunks.push(chunk);
        });
        res.on('error', () => fail('the connection failed while it was read'));
        res.on('end', () => {
          if (settled) return;
          let document: unknown;
          try {
            document = JSON.parse(Buffer.concat(chunks).toString('utf8'));
          } catch {
            return fail('it is not JSON');
          }
          if (document === null || typeof document !== 'object' || Array.isArray(document)) return fail('it is not a JSON object');
          settled = true;
          resolve({ document: document as Record<string, unknown>, cacheSeconds: cacheSecondsOf(res.headers['cache-control'], options) });
        });
      },
    );
    req.on('error', (error: Error) => fail(deadline.aborted ? `it did not arrive within ${options.timeoutMs} ms` : `it could not be fetched (${truncate(error.message, 120)})`));
    req.end();
  });
}

/** How long a response may be kept: `no-store`/`no-cache` → 0, `max-age` (capped), else the default. */
export function cacheSecondsOf(header: string | undefined, options: Pick<MetadataDocumentOptions, 'maxCacheSeconds' | 'defaultCacheSeconds'>): number {
  if (header === undefined) return options.defaultCacheSeconds;
  const directives = header.toLowerCase().split(',').map((d) => d.trim());
  if (directives.includes('no-store') || directives.includes('no-cache')) return 0;
  const maxAge = directives.find((d) => d.startsWith('max-age='));
  if (maxAge === undefined) return options.defaultCacheSeconds;
  const seconds = Number(maxAge.slice('max-age='.length));
  return Number.isInteger(seconds) && seconds >= 0 ? Math.min(seconds, options.maxCacheSeconds) : options.defaultCacheSeconds;
}

const MAX_REDIRECT_URIS = 20;

/**
 * The public client a metadata document describes, as a tenant's application. Throws
 * `invalid_client` when the document does not describe one it may be.
 */
export function clientFromDocument(tenantId: string, clientId: string, fetched: FetchedDocument, now: number): Application {
  const doc = fetched.document;
  if (doc.client_id !== clientId) throw refused(clientId, `its client_id ${typeof doc.client_id === 'string' ? `'${truncate(doc.client_id, 200)}'` : 'is missing and'} is not the URL it was fetched from`);
  const uris = doc.redirect_uris;
  if (!Array.isArray(uris) || uris.length === 0 || uris.length > MAX_REDIRECT_URIS || uris.some((u) => typeof u !== 'string' || !redirectUriAcceptable(u))) {
    throw refused(clientId, `redirect_uris must list 1 to ${MAX_REDIRECT_URIS} absolute https URIs (http only on loopback) without fragments`);
  }
  const method = doc.token_endpoint_auth_method;
  if (method !== undefined && method !== 'none') throw refused(clientId, `token_endpoint_auth_method '${truncate(String(method), 40)}' is not supported: a metadata-document client is public ('none')`);
  if (doc.client_secret !== undefined) throw refused(clientId, 'it contains a client_secret (a document is public: it cannot hold one)');
  const grants = doc.grant_types;
  if (grants !== undefined && (!Array.isArray(grants) || grants.some((g) => g !== 'authorization_code' && g !== 'refresh_token'))) {
    throw refused(clientId, "grant_types may name only 'authorization_code' and 'refresh_token'");
  }
  const name = typeof doc.client_name === 'string' && doc.client_name.trim() !== '' ? truncate(doc.client_name.trim().replace(/[\u0000-\u001f\u007f]/g, ''), 120) : new URL(clientId).host;
  const registration: NonNullable<Application['registration']> = { kind: 'metadata-document', registeredAt: now, expiresAt: now + fetched.cacheSeconds };
  const logo = httpsUrl(doc.logo_uri);
  const home = httpsUrl(doc.client_uri);
  if (logo !== undefined) registration.logoUri = logo;
  if (home !== undefined) registration.clientUri = home;
  return selfRegisteredApplication({ tenantId, clientId, name, redirectUris: uris as string[], registration });
}

function httpsUrl(value: unknown): string | undefined {
  if (typeof value !== 'string' || value.length > 2048 || !value.startsWith('https://')) return undefined;
  try {
    return new URL(value).href === value ? value : undefined;
  } catch {
    return undefined;
  }
}

function redirectUriAcceptable(value: string): boolean {
  if (value.length > 2048 || value.includes('#')) return false;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return false;
  }
  if (url.protocol === 'https:') return true;
  return url.protocol === 'http:' && (url.hostname === '127.0.0.1' || url.hostname === '[::1]' || url.hostname === 'localhost');
}

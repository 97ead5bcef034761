/**
 * RFC 9728 OAuth 2.0 Protected Resource Metadata: tells a client which authorization server issues
 * tokens for this API and which scopes it understands.
 *
 * @example
 * const meta = protectedResourceMetadata({ resource: 'https://tasks.example', authorizationServers: ['https://login.example/contoso/v2.0'], scopesSupported: ['Tasks.Read'] });
 * app.get(meta.path, meta.handler);            // Express / node:http
 * app.get(meta.path, () => meta.toResponse()); // Hono and other Fetch-style frameworks
 */
import type { IncomingMessage, ServerResponse } from 'node:http';

export interface ProtectedResourceMetadataOptions {
  /** The resource identifier (RFC 9728 §2): an https URL (http on localhost) without fragment. */
  resource: string;
  /** Issuer identifiers of the authorization servers that issue tokens for this resource. */
  authorizationServers: readonly string[];
  scopesSupported?: readonly string[];
  /** Human-readable name (`resource_name`). */
  resourceName?: string;
  /** `resource_documentation` URL. */
  resourceDocumentation?: string;
  /** Extra members, merged last (they cannot replace the ones above). */
  extra?: Record<string, unknown>;
  /** `Cache-Control` max-age, seconds. Default 3600. */
  maxAge?: number;
}

export interface ProtectedResourceMetadata {
  /** The path to serve it at: `/.well-known/oauth-protected-resource` plus the resource's path, if any (RFC 9728 §3.1). */
  readonly path: string;
  /** The absolute URL of the document (what a guard's `resourceMetadata` option advertises). */
  readonly url: string;
  readonly document: Readonly<Record<string, unknown>>;
  /** `node:http`/Express handler (GET and HEAD; 405 otherwise). */
  handler(req: IncomingMessage, res: ServerResponse): void;
  /** A Fetch `Response`, for Hono and other Fetch-style frameworks. */
  toResponse(): Response;
}

function absoluteUrl(value: unknown, where: string): URL {
  if (typeof value !== 'string') throw new TypeError(`${where} must be a URL string`);
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new TypeError(`${where} must be an absolute URL`);
  }
  const loopback = url.hostname === 'localhost' || url.hostname === '127.0.0.1' || url.hostname === '[::1]';
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && loopback)) throw new TypeError(`${where} must use https (http on localhost only)`);
  if (url.hash) throw new TypeError(`${where} must not have a fragment`);
  return url;
}

export function protectedResourceMetadata(options: ProtectedResourceMetadataOptions): ProtectedResourceMetadata {
  const where = 'protectedResourceMetadata';
  if (options === null || typeof options !== 'object') throw new TypeError(`${where}: options are required`);
  const resource = absoluteUrl(options.resource, `${where}: resource`);
  if (resource.search) throw new TypeError(`${where}: resource must not have a query (RFC 9728 §2)`);
  if (!Array.isArray(options.authorizationServers) || options.authorizationServers.length === 0) {
    throw new TypeError(`${where}: authorizationServers must list at least one issuer`);
  }
  options.authorizationServers.forEach((s, i) => absoluteUrl(s, `${where}: authorizationServers[${i}]`));
  if (options.scopesSupported !== undefined && (!Array.isArray(options.scopesSupported) || options.scopesSupported.some((s) => typeof s !== 'string' || s === '' || /\s/.test(s)))) {
    throw new TypeError(`${where}: scopesSupported must be scope strings without spaces`);
  }
  if (options.resourceDocumentation !== undefined) absoluteUrl(options.resourceDocumentation, `${where}: resourceDocumentation`);
  const maxAge = options.maxAge ?? 3600;
  if (!Number.isInteger(maxAge) || maxAge < 0) throw new TypeError(`${where}: maxAge must be a non-negative integer`);

  const document: Record<string, unknown> = {
    ...(options.extra ?? {}),
    resource: options.resource,
    authorization_servers: [...options.authorizationServers],
    bearer_methods_supported: ['header'],
  };
  if (options.scopesSupported) document.scopes_supported = [...options.scopesSupported];
  if (options.resourceName !== undefined) document.resource_name = options.resourceName;
  if (options.resourceDocumentation !== undefined) document.resource_documentation = options.resourceDocumentation;
  Object.freeze(document);

  // RFC 9728 §3.1: the well-known segment goes between the host and the resource's path.
  const resourcePath = resource.pathname === '/' ? '' : resource.pathname.replace(/\/+$/, '');
  const path = `/.well-known/oauth-protected-resource${resourcePath}`;
  const url = `${resource.origin}${path}`;
  const body = JSON.stringify(document);
  const headers = { 'content-type': 'application/json', 'cache-control': `public, max-age=${maxAge}` };

  return {
    path,
    url,
    document,
    handler(req, res) {
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { allow: 'GET, HEAD' }).end();
        return;
      }
      res.writeHead(200, { ...headers, 'content-length': Buffer.byteLength(body) });
      res.end(req.method === 'HEAD' ? undefined : body);
    },
    toResponse() {
      return new Response(body, { status: 200, headers });
    },
  };
}

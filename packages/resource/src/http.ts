/**
 * Outbound HTTP for the SDK: discovery, JWKS and the token endpoint.
 *
 * Everything goes through a `FetchLike` (the global `fetch` by default), so an application can
 * inject its own (proxy, instrumentation). `ca` builds a small fetch on `node:https` that trusts the
 * given certificates, because the global fetch cannot be handed a CA without undici's `Agent`,
 * which Node does not expose (the `baton serve --tls-dev` CA, self-signed test issuers).
 */
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';

export type FetchLike = (input: string | URL, init?: RequestInit) => Promise<Response>;

/** Certificates to trust, PEM. */
export type CaOption = string | Buffer | ReadonlyArray<string | Buffer>;

const MAX_RESPONSE_BYTES = 4 * 1024 * 1024;

/**
 * A fetch that trusts `ca` (in addition to nothing else: the given CAs replace the defaults, as with
 * `https.request({ ca })`). Supports string, `URLSearchParams` and byte bodies, `AbortSignal`;
 * redirects are returned, not followed.
 */
export function fetchWithCa(ca: CaOption): FetchLike {
  const caList = Array.isArray(ca) ? [...(ca as ReadonlyArray<string | Buffer>)] : [ca as string | Buffer];
  return (input, init = {}) =>
    new Promise<Response>((resolve, reject) => {
      const url = new URL(String(input));
      if (url.protocol !== 'https:' && url.protocol !== 'http:') {
        reject(new TypeError(`unsupported protocol ${url.protocol}`));
        return;
      }
      const headers: Record<string, string> = {};
      new Headers(init.headers).forEach((value, name) => {
        headers[name] = value;
      });
      let body: Buffer | undefined;
      const raw = init.body;
      if (raw === undefined || raw === null) body = undefined;
      else if (typeof raw === 'string') {
        body = Buffer.from(raw);
        headers['content-type'] ??= 'text/plain;charset=UTF-8';
      } else if (raw instanceof URLSearchParams) {
        body = Buffer.from(raw.toString());
        headers['content-type'] ??= 'application/x-www-form-urlencoded;charset=UTF-8';
      } else if (raw instanceof Uint8Array) body = Buffer.from(raw);
      else {
        reject(new TypeError('fetchWithCa supports string, URLSearchParams and byte bodies'));
        return;
      }
      if (body) headers['content-length'] = String(body.length);
      const method = (init.method ?? 'GET').toUpperCase();
      const options = { method, headers, ...(init.signal ? { signal: init.signal } : {}) };
      const onResponse = (res: IncomingMessage) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > MAX_RESPONSE_BYTES) {
            res.destroy(new Error('response too large'));
            return;
          }
          chunks.push(chunk);
        });
        res.on('error', reject);
        res.on('end', () => {
          const responseHeaders = new Headers();
          for (let i = 0; i + 1 < res.rawHeaders.length; i += 2) {
            responseHeaders.append(res.rawHeaders[i] as string, res.rawHeaders[i + 1] as string);
          }
          const status = res.statusCode ?? 500;
          const noBody = method === 'HEAD' || status === 204 || status === 205 || status === 304;
          resolve(new Response(noBody ? null : Buffer.concat(chunks), { status, statusText: res.statusMessage ?? '', headers: responseHeaders }));
        });
      };
      const req = url.protocol === 'https:' ? httpsRequest(url, { ...options, ca: caList }, onResponse) : httpRequest(url, options, onResponse);
      req.on('error', reject);
      req.end(body);
    });
}

/** The fetch to use given the `fetch`/`ca` options (both is a mistake). */
export function resolveFetch(options: { fetch?: FetchLike | undefined; ca?: CaOption | undefined }, where: string): FetchLike {
  if (options.fetch !== undefined && options.ca !== undefined) throw new TypeError(`${where}: give either 'fetch' or 'ca', not both`);
  if (options.fetch !== undefined) {
    if (typeof options.fetch !== 'function') throw new TypeError(`${where}.fetch must be a function`);
    return options.fetch;
  }
  if (options.ca !== undefined) return fetchWithCa(options.ca);
  return (input, init) => globalThis.fetch(input, init);
}

const LOOPBACK = new Set(['localhost', '127.0.0.1', '[::1]']);

/** An absolute https URL (http only on a loopback host); returns it normalised. */
export function checkUrl(value: unknown, where: string): string {
  if (typeof value !== 'string' || value.length === 0) throw new TypeError(`${where} must be a URL string`);
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new TypeError(`${where} is not a valid URL`);
  }
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && LOOPBACK.has(url.hostname))) {
    throw new TypeError(`${where} must use https (http is accepted for localhost only)`);
  }
  if (url.username || url.password) throw new TypeError(`${where} must not contain credentials`);
  return url.href;
}

/** Whether `value` is an https URL (or http on loopback). For URLs read from discovery documents. */
export function isAcceptableUrl(value: unknown): value is string {
  try {
    checkUrl(value, 'url');
    return true;
  } catch {
    return false;
  }
}

/** Reads a JSON object body, refusing anything larger than `maxBytes`. */
export async function readJsonObject(res: Response, maxBytes: number): Promise<Record<string, unknown>> {
  const declared = Number(res.headers.get('content-length'));
  if (Number.isFinite(declared) && declared > maxBytes) throw new Error(`response larger than ${maxBytes} bytes`);
  const bytes = new Uint8Array(await res.arrayBuffer());
  if (bytes.length > maxBytes) throw new Error(`response larger than ${maxBytes} bytes`);
  const value: unknown = JSON.parse(new TextDecoder().decode(bytes));
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new Error('response is not a JSON object');
  return value as Record<string, unknown>;
}

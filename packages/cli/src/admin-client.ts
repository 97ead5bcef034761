/**
 * The admin API from the command line: a client-credentials token for `api://baton-admin/.default`
 * (client id and secret from flags or `BATON_ADMIN_CLIENT_ID` / `BATON_ADMIN_CLIENT_SECRET`), then
 * JSON calls under `{url}/{tenant}/admin/v1`. Problems (RFC 9457) become one line on stderr.
 */
import { readFile } from 'node:fs/promises';
import tls from 'node:tls';
import type { OptionSpec } from './command.ts';

export const adminOptions: Record<string, OptionSpec> = {
  url: { type: 'string', valueName: 'URL', description: 'base URL of the token service', default: 'https://localhost:8443', env: 'BATON_URL' },
  tenant: { type: 'string', valueName: 'ID', description: 'tenant id', env: 'BATON_TENANT' },
  'client-id': { type: 'string', valueName: 'ID', description: 'admin application (holds Baton.Admin on api://baton-admin)', env: 'BATON_ADMIN_CLIENT_ID' },
  'client-secret': { type: 'string', valueName: 'SECRET', description: 'its client secret (prefer the variable: a flag shows in the process list)', env: 'BATON_ADMIN_CLIENT_SECRET' },
  ca: { type: 'string', valueName: 'FILE', description: 'CA certificate (PEM) to trust, e.g. .baton/tls/ca.pem of `baton serve --tls-dev`', env: 'BATON_CA' },
  json: { type: 'boolean', description: 'print the JSON the admin API answered' },
};

export class AdminProblem extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

export interface AdminAnswer {
  status: number;
  etag: string | undefined;
  body: any;
}

type Values = Record<string, string | boolean | undefined>;

const str = (v: string | boolean | undefined): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);

export class AdminClient {
  readonly #base: string;
  readonly #tenant: string;
  readonly #clientId: string;
  readonly #secret: string;
  #token: Promise<string> | undefined;

  private constructor(base: string, tenant: string, clientId: string, secret: string) {
    this.#base = base;
    this.#tenant = tenant;
    this.#clientId = clientId;
    this.#secret = secret;
  }

  static async from(values: Values): Promise<AdminClient> {
    const base = (str(values.url) ?? 'https://localhost:8443').replace(/\/+$/, '');
    if (!/^https?:\/\/[^\s/]+$/.test(base)) throw new Error(`--url must be the service's base URL (https://host:port), not '${base}'`);
    const tenant = str(values.tenant);
    if (tenant === undefined) throw new Error('--tenant is required (or BATON_TENANT)');
    const clientId = str(values['client-id']);
    const secret = str(values['client-secret']);
    if (clientId === undefined || secret === undefined) throw new Error('the admin client is required: --client-id and --client-secret (or BATON_ADMIN_CLIENT_ID and BATON_ADMIN_CLIENT_SECRET)');
    const ca = str(values.ca);
    if (ca !== undefined) {
      const pem = await readFile(ca, 'utf8').catch((error: NodeJS.ErrnoException) => {
        throw new Error(`--ca ${ca}: cannot read the file (${error.code ?? 'error'})`);
      });
      // Node ≥ 22.15 / 24: the global fetch trusts what the default CA list holds.
      const set = (tls as unknown as { setDefaultCACertificates?: (certs: string[]) => void }).setDefaultCACertificates;
      if (set === undefined) throw new Error('--ca needs Node.js 24; on older versions set NODE_EXTRA_CA_CERTS instead');
      set([...tls.getCACertificates('default'), pem]);
    }
    return new AdminClient(base, tenant, clientId, secret);
  }

  async #fetch(url: string, init: RequestInit): Promise<Response> {
    try {
      return await fetch(url, init);
    } catch (error) {
      const cause = (error as { cause?: { code?: string; message?: string } }).cause;
      throw new Error(`cannot reach ${this.#base} (${cause?.code ?? cause?.message ?? (error as Error).message})${cause?.code?.includes('CERT') || cause?.code === 'SELF_SIGNED_CERT_IN_CHAIN' ? ': pass --ca with the service\'s CA' : ''}`);
    }
  }

  #accessToken(): Promise<string> {
    this.#token ??= (async () => {
      const response = await this.#fetch(`${this.#base}/${encodeURIComponent(this.#tenant)}/oauth2/v2.0/token`, {
        method: 'POST',
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          authorization: `Basic ${Buffer.from(`${encodeURIComponent(this.#clientId)}:${encodeURIComponent(this.#secret)}`).toString('base64')}`,
        },
        body: new URLSearchParams({ grant_type: 'client_credentials', scope: 'api://baton-admin/.default' }).toString(),
      });
      const body = (await response.json().catch(() => ({}))) as Record<string, unknown>;
      if (response.status !== 200 || typeof body.access_token !== 'string') {
        throw new AdminProblem(response.status, `no admin token for '${this.#clientId}': ${String(body.error ?? response.status)}${typeof body.error_description === 'string' ? ` (${body.error_description.split(' Trace ID')[0]})` : ''}`);
      }
      return body.access_token;
    })();
    return this.#token;
  }

  /** One call; a problem answer throws AdminProblem with its title and detail. */
  async call(method: string, path: string, options: { body?: unknown; ifMatch?: string } = {}): Promise<AdminAnswer> {
    const headers: Record<string, string> = { authorization: `Bearer ${await this.#accessToken()}`, accept: 'application/json' };
    if (options.body !== undefined) headers['content-type'] = 'application/json';
    if (options.ifMatch !== undefined) headers['if-match'] = options.ifMatch;
    const response = await this.#fetch(`${this.#base}/${encodeURIComponent(this.#tenant)}/admin/v1${path}`, {
      method,
      headers,
      ...(options.body !== undefined ? { body: JSON.stringify(options.body) } : {}),
    });
    const text = await response.text();
    let body: any = undefined;
    if (text !== '') {
      try {
        body = JSON.parse(text);
      } catch {
        body = text;
      }
    }
    if (response.status >= 400) {
      const fields = Array.isArray(body?.errors) && body.errors.length > 1 ? `\n${body.errors.map((e: any) => `  ${e.path}: ${e.message}`).join('\n')}` : '';
      throw new AdminProblem(response.status, `${response.status} ${body?.title ?? response.statusText}: ${body?.detail ?? ''}${fields}`);
    }
    return { status: response.status, etag: response.headers.get('etag') ?? undefined, body };
  }

  /** Every item of a paged list, following `next`. */
  async all(path: string): Promise<unknown[]> {
    const items: unknown[] = [];
    let next: string | undefined;
    const joiner = path.includes('?') ? '&' : '?';
    for (let pages = 0; pages < 10_000; pages++) {
      const page = await this.call('GET', `${path}${joiner}limit=200${next ? `&cursor=${encodeURIComponent(next)}` : ''}`);
      items.push(...(page.body.items as unknown[]));
      next = page.body.next;
      if (next === undefined) break;
    }
    return items;
  }
}

/** A path segment from a user's argument. */
export const seg = (value: string) => encodeURIComponent(value);

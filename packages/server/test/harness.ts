/**
 * Starts a real token service for black-box tests: the chain configuration from
 * examples/chain/baton.json, a temporary data directory, SQLite by default or a throwaway
 * PostgreSQL schema, plain HTTP or dev TLS (trusted in this process only).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import tls from 'node:tls';
import pg from 'pg';
import pino from 'pino';
import { startServer, type RunningServer, type ServeOptions } from '../src/server.ts';
import { parseConfig } from '../src/config/load.ts';
import type { BatonConfig } from '../src/config/schema.ts';

export const CHAIN_CONFIG_PATH = new URL('../../../examples/chain/baton.json', import.meta.url).pathname;

/**
 * The demo chain's configuration plus the tenant-wide consent of `tasks-web` to `Tasks.ReadWrite`
 * these tests were written against (the demo itself asks each user, so its first sign-in shows a
 * real consent page); `mutate` sees and may change both.
 */
export function chainConfig(mutate?: (raw: any) => void): BatonConfig {
  return parseConfig(JSON.stringify(chainConfigRaw(mutate)), 'test config');
}

/** `chainConfig` as JSON, before parsing (to write to a file for the CLI). */
export function chainConfigRaw(mutate?: (raw: any) => void): any {
  const raw = JSON.parse(readFileSync(CHAIN_CONFIG_PATH, 'utf8'));
  const contoso = raw.tenants[0];
  if (!contoso.consents.some((c: any) => c.client === 'tasks-web' && c.for === 'all')) {
    contoso.consents.unshift({ client: 'tasks-web', resource: 'api://tasks', scopes: ['Tasks.ReadWrite'], for: 'all' });
  }
  mutate?.(raw);
  return raw;
}

export const PG_URL = process.env.BATON_TEST_PG ?? 'postgres://postgres@127.0.0.1:5432/postgres';

/** A throwaway PostgreSQL schema; `drop()` removes it. */
export async function pgSchema(): Promise<{ schema: string; drop(): Promise<void> }> {
  const schema = `baton_test_${randomBytes(6).toString('hex')}`;
  const client = new pg.Client({ connectionString: PG_URL });
  await client.connect();
  await client.query(`CREATE SCHEMA ${schema}`);
  await client.end();
  return {
    schema,
    async drop() {
      const c = new pg.Client({ connectionString: PG_URL });
      await c.connect();
      await c.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      await c.end();
    },
  };
}

const trusted = new Set<string>();
/** Trusts a CA for this test process (fetch, https, MSAL), as NODE_EXTRA_CA_CERTS would. */
export function trustCa(pem: string): void {
  if (trusted.has(pem)) return;
  trusted.add(pem);
  tls.setDefaultCACertificates([...tls.getCACertificates('default'), ...trusted]);
}

export interface TestServer extends RunningServer {
  dataDir: string;
  /** Moves this server's clock by `seconds`. */
  advance(seconds: number): void;
  tokenUrl(tenant?: string): string;
  post(path: string, form: Record<string, string> | string, headers?: Record<string, string>): Promise<{ status: number; headers: Headers; body: any }>;
}

export interface TestServerOptions extends Partial<ServeOptions> {
  configure?: (raw: any) => void;
  /** Reuse a data dir (a second instance, a restart). */
  dataDir?: string;
}

export async function startTestServer(options: TestServerOptions = {}): Promise<TestServer> {
  const dataDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), 'baton-test-')));
  let offset = 0;
  const now = () => Math.floor(Date.now() / 1000) + offset;
  const { configure, ...rest } = options;
  const server = await startServer({
    config: options.config ?? chainConfig(configure),
    dev: true,
    env: { BATON_KEK: undefined },
    logger: pino({ level: process.env.BATON_TEST_LOG ?? 'silent' }),
    now,
    ...rest,
    dataDir,
  });
  if (server.ca) trustCa(server.ca);
  const ownsDir = options.dataDir === undefined;
  return {
    ...server,
    dataDir,
    advance(seconds) {
      offset += seconds;
    },
    tokenUrl(tenant = 'contoso') {
      return `${server.url}/${tenant}/oauth2/v2.0/token`;
    },
    async post(path, form, headers = {}) {
      const body = typeof form === 'string' ? form : new URLSearchParams(form).toString();
      const response = await fetch(`${server.url}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
        body,
      });
      const text = await response.text();
      let parsed: unknown = text;
      try {
        parsed = JSON.parse(text);
      } catch {
        // not JSON: keep the text
      }
      return { status: response.status, headers: response.headers, body: parsed };
    },
    async close() {
      await server.close();
      if (ownsDir) await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** Decodes a JWT's header and payload without verifying (for assertions in tests). */
export function decodeJwt(token: string): { header: any; payload: any } {
  const [h, p] = token.split('.');
  return { header: JSON.parse(Buffer.from(h!, 'base64url').toString()), payload: JSON.parse(Buffer.from(p!, 'base64url').toString()) };
}

export const basic = (id: string, secret: string) => `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`;

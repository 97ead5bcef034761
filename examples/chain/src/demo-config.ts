/**
 * What the demo reads from its Baton configuration (examples/chain/baton.json): the tenant, the
 * demo users (to print them, and to show alice's current TOTP code), each application's name and
 * the example APIs' client secrets.
 *
 * Reading secrets out of the token service's configuration is a shortcut of the demo: a real API
 * gets its secret from its own environment or vault (`TASKS_API_CLIENT_SECRET` etc. override here).
 */
import { readFileSync } from 'node:fs';
import * as OTPAuth from 'otpauth';
import type { DemoUser } from './web/pages.ts';

export const DEFAULT_CONFIG = new URL('../baton.json', import.meta.url);

export interface DemoConfig {
  tenant: string;
  users: DemoUser[];
  /** username → base32 TOTP secret. */
  totpSecrets: Record<string, string>;
  /** clientId → secret, for the confidential clients of the demo. */
  secrets: Record<string, string>;
  /** clientId → display name. */
  names: Record<string, string>;
}

interface RawConfig {
  tenants?: Array<{
    id?: string;
    users?: Array<{ username?: string; displayName?: string; password?: string; totpSecret?: string; enabled?: boolean; roles?: string[] }>;
    applications?: Array<{ clientId?: string; name?: string; secrets?: string[] }>;
  }>;
}

const ENV_SECRET: Record<string, string> = {
  'tasks-api': 'TASKS_API_CLIENT_SECRET',
  'docs-api': 'DOCS_API_CLIENT_SECRET',
  'audit-api': 'AUDIT_API_CLIENT_SECRET',
  indexer: 'INDEXER_CLIENT_SECRET',
};

export function readDemoConfig(path: string | URL = DEFAULT_CONFIG, env: NodeJS.ProcessEnv = process.env): DemoConfig {
  const raw = JSON.parse(readFileSync(path, 'utf8')) as RawConfig;
  const tenant = raw.tenants?.[0];
  if (tenant?.id === undefined) throw new Error(`${String(path)}: no tenant`);
  const users: DemoUser[] = [];
  const totpSecrets: Record<string, string> = {};
  for (const u of tenant.users ?? []) {
    if (typeof u.username !== 'string') continue;
    users.push({
      username: u.username,
      displayName: u.displayName ?? u.username,
      password: u.password ?? '',
      mfa: typeof u.totpSecret === 'string',
      enabled: u.enabled !== false,
      admin: Array.isArray(u.roles) && u.roles.includes('admin'),
    });
    if (typeof u.totpSecret === 'string') totpSecrets[u.username] = u.totpSecret;
  }
  const secrets: Record<string, string> = {};
  const names: Record<string, string> = {};
  for (const app of tenant.applications ?? []) {
    if (typeof app.clientId !== 'string') continue;
    if (typeof app.name === 'string') names[app.clientId] = app.name;
    const fromEnv = ENV_SECRET[app.clientId] === undefined ? undefined : env[ENV_SECRET[app.clientId] as string];
    const secret = fromEnv ?? app.secrets?.[0];
    if (typeof secret === 'string') secrets[app.clientId] = secret;
  }
  return { tenant: tenant.id, users, totpSecrets, secrets, names };
}

/** The current TOTP code of a base32 secret (RFC 6238: SHA-1, 6 digits, 30 s), and seconds left. */
export function totpNow(secret: string, now = Date.now()): { code: string; remaining: number } {
  const totp = new OTPAuth.TOTP({ secret: OTPAuth.Secret.fromBase32(secret), algorithm: 'SHA1', digits: 6, period: 30 });
  return { code: totp.generate({ timestamp: now }), remaining: 30 - (Math.floor(now / 1000) % 30) };
}

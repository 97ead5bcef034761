/**
 * The declarative configuration (`baton serve --config FILE`), as a schema. Every field is
 * documented in docs/config.md; the example is examples/chain/baton.json.
 *
 * Objects are strict: an unknown key is an error naming its path, because a typo such as
 * `adminConsentRequried` must not silently turn a protected scope into a user-consentable one.
 */
import { isIP } from 'node:net';
import { z } from 'zod';
import { MAX_TENANT_ID, TENANT_ID_CHARS } from '../tenants.ts';

const LOOPBACK_HOSTS = new Set(['localhost', '127.0.0.1', '[::1]']);

/** RFC 8252 §7.3 / Entra: https everywhere, plain http only for loopback; no fragment (RFC 6749 §3.1.2). */
const redirectUri = z.string().superRefine((value, ctx) => {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    ctx.addIssue({ code: 'custom', message: 'must be an absolute URL' });
    return;
  }
  if (url.hash !== '' || value.includes('#')) ctx.addIssue({ code: 'custom', message: 'must not contain a fragment' });
  if (url.username !== '' || url.password !== '') ctx.addIssue({ code: 'custom', message: 'must not contain user information' });
  if (url.protocol === 'http:' && !LOOPBACK_HOSTS.has(url.hostname)) {
    ctx.addIssue({ code: 'custom', message: 'plain http is allowed only for loopback (localhost, 127.0.0.1, [::1])' });
  } else if (url.protocol !== 'http:' && url.protocol !== 'https:' && !/^[a-z][a-z0-9+.-]*\.[a-z0-9+.-]+:$/.test(url.protocol)) {
    // Private-use schemes (RFC 8252 §7.1) must be reverse-DNS (`com.example.app:`).
    ctx.addIssue({ code: 'custom', message: 'must use https, loopback http, or a reverse-DNS private-use scheme' });
  }
  // The URL parser normalises `..` away, so look at the text as given (and its %2e spellings).
  const rawPath = value.replace(/^[a-z][a-z0-9+.-]*:\/\/[^/?#]*/i, '').split(/[?#]/)[0] ?? '';
  if (rawPath.split('/').some((segment) => /^(\.|%2e){1,2}$/i.test(segment))) {
    ctx.addIssue({ code: 'custom', message: 'must not contain dot segments' });
  }
});

const scopeValue = z
  .string()
  .min(1)
  .max(120)
  .regex(/^[A-Za-z0-9._:-]+$/, 'must be letters, digits and . _ : - only (no spaces or slashes)')
  .refine((v) => v !== '.default', 'is reserved');

const cidr = z.string().refine((value) => {
  const [address, bits, rest] = value.split('/');
  if (rest !== undefined || address === undefined) return false;
  const family = isIP(address);
  if (family === 0) return false;
  if (bits === undefined) return true;
  const n = Number(bits);
  return /^\d+$/.test(bits) && n >= 0 && n <= (family === 4 ? 32 : 128);
}, 'must be an IP address or CIDR range (203.0.113.0/24, 2001:db8::/32)');

const guid = z.string().regex(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i, 'must be a GUID');

export const UserConfig = z.strictObject({
  username: z.string().min(1).max(256).regex(/^[^\s<>"']+$/, 'must not contain spaces, quotes or angle brackets'),
  displayName: z.string().min(1).max(256),
  /** Hashed on load (scrypt); never stored as given. */
  password: z.string().min(8, 'must be at least 8 characters').max(1024),
  /** Base32 (RFC 4648) TOTP secret; enables MFA. */
  totpSecret: z.string().regex(/^[A-Z2-7]+=*$/, 'must be base32 (A-Z, 2-7)').min(16, 'must be at least 16 base32 characters (80 bits)').optional(),
  enabled: z.boolean().default(true),
  email: z.string().email().optional(),
  /** Directory roles; `admin` may grant tenant-wide consent. */
  roles: z.array(z.enum(['admin'])).optional(),
  objectId: guid.optional(),
});

export const ScopeConfig = z.strictObject({
  value: scopeValue,
  description: z.string().min(1).max(512),
  adminConsentRequired: z.boolean().default(false),
});

export const AppRoleConfig = z.strictObject({
  value: scopeValue,
  description: z.string().min(1).max(512),
  allowedMemberTypes: z.array(z.enum(['User', 'Application'])).min(1).default(['Application']),
});

export const RequiredAccessConfig = z
  .strictObject({
    resource: z.string().min(1),
    scopes: z.array(scopeValue).optional(),
    roles: z.array(scopeValue).optional(),
  })
  .refine((r) => (r.scopes?.length ?? 0) + (r.roles?.length ?? 0) > 0, 'needs scopes or roles');

const publicJwk = z.looseObject({ kty: z.enum(['EC', 'RSA', 'OKP']), kid: z.string().optional() }).refine((k) => !('d' in k), 'must be a public key (no "d")');

export const ApplicationConfig = z.strictObject({
  clientId: z.string().min(1).max(128).regex(/^[A-Za-z0-9._~-]+$/, 'must be URL-safe (letters, digits, . _ ~ -)'),
  name: z.string().min(1).max(256),
  public: z.boolean().default(false),
  redirectUris: z.array(redirectUri).default([]),
  /** Client secrets; stored as keyed hashes. Generate with `baton secret new`. */
  secrets: z.array(z.string().min(1).max(512)).default([]),
  /** Public keys for `private_key_jwt` (RFC 7523). */
  jwks: z.array(publicJwk).default([]),
  /** Makes the application an API. */
  identifierUri: z.string().regex(/^[a-z][a-z0-9+.-]*:[^\s]+$/i, 'must be a URI such as api://docs').optional(),
  scopes: z.array(ScopeConfig).default([]),
  appRoles: z.array(AppRoleConfig).default([]),
  knownClientApplications: z.array(z.string().min(1)).default([]),
  requiredAccess: z.array(RequiredAccessConfig).default([]),
  /** Lifetime of access tokens issued for this API (seconds, 5 min – 24 h). */
  accessTokenLifetimeSeconds: z.number().int().min(300).max(86400).default(3600),
  /** Algorithm of access tokens issued for this API. */
  signingAlg: z.enum(['ES256', 'RS256', 'PS256']).default('ES256'),
  /**
   * This API's DPoP policy (RFC 9449; docs/dpop.md): `incoming: 'required'` — every token addressed to it is
   * DPoP-bound (issued with a proof, exchanged only when bound); `exchanged: 'required'` — its own
   * exchanges carry a proof, so the tokens it gets for downstream APIs are bound to its key; `keys` —
   * RFC 7638 thumbprints of its own DPoP keys (its exchange proofs must use one of them).
   */
  dpop: z
    .strictObject({
      incoming: z.enum(['required', 'allowed']).default('allowed'),
      exchanged: z.enum(['required', 'allowed']).default('allowed'),
      keys: z.array(z.string().regex(/^[A-Za-z0-9_-]{43}$/, 'must be an RFC 7638 SHA-256 thumbprint (43 base64url characters)')).max(16).default([]),
    })
    .optional(),
  /**
   * This API's own delegation rules: `maxDepth`, its own limit (the stricter of it and the tenant's
   * `delegation.maxDepth` applies); `mayAct` (RFC 8693 `may_act`), the middle tiers that may exchange
   * tokens addressed to it, each optionally only for some downstream APIs (the list is exclusive:
   * name the API itself too if it exchanges its own tokens).
   */
  delegation: z
    .strictObject({
      maxDepth: z.number().int().min(1).max(16).optional(),
      mayAct: z
        .array(z.strictObject({ client: z.string().min(1).max(128), downstream: z.array(z.string().min(1).max(256)).min(1).max(32).optional() }))
        .min(1)
        .max(32)
        .optional(),
    })
    .refine((d) => d.maxDepth !== undefined || d.mayAct !== undefined, 'must set maxDepth or mayAct')
    .optional(),
  /**
   * The `aud` of tokens for this API: `clientId` (default) or `identifierUri`. An MCP server sets
   * `identifierUri` to its canonical URI (`https://mcp.example.com/mcp`) and this to `identifierUri`:
   * MCP clients send that URI as the RFC 8707 `resource` and the server accepts only tokens whose
   * `aud` is exactly it.
   */
  tokenAudience: z.enum(['clientId', 'identifierUri']).optional(),
});

export const ConsentConfig = z.strictObject({
  client: z.string().min(1),
  resource: z.string().min(1),
  scopes: z.array(scopeValue).min(1),
  /** `"all"` = admin consent for the tenant, or a username. */
  for: z.string().min(1),
});

export const AppRoleAssignmentConfig = z.strictObject({
  client: z.string().min(1),
  resource: z.string().min(1),
  roles: z.array(scopeValue).min(1),
});

export const PolicyConfig = z.strictObject({
  name: z.string().min(1).max(256),
  resources: z.array(z.string().min(1)).min(1),
  scopes: z.array(scopeValue).optional(),
  clients: z.array(z.string().min(1)).optional(),
  users: z.array(z.string().min(1)).optional(),
  require: z
    .strictObject({
      mfa: z.boolean().optional(),
      maxAuthAgeSeconds: z.number().int().positive().optional(),
      block: z.boolean().optional(),
      ipRanges: z.array(cidr).min(1).optional(),
    })
    .refine((r) => Object.keys(r).length > 0, 'must require something (mfa, maxAuthAgeSeconds, block or ipRanges)'),
});

export const TenantConfig = z.strictObject({
  id: z.string().min(1).max(MAX_TENANT_ID).regex(TENANT_ID_CHARS, 'must be lower-case letters, digits and - (it is a URL path segment)')
    .refine((v) => !['common', 'organizations', 'consumers', 'oidc', 'healthz', 'readyz', 'admin'].includes(v), 'is a reserved path segment'),
  tenantId: guid.optional(),
  name: z.string().min(1).max(256),
  delegation: z.strictObject({ maxDepth: z.number().int().min(1).max(16).default(4) }).default({ maxDepth: 4 }),
  /** DPoP at the token endpoint (RFC 9449 §8): `nonce: 'required'` makes every proof carry a server nonce. */
  dpop: z.strictObject({ nonce: z.enum(['required', 'none']).default('none') }).optional(),
  /**
   * `caeAccessTokenLifetimeSeconds`: delegated access tokens for a client that declares the `cp1`
   * capability (MSAL's `clientCapabilities: ['cp1']`: it answers CAE claims challenges) live this
   * long (5 minutes to 24 hours) when the API's own lifetime is shorter. Absent: one lifetime for all.
   */
  tokens: z.strictObject({ caeAccessTokenLifetimeSeconds: z.number().int().min(300).max(86_400).optional() }).optional(),
  users: z.array(UserConfig).default([]),
  applications: z.array(ApplicationConfig).default([]),
  consents: z.array(ConsentConfig).default([]),
  appRoleAssignments: z.array(AppRoleAssignmentConfig).default([]),
  policies: z.array(PolicyConfig).default([]),
});

/** One abuse limit (limits.ts): requests in flight and a sustained rate, per key; `null` turns one off. */
export const LimitRuleConfig = z.strictObject({
  concurrent: z.number().int().min(1).max(1_000_000).nullable().optional(),
  requestsPerSecond: z.number().positive().max(1_000_000).nullable().optional(),
  burst: z.number().int().min(1).max(10_000_000).optional(),
});

/** Token endpoint abuse limits (docs/config.md, `limits`). */
export const LimitsConfig = z.strictObject({
  tokenEndpoint: z.strictObject({ perClient: LimitRuleConfig.optional(), perIp: LimitRuleConfig.optional() }).optional(),
});

/** Connection timeouts and cap (http/transport.ts; docs/config.md, `http`). */
export const HttpConfig = z
  .strictObject({
    headersTimeoutMs: z.number().int().min(100).max(600_000).optional(),
    requestTimeoutMs: z.number().int().min(100).max(3_600_000).optional(),
    keepAliveTimeoutMs: z.number().int().min(0).max(3_600_000).optional(),
    checkIntervalMs: z.number().int().min(50).max(60_000).optional(),
    maxConnections: z.number().int().min(1).max(1_000_000).optional(),
  })
  .refine((h) => h.headersTimeoutMs === undefined || h.requestTimeoutMs === undefined || h.headersTimeoutMs <= h.requestTimeoutMs, 'headersTimeoutMs must not exceed requestTimeoutMs');

/** How clients that are not configured may take part (docs/config.md, `registration`). */
export const RegistrationConfig = z.strictObject({
  /** Client ID Metadata Documents: a client_id that is an https URL (MCP clients). */
  metadataDocuments: z
    .strictObject({
      enabled: z.boolean().optional(),
      /** Development allow-list: fetch documents from loopback addresses. Never in production. */
      allowLoopback: z.boolean().optional(),
      maxBytes: z.number().int().min(512).max(65536).optional(),
      timeoutMs: z.number().int().min(100).max(30_000).optional(),
      maxCacheSeconds: z.number().int().min(0).max(7 * 86400).optional(),
      defaultCacheSeconds: z.number().int().min(0).max(86400).optional(),
      fetchesPerIpPerMinute: z.number().int().min(1).max(100_000).optional(),
    })
    .optional(),
  /** RFC 7591 Dynamic Client Registration (public clients only) and RFC 7592 management. */
  dynamic: z
    .strictObject({
      enabled: z.boolean().optional(),
      redirectUris: z.enum(['loopback', 'https-or-loopback']).optional(),
      allowedScopes: z.array(z.string().min(1).max(256)).max(256).optional(),
      perIpPerHour: z.number().int().min(1).max(100_000).optional(),
      unusedTtlSeconds: z.number().int().min(60).max(30 * 86400).optional(),
    })
    .optional(),
});

export const BatonConfig = z.strictObject({
  $schema: z.string().optional(),
  tenants: z.array(TenantConfig).min(1),
  limits: LimitsConfig.optional(),
  registration: RegistrationConfig.optional(),
  http: HttpConfig.optional(),
});

export type BatonConfig = z.infer<typeof BatonConfig>;
export type TenantConfig = z.infer<typeof TenantConfig>;
export type ApplicationConfig = z.infer<typeof ApplicationConfig>;

/** `['tenants', 0, 'applications', 2]` → `tenants[0].applications[2]`. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out === '' ? String(part) : `.${String(part)}`;
  }
  return out === '' ? '(root)' : out;
}

/**
 * Property-based fuzzing of the token service over HTTP (fast-check), shared by the seeded slice in
 * `npm test` (fuzz.test.ts) and `npm run fuzz` (reliability/fuzz.ts, against a live `baton serve`).
 *
 * Generated: methods, paths (every endpoint, tenants, interaction ids), content types, bodies (forms
 * with known and unknown names, duplicates, NUL, CR/LF, long and non-ASCII values, percent garbage;
 * JSON of any shape; raw bytes), query strings, headers (Basic/Bearer/garbage authorization,
 * cookies, correlation ids, traceparent) and JWS segments (headers with crit/jku/jwk/typ/alg
 * variations, payloads, signatures; real tokens with one segment swapped).
 *
 * With `seeds.adminTokens` (app-only tokens holding Baton.Admin), one request in five goes to the
 * admin API (`/{tenant}/admin/v1/…`, every route): mostly with the real admin token, hostile ids,
 * JSON bodies of its field names with hostile values, If-Match values and cursors.
 *
 * Invariants, per response:
 * - status < 500;
 * - an error is an OAuth error JSON (`error` from the RFC 6749/6750/8693 set, a string
 *   `error_description`), an RFC 9457 problem (`type`, `title`, `status` equal to the answer's,
 *   `detail`; the only error shape of the admin API), or an HTML error page on browser-facing routes;
 * - no stack trace (no `at file:line:col`, no `node:internal`);
 * - nothing the request sent comes back unescaped: the marker `<x-fz` never appears raw in an HTML
 *   body or in any header;
 * and per batch: when no request of the batch may legitimately write (see {@link Outcome.mayWrite}),
 * the store is unchanged (a snapshot of every SQLite table before and after).
 */
import fc from 'fast-check';
import { storeSnapshot, snapshotDiff } from './store-snapshot.ts';

/** Text every hostile value carries; must never come back raw in HTML or a header. */
export const MARKER = '<x-fz a="1">';
const MARKER_RAW = '<x-fz';

export interface FuzzSeeds {
  /** Real, valid access tokens of this service (mutated into near-valid JWS). */
  tokens: string[];
  /** client_id → secret, for requests that get past client authentication. */
  secrets: Record<string, string>;
  tenant: string;
  redirectUri: string;
  /** App-only tokens holding Baton.Admin on the tenant's admin API: with them the admin routes are fuzzed too. */
  adminTokens?: string[];
}

export interface FuzzRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: string | undefined;
  /** What generated it (for the report). */
  endpoint: string;
}

export interface Violation {
  invariant: 'status' | 'shape' | 'stack' | 'echo' | 'store' | 'transport';
  request: FuzzRequest;
  status?: number;
  detail: string;
}

const b64u = (value: unknown) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');

const PARAM_NAMES = [
  'grant_type', 'client_id', 'client_secret', 'client_assertion', 'client_assertion_type', 'scope', 'code', 'redirect_uri',
  'code_verifier', 'refresh_token', 'assertion', 'requested_token_use', 'subject_token', 'subject_token_type', 'actor_token',
  'actor_token_type', 'audience', 'resource', 'claims', 'client_info', 'token', 'token_type_hint', 'response_type',
  'response_mode', 'state', 'nonce', 'code_challenge', 'code_challenge_method', 'prompt', 'login_hint', 'max_age',
  'acr_values', 'id_token_hint', 'post_logout_redirect_uri', 'username', 'password', 'csrf_token', 'decision',
  'organization', 'account', 'access_token', 'client-request-id', '__proto__', 'constructor', 'hasOwnProperty', 'toString',
] as const;

const GRANTS = [
  'client_credentials', 'authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:jwt-bearer',
  'urn:ietf:params:oauth:grant-type:token-exchange', 'password', 'implicit', 'urn:ietf:params:oauth:grant-type:device_code',
];

/** A JWS: generated header and payload (often hostile), random or borrowed signature. */
function jwsArbitrary(seeds: FuzzSeeds): fc.Arbitrary<string> {
  const header = fc.record(
    {
      alg: fc.constantFrom('ES256', 'RS256', 'PS256', 'HS256', 'none', 'EdDSA', 'ES512', '', MARKER),
      typ: fc.constantFrom('at+jwt', 'JWT', 'application/at+jwt', 'client-authentication+jwt', 'id_token', MARKER),
      kid: fc.oneof(fc.constantFrom('k1', '', MARKER), fc.string({ maxLength: 80 }), fc.integer()),
      crit: fc.constantFrom(['urn:example:ext'], [], 'exp', ['b64']),
      jku: fc.constantFrom('http://127.0.0.1:1/jwks', MARKER),
      x5u: fc.constant('http://127.0.0.1:1/x5u'),
      jwk: fc.constant({ kty: 'EC', crv: 'P-256', x: 'AAAA', y: 'AAAA' }),
      x5t: fc.constant('AAAA'),
    },
    { requiredKeys: ['alg'] },
  );
  const payload = fc.oneof(
    fc.record(
      {
        iss: fc.oneof(fc.constant('indexer'), fc.webUrl(), fc.string()),
        sub: fc.oneof(fc.constant('indexer'), fc.string()),
        aud: fc.oneof(fc.webUrl(), fc.array(fc.string(), { maxLength: 3 }), fc.integer()),
        exp: fc.oneof(fc.integer(), fc.double(), fc.string(), fc.constant(Math.floor(Date.now() / 1000) + 300)),
        iat: fc.oneof(fc.integer(), fc.string()),
        jti: fc.oneof(fc.uuid(), fc.string({ maxLength: 300 })),
        scp: fc.oneof(fc.constant('Tasks.ReadWrite'), fc.string()),
        oid: fc.oneof(fc.uuid(), fc.string(), fc.array(fc.string())),
        act: fc.jsonValue({ maxDepth: 3 }),
        sid: fc.oneof(fc.string(), fc.integer()),
      },
      { requiredKeys: [] },
    ),
    fc.jsonValue({ maxDepth: 2 }),
  );
  const segment = fc.oneof(fc.base64String({ maxLength: 60 }).map((s) => s.replace(/=/g, '')), fc.string({ maxLength: 40 }), fc.constant(''));
  const built = fc.tuple(header, payload, segment).map(([h, p, s]) => `${b64u(h)}.${b64u(p)}.${s}`);
  if (seeds.tokens.length === 0) return fc.oneof(built, fc.string({ maxLength: 100 }));
  // A real token with one part swapped keeps every other check satisfied, so the swapped part is what is judged.
  const mutated = fc.tuple(fc.constantFrom(...seeds.tokens), header, payload, fc.integer({ min: 0, max: 3 })).map(([token, h, p, which]) => {
    const parts = token.split('.');
    if (which === 0) parts[0] = b64u({ ...JSON.parse(Buffer.from(parts[0]!, 'base64url').toString()), ...h });
    else if (which === 1) parts[1] = b64u(p);
    else if (which === 2) parts[2] = parts[2]!.slice(0, -4) + 'AAAA';
    else return `${token}.${token}`;
    return parts.join('.');
  });
  return fc.oneof({ weight: 2, arbitrary: built }, { weight: 2, arbitrary: mutated }, { weight: 1, arbitrary: fc.constantFrom(...seeds.tokens) }, { weight: 1, arbitrary: fc.string({ maxLength: 100 }) });
}

/** A parameter value: plausible, hostile or random. */
function valueArbitrary(seeds: FuzzSeeds, long = true): fc.Arbitrary<string> {
  const clients = Object.keys(seeds.secrets);
  return fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom(...GRANTS, ...clients, ...Object.values(seeds.secrets), 'tasks-web', seeds.redirectUri, 'api://docs/.default', 'api://docs/Docs.Read', 'openid profile offline_access api://tasks/Tasks.ReadWrite', 'code', 'S256', 'on_behalf_of', 'urn:ietf:params:oauth:token-type:access_token', 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', 'accept', '1', 'none', 'login consent', 'form_post') },
    { weight: 2, arbitrary: fc.string({ maxLength: 40 }) },
    { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }) },
    { weight: 2, arbitrary: fc.constantFrom(MARKER, `"><script>${MARKER}</script>`, `a\r\nX-Injected: 1${MARKER}`, `\u0000${MARKER}`, `${MARKER}\u202e`, `${'%'.repeat(5)}${MARKER}`) },
    { weight: long ? 1 : 0, arbitrary: fc.integer({ min: 1, max: 70 }).map((k) => `${MARKER}${'x'.repeat(k * 1024)}`) },
    { weight: 1, arbitrary: fc.integer({ min: 200, max: 4000 }).map((k) => `${MARKER}${'y'.repeat(k)}`) },
    { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v)) },
    { weight: 2, arbitrary: jwsArbitrary(seeds) },
  );
}

/** Name/value pairs for a form or a query (names may repeat: duplicates are a case to test). */
function pairsArbitrary(seeds: FuzzSeeds, long = true): fc.Arbitrary<Array<[string, string]>> {
  const name = fc.oneof({ weight: 6, arbitrary: fc.constantFrom(...PARAM_NAMES) }, { weight: 1, arbitrary: fc.string({ maxLength: 20 }) }, { weight: 1, arbitrary: fc.constantFrom('scope[]', 'client_id[0]', 'a.b', MARKER) });
  return fc.array(fc.tuple(name, valueArbitrary(seeds, long)), { maxLength: 10 });
}

const encodePairs = (pairs: Array<[string, string]>) => pairs.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&');

interface Endpoint {
  name: string;
  methods: string[];
  path: (tenant: string, id: string) => string;
}

const ENDPOINTS: Endpoint[] = [
  { name: 'token', methods: ['POST'], path: (t) => `/${t}/oauth2/v2.0/token` },
  { name: 'authorize', methods: ['GET', 'POST'], path: (t) => `/${t}/oauth2/v2.0/authorize` },
  { name: 'interaction', methods: ['GET'], path: (t, id) => `/${t}/oauth2/v2.0/interaction/${id}` },
  { name: 'interaction-form', methods: ['POST'], path: (t, id) => `/${t}/oauth2/v2.0/interaction/${id}/${['login', 'mfa', 'select', 'consent'][id.length % 4]}` },
  { name: 'revoke', methods: ['POST'], path: (t) => `/${t}/oauth2/v2.0/revoke` },
  { name: 'introspect', methods: ['POST'], path: (t) => `/${t}/oauth2/v2.0/introspect` },
  { name: 'userinfo', methods: ['GET', 'POST'], path: () => '/oidc/userinfo' },
  { name: 'logout', methods: ['GET', 'POST'], path: (t) => `/${t}/oauth2/v2.0/logout` },
  { name: 'discovery', methods: ['GET'], path: (t, id) => [`/${t}/v2.0/.well-known/openid-configuration`, `/${t}/.well-known/openid-configuration`, `/.well-known/oauth-authorization-server/${t}`, `/.well-known/oauth-authorization-server/${t}/v2.0`][id.length % 4]! },
  { name: 'jwks', methods: ['GET'], path: (t) => `/${t}/discovery/v2.0/keys` },
  { name: 'adminconsent', methods: ['GET'], path: (t, id) => (id.length % 2 ? `/${t}/adminconsent` : `/${t}/v2.0/adminconsent`) },
  { name: 'healthz', methods: ['GET'], path: () => '/healthz' },
];

const CONTENT_TYPES = [
  'application/x-www-form-urlencoded', 'application/x-www-form-urlencoded; charset=utf-8', 'application/json', 'text/plain',
  'multipart/form-data; boundary=fz', 'application/xml', 'application/x-www-form-urlencoded; charset=iso-8859-1', 'application/jwt',
];

/** The admin API's routes (admin/routes.ts), with the ids each takes. */
const ADMIN_ROUTES: { method: string; path: string; body: boolean }[] = [
  { method: 'GET', path: '/users', body: false },
  { method: 'POST', path: '/users', body: true },
  { method: 'GET', path: '/users/{user}', body: false },
  { method: 'PATCH', path: '/users/{user}', body: true },
  ...['disable', 'enable', 'reset-mfa', 'revoke-sessions'].map((verb) => ({ method: 'POST', path: `/users/{user}/${verb}`, body: true })),
  { method: 'GET', path: '/applications', body: false },
  { method: 'POST', path: '/applications', body: true },
  { method: 'GET', path: '/applications/{client}', body: false },
  { method: 'PATCH', path: '/applications/{client}', body: true },
  { method: 'POST', path: '/applications/{client}/secrets', body: true },
  { method: 'POST', path: '/applications/{client}/secrets/{id}/rotate', body: true },
  { method: 'DELETE', path: '/applications/{client}/secrets/{id}', body: false },
  { method: 'POST', path: '/applications/{client}/keys', body: true },
  { method: 'DELETE', path: '/applications/{client}/keys/{id}', body: false },
  { method: 'GET', path: '/consents', body: false },
  { method: 'POST', path: '/consents', body: true },
  { method: 'GET', path: '/consents/{id}', body: false },
  { method: 'DELETE', path: '/consents/{id}', body: false },
  { method: 'GET', path: '/role-assignments', body: false },
  { method: 'POST', path: '/role-assignments', body: true },
  { method: 'DELETE', path: '/role-assignments/{id}', body: false },
  { method: 'GET', path: '/policies', body: false },
  { method: 'GET', path: '/policies/{id}', body: false },
  { method: 'PUT', path: '/policies/{id}', body: true },
  { method: 'DELETE', path: '/policies/{id}', body: false },
];

const ADMIN_FIELDS = [
  'username', 'displayName', 'password', 'enabled', 'totpSecret', 'clientId', 'name', 'public', 'redirectUris', 'identifierUri', 'scopes',
  'appRoles', 'requiredAccess', 'knownClientApplications', 'accessTokenLifetimeSeconds', 'signingAlg', 'jwks', 'jwk', 'secrets',
  'expiresInDays', 'graceSeconds', 'client', 'resource', 'for', 'roles', 'resources', 'require', 'mfa', 'maxAuthAgeSeconds', '__proto__', 'constructor',
] as const;

/** A request to the admin API: mostly with a real admin token, hostile ids, bodies, If-Match values and cursors. */
function adminRequestArbitrary(seeds: FuzzSeeds): fc.Arbitrary<FuzzRequest> {
  const adminTokens = seeds.adminTokens ?? [];
  const hostile = valueArbitrary(seeds, false);
  const id = (plausible: string[]) => fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...plausible) }, { weight: 2, arbitrary: hostile.map(encodeURIComponent) }, { weight: 1, arbitrary: fc.constantFrom('..', '%2e%2e', '%00', 'a'.repeat(300), '%2F') });
  const ids = fc.record({
    user: id(['alice@contoso.test', 'bob@contoso.test', 'nobody@contoso.test', '00000000-0000-0000-0000-000000000000']),
    client: id(['indexer', 'tasks-web', 'tasks-api', 'baton-admin', 'ops', 'nope']),
    id: id(['sec_AAAAAAAAAAAAAAAA', 'k1', '00000000-0000-0000-0000-000000000000', 'Fresh MFA', '-leading-dash']),
  });
  const json = fc.oneof(
    { weight: 4, arbitrary: fc.dictionary(fc.constantFrom(...ADMIN_FIELDS), fc.oneof(fc.jsonValue({ maxDepth: 3 }), hostile, fc.array(hostile, { maxLength: 3 }))).map((v) => JSON.stringify(v)) },
    { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.stringify(v)) },
    { weight: 1, arbitrary: fc.constantFrom('{', '{"a":1,"a":2}', '[]', 'null', '"x"', `{"username":"${'x'.repeat(70_000)}"}`, '{"__proto__":{"admin":true}}', `{"displayName":${JSON.stringify(MARKER)}}`) },
    { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 200 }) },
  );
  const authorization = fc.oneof(
    { weight: 8, arbitrary: adminTokens.length ? fc.constantFrom(...adminTokens).map((t) => `Bearer ${t}`) : fc.constant(undefined) },
    { weight: 1, arbitrary: fc.constant(undefined) },
    { weight: 2, arbitrary: jwsArbitrary(seeds).map((t) => `Bearer ${t}`) },
    { weight: 1, arbitrary: fc.constantFrom(...Object.entries(seeds.secrets)).map(([c, secret]) => `Basic ${Buffer.from(`${c}:${secret}`).toString('base64')}`) },
  );
  const ifMatch = fc.oneof({ weight: 3, arbitrary: fc.constant(undefined) }, { weight: 2, arbitrary: fc.constantFrom('*', '"0"', 'W/"abc"', '"a", "b"', MARKER, '""') }, { weight: 1, arbitrary: fc.string({ maxLength: 80 }).filter((v) => /^[\x20-\x7e]*$/.test(v)) });
  const query = fc.array(fc.tuple(fc.constantFrom('cursor', 'limit', 'client', 'resource', 'for', 'cursor', MARKER), fc.oneof(hostile, fc.constantFrom('0', '-1', '1e9', '50', 'eyJvZmZzZXQiOjF9', 'AAAA'))), { maxLength: 3 });
  const contentType = fc.oneof({ weight: 6, arbitrary: fc.constant('application/json') }, { weight: 1, arbitrary: fc.constantFrom(...CONTENT_TYPES, 'application/merge-patch+json', 'application/json; charset=latin1') }, { weight: 1, arbitrary: fc.constant(undefined) });
  return fc
    .record({ route: fc.constantFrom(...ADMIN_ROUTES), ids, tenant: fc.oneof({ weight: 8, arbitrary: fc.constant(seeds.tenant) }, { weight: 1, arbitrary: fc.constantFrom('fabrikam', 'common', 'nope') }), authorization, ifMatch, query, contentType, json, otherMethod: fc.oneof({ weight: 12, arbitrary: fc.constant('') }, { weight: 1, arbitrary: fc.constantFrom('PUT', 'PATCH', 'DELETE', 'POST', 'OPTIONS', 'HEAD') }) })
    .map((r) => {
      const method = r.otherMethod === '' ? r.route.method : r.otherMethod;
      const path = r.route.path.replace('{user}', r.ids.user).replace('{client}', r.ids.client).replace('{id}', r.ids.id);
      const headers: Record<string, string> = {};
      if (r.authorization !== undefined) headers.authorization = r.authorization;
      if (r.ifMatch !== undefined) headers['if-match'] = r.ifMatch;
      const sendsBody = method !== 'GET' && method !== 'HEAD' && (r.route.body || method !== r.route.method);
      if (sendsBody && r.contentType !== undefined) headers['content-type'] = r.contentType;
      const q = method === 'GET' ? encodePairs(r.query) : '';
      return { method, path: `/${r.tenant}/admin/v1${path}${q === '' ? '' : `?${q}`}`, headers, body: sendsBody ? r.json : undefined, endpoint: 'admin' };
    });
}

/** One generated request. */
export function requestArbitrary(seeds: FuzzSeeds): fc.Arbitrary<FuzzRequest> {
  const endpoint = fc.constantFrom(...ENDPOINTS);
  const tenant = fc.oneof({ weight: 8, arbitrary: fc.constant(seeds.tenant) }, { weight: 1, arbitrary: fc.constantFrom('fabrikam', 'common', 'CONTOSO', '..', '%2e%2e', 'a'.repeat(70)) }, { weight: 1, arbitrary: fc.string({ maxLength: 20 }).map(encodeURIComponent) });
  const id = fc.oneof(fc.base64String({ minLength: 43, maxLength: 44 }).map((s) => s.replace(/[=+/]/g, 'A').slice(0, 43)), fc.string({ maxLength: 30 }).map(encodeURIComponent));
  const method = fc.oneof({ weight: 10, arbitrary: fc.constant('') }, { weight: 1, arbitrary: fc.constantFrom('PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD', 'GET', 'POST') });
  const authorization = fc.oneof(
    { weight: 3, arbitrary: fc.constant(undefined) },
    { weight: 3, arbitrary: fc.constantFrom(...Object.entries(seeds.secrets)).map(([id, secret]) => `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`) },
    { weight: 1, arbitrary: fc.tuple(fc.string({ maxLength: 30 }), fc.string({ maxLength: 30 })).map(([a, b]) => `Basic ${Buffer.from(`${a}:${b}`).toString('base64')}`) },
    { weight: 2, arbitrary: jwsArbitrary(seeds).map((t) => `Bearer ${t}`) },
    { weight: 1, arbitrary: fc.string({ maxLength: 60 }).filter((s) => /^[\x20-\x7e]*$/.test(s)) },
    { weight: 1, arbitrary: fc.constantFrom('Basic', 'Bearer', 'Basic !!!', 'Bearer a b', `Bearer ${'a'.repeat(20000)}`, 'DPoP x') },
  );
  const contentType = fc.oneof({ weight: 6, arbitrary: fc.constantFrom(CONTENT_TYPES[0]!, CONTENT_TYPES[1]!) }, { weight: 3, arbitrary: fc.constantFrom(...CONTENT_TYPES) }, { weight: 1, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.string({ maxLength: 30 }).filter((s) => /^[\x21-\x7e]+$/.test(s)) });
  const body = fc.oneof(
    { weight: 6, arbitrary: pairsArbitrary(seeds).map(encodePairs) },
    { weight: 2, arbitrary: fc.oneof(fc.jsonValue({ maxDepth: 3 }), fc.dictionary(fc.constantFrom(...PARAM_NAMES), fc.oneof(fc.jsonValue({ maxDepth: 2 }), valueArbitrary(seeds)))).map((v) => JSON.stringify(v)) },
    { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 200 }) },
    { weight: 1, arbitrary: fc.constantFrom('%', '%zz=1', 'a=%E0%A4%A', '=&=&&', `${'a=1&'.repeat(5000)}`, '\u0000=\u0000') },
  );
  const extraHeaders = fc.record(
    {
      cookie: fc.oneof(fc.constantFrom(`__Secure-baton-interaction=${'A'.repeat(43)}`, `__Host-baton-session-contoso=${MARKER}`, 'a=b; a=c'), fc.string({ maxLength: 60 }).filter((s) => /^[\x20-\x7e]*$/.test(s))),
      'client-request-id': fc.oneof(fc.uuid(), fc.constant(MARKER)),
      traceparent: fc.oneof(fc.constant('00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'), fc.string({ maxLength: 60 }).filter((s) => /^[\x20-\x7e]*$/.test(s))),
      'x-forwarded-for': fc.constantFrom('203.0.113.9', MARKER),
      accept: fc.constantFrom('text/html', 'application/json', '*/*'),
    },
    { requiredKeys: [] },
  );
  const endpointRequest = fc
    // Query strings without the 1–70 KiB values: those would all stop at the 16 KiB header limit (431).
    .record({ endpoint, tenant, id, method, authorization, contentType, body, query: pairsArbitrary(seeds, false), extraHeaders, withBody: fc.boolean() })
    .map((r) => {
      const m = r.method === '' ? r.endpoint.methods[r.id.length % r.endpoint.methods.length]! : r.method;
      const headers: Record<string, string> = { ...r.extraHeaders };
      if (r.authorization !== undefined) headers.authorization = r.authorization;
      const sendsBody = m !== 'GET' && m !== 'HEAD' && (m === 'POST' || r.withBody);
      if (sendsBody && r.contentType !== undefined) headers['content-type'] = r.contentType;
      const query = m === 'GET' || r.withBody ? encodePairs(r.query) : '';
      const path = `${r.endpoint.path(r.tenant, r.id)}${query === '' ? '' : `?${query}`}`;
      return { method: m, path, headers, body: sendsBody ? r.body : undefined, endpoint: r.endpoint.name };
    });
  if (seeds.adminTokens === undefined) return endpointRequest;
  // One request in five to the admin API (its routes are as many as all the others together).
  return fc.oneof({ weight: 4, arbitrary: endpointRequest }, { weight: 1, arbitrary: adminRequestArbitrary(seeds) });
}

const OAUTH_ERRORS = new Set([
  'invalid_request', 'invalid_client', 'invalid_grant', 'unauthorized_client', 'unsupported_grant_type', 'invalid_scope',
  'invalid_target', 'access_denied', 'unsupported_response_type', 'interaction_required', 'login_required', 'consent_required',
  'invalid_token', 'insufficient_scope', 'temporarily_unavailable', 'not_found', 'too_many_requests',
]);
const STACK = /\n\s+at .+:\d+:\d+|node:internal|\bat (?:async )?[\w.<>]+ \(/;

export interface Outcome {
  status: number;
  /**
   * Whether the request may legitimately have written to the store: a sign-in step that was not
   * refused (authorize and admin consent start an interaction, its forms save it), or a token
   * response carrying a refresh token. Everything else — every refusal, and the accepted requests
   * that only read (discovery, JWKS, introspection, UserInfo, revocation of an unknown token,
   * client credentials, an exchange without offline_access) — must leave the store unchanged.
   */
  mayWrite: boolean;
}

const WRITING_STEPS = new Set(['authorize', 'interaction', 'interaction-form', 'adminconsent']);

/** Sends one request and checks the per-response invariants. */
export async function sendAndCheck(baseUrl: string, request: FuzzRequest, violations: Violation[], fetchImpl: typeof fetch = fetch): Promise<Outcome> {
  let response: Response;
  try {
    response = await fetchImpl(`${baseUrl}${request.path}`, { method: request.method, headers: request.headers, body: request.body, redirect: 'manual', signal: AbortSignal.timeout(15_000) });
  } catch (error) {
    // A header value the client itself refuses to send (fetch validates them) is not the server's failure.
    if (error instanceof TypeError && !/fetch failed/.test(error.message)) return { status: 0, mayWrite: false };
    violations.push({ invariant: 'transport', request, detail: `${(error as Error).message} ${(error as Error & { cause?: Error }).cause?.message ?? ''}` });
    return { status: 0, mayWrite: false };
  }
  const text = await response.text();
  const status = response.status;
  const type = response.headers.get('content-type') ?? '';
  const fail = (invariant: Violation['invariant'], detail: string) => violations.push({ invariant, request, status, detail: detail.slice(0, 500) });
  if (status >= 500) fail('status', text);
  if (STACK.test(text)) fail('stack', text);
  for (const [name, value] of response.headers) if (value.includes(MARKER_RAW)) fail('echo', `header ${name}: ${value}`);
  if (type.startsWith('text/html') && text.includes(MARKER_RAW)) fail('echo', `html body echoes the marker: …${text.slice(Math.max(0, text.indexOf(MARKER_RAW) - 80), text.indexOf(MARKER_RAW) + 40)}…`);
  if (status >= 400 && request.method !== 'HEAD') {
    if (type.startsWith('application/problem+json')) {
      // The admin API's errors: RFC 9457 problem details.
      let body: any;
      try {
        body = JSON.parse(text);
      } catch {
        fail('shape', `not JSON: ${text}`);
      }
      if (body !== undefined && (typeof body !== 'object' || body === null || typeof body.type !== 'string' || typeof body.title !== 'string' || body.status !== status || typeof body.detail !== 'string')) fail('shape', text);
    } else if (request.endpoint === 'admin' && type.startsWith('application/json')) {
      fail('shape', `an admin API error that is not problem+json: ${text}`);
    } else if (type.startsWith('application/json')) {
      let body: any;
      try {
        body = JSON.parse(text);
      } catch {
        fail('shape', `not JSON: ${text}`);
      }
      if (body !== undefined && (typeof body !== 'object' || body === null || !OAUTH_ERRORS.has(body.error) || typeof body.error_description !== 'string')) fail('shape', text);
    } else if (type.startsWith('text/html')) {
      if (!/<html/i.test(text)) fail('shape', `html without a page: ${text}`);
    } else if (!(text === '' && response.headers.has('www-authenticate'))) {
      fail('shape', `content-type '${type}': ${text}`);
    }
  }
  const location = response.headers.get('location');
  const refused = status >= 400 || (location !== null && /[?&#]error=/.test(location));
  const mayWrite =
    !refused &&
    (WRITING_STEPS.has(request.endpoint) || (request.endpoint === 'token' && text.includes('"refresh_token"')) || (request.endpoint === 'admin' && request.method !== 'GET' && request.method !== 'HEAD'));
  return { status, mayWrite };
}

export interface FuzzOptions {
  baseUrl: string;
  /** The SQLite data directory of the server under test (the store snapshot). */
  dataDir: string;
  seeds: FuzzSeeds;
  seed: number;
  requests: number;
  /** Requests in flight at once within a batch. */
  concurrency?: number;
  /** Requests between two store snapshots. */
  batch?: number;
  onProgress?: (done: number, violations: number) => void;
}

export interface FuzzReport {
  seed: number;
  requests: number;
  byEndpoint: Record<string, number>;
  byStatus: Record<string, number>;
  byMethod: Record<string, number>;
  batchesCompared: number;
  batchesSkipped: number;
  violations: Violation[];
  seconds: number;
}

/** Generates and sends `requests` requests (deterministic for a seed) and checks every invariant. */
export async function runFuzz(options: FuzzOptions): Promise<FuzzReport> {
  const started = performance.now();
  const concurrency = options.concurrency ?? 8;
  const batch = options.batch ?? 40;
  const arbitrary = requestArbitrary(options.seeds);
  const report: FuzzReport = { seed: options.seed, requests: 0, byEndpoint: {}, byStatus: {}, byMethod: {}, batchesCompared: 0, batchesSkipped: 0, violations: [], seconds: 0 };
  let round = 0;
  while (report.requests < options.requests) {
    const size = Math.min(batch, options.requests - report.requests);
    // Deterministic per (seed, batch): a violation is reproduced by its seed and batch number alone.
    const requests = fc.sample(arbitrary, { seed: options.seed * 1_000_003 + round++, numRuns: size });
    const before = storeSnapshot(options.dataDir);
    const outcomes: Outcome[] = [];
    for (let i = 0; i < requests.length; i += concurrency) {
      outcomes.push(...(await Promise.all(requests.slice(i, i + concurrency).map((r) => sendAndCheck(options.baseUrl, r, report.violations)))));
    }
    if (!outcomes.some((o) => o.mayWrite)) {
      const diff = snapshotDiff(before, storeSnapshot(options.dataDir));
      if (Object.keys(diff).length > 0) {
        report.violations.push({ invariant: 'store', request: requests[0]!, detail: `a batch of ${size} requests none of which may write changed the store: ${JSON.stringify(diff).slice(0, 800)} — requests: ${JSON.stringify(requests.map((r) => `${r.method} ${r.path.slice(0, 80)}`))}` });
      }
      report.batchesCompared++;
    } else {
      report.batchesSkipped++;
    }
    requests.forEach((r, i) => {
      report.byEndpoint[r.endpoint] = (report.byEndpoint[r.endpoint] ?? 0) + 1;
      report.byMethod[r.method] = (report.byMethod[r.method] ?? 0) + 1;
      const status = String(outcomes[i]!.status);
      report.byStatus[status] = (report.byStatus[status] ?? 0) + 1;
    });
    report.requests += size;
    options.onProgress?.(report.requests, report.violations.length);
  }
  report.seconds = Math.round((performance.now() - started) / 100) / 10;
  return report;
}

/**
 * OAuth 2.0 Dynamic Client Registration (RFC 7591) and its management protocol (RFC 7592), for MCP
 * clients that have neither a pre-registration nor a Client ID Metadata Document:
 *
 * - `POST /{tenant}/oauth2/v2.0/register` (JSON): a PUBLIC client (`token_endpoint_auth_method`
 *   `none`; PKCE is required of it at the authorization endpoint), its redirect URIs and scopes
 *   checked against the policy (`registration.dynamic`), at most `perIpPerHour` registrations per
 *   address and tenant, counted in the store so every instance shares the count; answered with a `registration_access_token` (stored as a keyed hash, shown once) and
 *   the `registration_client_uri`.
 * - `GET`/`PUT`/`DELETE` on the `registration_client_uri` with that token as a Bearer: read, replace
 *   the metadata, or deprovision (the client id stops working at once).
 * - A registration that is never used (no code redeemed) expires after `unusedTtlSeconds`.
 *
 * Registrations are the tenant's applications (`Application.registration.kind = 'dynamic'`), in
 * the store of either engine; errors are RFC 7591 §3.2.2 JSON (`invalid_redirect_uri`,
 * `invalid_client_metadata`).
 */
import { randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { truncate, type Application, type TenantDirectory } from '@baton/core';
import { issuerOf, type ServerContext } from '../context.ts';
import { resolveTenant } from '../tenants.ts';
import { admitWindow } from '../throttle.ts';
import { selfRegisteredApplication } from './application.ts';
import { generateClientSecret, hashClientSecret, verifyClientSecret } from '../crypto/secrets.ts';

export interface DynamicRegistrationOptions {
  /** Offer `registration_endpoint`. Default false. */
  enabled: boolean;
  /** Which redirect URIs a registration may name: loopback only, or https and loopback. Default `https-or-loopback`. */
  redirectUris: 'loopback' | 'https-or-loopback';
  /** Scope values a registration may name in `scope` (absent: any). */
  allowedScopes?: readonly string[] | undefined;
  /** Registrations per client address per hour. Default 20. */
  perIpPerHour: number;
  /** A registration no code was ever redeemed for stops working after this many seconds. Default 86400. */
  unusedTtlSeconds: number;
}

export const DEFAULT_DYNAMIC_REGISTRATION_OPTIONS: DynamicRegistrationOptions = {
  enabled: false,
  redirectUris: 'https-or-loopback',
  perIpPerHour: 20,
  unusedTtlSeconds: 86400,
};

export function resolveDynamicRegistrationOptions(config: Partial<DynamicRegistrationOptions> | undefined): DynamicRegistrationOptions {
  return { ...DEFAULT_DYNAMIC_REGISTRATION_OPTIONS, ...Object.fromEntries(Object.entries(config ?? {}).filter(([, v]) => v !== undefined)) };
}

const BODY_LIMIT = 16 * 1024;
const MAX_REDIRECT_URIS = 10;

/** An RFC 7591 §3.2.2 error. */
class RegistrationError extends Error {
  readonly error: string;
  readonly status: number;
  readonly headers: Record<string, string>;
  constructor(error: string, description: string, status = 400, headers: Record<string, string> = {}) {
    super(description);
    this.error = error;
    this.status = status;
    this.headers = headers;
  }
}

/** Whether `app` is a dynamic registration that was deprovisioned or expired unused: it is then unknown. */
export function registrationGone(app: Application | undefined, now: number): boolean {
  const registration = app?.registration;
  if (registration?.kind !== 'dynamic') return false;
  return registration.deletedAt !== undefined || (registration.expiresAt !== undefined && registration.expiresAt <= now);
}

/** After the first code redeemed by a dynamic registration, it no longer expires unused. */
export async function markRegistrationUsed(ctx: ServerContext, app: Application): Promise<void> {
  if (app.registration?.kind !== 'dynamic' || app.registration.expiresAt === undefined) return;
  const { expiresAt: _unused, ...registration } = app.registration;
  await ctx.store.putApplication({ ...app, registration });
}

interface ClientMetadata {
  redirectUris: string[];
  name: string;
  scope?: string | undefined;
  logoUri?: string | undefined;
  clientUri?: string | undefined;
  grantTypes: string[];
}

function httpsUrl(value: unknown, field: string): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || value.length > 2048 || !value.startsWith('https://')) throw new RegistrationError('invalid_client_metadata', `${field} must be an https URL.`);
  try {
    if (new URL(value).href !== value) throw new Error('not canonical');
  } catch {
    throw new RegistrationError('invalid_client_metadata', `${field} must be an https URL.`);
  }
  return value;
}

function redirectUriProblem(value: unknown, policy: DynamicRegistrationOptions['redirectUris']): string | undefined {
  if (typeof value !== 'string' || value.length === 0 || value.length > 2048) return 'not a URI of at most 2048 characters';
  if (value.includes('#')) return 'it has a fragment';
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return 'not an absolute URI';
  }
  if (url.username !== '' || url.password !== '') return 'it has userinfo';
  const loopback = url.protocol === 'http:' && (url.hostname === '127.0.0.1' || url.hostname === '[::1]' || url.hostname === 'localhost');
  if (loopback) return undefined;
  if (url.protocol === 'https:' && policy === 'https-or-loopback') return undefined;
  return policy === 'loopback' ? 'only loopback redirect URIs (http://127.0.0.1, http://[::1], http://localhost) may be registered here' : 'only https or loopback (http://127.0.0.1, http://[::1]) redirect URIs may be registered';
}

/** The metadata of a registration request, checked against the policy. */
function readMetadata(body: unknown, options: DynamicRegistrationOptions, directory: TenantDirectory): ClientMetadata {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new RegistrationError('invalid_client_metadata', 'The body must be a JSON object of client metadata (RFC 7591 §2).');
  const m = body as Record<string, unknown>;
  const uris = m.redirect_uris;
  if (!Array.isArray(uris) || uris.length === 0 || uris.length > MAX_REDIRECT_URIS) throw new RegistrationError('invalid_redirect_uri', `redirect_uris must list 1 to ${MAX_REDIRECT_URIS} redirect URIs.`);
  uris.forEach((uri, i) => {
    const problem = redirectUriProblem(uri, options.redirectUris);
    if (problem !== undefined) throw new RegistrationError('invalid_redirect_uri', `redirect_uris[${i}] '${truncate(String(uri), 200)}': ${problem}.`);
  });
  const method = m.token_endpoint_auth_method;
  if (method !== undefined && method !== 'none') {
    throw new RegistrationError('invalid_client_metadata', `token_endpoint_auth_method '${truncate(String(method), 40)}' is not offered: dynamically registered clients are public ('none') and use PKCE.`);
  }
  const grantTypes = m.grant_types === undefined ? ['authorization_code'] : m.grant_types;
  if (!Array.isArray(grantTypes) || grantTypes.length === 0 || grantTypes.some((g) => g !== 'authorization_code' && g !== 'refresh_token')) {
    throw new RegistrationError('invalid_client_metadata', "grant_types may name only 'authorization_code' and 'refresh_token'.");
  }
  const responseTypes = m.response_types;
  if (responseTypes !== undefined && (!Array.isArray(responseTypes) || responseTypes.some((r) => r !== 'code'))) throw new RegistrationError('invalid_client_metadata', "response_types may name only 'code'.");
  const rawName = m.client_name;
  if (rawName !== undefined && (typeof rawName !== 'string' || rawName.length > 200)) throw new RegistrationError('invalid_client_metadata', 'client_name must be a string of at most 200 characters.');
  const name = typeof rawName === 'string' && rawName.trim() !== '' ? rawName.trim().replace(/[\u0000-\u001f\u007f]/g, '') : 'Unnamed client';
  const scope = m.scope;
  if (scope !== undefined) {
    if (typeof scope !== 'string' || scope.length > 2048 || /[\u0000-\u001f\u007f]/.test(scope)) throw new RegistrationError('invalid_client_metadata', 'scope must be a space-separated string.');
    const values = scope.split(' ').filter((v) => v !== '');
    const allowed = options.allowedScopes;
    const refused = allowed === undefined ? [] : values.filter((v) => !allowed.includes(v));
    if (refused.length > 0) throw new RegistrationError('invalid_client_metadata', `The scope${refused.length > 1 ? 's' : ''} ${refused.map((v) => `'${truncate(v, 80)}'`).join(', ')} may not be registered in tenant '${directory.tenant.id}' (allowed: ${allowed?.join(' ')}).`);
  }
  return {
    redirectUris: uris as string[],
    name,
    // No scope asked for under a scope policy: the registration gets the policy's scopes (RFC 7591 §3.2.1
    // lets the server replace values), so the authorization endpoint holds it to them.
    scope: typeof scope === 'string' ? scope : options.allowedScopes?.join(' '),
    logoUri: httpsUrl(m.logo_uri, 'logo_uri'),
    clientUri: httpsUrl(m.client_uri, 'client_uri'),
    grantTypes: grantTypes as string[],
  };
}

/** The client information response (RFC 7591 §3.2.1, RFC 7592 §3). */
function clientInformation(ctx: ServerContext, app: Application, token?: string): Record<string, unknown> {
  const registration = app.registration;
  const body: Record<string, unknown> = {
    client_id: app.clientId,
    client_id_issued_at: registration?.registeredAt,
    client_name: app.name,
    redirect_uris: app.redirectUris,
    grant_types: registration?.grantTypes ?? ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'none',
    registration_client_uri: `${ctx.baseUrl}/${app.tenantId}/oauth2/v2.0/register/${encodeURIComponent(app.clientId)}`,
  };
  if (token !== undefined) body.registration_access_token = token;
  if (registration?.scope !== undefined) body.scope = registration.scope;
  if (registration?.logoUri !== undefined) body.logo_uri = registration.logoUri;
  if (registration?.clientUri !== undefined) body.client_uri = registration.clientUri;
  return body;
}

export function registrationRoutes(app: FastifyInstance, ctx: ServerContext): void {
  const options = ctx.dynamicRegistration;
  if (options === undefined || !options.enabled) return;
  app.register(async (scope) => {
    scope.addContentTypeParser('application/json', { parseAs: 'string', bodyLimit: BODY_LIMIT }, (_request, body, done) => {
      try {
        done(null, JSON.parse(body as string));
      } catch {
        done(new RegistrationError('invalid_client_metadata', 'The body is not valid JSON.'), undefined);
      }
    });
    scope.setErrorHandler((error, _request, reply) => {
      if (error instanceof RegistrationError) return reply.code(error.status).headers({ 'cache-control': 'no-store', ...error.headers }).send({ error: error.error, error_description: error.message });
      const status = (error as { statusCode?: number }).statusCode;
      if (status === 413) return reply.code(413).send({ error: 'invalid_client_metadata', error_description: `The body is larger than ${BODY_LIMIT} bytes.` });
      if (status === 415) return reply.code(400).send({ error: 'invalid_client_metadata', error_description: 'Client metadata is sent as application/json (RFC 7591 §3.1).' });
      if (status !== undefined && status >= 400 && status < 500) return reply.code(400).send({ error: 'invalid_client_metadata', error_description: 'The request could not be read.' });
      throw error;
    });

    scope.post('/:tenant/oauth2/v2.0/register', async (request: FastifyRequest<{ Params: { tenant: string } }>, reply: FastifyReply) => {
      const directory = await resolveTenant(ctx, request.params.tenant);
      const now = ctx.now();
      const wait = await admitWindow(ctx, `register:${directory.tenant.id}`, request.ip, options.perIpPerHour, 3600);
      if (wait !== undefined) {
        throw new RegistrationError('temporarily_unavailable', `Too many client registrations from this address: at most ${options.perIpPerHour} an hour. Try again in ${wait} s.`, 429, { 'retry-after': String(wait) });
      }
      const metadata = readMetadata(request.body, options, directory);
      const token = generateClientSecret();
      const clientId = `dcr-${randomUUID()}`;
      const client = selfRegisteredApplication({
        tenantId: directory.tenant.id,
        clientId,
        name: metadata.name,
        redirectUris: metadata.redirectUris,
        registration: {
          kind: 'dynamic',
          registeredAt: now,
          expiresAt: now + options.unusedTtlSeconds,
          accessTokenHash: hashClientSecret(token, ctx.pepper),
          grantTypes: metadata.grantTypes,
          ...(metadata.scope !== undefined ? { scope: metadata.scope } : {}),
          ...(metadata.logoUri !== undefined ? { logoUri: metadata.logoUri } : {}),
          ...(metadata.clientUri !== undefined ? { clientUri: metadata.clientUri } : {}),
          ip: request.ip,
        },
      });
      await ctx.store.putApplication(client);
      ctx.log.info({ client_id: clientId, tenant: directory.tenant.id, issuer: issuerOf(ctx, directory.tenant.id) }, 'client registered (RFC 7591)');
      return reply.code(201).header('cache-control', 'no-store').header('pragma', 'no-cache').send(clientInformation(ctx, client, token));
    });

    /** RFC 7592 §2: the registration the Bearer registration_access_token manages, else 401. */
    const managed = async (request: FastifyRequest<{ Params: { tenant: string; clientId: string } }>): Promise<Application> => {
      const directory = await resolveTenant(ctx, request.params.tenant);
      const header = request.headers.authorization;
      const token = typeof header === 'string' && /^Bearer [A-Za-z0-9_-]{43}$/.test(header) ? header.slice(7) : undefined;
      const app = directory.application(request.params.clientId);
      const hash = app?.registration?.kind === 'dynamic' ? app.registration.accessTokenHash : undefined;
      if (token === undefined || app === undefined || hash === undefined || registrationGone(app, ctx.now()) || !verifyClientSecret(token, hash, ctx.pepper)) {
        throw new RegistrationError('invalid_token', 'The registration access token is missing, invalid, or not for this client.', 401, { 'www-authenticate': 'Bearer error="invalid_token"' });
      }
      return app;
    };
    scope.get('/:tenant/oauth2/v2.0/register/:clientId', async (request: FastifyRequest<{ Params: { tenant: string; clientId: string } }>, reply) => {
      const app = await managed(request);
      return reply.header('cache-control', 'no-store').send(clientInformation(ctx, app));
    });
    scope.put('/:tenant/oauth2/v2.0/register/:clientId', async (request: FastifyRequest<{ Params: { tenant: string; clientId: string } }>, reply) => {
      const app = await managed(request);
      const body = request.body as Record<string, unknown> | null;
      // RFC 7592 §2.2: the body carries the client_id and no secret or token.
      if (body === null || typeof body !== 'object' || body.client_id !== app.clientId) throw new RegistrationError('invalid_client_metadata', "The body must carry this registration's client_id.");
      if (body.registration_access_token !== undefined || body.client_secret !== undefined) throw new RegistrationError('invalid_client_metadata', 'The body must not carry registration_access_token or client_secret.');
      const directory = await resolveTenant(ctx, request.params.tenant);
      const metadata = readMetadata(body, options, directory);
      const { scope: _s, logoUri: _l, clientUri: _c, ...kept } = app.registration as NonNullable<Application['registration']>;
      const updated: Application = {
        ...app,
        name: metadata.name,
        redirectUris: metadata.redirectUris,
        registration: {
          ...kept,
          grantTypes: metadata.grantTypes,
          ...(metadata.scope !== undefined ? { scope: metadata.scope } : {}),
          ...(metadata.logoUri !== undefined ? { logoUri: metadata.logoUri } : {}),
          ...(metadata.clientUri !== undefined ? { clientUri: metadata.clientUri } : {}),
        },
      };
      await ctx.store.putApplication(updated);
      return reply.header('cache-control', 'no-store').send(clientInformation(ctx, updated));
    });
    scope.delete('/:tenant/oauth2/v2.0/register/:clientId', async (request: FastifyRequest<{ Params: { tenant: string; clientId: string } }>, reply) => {
      const app = await managed(request);
      // Deprovisioned: the client id and the registration access token stop working at once.
      await ctx.store.putApplication({ ...app, redirectUris: [], registration: { ...(app.registration as NonNullable<Application['registration']>), deletedAt: ctx.now() } });
      ctx.log.info({ client_id: app.clientId }, 'client registration deleted (RFC 7592)');
      return reply.code(204).send();
    });
  });
}

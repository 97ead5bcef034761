/**
 * `/{tenant}/admin/v1/applications`: list, create, read, update (redirect URIs, scopes, app roles,
 * API permissions…); client secrets (add: shown once, stored as the configuration's are, a keyed
 * hash; rotate; revoke) and public keys for `private_key_jwt` (register, remove).
 *
 * An application change is one `putApplication`: the store tells every instance, whose directory
 * cache drops the tenant, so a revoked secret stops working everywhere at the next request.
 */
import { createHash, createPublicKey, type JsonWebKey } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import type { Application, ClientSecretRecord, TenantDirectory } from '@baton/core';
import { z } from 'zod';
import { ApplicationConfig } from '../config/schema.ts';
import { compileApplication } from '../config/load.ts';
import { generateClientSecret, hashClientSecret, secretHint } from '../crypto/secrets.ts';
import { ADMIN_CLIENT_ID, isAdminApiReference } from './application.ts';
import { commitChange } from './changes.ts';
import { ADMIN_PREFIX, adminOf, etagOf, parseWith, readPage, sendPage, sendRecord, type AdminRequest } from './http.ts';
import { problems, type FieldProblem } from './problem.ts';

/** Keys and secrets one application may hold at once. */
const MAX_SECRETS = 10;
const MAX_KEYS = 10;

/** What every secret id starts with. */
export const SECRET_ID_PREFIX = 'sec_';

/**
 * A secret's id in the admin API: derived from its stored hash (one-way; the hash itself is never
 * shown), so it is the same on every instance and after a restart, with nothing more stored. The
 * fixed prefix keeps it from starting with `-` (base64url's alphabet has it: 1 digest in 64),
 * which a command line would take for a flag (`baton admin apps secrets revoke indexer <id>`).
 */
export function secretId(record: ClientSecretRecord): string {
  return SECRET_ID_PREFIX + createHash('sha256').update(record.hash).digest('base64url').slice(0, 16);
}

const iso = (seconds: number) => new Date(seconds * 1000).toISOString();

/** An application as the admin API shows it: secrets by id and hint, never a hash. */
export function presentApplication(app: Application) {
  return {
    clientId: app.clientId,
    name: app.name,
    servicePrincipalId: app.servicePrincipalId,
    public: app.public,
    ...(app.clientId === ADMIN_CLIENT_ID ? { builtIn: true } : {}),
    redirectUris: app.redirectUris,
    ...(app.identifierUri !== undefined ? { identifierUri: app.identifierUri } : {}),
    scopes: app.scopes.map((s) => ({ id: s.id, value: s.value, description: s.description, adminConsentRequired: s.adminConsentRequired })),
    appRoles: app.appRoles.map((r) => ({ id: r.id, value: r.value, description: r.description, allowedMemberTypes: r.allowedMemberTypes })),
    knownClientApplications: app.knownClientApplications,
    requiredAccess: app.requiredAccess,
    accessTokenLifetimeSeconds: app.accessTokenLifetimeSeconds,
    signingAlg: app.signingAlg,
    ...(delegationOf(app) !== undefined ? { delegation: delegationOf(app) } : {}),
    secrets: app.secrets.map((s) => ({ id: secretId(s), hint: `${s.hint}…`, createdAt: iso(s.createdAt), ...(s.expiresAt !== undefined ? { expiresAt: iso(s.expiresAt) } : {}) })),
    keys: app.jwks.map((k) => ({ kid: k.kid, kty: k.kty, ...(k.crv !== undefined ? { crv: k.crv } : {}) })),
    ...(app.dpop !== undefined ? { dpop: dpopConfigOf(undefined, app).dpop } : {}),
  };
}

/** An application's DPoP policy in the configuration's words: the PATCH body's when it names one, else the stored one. */
function dpopConfigOf(named: z.infer<typeof ApplicationConfig>['dpop'], current: Application): Pick<z.infer<typeof ApplicationConfig>, 'dpop'> {
  if (named !== undefined) return { dpop: named };
  const policy = current.dpop;
  if (policy === undefined) return {};
  return { dpop: { incoming: policy.incoming ? 'required' : 'allowed', exchanged: policy.exchanged ? 'required' : 'allowed', keys: [...policy.keys] } };
}

/** An API's own delegation rules in the configuration's shape (`delegation.maxDepth`, `delegation.mayAct`), or undefined. */
function delegationOf(app: Application): { maxDepth?: number; mayAct?: Array<{ client: string; downstream?: string[] }> } | undefined {
  if (app.maxDelegationDepth === undefined && app.mayAct === undefined) return undefined;
  return {
    ...(app.maxDelegationDepth !== undefined ? { maxDepth: app.maxDelegationDepth } : {}),
    ...(app.mayAct !== undefined ? { mayAct: app.mayAct.map((e) => ({ client: e.clientId, ...(e.downstream !== undefined ? { downstream: e.downstream } : {}) })) } : {}),
  };
}

/** What the configuration checks across records (checkReferences), for one application against the live directory. */
function referenceProblems(directory: TenantDirectory, app: Application): FieldProblem[] {
  const out: FieldProblem[] = [];
  const add = (path: string, message: string) => out.push({ path, message });
  if (isAdminApiReference(app.clientId)) add('clientId', `'${app.clientId}' is reserved for Baton's admin API`);
  if (app.identifierUri !== undefined) {
    if (isAdminApiReference(app.identifierUri)) add('identifierUri', `'${app.identifierUri}' is reserved for Baton's admin API`);
    const holder = directory.api(app.identifierUri);
    if (holder !== undefined && holder.clientId !== app.clientId) add('identifierUri', `'${app.identifierUri}' is used by '${holder.clientId}'`);
  }
  if (app.public && app.secrets.length > 0) add('public', 'a public client cannot have secrets');
  if (app.public && app.jwks.length > 0) add('public', 'a public client cannot have client keys');
  if (app.public && app.identifierUri !== undefined) add('identifierUri', 'a public client cannot be an API');
  if (app.identifierUri === undefined && (app.scopes.length > 0 || app.appRoles.length > 0)) add('identifierUri', 'an application that defines scopes or appRoles needs an identifierUri');
  const values = new Set<string>();
  for (const s of [...app.scopes, ...app.appRoles]) {
    if (values.has(s.value)) add('scopes', `scope or role '${s.value}' is defined twice`);
    values.add(s.value);
  }
  app.knownClientApplications.forEach((id, i) => {
    if (id !== app.clientId && directory.application(id) === undefined) add(`knownClientApplications.${i}`, `no application '${id}'`);
  });
  app.mayAct?.forEach((entry, i) => {
    if (app.identifierUri === undefined) add(`delegation.mayAct.${i}`, 'only an API (an application with an identifierUri) says who may exchange tokens addressed to it');
    const client = entry.clientId === app.clientId ? app : directory.application(entry.clientId);
    if (client === undefined) add(`delegation.mayAct.${i}.client`, `no application '${entry.clientId}'`);
    else if (client.public) add(`delegation.mayAct.${i}.client`, `'${entry.clientId}' is a public client, which cannot exchange tokens`);
    entry.downstream?.forEach((id, j) => {
      const api = id === app.clientId ? app : directory.application(id);
      if (api === undefined || api.identifierUri === undefined) add(`delegation.mayAct.${i}.downstream.${j}`, `no API '${id}'`);
    });
  });
  app.requiredAccess.forEach((ra, i) => {
    const api = ra.resource === app.clientId ? app : directory.api(ra.resource);
    if (api === undefined || api.identifierUri === undefined) {
      add(`requiredAccess.${i}.resource`, `no API '${ra.resource}'`);
      return;
    }
    (ra.scopes ?? []).forEach((v, j) => {
      if (!api.scopes.some((s) => s.value === v)) add(`requiredAccess.${i}.scopes.${j}`, `'${v}' is not a scope of ${ra.resource}`);
    });
    (ra.roles ?? []).forEach((v, j) => {
      if (!api.appRoles.some((r) => r.value === v)) add(`requiredAccess.${i}.roles.${j}`, `'${v}' is not a role of ${ra.resource}`);
    });
  });
  return out;
}

function checkReferencesOf(directory: TenantDirectory, app: Application): Application {
  const found = referenceProblems(directory, app);
  if (found.length > 0) throw problems.invalidBody(`${found[0]!.path}: ${found[0]!.message}`, found);
  return app;
}

const notBuiltIn = (clientId: string) => {
  if (clientId === ADMIN_CLIENT_ID) throw problems.conflict("The admin API's registration is built in and cannot be changed.");
};

/** Create: the fields of a configuration application; secrets are added afterwards (`POST …/secrets`), so each is shown once. */
const ApplicationCreate = ApplicationConfig.omit({ secrets: true });

const ApplicationUpdate = ApplicationConfig.pick({
  name: true,
  redirectUris: true,
  knownClientApplications: true,
  requiredAccess: true,
  accessTokenLifetimeSeconds: true,
  scopes: true,
  appRoles: true,
  identifierUri: true,
  dpop: true,
})
  .extend({
    /** An API's own delegation rules, replaced whole; `null` removes them (the tenant's limit, only the API exchanges its tokens). */
    delegation: ApplicationConfig.shape.delegation.unwrap().nullable(),
  })
  .partial();

const SecretCreate = z.strictObject({
  /** Days until the secret stops working (Entra: 6, 12, 24 months…); none = no expiry. */
  expiresInDays: z.number().int().min(1).max(3650).optional(),
});

const SecretRotate = SecretCreate.extend({
  /** Seconds the old secret keeps working, so every holder can switch (default 0: it stops at once). */
  graceSeconds: z.number().int().min(0).max(30 * 86400).default(0),
});

const KeyCreate = z.strictObject({ jwk: ApplicationConfig.shape.jwks.unwrap().element });

interface Params {
  client: string;
  secret?: string;
  kid?: string;
}

/** One change of one application: update-kind, through commitChange. */
function changeApplication(req: AdminRequest, clientId: string, action: string, ifMatch: 'required' | 'optional', next: (current: Application) => Application | Promise<Application>) {
  return commitChange<Application>(req, {
    action,
    entity: 'application',
    target: clientId,
    describe: `Application '${clientId.slice(0, 128)}'`,
    kind: 'update',
    ifMatch,
    load: () => req.ctx.store.getApplication(req.tenantId, clientId),
    next: async (current) => {
      notBuiltIn(clientId);
      return checkReferencesOf(req.directory, await next(current!));
    },
    write: (app) => ({ op: 'putApplication', args: [app!] }),
    present: presentApplication,
  });
}

function newSecret(req: AdminRequest, expiresInDays: number | undefined): { secret: string; record: ClientSecretRecord } {
  const secret = generateClientSecret();
  const now = req.ctx.now();
  return { secret, record: { hash: hashClientSecret(secret, req.ctx.pepper), hint: secretHint(secret), createdAt: now, ...(expiresInDays !== undefined ? { expiresAt: now + expiresInDays * 86400 } : {}) } };
}

function addSecret(app: Application, record: ClientSecretRecord): Application {
  if (app.public) throw problems.conflict(`'${app.clientId}' is a public client: it cannot hold secrets.`);
  if (app.secrets.length >= MAX_SECRETS) throw problems.conflict(`'${app.clientId}' already holds ${MAX_SECRETS} secrets; revoke one first.`);
  return { ...app, secrets: [...app.secrets, record] };
}

function findSecret(app: Application, id: string): ClientSecretRecord {
  const found = app.secrets.find((s) => secretId(s) === id);
  if (found === undefined) throw problems.notFound(`Secret '${id.slice(0, 64)}' of '${app.clientId}'`);
  return found;
}

/** A public JWK the service can verify with; refused with the reason otherwise. */
function checkPublicJwk(jwk: Record<string, unknown>): JsonWebKey {
  if (typeof jwk.kid !== 'string' || jwk.kid === '' || jwk.kid.length > 128) throw problems.invalidBody('jwk.kid: a key needs a kid (1-128 characters) to be found and removed by');
  try {
    const key = createPublicKey({ key: jwk as JsonWebKey, format: 'jwk' });
    if (key.type !== 'public') throw new Error('not public');
  } catch {
    throw problems.invalidBody('jwk: not a usable public key (EC P-256/384/521, RSA or OKP, with every member its kty needs)');
  }
  return jwk as JsonWebKey;
}

export function applicationRoutes(app: FastifyInstance): void {
  app.get(`${ADMIN_PREFIX}/applications`, async (request, reply) => {
    const req = adminOf(request);
    const page = readPage(request.query);
    const all = await req.ctx.store.listApplications(req.tenantId);
    return sendPage(request, reply, all.slice(page.offset, page.offset + page.limit).map(presentApplication), page, all.length > page.offset + page.limit);
  });

  app.post(`${ADMIN_PREFIX}/applications`, async (request, reply) => {
    const req = adminOf(request);
    const input = parseWith(ApplicationCreate, request.body);
    const result = await commitChange<Application>(req, {
      action: 'application.create',
      entity: 'application',
      target: input.clientId,
      describe: `Application '${input.clientId}'`,
      kind: 'create',
      load: () => req.ctx.store.getApplication(req.tenantId, input.clientId),
      next: async () => {
        const api = (ref: string) => (ref === input.identifierUri ? input.clientId : (req.directory.api(ref)?.clientId ?? ref));
        const created = checkReferencesOf(req.directory, compileApplication(req.tenantId, { ...input, secrets: [] }, api, undefined, req.ctx.pepper, req.ctx.now()));
        // Tokens for an API that chose RS256/PS256 need that key before the first one is asked for.
        await req.ctx.keyring.ensure(req.tenantId, created.signingAlg);
        return created;
      },
      write: (next) => ({ op: 'putApplication', args: [next!] }),
      present: presentApplication,
    });
    reply.header('location', `/${req.tenantId}/admin/v1/applications/${input.clientId}`);
    return sendRecord(reply, result.record, presentApplication(result.record!), 201);
  });

  app.get(`${ADMIN_PREFIX}/applications/:client`, async (request, reply) => {
    const req = adminOf(request);
    const { client } = request.params as Params;
    const found = await req.ctx.store.getApplication(req.tenantId, client);
    if (found === undefined) throw problems.notFound(`Application '${client.slice(0, 128)}'`);
    return sendRecord(reply, found, presentApplication(found));
  });

  app.patch(`${ADMIN_PREFIX}/applications/:client`, async (request, reply) => {
    const req = adminOf(request);
    const { client } = request.params as Params;
    const parsed = parseWith(ApplicationUpdate, request.body);
    // Only the fields the body names: the configuration schema's defaults (`scopes: []` …) must not
    // stand in for the fields a PATCH leaves out.
    const named = new Set(Object.keys(request.body as object));
    const input = Object.fromEntries(Object.entries(parsed).filter(([key]) => named.has(key))) as Partial<typeof parsed>;
    const result = await changeApplication(req, client, 'application.update', 'required', (current) => {
      // Scopes and roles keep the ids the configuration derives from their names.
      const recompiled = compileApplication(
        req.tenantId,
        {
          clientId: current.clientId,
          name: input.name ?? current.name,
          public: current.public,
          redirectUris: input.redirectUris ?? current.redirectUris,
          secrets: [],
          jwks: [],
          identifierUri: input.identifierUri ?? current.identifierUri,
          scopes: input.scopes ?? current.scopes,
          appRoles: input.appRoles ?? current.appRoles,
          knownClientApplications: input.knownClientApplications ?? current.knownClientApplications,
          requiredAccess: input.requiredAccess ?? current.requiredAccess,
          accessTokenLifetimeSeconds: input.accessTokenLifetimeSeconds ?? current.accessTokenLifetimeSeconds,
          signingAlg: current.signingAlg,
          ...dpopConfigOf(input.dpop, current),
          // Named: replaced whole (maxDepth and mayAct); not named: kept, so an update never drops the
          // API's own delegation limit or who may act for its users.
          ...(named.has('delegation') ? (input.delegation != null ? { delegation: input.delegation } : {}) : delegationOf(current) !== undefined ? { delegation: delegationOf(current)! } : {}),
          // Nor is the audience of an MCP server's tokens: an update must keep `aud` its canonical URI.
          ...(current.tokenAudience !== undefined ? { tokenAudience: current.tokenAudience } : {}),
        },
        (ref) => (ref === (input.identifierUri ?? current.identifierUri) ? current.clientId : (req.directory.api(ref)?.clientId ?? ref)),
        current,
        req.ctx.pepper,
        req.ctx.now(),
      );
      return { ...recompiled, secrets: current.secrets, jwks: current.jwks };
    });
    return sendRecord(reply, result.record, presentApplication(result.record!));
  });

  // — secrets —

  app.post(`${ADMIN_PREFIX}/applications/:client/secrets`, async (request, reply) => {
    const req = adminOf(request);
    const { client } = request.params as Params;
    const input = request.body === undefined ? {} : parseWith(SecretCreate, request.body);
    const { secret, record } = newSecret(req, input.expiresInDays);
    const result = await changeApplication(req, client, 'application.secret.add', 'optional', (current) => addSecret(current, record));
    reply.header('etag', etagOf(result.record!));
    return reply.code(201).send({ ...presentApplication(result.record!).secrets.find((s) => s.id === secretId(record))!, secret });
  });

  app.post(`${ADMIN_PREFIX}/applications/:client/secrets/:secret/rotate`, async (request, reply) => {
    const req = adminOf(request);
    const { client, secret: id } = request.params as Params;
    const input = parseWith(SecretRotate, request.body ?? {});
    const { secret, record } = newSecret(req, input.expiresInDays);
    const result = await changeApplication(req, client, 'application.secret.rotate', 'optional', (current) => {
      const old = findSecret(current, id!);
      const until = req.ctx.now() + input.graceSeconds;
      const kept = current.secrets
        .filter((s) => s !== old || input.graceSeconds > 0)
        .map((s) => (s === old ? { ...s, expiresAt: Math.min(s.expiresAt ?? until, until) } : s));
      return addSecret({ ...current, secrets: kept }, record);
    });
    reply.header('etag', etagOf(result.record!));
    return reply.code(201).send({ ...presentApplication(result.record!).secrets.find((s) => s.id === secretId(record))!, secret });
  });

  app.delete(`${ADMIN_PREFIX}/applications/:client/secrets/:secret`, async (request, reply) => {
    const req = adminOf(request);
    const { client, secret: id } = request.params as Params;
    await changeApplication(req, client, 'application.secret.revoke', 'required', (current) => {
      const old = findSecret(current, id!);
      return { ...current, secrets: current.secrets.filter((s) => s !== old) };
    });
    return reply.code(204).send();
  });

  // — public keys (private_key_jwt, RFC 7523) —

  app.post(`${ADMIN_PREFIX}/applications/:client/keys`, async (request, reply) => {
    const req = adminOf(request);
    const { client } = request.params as Params;
    const input = parseWith(KeyCreate, request.body);
    const jwk = checkPublicJwk(input.jwk);
    const result = await changeApplication(req, client, 'application.key.add', 'optional', (current) => {
      if (current.public) throw problems.conflict(`'${current.clientId}' is a public client: it cannot hold client keys.`);
      if (current.jwks.some((k) => k.kid === jwk.kid)) throw problems.conflict(`'${current.clientId}' already has a key '${String(jwk.kid)}'.`);
      if (current.jwks.length >= MAX_KEYS) throw problems.conflict(`'${current.clientId}' already holds ${MAX_KEYS} keys; remove one first.`);
      return { ...current, jwks: [...current.jwks, jwk] };
    });
    return sendRecord(reply, result.record, presentApplication(result.record!), 201);
  });

  app.delete(`${ADMIN_PREFIX}/applications/:client/keys/:kid`, async (request, reply) => {
    const req = adminOf(request);
    const { client, kid } = request.params as Params;
    await changeApplication(req, client, 'application.key.remove', 'required', (current) => {
      if (!current.jwks.some((k) => k.kid === kid)) throw problems.notFound(`Key '${kid!.slice(0, 128)}' of '${current.clientId}'`);
      return { ...current, jwks: current.jwks.filter((k) => k.kid !== kid) };
    });
    return reply.code(204).send();
  });
}


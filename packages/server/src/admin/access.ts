/**
 * Who may do what, at run time: consents (`/consents`), app role assignments
 * (`/role-assignments`) and conditional-access policies (`/policies`). Each change is one store
 * call; the directory cache of every instance drops the tenant when the store reports it.
 *
 * References are written as in the configuration file (an API by identifier URI or client id, a
 * user by username or `oid`) and stored resolved (client ids, `oid`s), as the loader stores them.
 */
import type { FastifyInstance } from 'fastify';
import type { AppRoleAssignment, ConsentGrant, Policy, TenantDirectory } from '@baton/core';
import { z } from 'zod';
import { AppRoleAssignmentConfig, ConsentConfig, PolicyConfig } from '../config/schema.ts';
import { commitChange } from './changes.ts';
import { ADMIN_PREFIX, adminOf, parseWith, readPage, sendPage, sendRecord, type AdminRequest } from './http.ts';
import { problems, type FieldProblem } from './problem.ts';
import { findUser } from './users.ts';

/** An id made of a record's natural key, opaque to clients. */
function keyId(parts: readonly string[]): string {
  return Buffer.from(JSON.stringify(parts)).toString('base64url');
}

function readKeyId(id: string, size: number, what: string): string[] {
  try {
    const parts: unknown = JSON.parse(Buffer.from(id, 'base64url').toString('utf8'));
    if (Array.isArray(parts) && parts.length === size && parts.every((p) => typeof p === 'string' && p.length > 0 && p.length <= 256)) return parts as string[];
  } catch {
    // falls through to 404
  }
  throw problems.notFound(`${what} '${id.slice(0, 64)}'`);
}

function refused(found: FieldProblem[]): void {
  if (found.length > 0) throw problems.invalidBody(`${found[0]!.path}: ${found[0]!.message}`, found);
}

/** An API named as in the configuration: its identifier URI or its client id. */
function apiOf(directory: TenantDirectory, ref: string, path: string, found: FieldProblem[]) {
  const api = directory.api(ref);
  if (api === undefined) found.push({ path, message: `no API '${ref}' (an identifierUri or the client id of an application that has one)` });
  return api;
}

/** `all`, a username or an oid → the stored principal. */
async function principalOf(req: AdminRequest, ref: string, path: string, found: FieldProblem[]): Promise<string | undefined> {
  if (ref === 'all') return 'all';
  const user = await findUser(req, ref);
  if (user === undefined) found.push({ path, message: `no user '${ref}' (use "all" for admin consent)` });
  return user?.oid;
}

// — consents —

export function presentConsent(c: ConsentGrant) {
  return { id: keyId([c.clientId, c.resource, c.principal]), client: c.clientId, resource: c.resource, principal: c.principal, scopes: c.scopes, createdAt: new Date(c.createdAt * 1000).toISOString() };
}

const ConsentQuery = z.strictObject({ client: z.string().min(1).max(256).optional(), resource: z.string().min(1).max(256).optional(), for: z.string().min(1).max(256).optional(), limit: z.string().optional(), cursor: z.string().optional() });

// — role assignments —

export function presentAssignment(a: AppRoleAssignment) {
  return { id: keyId([a.principalType, a.principalId, a.resource]), principalType: a.principalType, principal: a.principalId, resource: a.resource, roles: a.roles };
}

const AssignmentCreate = z.union([
  AppRoleAssignmentConfig,
  AppRoleAssignmentConfig.omit({ client: true }).extend({ user: z.string().min(1).max(256) }),
]);
const AssignmentQuery = z.strictObject({ client: z.string().min(1).max(256).optional(), user: z.string().min(1).max(256).optional(), limit: z.string().optional(), cursor: z.string().optional() });

// — policies —

export function presentPolicy(p: Policy) {
  return {
    name: p.name,
    resources: p.resources,
    ...(p.scopes !== undefined ? { scopes: p.scopes } : {}),
    ...(p.clients !== undefined ? { clients: p.clients } : {}),
    ...(p.users !== undefined ? { users: p.users } : {}),
    require: p.require,
  };
}

const PolicyBody = PolicyConfig.omit({ name: true });

export function accessRoutes(app: FastifyInstance): void {
  app.get(`${ADMIN_PREFIX}/consents`, async (request, reply) => {
    const req = adminOf(request);
    const query = parseWith(ConsentQuery, request.query, 'query');
    const page = readPage(request.query);
    const found: FieldProblem[] = [];
    const resource = query.resource === undefined ? undefined : apiOf(req.directory, query.resource, 'resource', found)?.clientId;
    const principal = query.for === undefined ? undefined : await principalOf(req, query.for, 'for', found);
    if (found.length > 0) throw problems.invalidQuery(`${found[0]!.path}: ${found[0]!.message}`);
    const all = await req.ctx.store.listConsents({ tenantId: req.tenantId, ...(query.client ? { clientId: query.client } : {}), ...(resource ? { resource } : {}), ...(principal ? { principal } : {}) });
    return sendPage(request, reply, all.slice(page.offset, page.offset + page.limit).map(presentConsent), page, all.length > page.offset + page.limit);
  });

  // Grant: adds scopes to the (client, API, principal) grant, creating it if needed.
  app.post(`${ADMIN_PREFIX}/consents`, async (request, reply) => {
    const req = adminOf(request);
    const input = parseWith(ConsentConfig, request.body);
    const found: FieldProblem[] = [];
    if (req.directory.application(input.client) === undefined) found.push({ path: 'client', message: `no application '${input.client}'` });
    const api = apiOf(req.directory, input.resource, 'resource', found);
    input.scopes.forEach((value, i) => {
      if (api !== undefined && req.directory.scope(api.clientId, value) === undefined) found.push({ path: `scopes.${i}`, message: `'${value}' is not a scope of ${input.resource}` });
    });
    const principal = await principalOf(req, input.for, 'for', found);
    refused(found);
    const key = { tenantId: req.tenantId, clientId: input.client, resource: api!.clientId, principal: principal! };
    const result = await commitChange<ConsentGrant>(req, {
      action: 'consent.grant',
      entity: 'consent',
      target: keyId([key.clientId, key.resource, key.principal]),
      describe: 'Consent',
      kind: 'upsert',
      ifMatch: 'optional',
      load: async () => (await req.ctx.store.listConsents(key))[0],
      next: (current) => ({ ...key, scopes: [...new Set([...(current?.scopes ?? []), ...input.scopes])], createdAt: current?.createdAt ?? req.ctx.now() }),
      write: (next) => ({ op: 'putConsent', args: [next!] }),
      present: presentConsent,
    });
    return sendRecord(reply, result.record, presentConsent(result.record!), result.event?.before === undefined && result.event !== undefined ? 201 : 200);
  });

  app.get(`${ADMIN_PREFIX}/consents/:id`, async (request, reply) => {
    const req = adminOf(request);
    const { id } = request.params as { id: string };
    const [clientId, resource, principal] = readKeyId(id, 3, 'Consent') as [string, string, string];
    const grant = (await req.ctx.store.listConsents({ tenantId: req.tenantId, clientId, resource, principal }))[0];
    if (grant === undefined) throw problems.notFound(`Consent '${id.slice(0, 64)}'`);
    return sendRecord(reply, grant, presentConsent(grant));
  });

  // Revoke: the whole grant, or with `?scope=` one scope of it.
  app.delete(`${ADMIN_PREFIX}/consents/:id`, async (request, reply) => {
    const req = adminOf(request);
    const { id } = request.params as { id: string };
    const { scope } = parseWith(z.strictObject({ scope: z.string().min(1).max(120).optional() }), request.query, 'query');
    const [clientId, resource, principal] = readKeyId(id, 3, 'Consent') as [string, string, string];
    await commitChange<ConsentGrant>(req, {
      action: 'consent.revoke',
      entity: 'consent',
      target: id,
      describe: `Consent '${id.slice(0, 64)}'`,
      kind: 'update',
      ifMatch: 'required',
      load: async () => (await req.ctx.store.listConsents({ tenantId: req.tenantId, clientId, resource, principal }))[0],
      next: (current) => {
        if (scope === undefined) return undefined;
        if (!current!.scopes.includes(scope)) throw problems.notFound(`Scope '${scope}' of this consent`);
        const left = current!.scopes.filter((s) => s !== scope);
        return left.length === 0 ? undefined : { ...current!, scopes: left };
      },
      write: (next) =>
        next === undefined ? { op: 'deleteConsent', args: [req.tenantId, clientId, resource, principal] } : { op: 'putConsent', args: [next] },
      present: presentConsent,
    });
    return reply.code(204).send();
  });

  // — role assignments —

  app.get(`${ADMIN_PREFIX}/role-assignments`, async (request, reply) => {
    const req = adminOf(request);
    const query = parseWith(AssignmentQuery, request.query, 'query');
    const page = readPage(request.query);
    let all: AppRoleAssignment[];
    if (query.user !== undefined) {
      const user = await findUser(req, query.user);
      all = user === undefined ? [] : await req.ctx.store.listRoleAssignments(req.tenantId, 'user', user.oid);
    } else {
      const clients = query.client !== undefined ? [query.client] : (await req.ctx.store.listApplications(req.tenantId)).map((a) => a.clientId);
      all = (await Promise.all(clients.map((c) => req.ctx.store.listRoleAssignments(req.tenantId, 'application', c)))).flat();
    }
    return sendPage(request, reply, all.slice(page.offset, page.offset + page.limit).map(presentAssignment), page, all.length > page.offset + page.limit);
  });

  // Assign: adds roles to the (principal, API) assignment, creating it if needed.
  app.post(`${ADMIN_PREFIX}/role-assignments`, async (request, reply) => {
    const req = adminOf(request);
    const input = parseWith(AssignmentCreate, request.body);
    const found: FieldProblem[] = [];
    const memberType = 'client' in input ? 'Application' : 'User';
    let principalId: string | undefined;
    if ('client' in input) {
      const client = req.directory.application(input.client);
      if (client === undefined) found.push({ path: 'client', message: `no application '${input.client}'` });
      else if (client.public) found.push({ path: 'client', message: `'${input.client}' is a public client and cannot hold application permissions` });
      principalId = client?.clientId;
    } else {
      const user = await findUser(req, input.user);
      if (user === undefined) found.push({ path: 'user', message: `no user '${input.user}'` });
      principalId = user?.oid;
    }
    const api = apiOf(req.directory, input.resource, 'resource', found);
    input.roles.forEach((value, i) => {
      if (api === undefined) return;
      const role = req.directory.appRole(api.clientId, value);
      if (role === undefined) found.push({ path: `roles.${i}`, message: `'${value}' is not a role of ${input.resource}` });
      else if (!role.allowedMemberTypes.includes(memberType)) found.push({ path: `roles.${i}`, message: `'${value}' does not allow ${memberType} members` });
    });
    refused(found);
    const principalType = memberType === 'Application' ? 'application' : 'user';
    const key = { tenantId: req.tenantId, principalType, principalId: principalId!, resource: api!.clientId } as const;
    const result = await commitChange<AppRoleAssignment>(req, {
      action: 'roleAssignment.add',
      entity: 'roleAssignment',
      target: keyId([key.principalType, key.principalId, key.resource]),
      describe: 'Role assignment',
      kind: 'upsert',
      ifMatch: 'optional',
      load: async () => (await req.ctx.store.listRoleAssignments(req.tenantId, principalType, key.principalId)).find((a) => a.resource === key.resource),
      next: (current) => ({ ...key, roles: [...new Set([...(current?.roles ?? []), ...input.roles])] }),
      write: (next) => ({ op: 'putRoleAssignment', args: [next!] }),
      present: presentAssignment,
    });
    return sendRecord(reply, result.record, presentAssignment(result.record!), result.event?.before === undefined && result.event !== undefined ? 201 : 200);
  });

  // Remove: the whole assignment, or with `?role=` one role of it.
  app.delete(`${ADMIN_PREFIX}/role-assignments/:id`, async (request, reply) => {
    const req = adminOf(request);
    const { id } = request.params as { id: string };
    const { role } = parseWith(z.strictObject({ role: z.string().min(1).max(120).optional() }), request.query, 'query');
    const [principalType, principalId, resource] = readKeyId(id, 3, 'Role assignment') as [string, string, string];
    if (principalType !== 'application' && principalType !== 'user') throw problems.notFound(`Role assignment '${id.slice(0, 64)}'`);
    await commitChange<AppRoleAssignment>(req, {
      action: 'roleAssignment.remove',
      entity: 'roleAssignment',
      target: id,
      describe: `Role assignment '${id.slice(0, 64)}'`,
      kind: 'update',
      ifMatch: 'required',
      load: async () => (await req.ctx.store.listRoleAssignments(req.tenantId, principalType, principalId)).find((a) => a.resource === resource),
      next: (current) => {
        if (role === undefined) return undefined;
        if (!current!.roles.includes(role)) throw problems.notFound(`Role '${role}' of this assignment`);
        const left = current!.roles.filter((r) => r !== role);
        return left.length === 0 ? undefined : { ...current!, roles: left };
      },
      write: (next) =>
        next === undefined
          ? { op: 'deleteRoleAssignment', args: [req.tenantId, principalType, principalId, resource] }
          : { op: 'putRoleAssignment', args: [next] },
      present: presentAssignment,
    });
    return reply.code(204).send();
  });

  // — conditional-access policies —

  app.get(`${ADMIN_PREFIX}/policies`, async (request, reply) => {
    const req = adminOf(request);
    const page = readPage(request.query);
    const all = await req.ctx.store.listPolicies(req.tenantId);
    return sendPage(request, reply, all.slice(page.offset, page.offset + page.limit).map(presentPolicy), page, all.length > page.offset + page.limit);
  });

  app.get(`${ADMIN_PREFIX}/policies/:name`, async (request, reply) => {
    const req = adminOf(request);
    const { name } = request.params as { name: string };
    const policy = (await req.ctx.store.listPolicies(req.tenantId)).find((p) => p.name === name);
    if (policy === undefined) throw problems.notFound(`Policy '${name.slice(0, 256)}'`);
    return sendRecord(reply, policy, presentPolicy(policy));
  });

  // Put: creates the policy (201), or replaces it (If-Match required).
  app.put(`${ADMIN_PREFIX}/policies/:name`, async (request, reply) => {
    const req = adminOf(request);
    const { name } = request.params as { name: string };
    const named = parseWith(PolicyConfig, { ...(parseWith(PolicyBody, request.body) as object), name });
    const found: FieldProblem[] = [];
    const resources = named.resources.map((ref, i) => apiOf(req.directory, ref, `resources.${i}`, found)?.clientId ?? ref);
    (named.clients ?? []).forEach((id, i) => {
      if (req.directory.application(id) === undefined) found.push({ path: `clients.${i}`, message: `no application '${id}'` });
    });
    const users: string[] = [];
    for (const [i, ref] of (named.users ?? []).entries()) {
      const user = await findUser(req, ref);
      if (user === undefined) found.push({ path: `users.${i}`, message: `no user '${ref}'` });
      else users.push(user.oid);
    }
    (named.scopes ?? []).forEach((scope, i) => {
      if (!resources.some((api) => req.directory.scope(api, scope) !== undefined)) found.push({ path: `scopes.${i}`, message: `'${scope}' is not a scope of any of the policy's resources` });
    });
    refused(found);
    const policy: Policy = {
      tenantId: req.tenantId,
      name,
      resources,
      scopes: named.scopes,
      clients: named.clients,
      users: named.users === undefined ? undefined : users,
      require: named.require,
    };
    const result = await commitChange<Policy>(req, {
      action: 'policy.put',
      entity: 'policy',
      target: name,
      describe: `Policy '${name.slice(0, 256)}'`,
      kind: 'upsert',
      ifMatch: 'required',
      load: async () => (await req.ctx.store.listPolicies(req.tenantId)).find((p) => p.name === name),
      next: () => policy,
      write: async (next, current) => {
        const all = await req.ctx.store.listPolicies(req.tenantId);
        return { op: 'replacePolicies', args: [req.tenantId, current === undefined ? [...all, next!] : all.map((p) => (p.name === name ? next! : p))] };
      },
      present: presentPolicy,
    });
    return sendRecord(reply, result.record, presentPolicy(result.record!), result.event !== undefined && result.event.before === undefined ? 201 : 200);
  });

  app.delete(`${ADMIN_PREFIX}/policies/:name`, async (request, reply) => {
    const req = adminOf(request);
    const { name } = request.params as { name: string };
    await commitChange<Policy>(req, {
      action: 'policy.delete',
      entity: 'policy',
      target: name,
      describe: `Policy '${name.slice(0, 256)}'`,
      kind: 'update',
      ifMatch: 'required',
      load: async () => (await req.ctx.store.listPolicies(req.tenantId)).find((p) => p.name === name),
      next: () => undefined,
      write: async () => {
        const all = await req.ctx.store.listPolicies(req.tenantId);
        return { op: 'replacePolicies', args: [req.tenantId, all.filter((p) => p.name !== name)] };
      },
      present: presentPolicy,
    });
    return reply.code(204).send();
  });
}

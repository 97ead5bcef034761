/**
 * `/{tenant}/admin/v1/users`: list, create, read, update; disable, enable, reset MFA, revoke
 * sessions. A user is named in the path by `oid` or by username.
 *
 * Users are read from the store on every token request (they are not in the directory cache), so a
 * disabled user or revoked sessions are refused by every instance at her next request.
 */
import type { FastifyInstance } from 'fastify';
import type { User } from '@baton/core';
import { z } from 'zod';
import { UserConfig } from '../config/schema.ts';
import { stableGuid } from '../config/ids.ts';
import { hashPassword } from '../crypto/passwords.ts';
import { commitChange } from './changes.ts';
import type { AdminChangeEvent } from './audit.ts';
import { ADMIN_PREFIX, adminOf, parseWith, readPage, sendPage, sendRecord, type AdminRequest } from './http.ts';
import { problems } from './problem.ts';

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** A user as the admin API shows it: no password hash, no TOTP seed. */
export function presentUser(user: User) {
  return {
    id: user.oid,
    username: user.username,
    displayName: user.displayName,
    ...(user.email !== undefined ? { email: user.email } : {}),
    enabled: user.enabled,
    roles: user.directoryRoles ?? [],
    mfaEnrolled: user.totpSecret !== undefined,
    ...(user.revokedBefore !== undefined ? { sessionsRevokedBefore: new Date(user.revokedBefore * 1000).toISOString() } : {}),
  };
}

/** The user a path names (`oid` or username). */
export async function findUser(req: AdminRequest, ref: string): Promise<User | undefined> {
  if (ref.length > 256) return undefined;
  return GUID.test(ref) ? req.ctx.store.getUserById(req.tenantId, ref.toLowerCase()) : req.ctx.store.getUserByName(req.tenantId, ref.toLowerCase());
}

const UserUpdate = z.strictObject({
  displayName: UserConfig.shape.displayName.optional(),
  /** `null` removes it. */
  email: UserConfig.shape.email.unwrap().nullable().optional(),
  roles: UserConfig.shape.roles.unwrap().optional(),
  password: UserConfig.shape.password.optional(),
  enabled: z.boolean().optional(),
});

const ResetMfa = z.strictObject({
  /** A new base32 TOTP seed to enrol at once; without it the user has no second factor until one is set. */
  totpSecret: UserConfig.shape.totpSecret,
});

const NoBody = z.strictObject({});

function encryptTotp(req: AdminRequest, oid: string, secret: string): string {
  return req.ctx.kek.encrypt(Buffer.from(secret), `totp|${req.tenantId}|${oid}`);
}

/** A POST action: one change of one user, If-Match honoured when sent. */
function userAction(
  app: FastifyInstance,
  verb: string,
  body: z.ZodType,
  change: (user: User, body: any, req: AdminRequest) => User,
  credential?: (body: any) => AdminChangeEvent['credential'],
) {
  app.post(`${ADMIN_PREFIX}/users/:user/${verb}`, async (request, reply) => {
    const req = adminOf(request);
    const input = request.body === undefined ? {} : parseWith(body, request.body);
    const ref = (request.params as { user: string }).user;
    const result = await commitChange(req, {
      action: `user.${verb}`,
      entity: 'user',
      target: ref,
      targetOf: (user) => user.oid,
      describe: `User '${ref.slice(0, 256)}'`,
      kind: 'update',
      ifMatch: 'optional',
      load: () => findUser(req, ref),
      next: (current) => change(current!, input, req),
      write: (next) => ({ op: 'putUser', args: [next!] }),
      present: presentUser,
      ...(credential !== undefined ? { credential: credential(input) } : {}),
    });
    return sendRecord(reply, result.record, presentUser(result.record!));
  });
}

export function userRoutes(app: FastifyInstance): void {
  app.get(`${ADMIN_PREFIX}/users`, async (request, reply) => {
    const req = adminOf(request);
    const page = readPage(request.query);
    const users = await req.ctx.store.listUsers(req.tenantId, { limit: page.limit + 1, offset: page.offset });
    return sendPage(request, reply, users.slice(0, page.limit).map(presentUser), page, users.length > page.limit);
  });

  app.post(`${ADMIN_PREFIX}/users`, async (request, reply) => {
    const req = adminOf(request);
    const input = parseWith(UserConfig, request.body);
    const username = input.username.toLowerCase();
    const oid = input.objectId?.toLowerCase() ?? stableGuid('user', req.tenantId, username);
    const passwordHash = await hashPassword(input.password);
    const result = await commitChange<User>(req, {
      action: 'user.create',
      entity: 'user',
      target: username,
      targetOf: (user) => user.oid,
      describe: `User '${username}'`,
      kind: 'create',
      load: async () => (await req.ctx.store.getUserByName(req.tenantId, username)) ?? (await req.ctx.store.getUserById(req.tenantId, oid)),
      next: () => ({
        tenantId: req.tenantId,
        oid,
        username,
        displayName: input.displayName,
        passwordHash,
        totpSecret: input.totpSecret === undefined ? undefined : encryptTotp(req, oid, input.totpSecret),
        enabled: input.enabled,
        email: input.email,
        directoryRoles: input.roles,
      }),
      write: (next) => ({ op: 'putUser', args: [next!] }),
      present: presentUser,
    });
    reply.header('location', `/${req.tenantId}/admin/v1/users/${oid}`);
    return sendRecord(reply, result.record, presentUser(result.record!), 201);
  });

  app.get(`${ADMIN_PREFIX}/users/:user`, async (request, reply) => {
    const req = adminOf(request);
    const ref = (request.params as { user: string }).user;
    const user = await findUser(req, ref);
    if (user === undefined) throw problems.notFound(`User '${ref.slice(0, 256)}'`);
    return sendRecord(reply, user, presentUser(user));
  });

  app.patch(`${ADMIN_PREFIX}/users/:user`, async (request, reply) => {
    const req = adminOf(request);
    const input = parseWith(UserUpdate, request.body);
    const ref = (request.params as { user: string }).user;
    const passwordHash = input.password === undefined ? undefined : await hashPassword(input.password);
    const result = await commitChange<User>(req, {
      action: 'user.update',
      entity: 'user',
      target: ref,
      targetOf: (user) => user.oid,
      describe: `User '${ref.slice(0, 256)}'`,
      kind: 'update',
      ifMatch: 'required',
      load: () => findUser(req, ref),
      next: (current) => ({
        ...current!,
        ...(input.displayName !== undefined ? { displayName: input.displayName } : {}),
        ...(input.email !== undefined ? { email: input.email ?? undefined } : {}),
        ...(input.roles !== undefined ? { directoryRoles: input.roles } : {}),
        ...(input.enabled !== undefined ? { enabled: input.enabled } : {}),
        ...(passwordHash !== undefined ? { passwordHash } : {}),
      }),
      write: (next) => ({ op: 'putUser', args: [next!] }),
      present: presentUser,
      ...(passwordHash !== undefined ? { credential: 'password' as const } : {}),
    });
    return sendRecord(reply, result.record, presentUser(result.record!));
  });

  userAction(app, 'disable', NoBody, (user) => ({ ...user, enabled: false }));
  userAction(app, 'enable', NoBody, (user) => ({ ...user, enabled: true }));
  userAction(
    app,
    'reset-mfa',
    ResetMfa,
    (user, body: z.infer<typeof ResetMfa>, req) => ({
      ...user,
      totpSecret: body.totpSecret === undefined ? undefined : encryptTotp(req, user.oid, body.totpSecret),
    }),
    (body: z.infer<typeof ResetMfa>) => (body.totpSecret === undefined ? 'mfa-removed' : 'mfa-set'),
  );
  // Everything issued up to and including this second is void: `predatesRevocation` refuses an
  // instant strictly before `revokedBefore`, so the revocation takes the next second as its edge.
  userAction(app, 'revoke-sessions', NoBody, (user, _body, req) => ({ ...user, revokedBefore: Math.max(user.revokedBefore ?? 0, req.ctx.now() + 1) }));
}


/**
 * `baton admin …`: the admin API's commands (docs/operations.md, "Admin API"). Each one is a few
 * calls of AdminClient; changes that need `If-Match` read the record first and send its ETag, so a
 * change made meanwhile by someone else is refused (412), never overwritten.
 */
import { readFile } from 'node:fs/promises';
import { AdminClient, adminOptions, seg } from './admin-client.ts';
import type { Command, OptionSpec } from './command.ts';

type Values = Record<string, string | boolean | undefined>;
const str = (v: string | boolean | undefined): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);
const list = (v: string | boolean | undefined): string[] | undefined => str(v)?.split(',').map((s) => s.trim()).filter((s) => s !== '');

function required(values: Values, name: string): string {
  const value = str(values[name]);
  if (value === undefined) throw new Error(`--${name} is required`);
  return value;
}

async function readJsonFile(path: string, what: string): Promise<unknown> {
  const text = await readFile(path, 'utf8').catch((error: NodeJS.ErrnoException) => {
    throw new Error(`${what} ${path}: cannot read the file (${error.code ?? 'error'})`);
  });
  try {
    return JSON.parse(text);
  } catch {
    throw new Error(`${what} ${path}: not valid JSON`);
  }
}

const out = (line: string) => process.stdout.write(`${line}\n`);

/** Prints `value` as JSON with --json, else as the lines `human` makes. */
function show(values: Values, value: unknown, human: () => string[]): number {
  if (values.json) out(JSON.stringify(value, null, 2));
  else for (const line of human()) out(line);
  return 0;
}

const userLine = (u: any) => `${u.username}  ${u.id}  ${u.enabled ? 'enabled' : 'DISABLED'}${u.mfaEnrolled ? '  mfa' : ''}${u.sessionsRevokedBefore ? `  sessions revoked before ${u.sessionsRevokedBefore}` : ''}`;
const appLine = (a: any) => `${a.clientId}  ${a.name}${a.public ? '  public' : ''}${a.identifierUri ? `  ${a.identifierUri}` : ''}${a.builtIn ? '  (built in)' : ''}  secrets: ${a.secrets.length}  keys: ${a.keys.length}`;
const secretLine = (s: any) => `${s.id}  ${s.hint}  created ${s.createdAt}${s.expiresAt ? `  expires ${s.expiresAt}` : ''}`;
const consentLine = (c: any) => `${c.id}  ${c.client} → ${c.resource}  for ${c.principal}  ${c.scopes.join(' ')}`;
const roleLine = (r: any) => `${r.id}  ${r.principalType} ${r.principal} → ${r.resource}  ${r.roles.join(' ')}`;
const eventLine = (e: any) => `${e.time}  ${e.action}  ${e.target}  by ${e.actor.clientId}${e.credential ? `  (${e.credential})` : ''}`;
const policyLine = (p: any) => `${p.name}  on ${p.resources.join(', ')}${p.scopes ? ` (${p.scopes.join(' ')})` : ''}  requires ${JSON.stringify(p.require)}`;

interface AdminCommandSpec {
  name: string;
  summary: string;
  positionals?: string[];
  options?: Record<string, OptionSpec>;
  run(client: AdminClient, values: Values, args: string[]): Promise<number>;
}

function adminCommand(spec: AdminCommandSpec): Command {
  return {
    name: `admin ${spec.name}`,
    summary: spec.summary,
    positionals: spec.positionals ?? [],
    options: { ...adminOptions, ...(spec.options ?? {}) },
    async run(values, args = []) {
      return spec.run(await AdminClient.from(values), values, args);
    },
  };
}

/** A POST action on one user (`disable`, `enable`, `reset-mfa`, `revoke-sessions`). */
const userAction = (verb: string, summary: string, options: Record<string, OptionSpec> = {}, body?: (values: Values) => unknown) =>
  adminCommand({
    name: `users ${verb}`,
    summary,
    positionals: ['USER'],
    options,
    async run(client, values, [user]) {
      const answer = await client.call('POST', `/users/${seg(user!)}/${verb}`, body === undefined ? {} : { body: body(values) });
      return show(values, answer.body, () => [userLine(answer.body)]);
    },
  });

export const adminCommands: Command[] = [
  adminCommand({
    name: 'users list',
    summary: 'List the tenant’s users.',
    async run(client, values) {
      const users = await client.all('/users');
      return show(values, users, () => users.map(userLine));
    },
  }),
  adminCommand({
    name: 'users show',
    summary: 'Show one user (by username or oid).',
    positionals: ['USER'],
    async run(client, values, [user]) {
      const answer = await client.call('GET', `/users/${seg(user!)}`);
      return show(values, answer.body, () => [userLine(answer.body)]);
    },
  }),
  adminCommand({
    name: 'users create',
    summary: 'Create a user; the password comes from --password or BATON_NEW_USER_PASSWORD.',
    positionals: ['USERNAME'],
    options: {
      'display-name': { type: 'string', valueName: 'NAME', description: 'display name' },
      password: { type: 'string', valueName: 'PASSWORD', description: 'initial password (prefer the variable)', env: 'BATON_NEW_USER_PASSWORD' },
      email: { type: 'string', valueName: 'EMAIL', description: 'email address' },
      disabled: { type: 'boolean', description: 'create the user disabled' },
    },
    async run(client, values, [username]) {
      const body = {
        username,
        displayName: str(values['display-name']) ?? username,
        password: required(values, 'password'),
        ...(str(values.email) ? { email: str(values.email) } : {}),
        ...(values.disabled ? { enabled: false } : {}),
      };
      const answer = await client.call('POST', '/users', { body });
      return show(values, answer.body, () => [`created ${userLine(answer.body)}`]);
    },
  }),
  userAction('disable', 'Disable a user: sign-in and every grant refuse her from her next request.'),
  userAction('enable', 'Enable a disabled user.'),
  userAction('reset-mfa', 'Remove a user’s TOTP seed (or enrol a new one with --totp-secret).', { 'totp-secret': { type: 'string', valueName: 'BASE32', description: 'new TOTP seed to enrol' } }, (values) =>
    str(values['totp-secret']) ? { totpSecret: str(values['totp-secret']) } : {},
  ),
  userAction('revoke-sessions', 'Revoke a user’s sessions: every session, refresh and access token issued until now is refused.'),

  adminCommand({
    name: 'apps list',
    summary: 'List the tenant’s applications.',
    async run(client, values) {
      const apps = await client.all('/applications');
      return show(values, apps, () => apps.map(appLine));
    },
  }),
  adminCommand({
    name: 'apps show',
    summary: 'Show one application with its secrets (id and hint) and keys.',
    positionals: ['CLIENT_ID'],
    async run(client, values, [clientId]) {
      const answer = await client.call('GET', `/applications/${seg(clientId!)}`);
      return show(values, answer.body, () => [appLine(answer.body), ...answer.body.redirectUris.map((u: string) => `  redirect ${u}`), ...answer.body.secrets.map((s: any) => `  secret ${secretLine(s)}`)]);
    },
  }),
  adminCommand({
    name: 'apps create',
    summary: 'Register an application (add a secret with `apps secrets add`).',
    positionals: ['CLIENT_ID'],
    options: {
      name: { type: 'string', valueName: 'NAME', description: 'display name' },
      public: { type: 'boolean', description: 'a public client (no secret; PKCE)' },
      'redirect-uris': { type: 'string', valueName: 'URIS', description: 'comma-separated redirect URIs' },
      file: { type: 'string', valueName: 'FILE', description: 'the whole registration as JSON (the fields of a configuration application, without secrets)' },
    },
    async run(client, values, [clientId]) {
      const body = str(values.file)
        ? { ...((await readJsonFile(str(values.file)!, '--file')) as object), clientId }
        : { clientId, name: str(values.name) ?? clientId, ...(values.public ? { public: true } : {}), ...(list(values['redirect-uris']) ? { redirectUris: list(values['redirect-uris']) } : {}) };
      const answer = await client.call('POST', '/applications', { body });
      return show(values, answer.body, () => [`created ${appLine(answer.body)}`]);
    },
  }),
  adminCommand({
    name: 'apps redirect-uris set',
    summary: 'Replace an application’s redirect URIs.',
    positionals: ['CLIENT_ID', 'URI...'],
    async run(client, values, [clientId, ...uris]) {
      const current = await client.call('GET', `/applications/${seg(clientId!)}`);
      const answer = await client.call('PATCH', `/applications/${seg(clientId!)}`, { body: { redirectUris: uris }, ifMatch: current.etag! });
      return show(values, answer.body, () => answer.body.redirectUris.map((u: string) => `redirect ${u}`));
    },
  }),
  adminCommand({
    name: 'apps secrets add',
    summary: 'Add a client secret; it is printed once, on stdout alone (not stored anywhere readable).',
    positionals: ['CLIENT_ID'],
    options: { 'expires-in-days': { type: 'string', valueName: 'DAYS', description: 'days until it stops working' } },
    async run(client, values, [clientId]) {
      const days = str(values['expires-in-days']);
      if (days !== undefined && !/^\d{1,4}$/.test(days)) throw new Error('--expires-in-days must be a whole number of days');
      const answer = await client.call('POST', `/applications/${seg(clientId!)}/secrets`, { body: days === undefined ? {} : { expiresInDays: Number(days) } });
      if (values.json) return show(values, answer.body, () => []);
      process.stderr.write(`secret ${secretLine(answer.body)}\n`);
      out(answer.body.secret);
      return 0;
    },
  }),
  adminCommand({
    name: 'apps secrets rotate',
    summary: 'Replace a client secret with a new one (printed once); the old one works for --grace-seconds more.',
    positionals: ['CLIENT_ID', 'SECRET_ID'],
    options: { 'grace-seconds': { type: 'string', valueName: 'N', description: 'seconds the old secret keeps working', default: '0' } },
    async run(client, values, [clientId, secretId]) {
      const grace = str(values['grace-seconds']) ?? '0';
      if (!/^\d{1,7}$/.test(grace)) throw new Error('--grace-seconds must be a whole number');
      const answer = await client.call('POST', `/applications/${seg(clientId!)}/secrets/${seg(secretId!)}/rotate`, { body: { graceSeconds: Number(grace) } });
      if (values.json) return show(values, answer.body, () => []);
      process.stderr.write(`secret ${secretLine(answer.body)}\n`);
      out(answer.body.secret);
      return 0;
    },
  }),
  adminCommand({
    name: 'apps secrets revoke',
    summary: 'Revoke a client secret (by the id `apps show` lists).',
    positionals: ['CLIENT_ID', 'SECRET_ID'],
    async run(client, values, [clientId, secretId]) {
      const current = await client.call('GET', `/applications/${seg(clientId!)}`);
      await client.call('DELETE', `/applications/${seg(clientId!)}/secrets/${seg(secretId!)}`, { ifMatch: current.etag! });
      return show(values, { revoked: secretId }, () => [`revoked secret ${secretId} of ${clientId}`]);
    },
  }),
  adminCommand({
    name: 'apps keys add',
    summary: 'Register a public key (JWK file, with a kid) for private_key_jwt.',
    positionals: ['CLIENT_ID'],
    options: { 'jwk-file': { type: 'string', valueName: 'FILE', description: 'the public JWK (JSON)' } },
    async run(client, values, [clientId]) {
      const jwk = await readJsonFile(required(values, 'jwk-file'), '--jwk-file');
      const answer = await client.call('POST', `/applications/${seg(clientId!)}/keys`, { body: { jwk } });
      return show(values, answer.body, () => answer.body.keys.map((k: any) => `key ${k.kid} ${k.kty}`));
    },
  }),
  adminCommand({
    name: 'apps keys remove',
    summary: 'Remove a public key by its kid.',
    positionals: ['CLIENT_ID', 'KID'],
    async run(client, values, [clientId, kid]) {
      const current = await client.call('GET', `/applications/${seg(clientId!)}`);
      await client.call('DELETE', `/applications/${seg(clientId!)}/keys/${seg(kid!)}`, { ifMatch: current.etag! });
      return show(values, { removed: kid }, () => [`removed key ${kid} of ${clientId}`]);
    },
  }),

  adminCommand({
    name: 'consents list',
    summary: 'List consents (filter by --client, --resource, --for).',
    options: {
      client: { type: 'string', valueName: 'CLIENT_ID', description: 'the application holding the consent' },
      resource: { type: 'string', valueName: 'API', description: 'the API (identifier URI or client id)' },
      for: { type: 'string', valueName: 'USER', description: "a username, an oid, or 'all' (admin consent)" },
    },
    async run(client, values) {
      const query = new URLSearchParams();
      for (const name of ['client', 'resource', 'for']) if (str(values[name])) query.set(name, str(values[name])!);
      const consents = await client.all(`/consents${query.size > 0 ? `?${query}` : ''}`);
      return show(values, consents, () => consents.map(consentLine));
    },
  }),
  adminCommand({
    name: 'consents grant',
    summary: 'Grant an application scopes of an API, for one user or for all (admin consent).',
    options: {
      client: { type: 'string', valueName: 'CLIENT_ID', description: 'the application' },
      resource: { type: 'string', valueName: 'API', description: 'the API (identifier URI or client id)' },
      scopes: { type: 'string', valueName: 'SCOPES', description: 'comma-separated scope values' },
      for: { type: 'string', valueName: 'USER', description: "a username, an oid, or 'all'" },
    },
    async run(client, values) {
      const body = { client: required(values, 'client'), resource: required(values, 'resource'), scopes: list(required(values, 'scopes')), for: required(values, 'for') };
      const answer = await client.call('POST', '/consents', { body });
      return show(values, answer.body, () => [`granted ${consentLine(answer.body)}`]);
    },
  }),
  adminCommand({
    name: 'consents revoke',
    summary: 'Revoke a consent (by the id `consents list` shows), or one scope of it with --scope.',
    positionals: ['CONSENT_ID'],
    options: { scope: { type: 'string', valueName: 'SCOPE', description: 'revoke only this scope' } },
    async run(client, values, [id]) {
      const current = await client.call('GET', `/consents/${seg(id!)}`);
      const scope = str(values.scope);
      await client.call('DELETE', `/consents/${seg(id!)}${scope ? `?scope=${encodeURIComponent(scope)}` : ''}`, { ifMatch: current.etag! });
      return show(values, { revoked: id, ...(scope ? { scope } : {}) }, () => [`revoked ${scope ? `${scope} of ` : ''}${consentLine(current.body)}`]);
    },
  }),

  adminCommand({
    name: 'roles list',
    summary: 'List app role assignments (of every application, or --client / --user).',
    options: {
      client: { type: 'string', valueName: 'CLIENT_ID', description: 'assignments of this application' },
      user: { type: 'string', valueName: 'USER', description: 'assignments of this user' },
    },
    async run(client, values) {
      const query = str(values.user) ? `?user=${encodeURIComponent(str(values.user)!)}` : str(values.client) ? `?client=${encodeURIComponent(str(values.client)!)}` : '';
      const roles = await client.all(`/role-assignments${query}`);
      return show(values, roles, () => roles.map(roleLine));
    },
  }),
  adminCommand({
    name: 'roles assign',
    summary: 'Assign app roles of an API to an application (--client) or a user (--user).',
    options: {
      client: { type: 'string', valueName: 'CLIENT_ID', description: 'the application' },
      user: { type: 'string', valueName: 'USER', description: 'the user' },
      resource: { type: 'string', valueName: 'API', description: 'the API (identifier URI or client id)' },
      roles: { type: 'string', valueName: 'ROLES', description: 'comma-separated role values' },
    },
    async run(client, values) {
      const who = str(values.user) ? { user: str(values.user) } : { client: required(values, 'client') };
      const answer = await client.call('POST', '/role-assignments', { body: { ...who, resource: required(values, 'resource'), roles: list(required(values, 'roles')) } });
      return show(values, answer.body, () => [`assigned ${roleLine(answer.body)}`]);
    },
  }),
  adminCommand({
    name: 'roles remove',
    summary: 'Remove an app role assignment (by the id `roles list` shows), or one role of it with --role.',
    positionals: ['ASSIGNMENT_ID'],
    options: { role: { type: 'string', valueName: 'ROLE', description: 'remove only this role' } },
    async run(client, values, [id]) {
      const role = str(values.role);
      // No read gives this record alone: the id names it exactly, and `*` says "as it is now".
      await client.call('DELETE', `/role-assignments/${seg(id!)}${role ? `?role=${encodeURIComponent(role)}` : ''}`, { ifMatch: '*' });
      return show(values, { removed: id, ...(role ? { role } : {}) }, () => [`removed ${role ? `${role} of ` : ''}assignment ${id}`]);
    },
  }),

  adminCommand({
    name: 'policies list',
    summary: 'List conditional-access policies.',
    async run(client, values) {
      const policies = await client.all('/policies');
      return show(values, policies, () => policies.map(policyLine));
    },
  }),
  adminCommand({
    name: 'policies put',
    summary: 'Create or replace a policy from a JSON file (the fields of a configuration policy, without name).',
    positionals: ['NAME'],
    options: { file: { type: 'string', valueName: 'FILE', description: 'the policy as JSON: { "resources": […], "require": {…} }' } },
    async run(client, values, [name]) {
      const body = await readJsonFile(required(values, 'file'), '--file');
      let etag: string | undefined;
      try {
        etag = (await client.call('GET', `/policies/${seg(name!)}`)).etag;
      } catch (error) {
        if ((error as { status?: number }).status !== 404) throw error;
      }
      const answer = await client.call('PUT', `/policies/${seg(name!)}`, { body, ...(etag ? { ifMatch: etag } : {}) });
      return show(values, answer.body, () => [`${answer.status === 201 ? 'created' : 'replaced'} ${policyLine(answer.body)}`]);
    },
  }),
  adminCommand({
    name: 'policies delete',
    summary: 'Delete a policy.',
    positionals: ['NAME'],
    async run(client, values, [name]) {
      const current = await client.call('GET', `/policies/${seg(name!)}`);
      await client.call('DELETE', `/policies/${seg(name!)}`, { ifMatch: current.etag! });
      return show(values, { deleted: name }, () => [`deleted policy ${name}`]);
    },
  }),

  adminCommand({
    name: 'events',
    summary: 'The admin change log, oldest first: who changed what, before and after (filter by --type, --id, --since).',
    options: {
      type: { type: 'string', valueName: 'TYPE', description: 'user, application, consent, roleAssignment or policy' },
      id: { type: 'string', valueName: 'ID', description: "the record's id (a user: username or oid); needs --type" },
      since: { type: 'string', valueName: 'INSTANT', description: 'only changes at or after, e.g. 2026-12-05T10:00:00Z' },
      limit: { type: 'string', valueName: 'N', description: 'only the first N (1-200); default every change' },
    },
    async run(client, values) {
      const query = new URLSearchParams();
      for (const name of ['type', 'id', 'since']) if (str(values[name])) query.set(name, str(values[name])!);
      const limit = str(values.limit);
      let events: unknown[];
      if (limit !== undefined) {
        query.set('limit', limit);
        events = (await client.call('GET', `/events?${query}`)).body.items;
      } else {
        events = await client.all(`/events${query.size > 0 ? `?${query}` : ''}`);
      }
      return show(values, events, () => events.map(eventLine));
    },
  }),
];

/**
 * `baton token issue`: a signed delegated access token for testing an API locally (like
 * `dotnet user-jwts`), the same as the token service issues after a password sign-in
 * (`amr: ["pwd"]`): same keys (the data directory's store and KEK), same claims, same consent
 * rules. The token goes to stdout alone, so `TOKEN=$(baton token issue …)` works; a summary goes
 * to stderr.
 *
 * @example
 * baton token issue --config examples/chain/baton.json --data .baton --tenant contoso \
 *   --user alice@contoso.test --client tasks-web --scope api://tasks/Tasks.ReadWrite
 */
import { resolve } from 'node:path';
import {
  acrFor,
  buildDelegatedClaims,
  buildDirectory,
  consentedScopes,
  qualifiedScope,
  resolveScopeParameter,
} from '@baton/core';
import { applyConfig, compileConfig, Keyring, loadKek, openStore, readConfigFile, recordedIssuerBase } from '@baton/server';
import type { Command } from './command.ts';

const str = (v: string | boolean | undefined): string | undefined => (typeof v === 'string' ? v : undefined);

function required(values: Record<string, string | boolean | undefined>, name: string): string {
  const value = str(values[name]);
  if (value === undefined || value === '') throw new Error(`--${name} is required`);
  return value;
}

export const tokenIssue: Command = {
  name: 'token issue',
  summary: 'Print a signed delegated access token (amr ["pwd"]) for testing an API locally.',
  options: {
    config: { type: 'string', valueName: 'FILE', description: 'configuration file (applied to the store first, as `serve` does)', env: 'BATON_CONFIG' },
    data: { type: 'string', valueName: 'DIR', description: 'data directory (SQLite file, dev KEK) shared with `baton serve`', default: '.baton', env: 'BATON_DATA' },
    store: { type: 'string', valueName: 'URL', description: 'postgres://… to use PostgreSQL instead of SQLite in DIR', env: 'BATON_STORE' },
    'kek-file': { type: 'string', valueName: 'FILE', description: 'key-encryption key file (BATON_KEK in the environment wins)', env: 'BATON_KEK_FILE' },
    tenant: { type: 'string', valueName: 'ID', description: 'tenant id (path segment)' },
    user: { type: 'string', valueName: 'USERNAME', description: 'the signed-in user' },
    client: { type: 'string', valueName: 'CLIENT_ID', description: 'the application the token is issued to (azp)' },
    scope: { type: 'string', valueName: 'SCOPES', description: "scopes of one API, e.g. 'api://tasks/Tasks.ReadWrite' or 'api://docs/.default'" },
    'issuer-base': {
      type: 'string',
      valueName: 'URL',
      description: 'base URL of the token service the API trusts (iss = URL/{tenant}/v2.0); default: the one `baton serve` recorded in the store',
    },
  },
  async run(values) {
    const tenantId = required(values, 'tenant');
    const username = required(values, 'user').toLowerCase();
    const clientId = required(values, 'client');
    const scope = required(values, 'scope');
    const givenBase = str(values['issuer-base'])?.replace(/\/+$/, '');
    if (givenBase !== undefined && !/^https?:\/\/[^\s/]+(\/[^\s]*)?$/.test(givenBase)) throw new Error(`--issuer-base must be an http(s) URL, not '${givenBase}'`);
    const dataDir = resolve(str(values.data) ?? '.baton');
    const configPath = str(values.config);
    const config = configPath === undefined ? undefined : await readConfigFile(configPath);

    const store = await openStore({ url: str(values.store), dataDir });
    try {
      const kek = await loadKek({ env: process.env.BATON_KEK, file: str(values['kek-file']), dataDir, dev: true, warn: (m: string) => process.stderr.write(`warning: ${m}\n`) });
      const now = Math.floor(Date.now() / 1000);
      if (config !== undefined) await applyConfig(store, await compileConfig(config, { pepper: kek.derive('client-secret-pepper'), kek, store, now }));

      const tenant = await store.getTenant(tenantId);
      if (tenant === undefined) throw new Error(`no tenant '${tenantId}' in the store (pass --config to load one)`);
      // The issuer the service answers as: a token naming another one fails at the API (AADSTS50013).
      const recordedBase = await recordedIssuerBase(store, tenantId, now);
      const base = givenBase ?? recordedBase;
      if (base === undefined) {
        throw new Error(`no issuer recorded for tenant '${tenantId}' in this store: start 'baton serve' on it once (it records the base URL it answers as), or pass --issuer-base URL`);
      }
      const applications = await store.listApplications(tenantId);
      const directory = buildDirectory({
        tenant,
        applications,
        tenantConsents: await store.listConsents({ tenantId, principal: 'all' }),
        roleAssignments: (await Promise.all(applications.map((a) => store.listRoleAssignments(tenantId, 'application', a.clientId)))).flat(),
        policies: await store.listPolicies(tenantId),
      });
      const user = await store.getUserByName(tenantId, username);
      if (user === undefined) throw new Error(`no user '${username}' in tenant '${tenantId}'`);
      if (!user.enabled) throw new Error(`the user '${username}' is disabled (AADSTS50057): the token service would not issue a token`);
      const client = directory.application(clientId);
      if (client === undefined) throw new Error(`no application '${clientId}' in tenant '${tenantId}' (AADSTS700016)`);

      const resolved = resolveScopeParameter(directory, scope).resource;
      if (resolved === undefined) throw new Error('--scope must name scopes of one API (an access token is for an API)');
      const api = resolved.api;
      const held = consentedScopes(directory, client.clientId, api.clientId, user.oid, await store.listConsents({ tenantId, clientId: client.clientId, principal: user.oid }));
      const requested = resolved.isDefault ? api.scopes.map((s) => s.value).filter((v) => held.has(v)) : resolved.scopes;
      const missing = requested.filter((v) => !held.has(v));
      if (requested.length === 0 || missing.length > 0) {
        const list = (missing.length > 0 ? missing : api.scopes.map((s) => s.value)).map((v) => qualifiedScope(api, v)).join(', ');
        throw new Error(`'${client.clientId}' has no consent for ${list} for ${username} (AADSTS65001): add a consent to the configuration ("for": "all" or the username), or sign in once and accept`);
      }
      const roles = (await store.listRoleAssignments(tenantId, 'user', user.oid))
        .filter((a) => a.resource === api.clientId)
        .flatMap((a) => a.roles)
        .filter((v) => directory.appRole(api.clientId, v)?.allowedMemberTypes.includes('User') === true);

      const keyring = new Keyring(store, kek, { now: () => now });
      try {
        await keyring.ensure(tenantId, api.signingAlg);
        const amr = ['pwd'];
        const claims = buildDelegatedClaims({
          issuer: `${base}/${tenantId}/v2.0`,
          tenant: directory.tenant,
          clientId: client.clientId,
          api,
          user,
          scopes: requested,
          roles,
          auth: { amr, acr: acrFor(amr), authTime: now },
          profile: { preferred_username: user.username, name: user.displayName },
          pairwiseSecret: kek.derive('pairwise-sub'),
          now,
        });
        const signer = await keyring.signer(tenantId, api.signingAlg);
        const token = signer.sign(claims, 'at+jwt');
        process.stdout.write(`${token}\n`);
        process.stderr.write(`issuer ${claims.iss} (${givenBase !== undefined ? '--issuer-base' : "recorded by 'baton serve'"})\n`);
        process.stderr.write(`aud ${claims.aud}  scp "${claims.scp}"  azp ${claims.azp}  sub ${claims.sub}  expires ${new Date(claims.exp * 1000).toISOString()}  kid ${signer.kid}\n`);
      } finally {
        keyring.close();
      }
      return 0;
    } finally {
      await store.close();
    }
  },
};

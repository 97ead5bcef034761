import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decideClientCredentials, Entra } from '../src/index.ts';
import { buildFixture, NOW, throwsOAuth } from './fixtures.ts';

const fx = buildFixture();
const directory = fx.directory;
const decide = (clientId: string, scope: string | undefined, d = directory) => decideClientCredentials({ directory: d, client: fx.app(clientId), scope, now: NOW });
const invalidScope = (description: RegExp) => ({ error: 'invalid_scope', entraCodes: [Entra.invalidScope], description });

describe('decideClientCredentials', () => {
  it('grants the indexer its application permission on docs-api', () => {
    const grant = decide('indexer', 'api://docs/.default');
    assert.equal(grant.api.clientId, 'docs-api');
    assert.deepEqual(grant.roles, ['Docs.ReadAll']);
    assert.equal(grant.scope, 'api://docs/.default');
  });

  it('accepts the client-id form of .default', () => {
    assert.deepEqual(decide('indexer', 'docs-api/.default').roles, ['Docs.ReadAll']);
  });

  it('refuses a public client (unauthorized_client, AADSTS700025)', () => {
    throwsOAuth(() => decide('tasks-web', 'api://docs/.default'), {
      error: 'unauthorized_client',
      entraCodes: [Entra.publicClientNotAllowed],
      description: /'tasks-web' is a public client/,
    });
  });

  it('refuses a missing scope (invalid_request, AADSTS900144)', () => {
    for (const scope of [undefined, '']) {
      throwsOAuth(() => decide('indexer', scope), { error: 'invalid_request', entraCodes: [Entra.malformedRequest], description: /must contain a 'scope' parameter/ });
    }
  });

  it('refuses delegated scopes, explaining that only .default is accepted', () => {
    throwsOAuth(() => decide('indexer', 'api://docs/Docs.Read'), invalidScope(/only accepts the '.default' scope of one API \(e.g. 'api:\/\/docs\/.default'\): 'api:\/\/docs\/Docs.Read' names delegated scopes, which need a user/));
  });

  it('refuses an app role named directly', () => {
    throwsOAuth(() => decide('indexer', 'api://docs/Docs.ReadAll'), invalidScope(/app role \(application permission\)/));
  });

  it('refuses OIDC scopes', () => {
    throwsOAuth(() => decide('indexer', 'openid api://docs/.default'), invalidScope(/OpenID Connect scopes \(openid\) have no meaning without a user/));
    throwsOAuth(() => decide('indexer', 'offline_access'), invalidScope(/only accepts the '.default'/));
  });

  it('refuses .default of two APIs', () => {
    throwsOAuth(() => decide('indexer', 'api://docs/.default api://audit/.default'), invalidScope(/two APIs, 'api:\/\/docs' and 'api:\/\/audit'/));
  });

  it('refuses an unknown API', () => {
    throwsOAuth(() => decide('indexer', 'api://payroll/.default'), invalidScope(/'api:\/\/payroll', which does not exist/));
  });

  it('refuses a client with no application permission on the API, never issuing an empty token (AADSTS501051)', () => {
    throwsOAuth(() => decide('reports-api', 'api://docs/.default'), {
      error: 'invalid_scope',
      entraCodes: [Entra.noRoleAssigned],
      description: /'reports-api' has no application permission assigned on API 'api:\/\/docs': an administrator must assign it one of the API's app roles \(Docs.ReadAll\)/,
    });
    throwsOAuth(() => decide('indexer', 'api://audit/.default'), {
      error: 'invalid_scope',
      entraCodes: [Entra.noRoleAssigned],
      description: /the API defines no app role for applications/,
    });
  });

  it('ignores assigned roles the API no longer defines or that are for users only', () => {
    const changed = buildFixture((c) => {
      const t = c.tenants[0]!;
      const docs = t.applications.find((a) => a.clientId === 'docs-api')!;
      docs.appRoles!.push({ value: 'Docs.Editor', description: 'Edit as a user', allowedMemberTypes: ['User'] });
      docs.appRoles!.push({ value: 'Docs.Both', description: 'Either', allowedMemberTypes: ['User', 'Application'] });
      t.appRoleAssignments = [{ client: 'indexer', resource: 'api://docs', roles: ['Docs.Gone', 'Docs.Editor', 'Docs.Both', 'Docs.ReadAll'] }];
      t.appRoleAssignments.push({ client: 'reports-api', resource: 'api://docs', roles: ['Docs.Gone', 'Docs.Editor'] });
    });
    assert.deepEqual(decide('indexer', 'api://docs/.default', changed.directory).roles, ['Docs.Both', 'Docs.ReadAll']);
    throwsOAuth(() => decide('reports-api', 'api://docs/.default', changed.directory), {
      error: 'invalid_scope',
      entraCodes: [Entra.noRoleAssigned],
      description: /one of the API's app roles \(Docs.ReadAll, Docs.Both\)/,
    });
  });
});

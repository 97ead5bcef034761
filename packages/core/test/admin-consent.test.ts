import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { adminConsentPermissions, decideAdminConsent, Entra, readAdminConsentRequest } from '../src/index.ts';
import { buildFixture, NOW, throwsOAuth } from './fixtures.ts';

const fx = buildFixture((c) => {
  const tenant = c.tenants[0]!;
  // reports-api declares delegated and application permissions on two APIs, and has a redirect URI.
  const reports = tenant.applications.find((a) => a.clientId === 'reports-api')!;
  reports.redirectUris = ['https://reports.example/consented'];
  reports.requiredAccess = [
    { resource: 'api://docs', scopes: ['Docs.Read', 'Docs.Gone'], roles: ['Docs.ReadAll'] },
    { resource: 'api://audit', scopes: ['Audit.Write'] },
  ];
});
const reports = fx.app('reports-api');

describe('readAdminConsentRequest', () => {
  it('reads the client, the registered redirect URI, state, and every declared permission that still exists', () => {
    const request = readAdminConsentRequest(fx.directory, { client_id: 'reports-api', redirect_uri: 'https://reports.example/consented', state: 's1' });
    assert.equal(request.client.clientId, 'reports-api');
    assert.equal(request.redirectUri, 'https://reports.example/consented');
    assert.equal(request.state, 's1');
    assert.equal(request.resource, undefined);
    assert.deepEqual(
      request.permissions.delegated.map(({ api, scopes }) => [api.clientId, scopes]),
      [['docs-api', ['Docs.Read']], ['audit-api', ['Audit.Write']]],
    );
    assert.deepEqual(request.permissions.roles.map(({ api, roles }) => [api.clientId, roles]), [['docs-api', ['Docs.ReadAll']]]);
  });

  it('a scope limits the consent to one API', () => {
    const request = readAdminConsentRequest(fx.directory, { client_id: 'reports-api', scope: 'api://audit/.default' });
    assert.equal(request.resource, 'audit-api');
    assert.deepEqual(request.permissions.delegated.map(({ api }) => api.clientId), ['audit-api']);
    assert.deepEqual(request.permissions.roles, []);
  });

  it('drops a state longer than 2048 characters instead of echoing it', () => {
    assert.equal(readAdminConsentRequest(fx.directory, { client_id: 'reports-api', state: 'x'.repeat(2049) }).state, undefined);
  });

  it('refuses what cannot be consented to, each with its own error', () => {
    throwsOAuth(() => readAdminConsentRequest(fx.directory, {}), { error: 'invalid_request', entraCodes: [Entra.malformedRequest], description: /'client_id'/ });
    throwsOAuth(() => readAdminConsentRequest(fx.directory, { client_id: 'payroll' }), { error: 'invalid_request', entraCodes: [Entra.unknownClient], description: /'payroll' was not found/ });
    throwsOAuth(() => readAdminConsentRequest(fx.directory, { client_id: 'reports-api', redirect_uri: 'https://evil.example/' }), { error: 'invalid_request', entraCodes: [Entra.redirectUriMismatch] });
    throwsOAuth(() => readAdminConsentRequest(fx.directory, { client_id: 'reports-api', scope: 'Docs.Read' }), { error: 'invalid_scope', entraCodes: [Entra.invalidScope], description: /does not name an API/ });
    throwsOAuth(() => readAdminConsentRequest(fx.directory, { client_id: 'reports-api', scope: 'api://docs/.default api://audit/.default' }), { error: 'invalid_scope', entraCodes: [Entra.invalidScope], description: /one API at a time/ });
    throwsOAuth(() => readAdminConsentRequest(fx.directory, { client_id: 'audit-api' }), { error: 'invalid_request', entraCodes: [Entra.invalidScope], description: /declares no permissions/ });
    throwsOAuth(() => readAdminConsentRequest(fx.directory, { client_id: 'reports-api', scope: 'api://tasks/.default' }), { error: 'invalid_request', entraCodes: [Entra.invalidScope], description: /declares no permissions \(requiredAccess\) on that API/ });
  });
});

describe('adminConsentPermissions', () => {
  it('a public client gets no application permissions', () => {
    const publicReports = { ...reports, public: true };
    const permissions = adminConsentPermissions(fx.directory, publicReports, undefined);
    assert.deepEqual(permissions.roles, []);
    assert.equal(permissions.delegated.length, 2);
  });
});

describe('decideAdminConsent', () => {
  it('merges the new permissions into what the tenant already granted, and reports each qualified', () => {
    const withExisting = buildFixture((c) => {
      const tenant = c.tenants[0]!;
      tenant.applications.find((a) => a.clientId === 'tasks-api')!.requiredAccess = [{ resource: 'api://docs', scopes: ['Docs.Read'] }, { resource: 'api://audit', scopes: ['Audit.Write'] }];
    });
    const tasksApi = withExisting.app('tasks-api');
    const permissions = adminConsentPermissions(withExisting.directory, tasksApi, undefined);
    const grant = decideAdminConsent(withExisting.directory, tasksApi, permissions, NOW);
    // tasks-api already held Docs.Read and Docs.Write on docs-api: the grant keeps both.
    assert.deepEqual(grant.consents, [
      { tenantId: fx.tenant.id, clientId: 'tasks-api', resource: 'docs-api', scopes: ['Docs.Read', 'Docs.Write'], principal: 'all', createdAt: NOW },
      { tenantId: fx.tenant.id, clientId: 'tasks-api', resource: 'audit-api', scopes: ['Audit.Write'], principal: 'all', createdAt: NOW },
    ]);
    assert.deepEqual(grant.roleAssignments, []);
    assert.deepEqual(grant.scope, ['api://docs/Docs.Read', 'api://audit/Audit.Write']);
  });

  it('assigns application permissions, merged with the roles the application already holds', () => {
    const permissions = adminConsentPermissions(fx.directory, reports, 'docs-api');
    const grant = decideAdminConsent(fx.directory, reports, permissions, NOW);
    assert.deepEqual(grant.roleAssignments, [{ tenantId: fx.tenant.id, principalType: 'application', principalId: 'reports-api', resource: 'docs-api', roles: ['Docs.ReadAll'] }]);
    assert.deepEqual(grant.scope, ['api://docs/Docs.Read', 'api://docs/Docs.ReadAll']);
  });

  it('does not change the directory it reads', () => {
    const before = fx.directory.tenantConsent('reports-api', 'docs-api');
    decideAdminConsent(fx.directory, reports, adminConsentPermissions(fx.directory, reports, undefined), NOW);
    assert.deepEqual(fx.directory.tenantConsent('reports-api', 'docs-api'), before);
  });
});


import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { buildDirectory, ConfigurationError, type Application, type ConsentGrant } from '../src/index.ts';
import { buildFixture, NOW } from './fixtures.ts';

describe('buildDirectory', () => {
  const fx = buildFixture();
  const d = fx.directory;

  it('looks applications up by client id, clients and APIs alike', () => {
    assert.equal(d.application('tasks-web')?.name, 'Tasks Web');
    assert.equal(d.application('indexer')?.name, 'Indexer');
    assert.equal(d.application('nobody'), undefined);
    assert.equal(d.applications.length, 6);
    assert.equal(d.tenant.id, 'contoso');
    assert.equal(d.tenant.maxDelegationDepth, 4);
  });

  it('finds an API by identifier URI or client id, and only applications with an identifierUri are APIs', () => {
    assert.equal(d.api('api://docs')?.clientId, 'docs-api');
    assert.equal(d.api('docs-api'), d.api('api://docs'));
    assert.equal(d.apiByIdentifierUri('api://audit')?.clientId, 'audit-api');
    assert.equal(d.apiByIdentifierUri('audit-api'), undefined);
    assert.equal(d.api('indexer'), undefined);
    assert.equal(d.api('tasks-web'), undefined);
    assert.equal(d.api('api://nothing'), undefined);
  });

  it('indexes scope and app role definitions per API', () => {
    assert.equal(d.scope('docs-api', 'Docs.Write')?.adminConsentRequired, true);
    assert.equal(d.scope('docs-api', 'Docs.Read')?.adminConsentRequired, false);
    assert.equal(d.scope('docs-api', 'Audit.Write'), undefined);
    assert.equal(d.scope('audit-api', 'Audit.Write')?.description, 'Record what was done in your name');
    assert.deepEqual(d.appRole('docs-api', 'Docs.ReadAll')?.allowedMemberTypes, ['Application']);
    assert.equal(d.appRole('docs-api', 'Docs.Read'), undefined);
    assert.equal(d.scope('indexer', 'anything'), undefined);
  });

  it('keeps tenant-wide consents per (client, resource) and ignores a user\'s own consent', () => {
    assert.deepEqual(d.tenantConsent('tasks-api', 'docs-api'), ['Docs.Read', 'Docs.Write']);
    assert.deepEqual(d.tenantConsent('docs-api', 'audit-api'), ['Audit.Write']);
    assert.deepEqual(d.tenantConsent('tasks-web', 'tasks-api'), ['Tasks.ReadWrite']);
    assert.deepEqual(d.tenantConsent('reports-api', 'docs-api'), []);
    assert.deepEqual(d.tenantConsent('tasks-api', 'audit-api'), []);

    const withUser = buildFixture((c) => {
      c.tenants[0]?.consents.push({ client: 'reports-api', resource: 'api://docs', scopes: ['Docs.Read'], for: 'bob@contoso.test' });
    });
    assert.deepEqual(withUser.directory.tenantConsent('reports-api', 'docs-api'), []);
    assert.equal(withUser.userConsents('bob@contoso.test').length, 1);
  });

  it('merges several admin grants for one (client, resource) without duplicates', () => {
    const merged = buildFixture((c) => {
      c.tenants[0]?.consents.push({ client: 'tasks-api', resource: 'docs-api', scopes: ['Docs.Write', 'Docs.Read'], for: 'all' });
      c.tenants[0]?.consents.push({ client: 'reports-api', resource: 'api://docs', scopes: ['Docs.Read'], for: 'all' });
    });
    assert.deepEqual(merged.directory.tenantConsent('tasks-api', 'docs-api'), ['Docs.Read', 'Docs.Write']);
    assert.deepEqual(merged.directory.tenantConsent('reports-api', 'docs-api'), ['Docs.Read']);
  });

  it('keeps application role assignments per (client, resource) and ignores user ones', () => {
    assert.deepEqual(d.applicationRoles('indexer', 'docs-api'), ['Docs.ReadAll']);
    assert.deepEqual(d.applicationRoles('indexer', 'audit-api'), []);
    assert.deepEqual(d.applicationRoles('tasks-api', 'docs-api'), []);
    const withUserRole = buildDirectory({
      tenant: fx.tenant,
      applications: fx.applications,
      tenantConsents: [],
      roleAssignments: [{ tenantId: 'contoso', principalType: 'user', principalId: 'indexer', resource: 'docs-api', roles: ['Docs.ReadAll'] }],
      policies: [],
    });
    assert.deepEqual(withUserRole.applicationRoles('indexer', 'docs-api'), []);
  });

  it('returns the policies for an API: those naming it and those naming no resource, in order', () => {
    assert.deepEqual(d.policiesFor('docs-api').map((p) => p.name), ['MFA to change documents']);
    assert.deepEqual(d.policiesFor('audit-api'), []);
    const more = buildFixture((c) => {
      const t = c.tenants[0];
      t?.policies.unshift({ name: 'everywhere', resources: [], require: { maxAuthAgeSeconds: 3600 } });
      t?.policies.push({ name: 'audit only', resources: ['api://audit'], require: { block: true } });
    });
    assert.deepEqual(more.directory.policiesFor('docs-api').map((p) => p.name), ['everywhere', 'MFA to change documents']);
    assert.deepEqual(more.directory.policiesFor('audit-api').map((p) => p.name), ['everywhere', 'audit only']);
    assert.deepEqual(more.directory.policiesFor('tasks-api').map((p) => p.name), ['everywhere']);
    assert.equal(more.directory.policies.length, 3);
  });

  it('is immutable: frozen, and detached from the records it was built from', () => {
    assert.ok(Object.isFrozen(d));
    const docs = d.api('api://docs');
    assert.ok(docs !== undefined && Object.isFrozen(docs) && Object.isFrozen(docs.scopes) && Object.isFrozen(docs.scopes[0]));
    assert.throws(() => (d.tenantConsent('tasks-api', 'docs-api') as string[]).push('Docs.Delete'), TypeError);
    assert.throws(() => (d.applicationRoles('indexer', 'docs-api') as string[]).push('Docs.WriteAll'), TypeError);
    assert.throws(() => (d.policies as unknown[]).push({}), TypeError);

    const consents: ConsentGrant[] = [{ tenantId: 'contoso', clientId: 'tasks-api', resource: 'docs-api', scopes: ['Docs.Read'], principal: 'all', createdAt: NOW }];
    const apps = structuredClone(fx.applications);
    const built = buildDirectory({ tenant: fx.tenant, applications: apps, tenantConsents: consents, roleAssignments: [], policies: [] });
    consents[0]?.scopes.push('Docs.Write');
    apps[2]!.scopes.push({ id: 'x', value: 'Docs.Delete', description: '', adminConsentRequired: false });
    assert.deepEqual(built.tenantConsent('tasks-api', 'docs-api'), ['Docs.Read']);
    assert.equal(built.scope('docs-api', 'Docs.Delete'), undefined);
  });

  describe('refuses contradictory records with path-qualified ConfigurationError issues', () => {
    const build = (change: (r: Parameters<typeof buildDirectory>[0]) => void) => {
      const records = {
        tenant: fx.tenant,
        applications: structuredClone(fx.applications),
        tenantConsents: structuredClone(fx.consents),
        roleAssignments: structuredClone(fx.roleAssignments),
        policies: structuredClone(fx.policies),
      };
      change(records);
      try {
        buildDirectory(records);
      } catch (error) {
        assert.ok(error instanceof ConfigurationError);
        return error.issues;
      }
      return assert.fail('expected a ConfigurationError');
    };

    it('a duplicate client id', () => {
      const issues = build((r) => (r.applications as unknown[]).push({ ...fx.app('docs-api'), identifierUri: undefined }));
      assert.deepEqual(issues, ["tenant 'contoso': applications[6]: duplicate clientId 'docs-api'"]);
    });

    it('a duplicate identifier URI', () => {
      const issues = build((r) => (r.applications as unknown[]).push({ ...fx.app('docs-api'), clientId: 'docs-2' }));
      assert.deepEqual(issues, ["tenant 'contoso': applications[6]: identifierUri 'api://docs' is already used by 'docs-api'"]);
    });

    it('an identifier URI equal to another application\'s client id', () => {
      const issues = build((r) => (r.applications as unknown[]).push({ ...fx.app('docs-api'), clientId: 'docs-2', identifierUri: 'indexer' }));
      assert.match(issues.join('\n'), /identifierUri 'indexer' of 'docs-2' equals the clientId of another application/);
    });

    it('a record of another tenant', () => {
      const issues = build((r) => {
        (r.applications[0] as { tenantId: string }).tenantId = 'fabrikam';
        (r.policies[0] as { tenantId: string }).tenantId = 'fabrikam';
      });
      assert.deepEqual(issues, [
        "tenant 'contoso': applications[0]: belongs to tenant 'fabrikam', not 'contoso'",
        "tenant 'contoso': policies[0]: belongs to tenant 'fabrikam', not 'contoso'",
      ]);
    });

    it('duplicate scope or app role values on one API', () => {
      const issues = build((r) => {
        const docs = (r.applications as Application[]).find((a) => a.clientId === 'docs-api');
        docs?.scopes.push({ id: 'x', value: 'Docs.Read', description: '', adminConsentRequired: false });
        docs?.appRoles.push({ id: 'y', value: 'Docs.ReadAll', description: '', allowedMemberTypes: ['Application'] });
      });
      assert.deepEqual(issues, [
        "tenant 'contoso': applications[2].scopes[2]: duplicate value 'Docs.Read'",
        "tenant 'contoso': applications[2].appRoles[1]: duplicate value 'Docs.ReadAll'",
      ]);
    });
  });

  describe('keeps records that cannot take effect out of the decision, with path-qualified warnings', () => {
    it('a consent or an assignment for something that is not (or no longer) an API is skipped', () => {
      const directory = buildDirectory({
        tenant: fx.tenant,
        applications: fx.applications,
        tenantConsents: [...fx.consents, { tenantId: 'contoso', clientId: 'x', resource: 'indexer', scopes: ['a'], principal: 'all', createdAt: NOW }],
        roleAssignments: [...fx.roleAssignments, { tenantId: 'contoso', principalType: 'application', principalId: 'x', resource: 'nope', roles: ['r'] }],
        policies: fx.policies,
      });
      assert.deepEqual(directory.warnings, [
        "tenant 'contoso': tenantConsents[3]: skipped, resource 'indexer' is not an API of tenant 'contoso'",
        "tenant 'contoso': roleAssignments[1]: skipped, resource 'nope' is not an API of tenant 'contoso'",
      ]);
      assert.deepEqual(directory.tenantConsent('x', 'indexer'), []);
      assert.deepEqual(directory.applicationRoles('x', 'nope'), []);
      assert.deepEqual(fx.directory.warnings, []);
    });

    it('an invalid CIDR in a policy (it admits no address: the policy fails closed)', () => {
      const directory = buildDirectory({
        tenant: fx.tenant,
        applications: fx.applications,
        tenantConsents: [],
        roleAssignments: [],
        policies: [{ tenantId: 'contoso', name: 'net', resources: [], require: { ipRanges: ['10.0.0.0/8', '10.0.0.0/33', 'fe80::/129', 'not-an-ip', '2001:db8::/32'] } }],
      });
      assert.deepEqual(directory.warnings, [
        "tenant 'contoso': policies[0].require.ipRanges[1]: '10.0.0.0/33' is not an IPv4 or IPv6 CIDR range; it admits no address",
        "tenant 'contoso': policies[0].require.ipRanges[2]: 'fe80::/129' is not an IPv4 or IPv6 CIDR range; it admits no address",
        "tenant 'contoso': policies[0].require.ipRanges[3]: 'not-an-ip' is not an IPv4 or IPv6 CIDR range; it admits no address",
      ]);
      assert.equal(directory.policiesFor('docs-api').length, 1);
    });
  });
});

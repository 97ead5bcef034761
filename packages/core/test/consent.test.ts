import { test } from 'node:test';
import assert from 'node:assert/strict';
import { consentRecords, consentedScopes, planConsent } from '../src/index.ts';
import { buildFixture, NOW } from './fixtures.ts';

/** The chain without any admin consent, so every grant is the user's to make. */
const noAdminConsent = () => buildFixture((c) => { c.tenants[0]!.consents = []; });

test('a user may consent to user-consentable scopes; admin-only ones are reported apart', () => {
  const fx = noAdminConsent();
  const alice = fx.user('alice@contoso.test');
  const plan = planConsent({ directory: fx.directory, client: fx.app('tasks-api'), api: fx.app('docs-api'), scopes: ['Docs.Read', 'Docs.Write'], isDefault: false, userOid: alice.oid, userConsents: [] });
  assert.deepEqual(plan.requested, ['Docs.Read', 'Docs.Write']);
  assert.deepEqual(plan.granted, []);
  assert.deepEqual(plan.userConsentable, ['Docs.Read']);
  assert.deepEqual(plan.adminOnly, ['Docs.Write']);
});

test('combined consent: tasks-web is a known client of tasks-api, so accepting also grants tasks-api its requiredAccess (never admin-only scopes)', () => {
  const fx = noAdminConsent();
  const alice = fx.user('alice@contoso.test');
  const plan = planConsent({ directory: fx.directory, client: fx.app('tasks-web'), api: fx.app('tasks-api'), scopes: ['Tasks.ReadWrite'], isDefault: false, userOid: alice.oid, userConsents: [] });
  assert.deepEqual(plan.userConsentable, ['Tasks.ReadWrite']);
  assert.deepEqual(plan.combined, [{ clientId: 'tasks-api', resource: 'docs-api', scopes: ['Docs.Read'], adminOnly: ['Docs.Write'] }]);
  const records = consentRecords({ plan, directory: fx.directory, clientId: 'tasks-web', api: 'tasks-api', userOid: alice.oid, userConsents: [], asAdmin: false, now: NOW });
  assert.deepEqual(records.map((r) => [r.clientId, r.resource, r.principal, r.scopes]), [
    ['tasks-web', 'tasks-api', alice.oid, ['Tasks.ReadWrite']],
    ['tasks-api', 'docs-api', alice.oid, ['Docs.Read']],
  ]);
  // As an administrator for the organization: everything, admin-only included, for 'all'.
  const admin = consentRecords({ plan, directory: fx.directory, clientId: 'tasks-web', api: 'tasks-api', userOid: alice.oid, userConsents: [], asAdmin: true, now: NOW });
  assert.deepEqual(admin.map((r) => [r.clientId, r.resource, r.principal, r.scopes]), [
    ['tasks-web', 'tasks-api', 'all', ['Tasks.ReadWrite']],
    ['tasks-api', 'docs-api', 'all', ['Docs.Read', 'Docs.Write']],
  ]);
});

test("a user's grant of an admin-only scope is ignored; existing grants are merged, not replaced", () => {
  const fx = noAdminConsent();
  const alice = fx.user('alice@contoso.test');
  const forged = [{ tenantId: 'contoso', clientId: 'tasks-api', resource: 'docs-api', scopes: ['Docs.Read', 'Docs.Write'], principal: alice.oid, createdAt: NOW }];
  assert.deepEqual([...consentedScopes(fx.directory, 'tasks-api', 'docs-api', alice.oid, forged)], ['Docs.Read']);
  const plan = planConsent({ directory: fx.directory, client: fx.app('tasks-web'), api: fx.app('tasks-api'), scopes: ['Tasks.ReadWrite'], isDefault: false, userOid: alice.oid, userConsents: forged });
  assert.deepEqual(plan.combined, [{ clientId: 'tasks-api', resource: 'docs-api', scopes: [], adminOnly: ['Docs.Write'] }]);
});

test('.default asks for the configured permissions plus what is held', () => {
  const fx = buildFixture();
  const alice = fx.user('alice@contoso.test');
  const plan = planConsent({ directory: fx.directory, client: fx.app('tasks-web'), api: fx.app('tasks-api'), scopes: [], isDefault: true, userOid: alice.oid, userConsents: [] });
  assert.deepEqual(plan.requested, ['Tasks.ReadWrite']);
  assert.deepEqual(plan.granted, ['Tasks.ReadWrite'], 'admin consent in the chain configuration');
  assert.deepEqual(plan.userConsentable, []);
});

/**
 * The demo's APIs with the `signals` option (issue 17, docs/cae.md), against a live Baton: each API
 * subscribes with its own SSF stream (Tasks and Audit by poll, Docs by push), accepts alice's token,
 * and once an administrator disables her refuses that token with the CAE claims challenge; the
 * Tasks API's OBO cache drops the Docs token it held for her. Bob's token still passes. An API
 * without the option still accepts her token (what the option adds). Waits are bounded polls.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryTokenCacheStore } from '@baton/resource';
import { startAuditApi } from '../src/audit/api.ts';
import { startDocsApi } from '../src/docs/api.ts';
import { startTasksApi } from '../src/tasks/api.ts';
import { silentWriter } from '../src/log.ts';
import type { RunningApi } from '../src/common.ts';
import { admin, adminConfigure, adminToken, eventually } from '../../../packages/server/test/admin-kit.ts';
import { challengeClaims, secretOf, startLiveBaton, type LiveBaton } from '../../../packages/resource/test/fixtures/live-baton.ts';

const BOUND_MS = 15_000;
let baton: LiveBaton;
let adminTok: string;
const running: RunningApi[] = [];

before(async () => {
  baton = await startLiveBaton({
    configure(raw) {
      adminConfigure(raw);
      // The APIs are receivers: Baton.Signals on the built-in API (unless the demo's configuration has it already).
      const assignments: Array<{ client: string; resource: string; roles: string[] }> = raw.tenants[0].appRoleAssignments;
      for (const client of ['tasks-api', 'docs-api', 'audit-api']) {
        if (!assignments.some((a) => a.client === client && a.resource === 'api://baton-admin' && a.roles.includes('Baton.Signals'))) assignments.push({ client, resource: 'api://baton-admin', roles: ['Baton.Signals'] });
      }
    },
  });
  adminTok = await adminToken(baton.server);
});
after(async () => {
  for (const api of running.reverse()) await api.close();
  await baton?.close();
});

const common = (clientId: string) => ({ authority: baton.authority, ca: baton.server.ca!, clientSecret: secretOf(clientId), log: silentWriter });

async function call(url: string, token: string): Promise<{ status: number; header: string | null }> {
  const response = await fetch(url, { method: url.endsWith('/entries') ? 'POST' : 'GET', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, ...(url.endsWith('/entries') ? { body: JSON.stringify({ action: 'test', target: 'document/x' }) } : {}) });
  await response.body?.cancel();
  return { status: response.status, header: response.headers.get('www-authenticate') };
}

test('with signals, every API refuses a disabled user’s earlier token (poll and push) and the OBO cache drops hers', async () => {
  const audit = await startAuditApi({ ...common('audit-api'), signals: { delivery: 'poll' } });
  running.push(audit);
  const docs = await startDocsApi({ ...common('docs-api'), auditUrl: audit.url, signals: { delivery: 'push' } });
  running.push(docs);
  const oboCache = new MemoryTokenCacheStore();
  const tasks = await startTasksApi({ ...common('tasks-api'), docsUrl: docs.url, signals: { delivery: 'poll' }, oboCache });
  running.push(tasks);
  const unsubscribed = await startAuditApi(common('audit-api'));
  running.push(unsubscribed);

  const tokens = {
    tasks: await baton.userToken({ username: 'bob@contoso.test' }),
    docs: await baton.userToken({ username: 'bob@contoso.test', api: 'api://docs', scopes: ['Docs.Read'] }),
    audit: await baton.userToken({ username: 'bob@contoso.test', api: 'api://audit', scopes: ['Audit.Write'] }),
  };
  const alice = await baton.userToken();
  const hops = [
    { name: 'Tasks API', url: `${tasks.url}/tasks`, token: tokens.tasks },
    { name: 'Docs API', url: `${docs.url}/documents`, token: tokens.docs },
    { name: 'Audit API', url: `${audit.url}/entries`, token: tokens.audit },
  ];
  for (const hop of hops) assert.ok((await call(hop.url, hop.token)).status < 300, `${hop.name} accepts bob's token before`);
  // Through the chain: the Tasks API caches a Docs token for bob (On-Behalf-Of).
  assert.equal((await call(`${tasks.url}/documents`, tokens.tasks)).status, 200);
  assert.equal(oboCache.size, 1, 'one OBO token cached for bob');

  assert.equal((await admin(baton.server, 'POST', '/users/bob@contoso.test/disable', { token: adminTok })).status, 200);
  try {
    for (const hop of hops) {
      await eventually(async () => (await call(hop.url, hop.token)).status === 401, `${hop.name} to refuse bob's earlier token`, BOUND_MS);
      const refused = await call(hop.url, hop.token);
      assert.match(refused.header ?? '', /error="insufficient_claims"/, `${hop.name} answers the CAE claims challenge`);
      assert.ok((challengeClaims(refused.header) as any)?.access_token?.nbf?.essential, hop.name);
    }
    await eventually(async () => oboCache.size === 0, "the Tasks API's OBO cache to drop bob's token", BOUND_MS);
    assert.ok((await call(`${tasks.url}/tasks`, alice)).status < 300, "another user's token still passes");
    assert.ok((await call(`${unsubscribed.url}/entries`, tokens.audit)).status < 300, 'an API without signals still accepts it');
  } finally {
    assert.equal((await admin(baton.server, 'POST', '/users/bob@contoso.test/enable', { token: adminTok })).status, 200);
  }
});

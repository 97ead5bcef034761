/**
 * The Docs API's rule: effective access = the user's own access ∩ the token's delegated scope.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { effectiveAccess, explain, delegatedAccess, type DocumentAcl } from '../src/docs/permissions.ts';

const TID = 'tenant-1';
const doc: DocumentAcl = { tid: TID, ownerOid: 'alice', shares: [{ username: 'dave@contoso.test', access: 'read' }, { username: 'erin@contoso.test', access: 'write' }] };
const caller = (oid: string, username: string, scopes: string[], tid = TID) => ({ tid, oid, username, scopes });

test('the owner reads with Docs.Read and writes with Docs.Write, not the other way round', () => {
  assert.deepEqual(pick(effectiveAccess(doc, caller('alice', 'alice@contoso.test', ['Docs.Read']))), { read: true, write: false });
  assert.deepEqual(pick(effectiveAccess(doc, caller('alice', 'alice@contoso.test', ['Docs.Write']))), { read: false, write: true });
  assert.deepEqual(pick(effectiveAccess(doc, caller('alice', 'alice@contoso.test', ['Docs.Read', 'Docs.Write']))), { read: true, write: true });
});

test('bob, with every delegated scope, gets nothing from a document that is not shared with him', () => {
  const e = effectiveAccess(doc, caller('bob', 'bob@contoso.test', ['Docs.Read', 'Docs.Write']));
  assert.deepEqual(pick(e), { read: false, write: false });
  assert.deepEqual(e.user, []);
  assert.match(explain(e), /user: none \(not the owner and not shared with this user\) ∩ token scopes: read\+write = none/);
});

test('a share grants at most what it says, and the scope still narrows it', () => {
  assert.deepEqual(pick(effectiveAccess(doc, caller('dave', 'DAVE@contoso.test', ['Docs.Read', 'Docs.Write']))), { read: true, write: false });
  assert.deepEqual(pick(effectiveAccess(doc, caller('erin', 'erin@contoso.test', ['Docs.Read']))), { read: true, write: false });
  assert.deepEqual(pick(effectiveAccess(doc, caller('erin', 'erin@contoso.test', ['Docs.Write']))), { read: false, write: true });
});

test('another tenant gets nothing, even as the owner id; unknown scopes grant nothing', () => {
  assert.deepEqual(pick(effectiveAccess(doc, caller('alice', 'alice@contoso.test', ['Docs.Read'], 'tenant-2'))), { read: false, write: false });
  assert.deepEqual(pick(effectiveAccess(doc, caller('alice', 'alice@contoso.test', ['Tasks.ReadWrite']))), { read: false, write: false });
  assert.deepEqual(delegatedAccess(['Docs.ReadAll', 'docs.read']), []);
});

function pick(e: { read: boolean; write: boolean }) {
  return { read: e.read, write: e.write };
}

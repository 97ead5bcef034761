/**
 * The chain view's security events (signal-log.ts): each event kept per API with its subject and
 * the time it arrived, shown to the user it names (by `oid`) and to an administrator's view of
 * every user's; listeners told; the newest first, bounded.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SignalLog } from '../src/signal-log.ts';

const REVOKED = 'https://schemas.openid.net/secevent/caep/event-type/session-revoked';

test('events per API, shown to the user they name and to an administrator only', () => {
  let now = 1_000;
  const log = new SignalLog(() => now);
  let told = 0;
  log.subscribe(() => told++);
  log.receiverFor('tasks-api')({ jti: 'a', type: REVOKED, keys: ['oid:tid-1|alice-oid'], edge: 1767600001, via: 'poll' });
  now = 2_000;
  log.receiverFor('docs-api')({ jti: 'b', type: REVOKED, keys: ['sid:tid-1|session-9'], edge: 1767600002, via: 'push' });
  assert.equal(told, 2);

  const admin = log.visibleTo({ oid: 'olivia-oid', allUsers: true });
  assert.deepEqual(admin.map((e) => [e.api, e.type, e.subject, e.oid, e.receivedAt, e.via]), [
    ['docs-api', 'session-revoked', { kind: 'sid', value: 'session-9' }, undefined, 2_000, 'push'],
    ['tasks-api', 'session-revoked', { kind: 'oid', value: 'alice-oid' }, 'alice-oid', 1_000, 'poll'],
  ]);
  assert.deepEqual(log.visibleTo({ oid: 'alice-oid', allUsers: false }).map((e) => e.id), ['a']);
  assert.deepEqual(log.visibleTo({ oid: 'bob-oid', allUsers: false }), []);
  assert.deepEqual(log.visibleTo(undefined), []);
});

test('bounded: the oldest events leave first', () => {
  const log = new SignalLog();
  for (let i = 0; i < 100; i++) log.receiverFor('audit-api')({ jti: `j${i}`, type: REVOKED, keys: ['oid:t|x'], edge: i, via: 'poll' });
  const kept = log.visibleTo({ oid: 'x', allUsers: false });
  assert.equal(kept.length, 60);
  assert.equal(kept[0]!.id, 'j99');
  assert.equal(kept.at(-1)!.id, 'j40');
});

test('the last revocation pressed is kept and told', () => {
  const log = new SignalLog();
  let told = 0;
  log.subscribe(() => told++);
  assert.equal(log.lastRevoke(), undefined);
  log.revoked({ username: 'alice@contoso.test', at: 5, outcome: 'failed', text: 'The admin API answered 403' });
  assert.equal(told, 1);
  assert.equal(log.lastRevoke()?.outcome, 'failed');
});

/**
 * The chain log matches the token service's exchange decisions to the hops they enabled (by the
 * issued token's jti) and refused exchanges to the hop whose token they tried to exchange.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ExchangeAuditEvent } from '@baton/server';
import { ChainLog } from '../src/chain-log.ts';

const base = { tenant: 'contoso', tid: 't', correlationId: 'c', scopesRequested: [], form: 'on_behalf_of' as const };

function event(seq: number, fields: Partial<ExchangeAuditEvent>): ExchangeAuditEvent {
  return { seq, time: new Date().toISOString(), caller: 'tasks-api', chain: [], scopesGranted: [], decision: 'allow', rule: 'issue', ...base, ...fields } as ExchangeAuditEvent;
}

test('three hops of one trace, each with its decision; act nests; nothing but claims is kept', () => {
  const log = new ChainLog({ 'tasks-api': 'Tasks API' });
  const seen: string[] = [];
  log.subscribe((r) => seen.push(r.outcome));
  log.begin('trace1', { label: 'Attach', actor: 'Alice' });
  const t0 = Date.now();
  log.exchange(event(1, { api: 'docs-api', issuedTokenId: 'j2', subjectTokenId: 'j1', scopesGranted: ['Docs.Write'] }));
  log.exchange(event(2, { caller: 'docs-api', api: 'audit-api', issuedTokenId: 'j3', subjectTokenId: 'j2', scopesGranted: ['Audit.Write'] }));
  const claims1 = { aud: 'tasks-api', azp: 'tasks-web', scp: 'Tasks.ReadWrite', amr: ['pwd', 'mfa'], jti: 'j1', oid: 'u', extra: 'not shown' };
  const claims2 = { aud: 'docs-api', azp: 'tasks-api', scp: 'Docs.Write', jti: 'j2', act: { sub: 'tasks-api' }, may_act: { sub: 'docs-api', client_id: 'docs-api' }, cnf: { jkt: 'k2' } };
  const claims3 = { aud: 'audit-api', azp: 'docs-api', scp: 'Audit.Write', jti: 'j3', act: { sub: 'docs-api', act: { sub: 'tasks-api' } } };
  // Reports arrive innermost first (each hop reports when its response is finished).
  log.hop({ traceId: 'trace1', api: 'audit-api', method: 'POST', path: '/entries', status: 201, startedAt: t0 + 20, finishedAt: t0 + 21, claims: claims3, refusals: [] });
  log.hop({ traceId: 'trace1', api: 'docs-api', method: 'POST', path: '/documents', status: 201, startedAt: t0 + 10, finishedAt: t0 + 22, claims: claims2, refusals: [] });
  log.hop({ traceId: 'trace1', api: 'tasks-api', method: 'POST', path: '/tasks/1/documents', status: 201, startedAt: t0, finishedAt: t0 + 23, claims: claims1, refusals: [] });
  log.finish('trace1');
  const r = log.get('trace1');
  assert.ok(r);
  assert.equal(r.outcome, 'ok');
  assert.deepEqual(r.hops.map((h) => `${h.from}→${h.to}`), ['tasks-web→tasks-api', 'tasks-api→docs-api', 'docs-api→audit-api']);
  assert.deepEqual(r.hops.map((h) => h.decision?.rule), ['authorization_code', 'on_behalf_of · issue', 'on_behalf_of · issue']);
  assert.deepEqual(r.hops[2]?.token?.act, { sub: 'docs-api', act: { sub: 'tasks-api' } });
  // may_act (RFC 8693 §4.4) is shown next to cnf: who the token's API lets exchange it.
  assert.deepEqual(r.hops[1]?.token?.may_act, { sub: 'docs-api', client_id: 'docs-api' });
  assert.deepEqual(r.hops[1]?.token?.cnf, { jkt: 'k2' });
  assert.equal(r.hops[2]?.token?.may_act, undefined);
  assert.equal((r.hops[0]?.token as Record<string, unknown>).extra, undefined);
  assert.ok(seen.length >= 4);
});

test('a refused exchange becomes a red hop after the hop whose token it tried to exchange', () => {
  const log = new ChainLog();
  log.begin('trace2', { label: 'Attach', actor: 'Alice' });
  const t0 = Date.now();
  log.exchange(event(3, { decision: 'refuse', rule: 'conditional-access', api: 'docs-api', subjectTokenId: 'j9', error: 'interaction_required', entraCode: 50076, description: 'MFA' }));
  // Another trace with the same token, later: the refusal is not attributed to it twice.
  log.hop({ traceId: 'trace2', api: 'tasks-api', method: 'POST', path: '/x', status: 401, startedAt: t0 - 5, finishedAt: t0 + 5, claims: { azp: 'tasks-web', jti: 'j9', scp: 'Tasks.ReadWrite' }, refusals: [] });
  log.hop({ traceId: 'trace3', api: 'tasks-api', method: 'GET', path: '/tasks', status: 200, startedAt: t0 + 10, finishedAt: t0 + 12, claims: { azp: 'tasks-web', jti: 'j9', scp: 'Tasks.ReadWrite' }, refusals: [] });
  const r = log.get('trace2');
  assert.equal(r?.outcome, 'refused');
  assert.equal(r?.hops.length, 2);
  assert.equal(r?.hops[1]?.kind, 'exchange');
  assert.equal(r?.hops[1]?.decision?.rule, 'on_behalf_of · conditional-access');
  assert.match(r?.hops[1]?.decision?.summary ?? '', /AADSTS50076/);
  assert.equal(log.get('trace3')?.hops.length, 1);
});

test('an SDK refusal (confused deputy) is shown as a refused hop; app-only tokens say client credentials', () => {
  const log = new ChainLog();
  log.hop({
    traceId: 'trace4',
    api: 'tasks-api',
    method: 'GET',
    path: '/documents',
    status: 500,
    startedAt: Date.now(),
    finishedAt: Date.now(),
    claims: { azp: 'tasks-web', jti: 'a', scp: 'Tasks.ReadWrite', name: 'Bob' },
    refusals: [{ to: 'docs-api', by: 'sdk', rule: 'confused-deputy', description: 'appToken() was called while serving a request', as: 'app' }],
  });
  const r = log.get('trace4');
  assert.equal(r?.actor, 'Bob');
  assert.equal(r?.hops[1]?.decision?.by, 'sdk');
  assert.equal(r?.hops[1]?.outcome, 'refused');
  log.hop({ traceId: 'trace5', api: 'docs-api', method: 'GET', path: '/index/documents', status: 200, startedAt: Date.now(), finishedAt: Date.now(), claims: { azp: 'indexer', idtyp: 'app', roles: ['Docs.ReadAll'], jti: 'b' }, refusals: [] });
  assert.equal(log.get('trace5')?.kind, 'app-only');
  assert.equal(log.get('trace5')?.hops[0]?.decision?.rule, 'client_credentials');
});

/**
 * The security event transmitter (issue 17: OpenID Shared Signals Framework 1.0, CAEP and RISC
 * events as RFC 8417 SETs) against a real server on SQLite: metadata, stream management and its
 * refusals, the events admin changes become, poll delivery (RFC 8936) read by an independent jose
 * receiver, and push delivery (RFC 8935) to a real HTTP receiver with retries.
 */
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { generateKeyPair, SignJWT } from 'jose';
import { pairwiseSubject } from '@baton/core';
import { decodeJwt, startTestServer, type TestServer } from './harness.ts';
import { BOB, Browser, authorizeUrl, pkce, redeem, runFlow, webParams } from './signin-kit.ts';
import { admin, adminToken, eventually } from './admin-kit.ts';
import { JoseReceiver, pollAll, receiverToken, signalsConfigure, ssf } from './signals-kit.ts';
import { transmitterOf } from '../src/signals/transmitter.ts';

const CAEP = 'https://schemas.openid.net/secevent/caep/event-type/';
const RISC = 'https://schemas.openid.net/secevent/risc/event-type/';
const ALL_EVENTS = [`${CAEP}session-revoked`, `${CAEP}credential-change`, `${CAEP}token-claims-change`, `${RISC}account-disabled`, `${RISC}account-enabled`];

let server: TestServer;
let token: string;
let adminTok: string;

before(async () => {
  server = await startTestServer({ configure: signalsConfigure });
  token = await receiverToken(server);
  adminTok = await adminToken(server);
});
after(async () => {
  await server?.close();
});

async function newStream(body: Record<string, unknown> = {}, as = token): Promise<any> {
  const created = await ssf(server, 'POST', '/streams', as, { events_requested: ALL_EVENTS, ...body });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  return created.body;
}

/** Everything queued in a stream so far, verified by `receiver`, acknowledged. */
async function drain(stream: any, receiver: JoseReceiver, as = token) {
  await transmitterOf(server.ctx).settled();
  const verified = [];
  let ack: string[] = [];
  for (;;) {
    const page = await pollAll(server, as, stream.stream_id, { ack, maxEvents: 50 });
    ack = [];
    for (const [jti, set] of Object.entries(page.sets)) {
      const v = await receiver.accept(set);
      assert.equal(v.jti, jti, 'the poll answer is keyed by the SET’s jti');
      verified.push(v);
      ack.push(jti);
    }
    if (ack.length === 0) return verified;
  }
}

/**
 * Revokes a user's sessions. The revocation edge is whole seconds (the next one), so a second
 * revocation within one second changes nothing and is no event: each call moves the clock on.
 */
async function revokeSessions(user: string) {
  server.advance(1);
  const response = await admin(server, 'POST', `/users/${user}@contoso.test/revoke-sessions`, { token: adminTok });
  assert.equal(response.status, 200, JSON.stringify(response.body));
  return response;
}

async function aliceOid(): Promise<string> {
  return (await server.ctx.store.getUserByName('contoso', 'alice@contoso.test'))!.oid;
}

describe('metadata and access', () => {
  test('transmitter metadata at the inserted well-known path and below the issuer', async () => {
    for (const path of ['/.well-known/ssf-configuration/contoso/v2.0', '/contoso/v2.0/.well-known/ssf-configuration']) {
      const response = await fetch(`${server.url}${path}`);
      assert.equal(response.status, 200);
      const meta: any = await response.json();
      assert.equal(meta.spec_version, '1_0');
      assert.equal(meta.issuer, `${server.url}/contoso/v2.0`);
      assert.equal(meta.jwks_uri, `${server.url}/contoso/discovery/v2.0/keys`);
      assert.deepEqual(meta.delivery_methods_supported, ['urn:ietf:rfc:8935', 'urn:ietf:rfc:8936']);
      assert.equal(meta.configuration_endpoint, `${server.url}/contoso/ssf/v1/streams`);
      for (const key of ['status_endpoint', 'add_subject_endpoint', 'remove_subject_endpoint', 'verification_endpoint']) assert.match(meta[key], /^http:\/\/127\.0\.0\.1:\d+\/contoso\/ssf\/v1\//);
      assert.deepEqual(meta.authorization_schemes, [{ spec_urn: 'urn:ietf:rfc:6749' }]);
    }
    assert.equal((await fetch(`${server.url}/.well-known/ssf-configuration/nowhere/v2.0`)).status, 404);
  });

  test('no token 401; an admin token without Baton.Signals 403; a receiver token cannot use the admin API', async () => {
    const anonymous = await ssf(server, 'GET', '/streams', undefined);
    assert.equal(anonymous.status, 401);
    assert.match(anonymous.headers.get('www-authenticate') ?? '', /^Bearer /);
    const adminOnly = await ssf(server, 'GET', '/streams', adminTok);
    assert.equal(adminOnly.status, 403);
    assert.equal(adminOnly.body.title, 'The token does not carry the Baton.Signals role');
    assert.equal((await admin(server, 'GET', '/users', { token })).status, 403);
    assert.equal((await ssf(server, 'GET', '/streams', token)).status, 200);
    assert.equal((await ssf(server, 'GET', '/nothing', token)).status, 404);
  });
});

describe('stream management', () => {
  test('create, read, list, update, replace, status, delete; only the receiver that created a stream sees it', async () => {
    const stream = await newStream({ description: 'tests' });
    assert.match(stream.stream_id, /^[0-9a-f-]{36}$/);
    assert.equal(stream.iss, `${server.url}/contoso/v2.0`);
    assert.equal(stream.aud, 'receiver');
    assert.deepEqual(stream.events_delivered, ALL_EVENTS);
    assert.deepEqual(stream.delivery, { method: 'urn:ietf:rfc:8936', endpoint_url: `${server.url}/contoso/ssf/v1/poll/${stream.stream_id}` });
    assert.deepEqual((await ssf(server, 'GET', `/streams?stream_id=${stream.stream_id}`, token)).body, stream);
    assert.ok((await ssf(server, 'GET', '/streams', token)).body.some((s: any) => s.stream_id === stream.stream_id));
    // Unsupported event types are not delivered (SSF §8.1.1: events_delivered ⊆ supported ∩ requested).
    const patched = await ssf(server, 'PATCH', '/streams', token, { stream_id: stream.stream_id, events_requested: [`${CAEP}session-revoked`, 'urn:example:unknown'] });
    assert.equal(patched.status, 200, JSON.stringify(patched.body));
    assert.deepEqual(patched.body.events_delivered, [`${CAEP}session-revoked`]);
    assert.equal(patched.body.description, 'tests');
    const replaced = await ssf(server, 'PUT', '/streams', token, { ...patched.body, description: undefined, events_requested: ALL_EVENTS });
    assert.equal(replaced.status, 200, JSON.stringify(replaced.body));
    assert.equal(replaced.body.description, undefined);
    assert.deepEqual((await ssf(server, 'GET', `/streams/status?stream_id=${stream.stream_id}`, token)).body, { stream_id: stream.stream_id, status: 'enabled' });
    const paused = await ssf(server, 'POST', '/streams/status', token, { stream_id: stream.stream_id, status: 'paused', reason: 'maintenance' });
    assert.deepEqual(paused.body, { stream_id: stream.stream_id, status: 'paused', reason: 'maintenance' });
    // Another receiver: the stream does not exist for it.
    const other = await receiverToken(server, 'other-receiver');
    assert.equal((await ssf(server, 'GET', `/streams?stream_id=${stream.stream_id}`, other)).status, 404);
    assert.equal((await ssf(server, 'DELETE', `/streams?stream_id=${stream.stream_id}`, other)).status, 404);
    assert.equal((await ssf(server, 'POST', `/poll/${stream.stream_id}`, other, {})).status, 404);
    assert.ok(!(await ssf(server, 'GET', '/streams', other)).body.some((s: any) => s.stream_id === stream.stream_id));
    assert.equal((await ssf(server, 'DELETE', `/streams?stream_id=${stream.stream_id}`, token)).status, 204);
    assert.equal((await ssf(server, 'GET', `/streams?stream_id=${stream.stream_id}`, token)).status, 404);
  });

  test('bad bodies are 400 problem+json and create nothing', async () => {
    const before = (await ssf(server, 'GET', '/streams', token)).body.length;
    const cases: unknown[] = [
      { unknown_field: 1 },
      { events_requested: 'not-a-list' },
      { delivery: { method: 'urn:ietf:rfc:8935' } },
      { delivery: { method: 'urn:ietf:rfc:8935', endpoint_url: 'http://receiver.example/events' } },
      { delivery: { method: 'urn:ietf:rfc:8935', endpoint_url: 'https://user:pw@receiver.example/events' } },
      { delivery: { method: 'urn:ietf:rfc:8935', endpoint_url: 'not a url' } },
      { delivery: { method: 'urn:example:carrier-pigeon' } },
      { delivery: { method: 'urn:ietf:rfc:8936', authorization_header: 'Bearer x' } },
      { subject_format: 'phone_number' },
      '{"events_requested": [',
      '[]',
    ];
    for (const body of cases) {
      const response = await ssf(server, 'POST', '/streams', token, body);
      assert.equal(response.status, 400, `${JSON.stringify(body)} → ${JSON.stringify(response.body)}`);
      assert.match(response.headers.get('content-type') ?? '', /^application\/problem\+json/);
    }
    assert.equal((await ssf(server, 'GET', '/streams', token)).body.length, before);
    assert.equal((await ssf(server, 'POST', '/poll/not-a-stream', token, {})).status, 404);
    const stream = await newStream();
    for (const body of [{ maxEvents: -1 }, { ack: 'x' }, { returnImmediately: 'yes' }, { setErrs: { x: { nope: 1 } } }]) {
      assert.equal((await ssf(server, 'POST', `/poll/${stream.stream_id}`, token, body)).status, 400, JSON.stringify(body));
    }
  });
});

describe('events by poll (RFC 8936), read by an independent jose receiver', () => {
  test('admin changes become CAEP and RISC SETs signed with the tenant key, about the right subject', async () => {
    const stream = await newStream();
    const receiver = new JoseReceiver(server, 'receiver');
    const oid = await aliceOid();
    const { tid } = (await server.ctx.directories.get('contoso'))!.tenant;
    const pairwise = pairwiseSubject(server.ctx.pairwiseKey, tid, oid, 'receiver');

    const revoked = await revokeSessions('alice');
    assert.equal(revoked.status, 200);
    let sets = await drain(stream, receiver);
    assert.equal(sets.length, 1);
    const [sessionRevoked] = sets;
    assert.equal(sessionRevoked!.type, `${CAEP}session-revoked`);
    assert.deepEqual(sessionRevoked!.payload.sub_id, { format: 'complex', user: { format: 'iss_sub', iss: `${server.url}/contoso/v2.0`, sub: pairwise }, tenant: { format: 'opaque', id: tid } });
    assert.equal(sessionRevoked!.event.event_timestamp, Date.parse(revoked.body.sessionsRevokedBefore) / 1000);
    assert.equal(sessionRevoked!.event.initiating_entity, 'admin');
    assert.equal(sessionRevoked!.payload.aud, 'receiver');
    assert.equal(typeof sessionRevoked!.payload.txn, 'string');
    assert.equal(sessionRevoked!.payload.sub, undefined);

    // Disable, enable: session-revoked + account-disabled, then account-enabled.
    await admin(server, 'POST', '/users/bob@contoso.test/disable', { token: adminTok });
    await admin(server, 'POST', '/users/bob@contoso.test/enable', { token: adminTok });
    sets = await drain(stream, receiver);
    assert.deepEqual(sets.map((s) => s.type), [`${CAEP}session-revoked`, `${RISC}account-disabled`, `${RISC}account-enabled`]);
    assert.equal(sets[0]!.event.event_timestamp, sets[1]!.event.event_timestamp + 1, 'the disable voids everything issued up to its second');

    // Password and MFA: credential-change (the records never show them; the change log says which).
    const read = await admin(server, 'GET', '/users/alice@contoso.test', { token: adminTok });
    await admin(server, 'PATCH', '/users/alice@contoso.test', { token: adminTok, body: { password: 'alice-New-pass-2' }, headers: { 'if-match': read.headers.get('etag')! } });
    await admin(server, 'POST', '/users/alice@contoso.test/reset-mfa', { token: adminTok, body: { totpSecret: 'KRSXG5CTMVRXEZLU' } });
    await admin(server, 'POST', '/users/alice@contoso.test/reset-mfa', { token: adminTok });
    sets = await drain(stream, receiver);
    assert.deepEqual(
      sets.map((s) => [s.type, s.event.credential_type, s.event.change_type]),
      [
        [`${CAEP}credential-change`, 'password', 'update'],
        [`${CAEP}credential-change`, 'app', 'update'],
        [`${CAEP}credential-change`, 'app', 'delete'],
      ],
    );
    // A display name change is no security event.
    const again = await admin(server, 'GET', '/users/alice@contoso.test', { token: adminTok });
    await admin(server, 'PATCH', '/users/alice@contoso.test', { token: adminTok, body: { displayName: 'Alice E.' }, headers: { 'if-match': again.headers.get('etag')! } });
    assert.deepEqual(await drain(stream, receiver), []);
  });

  test('a consent or an app role taken from a user: token-claims-change; a secret revoked: credential-change about the application', async () => {
    const stream = await newStream({ subject_format: 'opaque' });
    const receiver = new JoseReceiver(server, 'receiver');
    const oid = await aliceOid();
    const granted = await admin(server, 'POST', '/consents', { token: adminTok, body: { client: 'tasks-api', resource: 'api://docs', scopes: ['Docs.Read', 'Docs.Write'], for: 'alice@contoso.test' } });
    assert.ok(granted.status === 200 || granted.status === 201, JSON.stringify(granted.body));
    const etag = granted.headers.get('etag')!;
    assert.equal((await admin(server, 'DELETE', `/consents/${granted.body.id}?scope=Docs.Write`, { token: adminTok, headers: { 'if-match': etag } })).status, 204);
    let sets = await drain(stream, receiver);
    assert.equal(sets.length, 1);
    assert.equal(sets[0]!.type, `${CAEP}token-claims-change`);
    assert.deepEqual(sets[0]!.payload.sub_id.user, { format: 'opaque', id: oid });
    assert.equal(sets[0]!.event.claims.azp, 'tasks-api');
    assert.equal(sets[0]!.event.claims.scp, 'Docs.Read');

    const assigned = await admin(server, 'POST', '/role-assignments', { token: adminTok, body: { user: 'alice@contoso.test', resource: 'api://docs', roles: ['Docs.Editor'] } });
    assert.equal(assigned.status, 201, JSON.stringify(assigned.body));
    assert.deepEqual(await drain(stream, receiver), [], 'a role given is no event');
    assert.equal((await admin(server, 'DELETE', `/role-assignments/${assigned.body.id}`, { token: adminTok, headers: { 'if-match': '*' } })).status, 204);
    sets = await drain(stream, receiver);
    assert.deepEqual(sets.map((s) => [s.type, s.event.claims.aud, s.event.claims.roles]), [[`${CAEP}token-claims-change`, 'docs-api', []]]);

    const added = await admin(server, 'POST', '/applications/indexer/secrets', { token: adminTok });
    const app = await admin(server, 'GET', '/applications/indexer', { token: adminTok });
    assert.equal((await admin(server, 'DELETE', `/applications/indexer/secrets/${added.body.id}`, { token: adminTok, headers: { 'if-match': app.headers.get('etag')! } })).status, 204);
    sets = await drain(stream, receiver);
    assert.deepEqual(sets.map((s) => [s.type, s.payload.sub_id.application, s.event.credential_type, s.event.change_type]), [
      [`${CAEP}credential-change`, { format: 'opaque', id: 'indexer' }, 'password', 'revoke'],
    ]);
  });

  test('a policy that asks more of sessions: assurance-level-change about the users it names, or about the tenant; loosening it is no event', async () => {
    const stream = await newStream({ subject_format: 'opaque', events_requested: [`${CAEP}assurance-level-change`] });
    const receiver = new JoseReceiver(server, 'receiver');
    const oid = await aliceOid();
    const put = (name: string, body: unknown, etag?: string) =>
      admin(server, 'PUT', `/policies/${encodeURIComponent(name)}`, { token: adminTok, body, ...(etag ? { headers: { 'if-match': etag } } : {}) });
    const mfa = await put('Audit needs MFA', { resources: ['api://audit'], users: ['alice@contoso.test'], require: { mfa: true } });
    assert.equal(mfa.status, 201, JSON.stringify(mfa.body));
    let sets = await drain(stream, receiver);
    assert.deepEqual(
      sets.map((s) => [s.type, s.payload.sub_id.user, s.event.namespace, s.event.previous_level, s.event.current_level, s.event.change_direction, s.event.initiating_entity]),
      [[`${CAEP}assurance-level-change`, { format: 'opaque', id: oid }, 'RFC8176', 'pwd', 'mfa', 'increase', 'admin']],
    );
    const fresh = await put('Audit needs a fresh sign-in', { resources: ['api://audit'], require: { maxAuthAgeSeconds: 3600 } });
    assert.equal(fresh.status, 201, JSON.stringify(fresh.body));
    sets = await drain(stream, receiver);
    assert.equal(sets.length, 1);
    const tenantOnly = await server.ctx.directories.get('contoso');
    assert.deepEqual(sets[0]!.payload.sub_id, { format: 'complex', tenant: { format: 'opaque', id: tenantOnly!.tenant.tid } }, 'no user named: the tenant');
    assert.deepEqual([sets[0]!.event.namespace, sets[0]!.event.current_level], ['urn:baton:conditional-access', 'freshness']);
    // Shorter: more sessions fall short, an event; longer, or the policy deleted: none.
    const shorter = await put('Audit needs a fresh sign-in', { resources: ['api://audit'], require: { maxAuthAgeSeconds: 600 } }, fresh.headers.get('etag')!);
    assert.equal(shorter.status, 200, JSON.stringify(shorter.body));
    assert.equal((await drain(stream, receiver)).length, 1);
    const longer = await put('Audit needs a fresh sign-in', { resources: ['api://audit'], require: { maxAuthAgeSeconds: 7200 } }, shorter.headers.get('etag')!);
    assert.equal(longer.status, 200, JSON.stringify(longer.body));
    assert.deepEqual(await drain(stream, receiver), [], 'a looser policy is no event');
    assert.equal((await admin(server, 'DELETE', `/policies/${encodeURIComponent('Audit needs a fresh sign-in')}`, { token: adminTok, headers: { 'if-match': longer.headers.get('etag')! } })).status, 204);
    assert.equal((await admin(server, 'DELETE', `/policies/${encodeURIComponent('Audit needs MFA')}`, { token: adminTok, headers: { 'if-match': mfa.headers.get('etag')! } })).status, 204);
    assert.deepEqual(await drain(stream, receiver), [], 'a deleted policy is no event');
  });

  test('nothing lost across a receiver restart: unacknowledged SETs come again; acknowledged ones never; maxEvents pages', async () => {
    const stream = await newStream();
    for (const user of ['alice', 'bob', 'carol']) await revokeSessions(user);
    await transmitterOf(server.ctx).settled();
    const first = await pollAll(server, token, stream.stream_id, { maxEvents: 2 });
    assert.equal(Object.keys(first.sets).length, 2);
    assert.equal(first.moreAvailable, true);
    // The receiver "crashes" before acknowledging: a new one polls and gets them again.
    const restarted = new JoseReceiver(server, 'receiver');
    const again = await pollAll(server, token, stream.stream_id, { maxEvents: 10 });
    assert.deepEqual(Object.keys(again.sets).slice(0, 2), Object.keys(first.sets));
    assert.equal(Object.keys(again.sets).length, 3);
    for (const set of Object.values(again.sets)) await restarted.accept(set);
    // Acknowledged (one as an error, RFC 8936 setErrs): gone for good.
    const [a, b, c] = Object.keys(again.sets);
    const acked = await ssf(server, 'POST', `/poll/${stream.stream_id}`, token, { ack: [a, b], setErrs: { [c!]: { err: 'invalid_key', description: 'test' } }, returnImmediately: true });
    assert.deepEqual(acked.body, { sets: {}, moreAvailable: false });
    // The restarted receiver refuses a replay of a SET it already took.
    await assert.rejects(restarted.accept(again.sets[a!]!), /replayed/);
  });

  test('a long poll answers as soon as an event is queued; a paused stream holds its SETs until enabled', async () => {
    const stream = await newStream();
    const started = Date.now();
    const waiting = ssf(server, 'POST', `/poll/${stream.stream_id}`, token, {});
    await new Promise((r) => setTimeout(r, 200));
    await revokeSessions('carol');
    const answer = await waiting;
    assert.equal(answer.status, 200);
    assert.equal(Object.keys(answer.body.sets).length, 1);
    assert.ok(Date.now() - started < 9000, 'answered by the event, not the long-poll timeout');
    await ssf(server, 'POST', `/poll/${stream.stream_id}`, token, { ack: Object.keys(answer.body.sets), returnImmediately: true });

    await ssf(server, 'POST', '/streams/status', token, { stream_id: stream.stream_id, status: 'paused' });
    await revokeSessions('carol');
    await transmitterOf(server.ctx).settled();
    assert.deepEqual((await pollAll(server, token, stream.stream_id)).sets, {});
    await ssf(server, 'POST', '/streams/status', token, { stream_id: stream.stream_id, status: 'enabled' });
    assert.equal(Object.keys((await pollAll(server, token, stream.stream_id)).sets).length, 1);
    // Disabled: no event is queued at all.
    await ssf(server, 'POST', '/streams/status', token, { stream_id: stream.stream_id, status: 'disabled' });
    await revokeSessions('carol');
    await ssf(server, 'POST', '/streams/status', token, { stream_id: stream.stream_id, status: 'enabled' });
    assert.equal(Object.keys((await pollAll(server, token, stream.stream_id)).sets).length, 1);
  });

  test('a removed subject gets no events until added again; the email format names the user by email', async () => {
    const stream = await newStream({ subject_format: 'email' });
    const receiver = new JoseReceiver(server, 'receiver');
    await revokeSessions('alice');
    await revokeSessions('bob');
    const [set, bobs] = await drain(stream, receiver);
    const user = set!.payload.sub_id.user;
    assert.deepEqual(user, { format: 'email', email: 'alice@contoso.example' });
    assert.equal(bobs!.payload.sub_id.user.format, 'iss_sub', 'a user without an email is named by iss_sub');
    assert.equal((await ssf(server, 'POST', '/subjects/remove', token, { stream_id: stream.stream_id, subject: user })).status, 204);
    await revokeSessions('alice');
    await revokeSessions('bob');
    const sets = await drain(stream, receiver);
    assert.equal(sets.length, 1, 'only bob');
    assert.notDeepEqual(sets[0]!.payload.sub_id.user, user);
    assert.equal((await ssf(server, 'POST', '/subjects/add', token, { stream_id: stream.stream_id, subject: user, verified: true })).status, 200);
    await revokeSessions('alice');
    assert.equal((await drain(stream, receiver)).length, 1);
    assert.equal((await ssf(server, 'POST', '/subjects/remove', token, { stream_id: stream.stream_id, subject: { no_format: true } })).status, 400);
  });

  test('forged, other-audience and replayed SETs are refused by the receiver; the verification event echoes state', async () => {
    const mine = await newStream();
    const other = await receiverToken(server, 'other-receiver');
    const theirs = await newStream({}, other);
    await revokeSessions('bob');
    await transmitterOf(server.ctx).settled();
    const receiver = new JoseReceiver(server, 'receiver');
    // Another receiver's SET (aud other-receiver), correctly signed: refused for its audience.
    const foreign = Object.values((await pollAll(server, other, theirs.stream_id)).sets)[0]!;
    await assert.rejects(receiver.accept(foreign), /aud/);
    // A SET made by someone else with the same claims: refused for its signature.
    const genuine = Object.values((await pollAll(server, token, mine.stream_id)).sets)[0]!;
    const claims = JSON.parse(Buffer.from(genuine.split('.')[1]!, 'base64url').toString());
    const header = JSON.parse(Buffer.from(genuine.split('.')[0]!, 'base64url').toString());
    const { privateKey } = await generateKeyPair('ES256');
    const forged = await new SignJWT(claims).setProtectedHeader(header).sign(privateKey);
    await assert.rejects(receiver.accept(forged), /signature/);
    const [genuineJti] = Object.keys((await pollAll(server, token, mine.stream_id)).sets);
    await receiver.accept(genuine);
    await assert.rejects(receiver.accept(genuine), /replayed/);
    await pollAll(server, token, mine.stream_id, { ack: [genuineJti!] });

    assert.equal((await ssf(server, 'POST', '/verify', token, { stream_id: mine.stream_id, state: 'state-123' })).status, 204);
    const sets = await drain(mine, receiver);
    const verification = sets.find((s) => s.type === 'https://schemas.openid.net/secevent/ssf/event-type/verification');
    assert.deepEqual(verification?.event, { state: 'state-123' });
    assert.deepEqual(verification?.payload.sub_id, { format: 'opaque', id: mine.stream_id });
  });
});

describe('events by push (RFC 8935)', () => {
  let receiverServer: Server;
  let endpoint: string;
  const received: { set: string; authorization: string | undefined; type: string | undefined }[] = [];
  /** Status codes to answer, in order; then 202. */
  const plan: number[] = [];

  before(async () => {
    receiverServer = createServer((request: IncomingMessage, response) => {
      let body = '';
      request.on('data', (chunk) => (body += chunk));
      request.on('end', () => {
        const status = plan.shift() ?? 202;
        received.push({ set: body, authorization: request.headers.authorization, type: request.headers['content-type'] });
        if (status === 400) {
          response.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ err: 'invalid_audience', description: 'not for me' }));
        } else {
          response.writeHead(status).end();
        }
      });
    });
    await new Promise<void>((resolve) => receiverServer.listen(0, '127.0.0.1', resolve));
    endpoint = `http://127.0.0.1:${(receiverServer.address() as { port: number }).port}/events`;
  });
  after(async () => {
    await new Promise((resolve) => receiverServer?.close(resolve));
  });

  test('a SET is pushed with the configured Authorization; refused twice with 503, it is retried with backoff and delivered once', async () => {
    const stream = await newStream({ delivery: { method: 'urn:ietf:rfc:8935', endpoint_url: endpoint, authorization_header: 'Bearer receiver-push-secret' } });
    assert.deepEqual(stream.delivery, { method: 'urn:ietf:rfc:8935', endpoint_url: endpoint });
    received.length = 0;
    plan.push(503, 503);
    await revokeSessions('alice');
    await eventually(async () => received.length >= 3, 'three push attempts (503, 503, 202)', 20_000);
    const receiver = new JoseReceiver(server, 'receiver');
    const verified = await receiver.accept(received[2]!.set);
    assert.equal(verified.type, `${CAEP}session-revoked`);
    assert.equal(received[0]!.set, received[2]!.set, 'the same SET each time');
    assert.equal(received[2]!.authorization, 'Bearer receiver-push-secret');
    assert.equal(received[2]!.type, 'application/secevent+jwt');
    // Delivered: never pushed again; nothing left in the store.
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(received.length, 3);
    assert.deepEqual((await server.ctx.store.claimPushSets(server.ctx.now() + 3600, server.ctx.now() + 3601, 10)).filter((s) => s.streamId === stream.stream_id), []);
    // A push stream cannot be polled.
    assert.equal((await ssf(server, 'POST', `/poll/${stream.stream_id}`, token, {})).status, 409);
    await ssf(server, 'DELETE', `/streams?stream_id=${stream.stream_id}`, token);
  });

  test('a SET the receiver refuses with an RFC 8935 error (400) is dropped, not retried; the verification event is pushed', async () => {
    const stream = await newStream({ delivery: { method: 'urn:ietf:rfc:8935', endpoint_url: endpoint } });
    received.length = 0;
    plan.push(400);
    await revokeSessions('bob');
    await eventually(async () => received.length >= 1, 'the push', 10_000);
    await new Promise((r) => setTimeout(r, 2500));
    assert.equal(received.length, 1, 'not retried');
    assert.equal((await ssf(server, 'POST', '/verify', token, { stream_id: stream.stream_id, state: 'pushed' })).status, 204);
    await eventually(async () => received.length >= 2, 'the verification push', 10_000);
    const verified = await new JoseReceiver(server, 'receiver').accept(received[1]!.set);
    assert.deepEqual(verified.event, { state: 'pushed' });
    await ssf(server, 'DELETE', `/streams?stream_id=${stream.stream_id}`, token);
  });
});

describe('sign-out', () => {
  test("a sign-out is session-revoked about that session: the sid every token of the sign-in carries", async () => {
    // Sign-in cookies are __Host- cookies: this flow needs TLS.
    const tlsServer = await startTestServer({ tls: 'dev', configure: signalsConfigure });
    try {
      const receiverTok = await receiverToken(tlsServer);
      const created = await ssf(tlsServer, 'POST', '/streams', receiverTok, { events_requested: ALL_EVENTS });
      assert.equal(created.status, 201);
      const browser = new Browser();
      const { verifier, challenge } = pkce();
      const flow = await runFlow(browser, tlsServer, authorizeUrl(tlsServer, webParams(challenge)), { user: BOB });
      assert.ok(flow.params?.code, flow.seen.join());
      const tokens = await redeem(tlsServer, flow.params.code, verifier);
      assert.equal(tokens.status, 200, JSON.stringify(tokens.body));
      const { sid, iat } = decodeJwt(tokens.body.access_token).payload;
      assert.equal(typeof sid, 'string');
      const logout = await browser.get(`${tlsServer.url}/contoso/oauth2/v2.0/logout?id_token_hint=${tokens.body.id_token}`);
      assert.ok(logout.status < 400, String(logout.status));
      await transmitterOf(tlsServer.ctx).settled();
      const sets = Object.values((await pollAll(tlsServer, receiverTok, created.body.stream_id)).sets);
      assert.equal(sets.length, 1);
      const verified = await new JoseReceiver(tlsServer, 'receiver').accept(sets[0]!);
      assert.equal(verified.type, `${CAEP}session-revoked`);
      assert.deepEqual(verified.payload.sub_id.session, { format: 'opaque', id: sid });
      assert.equal(verified.event.initiating_entity, 'user');
      assert.ok(verified.event.event_timestamp > iat, 'the tokens of that sign-in predate it');
    } finally {
      await tlsServer.close();
    }
  });
});

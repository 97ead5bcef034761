import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ACR_MFA,
  decideSignIn,
  parseAuthorizeRequest,
  parseClaimsRequest,
  planConsent,
  s256Challenge,
  type Authentication,
  type AuthorizeRequest,
  type SignInInput,
} from '../src/index.ts';
import { buildFixture, NOW, assertOAuthError, type Fixture } from './fixtures.ts';

const CHALLENGE = s256Challenge('v'.repeat(43));

function request(fx: Fixture, extra: Record<string, string> = {}): AuthorizeRequest {
  const result = parseAuthorizeRequest(fx.directory, {
    client_id: 'tasks-web',
    redirect_uri: 'http://127.0.0.1:7000/callback',
    response_type: 'code',
    scope: 'openid api://tasks/Tasks.ReadWrite',
    code_challenge: CHALLENGE,
    code_challenge_method: 'S256',
    ...extra,
  });
  assert.ok(result.ok);
  return result.request;
}

function input(fx: Fixture, options: { extra?: Record<string, string>; auth?: Partial<Authentication> | null; username?: string; accountSelected?: boolean; consentAccepted?: boolean; ip?: string } = {}): SignInInput {
  const req = request(fx, options.extra);
  const user = fx.user(options.username ?? 'alice@contoso.test');
  const auth: Authentication | undefined = options.auth === null ? undefined : { oid: user.oid, authTime: NOW - 600, amr: ['pwd'], fresh: false, ...options.auth };
  const api = fx.app(req.resource!.api);
  return {
    request: req,
    demands: req.claims === undefined ? undefined : parseClaimsRequest(req.claims),
    auth,
    user: auth === undefined ? undefined : user,
    accountSelected: options.accountSelected ?? false,
    consentAccepted: options.consentAccepted ?? false,
    consent: planConsent({ directory: fx.directory, client: fx.app('tasks-web'), api, scopes: req.resource!.scopes, isDefault: false, userOid: user.oid, userConsents: fx.userConsents(user.username) }),
    policies: fx.directory.policiesFor(api.clientId),
    ip: options.ip,
    now: NOW,
  };
}

test('an SSO session that satisfies everything: done', () => {
  const fx = buildFixture();
  assert.deepEqual(decideSignIn(input(fx)), { step: 'done', scopes: ['Tasks.ReadWrite'] });
});

test('no session → login; prompt=none → login_required', () => {
  const fx = buildFixture();
  assert.deepEqual(decideSignIn(input(fx, { auth: null })), { step: 'login', reason: 'no_session' });
  const silent = decideSignIn(input(fx, { auth: null, extra: { prompt: 'none' } }));
  assert.equal(silent.step, 'error');
  assertOAuthError(silent.step === 'error' ? silent.error : undefined, { error: 'login_required', entraCodes: [50058] });
});

test('prompt=login, max_age, login_hint and a claims nbf force a fresh password, which then satisfies them', () => {
  const fx = buildFixture();
  assert.deepEqual(decideSignIn(input(fx, { extra: { prompt: 'login' } })), { step: 'login', reason: 'prompt' });
  assert.deepEqual(decideSignIn(input(fx, { extra: { max_age: '300' } })), { step: 'login', reason: 'max_age' });
  assert.equal(decideSignIn(input(fx, { extra: { max_age: '3600' } })).step, 'done');
  assert.deepEqual(decideSignIn(input(fx, { extra: { login_hint: 'bob@contoso.test' } })), { step: 'login', reason: 'login_hint' });
  assert.deepEqual(decideSignIn(input(fx, { extra: { claims: JSON.stringify({ access_token: { nbf: { essential: true, value: String(NOW) } } }) } })), { step: 'login', reason: 'claims' });
  const extras: Record<string, string>[] = [{ prompt: 'login' }, { max_age: '0' }, { claims: JSON.stringify({ access_token: { nbf: { essential: true, value: String(NOW + 5) } } }) }];
  for (const extra of extras) {
    assert.equal(decideSignIn(input(fx, { extra, auth: { fresh: true, authTime: NOW } })).step, 'done', JSON.stringify(extra));
  }
});

test('a disabled user, or one whose sessions were revoked, must sign in again', () => {
  const fx = buildFixture();
  const disabled = { ...input(fx) };
  disabled.user = { ...disabled.user!, enabled: false };
  assert.deepEqual(decideSignIn(disabled), { step: 'login', reason: 'user' });
  const revoked = { ...input(fx) };
  revoked.user = { ...revoked.user!, revokedBefore: NOW - 1 };
  assert.deepEqual(decideSignIn(revoked), { step: 'login', reason: 'user' });
});

test('MFA: claims challenge (amr or acrs), acr_values, conditional access; prompt=none → interaction_required', () => {
  const fx = buildFixture((c) => {
    c.tenants[0]!.policies.push({ name: 'MFA for tasks', resources: ['api://tasks'], require: { mfa: true } });
  });
  assert.deepEqual(decideSignIn(input(fx)), { step: 'mfa', reason: 'policy' });
  assert.equal(decideSignIn(input(fx, { auth: { amr: ['pwd', 'mfa'] } })).step, 'done');
  const plain = buildFixture();
  assert.deepEqual(decideSignIn(input(plain, { extra: { claims: '{"access_token":{"amr":{"essential":true,"values":["mfa"]}}}' } })), { step: 'mfa', reason: 'claims' });
  assert.deepEqual(decideSignIn(input(plain, { extra: { claims: '{"access_token":{"acrs":{"essential":true,"value":"c1"}}}' } })), { step: 'mfa', reason: 'claims' });
  assert.deepEqual(decideSignIn(input(plain, { extra: { acr_values: ACR_MFA } })), { step: 'mfa', reason: 'acr_values' });
  assert.equal(decideSignIn(input(plain, { extra: { acr_values: `${ACR_MFA} 1` } })).step, 'done', 'any listed acr satisfies');
  const silent = decideSignIn(input(fx, { extra: { prompt: 'none' } }));
  assertOAuthError(silent.step === 'error' ? silent.error : undefined, { error: 'interaction_required', entraCodes: [50076] });
});

test('MFA demanded of a user with no second factor: access_denied 50079', () => {
  const fx = buildFixture();
  const step = decideSignIn(input(fx, { username: 'bob@contoso.test', extra: { acr_values: ACR_MFA } }));
  assertOAuthError(step.step === 'error' ? step.error : undefined, { error: 'access_denied', entraCodes: [50079] });
});

test('a blocking or IP policy refuses with 53003', () => {
  const fx = buildFixture((c) => {
    c.tenants[0]!.policies.push({ name: 'Office only', resources: ['api://tasks'], require: { ipRanges: ['10.0.0.0/8'] } });
  });
  const outside = decideSignIn(input(fx, { ip: '203.0.113.9' }));
  assertOAuthError(outside.step === 'error' ? outside.error : undefined, { error: 'access_denied', entraCodes: [53003] });
  assert.equal(decideSignIn(input(fx, { ip: '10.1.2.3' })).step, 'done');
});

test('a sign-in frequency policy asks for a new password', () => {
  const fx = buildFixture((c) => {
    c.tenants[0]!.policies.push({ name: 'Recent sign-in', resources: ['api://tasks'], require: { maxAuthAgeSeconds: 300 } });
  });
  assert.deepEqual(decideSignIn(input(fx)), { step: 'login', reason: 'policy' });
  assert.equal(decideSignIn(input(fx, { auth: { authTime: NOW - 10 } })).step, 'done');
});

test('consent: missing user-consentable scopes → consent; admin-only → admin_required (or consent as admin); prompt=consent shows it once', () => {
  const fx = buildFixture((c) => {
    c.tenants[0]!.consents = [];
  });
  const step = decideSignIn(input(fx));
  assert.equal(step.step, 'consent');
  assert.ok(step.step === 'consent' && !step.asAdmin);
  const silent = decideSignIn(input(fx, { extra: { prompt: 'none' } }));
  assertOAuthError(silent.step === 'error' ? silent.error : undefined, { error: 'consent_required', entraCodes: [65001] });

  const admin = buildFixture((c) => {
    c.tenants[0]!.consents = [];
    c.tenants[0]!.applications.find((a) => a.clientId === 'tasks-web')!.requiredAccess = [{ resource: 'api://docs', scopes: ['Docs.Write'] }];
  });
  const req = input(admin, { extra: { scope: 'openid api://docs/Docs.Write' } });
  req.consent = planConsent({ directory: admin.directory, client: admin.app('tasks-web'), api: admin.app('docs-api'), scopes: ['Docs.Write'], isDefault: false, userOid: req.user!.oid, userConsents: [] });
  req.policies = [];
  assert.equal(decideSignIn(req).step, 'admin_required');
  req.user = { ...req.user!, directoryRoles: ['admin'] };
  const asAdmin = decideSignIn(req);
  assert.ok(asAdmin.step === 'consent' && asAdmin.asAdmin);

  const granted = buildFixture();
  assert.equal(decideSignIn(input(granted, { extra: { prompt: 'consent' } })).step, 'consent');
  assert.equal(decideSignIn(input(granted, { extra: { prompt: 'consent' }, consentAccepted: true })).step, 'done');
});

test('prompt=select_account shows the picker once for an existing session, not after a fresh sign-in', () => {
  const fx = buildFixture();
  assert.deepEqual(decideSignIn(input(fx, { extra: { prompt: 'select_account' } })), { step: 'select_account' });
  assert.equal(decideSignIn(input(fx, { extra: { prompt: 'select_account' }, accountSelected: true })).step, 'done');
  assert.deepEqual(decideSignIn(input(fx, { extra: { prompt: 'select_account' }, auth: null })), { step: 'login', reason: 'no_session' });
});

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  ACR_MFA,
  adminConsentUrl,
  buildAppOnlyClaims,
  decideExchange,
  Entra,
  EXCHANGE_RULES,
  pairwiseSubject,
  type AppRoleAssignment,
  type Decision,
  type ExchangeInput,
  type ExchangeRule,
  type ExchangeAllowed,
  type ExchangeRefused,
} from '../src/index.ts';
import {
  actorChain,
  assertion,
  assertOAuthError,
  BASE_URL,
  buildFixture,
  ISSUER,
  LIFETIME,
  NOW,
  PAIRWISE_SECRET,
  sequentialIds,
  type ExpectedOAuthError,
  type Fixture,
} from './fixtures.ts';

const fx = buildFixture();
const alice = fx.user('alice@contoso.test');
const bob = fx.user('bob@contoso.test');
const tid = fx.tenant.tid;
const MFA_CLAIMS = '{"access_token":{"amr":{"essential":true,"values":["mfa"]}}}';

/** Alice's token for tasks-api, as tasks-web received it after a password sign-in. */
const tasksToken = (over: Partial<Parameters<typeof assertion>[1]> = {}, f: Fixture = fx) =>
  assertion(f, { client: 'tasks-web', api: 'tasks-api', scopes: ['Tasks.ReadWrite'], ...over });

type Over = Partial<Omit<ExchangeInput, 'options'>> & { options?: Partial<ExchangeInput['options']> };

function exchange(over: Over = {}, now = NOW, f: Fixture = fx): Decision {
  const { options, ...rest } = over;
  const input: ExchangeInput = {
    form: 'on_behalf_of',
    directory: f.directory,
    caller: f.app('tasks-api'),
    assertion: tasksToken({}, f),
    user: alice,
    userConsents: f.userConsents('alice@contoso.test'),
    scope: 'api://docs/Docs.Read',
    ...rest,
    options: { issuer: ISSUER, baseUrl: BASE_URL, pairwiseSecret: PAIRWISE_SECRET, newId: sequentialIds(), ...options },
  };
  return decideExchange(input, now);
}

function allowed(decision: Decision): ExchangeAllowed {
  if (!decision.ok) assert.fail(`expected allow, refused by ${decision.rule}: ${decision.error.error} ${decision.error.description}`);
  assert.equal(decision.outcome, 'allow');
  assert.equal(decision.rule, 'issue');
  assert.deepEqual(decision.trail.map((t) => t.rule), EXCHANGE_RULES);
  assert.ok(decision.trail.every((t) => t.outcome !== 'refuse'));
  return decision;
}

/** Asserts a refusal by `rule`, with the exact error; every earlier rule passed (or skipped). */
function refused(decision: Decision, rule: ExchangeRule, expected: ExpectedOAuthError): ExchangeRefused {
  if (decision.ok) assert.fail(`expected refusal by ${rule}, got allow`);
  assert.equal(decision.outcome, 'refuse');
  assert.equal(decision.rule, rule, `refused by ${decision.rule}: ${decision.error.description}`);
  const index = EXCHANGE_RULES.indexOf(rule);
  assert.deepEqual(decision.trail.map((t) => t.rule), EXCHANGE_RULES.slice(0, index + 1));
  assert.ok(decision.trail.slice(0, -1).every((t) => t.outcome === 'pass' || t.outcome === 'skip'));
  assert.deepEqual(decision.trail.at(-1), { rule, outcome: 'refuse' });
  assertOAuthError(decision.error, expected);
  return decision;
}

const grantError = (entra: number, description?: RegExp | RegExp[]): ExpectedOAuthError => ({ error: 'invalid_grant', entraCodes: [entra], ...(description ? { description } : {}) });

describe('decideExchange — happy paths', () => {
  it('tasks-api → docs-api, Docs.Read: a token for docs-api on behalf of Alice', () => {
    const d = allowed(exchange());
    assert.deepEqual(d.claims, {
      iss: ISSUER,
      aud: 'docs-api',
      sub: pairwiseSubject(PAIRWISE_SECRET, tid, alice.oid, 'docs-api'),
      oid: alice.oid,
      tid,
      azp: 'tasks-api',
      client_id: 'tasks-api',
      scp: 'Docs.Read',
      amr: ['pwd'],
      acr: '1',
      auth_time: NOW - 60,
      act: { sub: 'tasks-api', client_id: 'tasks-api' },
      iat: NOW,
      nbf: NOW,
      exp: NOW + LIFETIME,
      jti: '00000000-0000-4000-8000-000000000001',
      uti: 'AAAAAAAAQACAAAAAAAAAAQ',
      ver: '2.0',
    });
    assert.equal(d.api.clientId, 'docs-api');
    assert.deepEqual(d.scopes, ['Docs.Read']);
    assert.equal(d.scope, 'api://docs/Docs.Read');
    assert.deepEqual(d.oidcScopes, []);
    assert.equal(d.expiresIn, LIFETIME);
    assert.deepEqual(
      d.trail.filter((t) => t.outcome === 'skip').map((t) => t.rule),
      // No DPoP proof, no bound token, no API with a DPoP policy: the DPoP rules had nothing to judge.
      ['actor-token', 'may-act', 'dpop-bound-subject', 'dpop-incoming', 'dpop-exchanged', 'dpop-api-key', 'dpop-required', 'session-live', 'claims-challenge'],
    );
  });

  it('tasks-api → docs-api, Docs.Read + Docs.Write after an MFA sign-in', () => {
    const d = allowed(exchange({ assertion: tasksToken({ amr: ['pwd', 'mfa'] }), scope: 'api://docs/Docs.Write api://docs/Docs.Read' }));
    assert.equal(d.claims.scp, 'Docs.Read Docs.Write');
    assert.deepEqual(d.claims.amr, ['pwd', 'mfa']);
    assert.equal(d.scope, 'api://docs/Docs.Read api://docs/Docs.Write');
  });

  it('docs-api → audit-api: act nests the previous actor, newest first; sign-in facts unchanged', () => {
    const first = allowed(exchange({ assertion: tasksToken({ amr: ['pwd', 'mfa'], acr: ACR_MFA, signedInAgo: 500 }) }));
    const second = allowed(
      exchange({ caller: fx.app('docs-api'), assertion: first.claims, scope: 'api://audit/Audit.Write', options: { newId: sequentialIds(10) } }, NOW + 5),
    );
    assert.deepEqual(second.claims.act, { sub: 'docs-api', client_id: 'docs-api', act: { sub: 'tasks-api', client_id: 'tasks-api' } });
    assert.equal(second.claims.aud, 'audit-api');
    assert.equal(second.claims.azp, 'docs-api');
    assert.equal(second.claims.scp, 'Audit.Write');
    assert.deepEqual([second.claims.amr, second.claims.acr, second.claims.auth_time], [['pwd', 'mfa'], ACR_MFA, NOW - 500]);
    assert.equal(second.claims.oid, alice.oid);
    assert.equal(second.claims.iat, NOW + 5);
    assert.equal(second.claims.jti, '00000000-0000-4000-8000-00000000000b');
  });

  it('pairwise sub: stable per API across exchanges, different across APIs', () => {
    const a = allowed(exchange({}, NOW));
    const b = allowed(exchange({ scope: 'docs-api/Docs.Read' }, NOW + 100));
    assert.equal(a.claims.sub, b.claims.sub);
    const audit = allowed(exchange({ caller: fx.app('docs-api'), assertion: a.claims, scope: 'api://audit/Audit.Write' }));
    const incoming = tasksToken();
    assert.equal(new Set([a.claims.sub, audit.claims.sub, incoming.sub]).size, 3);
    assert.equal(new Set([a.claims.oid, audit.claims.oid, incoming.oid]).size, 1);
    const bobs = allowed(exchange({ assertion: tasksToken({ username: 'bob@contoso.test' }), user: bob, userConsents: [] }));
    assert.notEqual(bobs.claims.sub, a.claims.sub);
  });

  it('.default: every scope the caller holds consent for (with MFA: Docs.Read and Docs.Write)', () => {
    const d = allowed(exchange({ assertion: tasksToken({ amr: ['pwd', 'mfa'] }), scope: 'api://docs/.default' }));
    assert.deepEqual(d.scopes, ['Docs.Read', 'Docs.Write']);
    assert.equal(d.claims.scp, 'Docs.Read Docs.Write');
  });

  it('.default is subject to the policies of every scope it expands to', () => {
    const d = refused(exchange({ scope: 'api://docs/.default' }), 'conditional-access', { error: 'interaction_required', entraCodes: [Entra.mfaRequired], claims: MFA_CLAIMS });
    assert.deepEqual(d.challenge, { claims: MFA_CLAIMS, acrValues: [ACR_MFA] });
  });

  it('.default expands only to the consented scopes', () => {
    const partial = buildFixture((c) => {
      c.tenants[0]!.consents[1]!.scopes = ['Docs.Read'];
    });
    const d = allowed(exchange({ scope: 'docs-api/.default' }, NOW, partial));
    assert.deepEqual(d.scopes, ['Docs.Read']);
  });

  it('narrowing: asking for less than the consent gives exactly what was asked', () => {
    const d = allowed(exchange({ assertion: tasksToken({ amr: ['mfa'] }), scope: 'api://docs/Docs.Write' }));
    assert.equal(d.claims.scp, 'Docs.Write');
  });

  it('OIDC scopes beside the resource scopes are reported, not granted in scp', () => {
    const d = allowed(exchange({ scope: 'openid offline_access api://docs/Docs.Read' }));
    assert.deepEqual(d.oidcScopes, ['openid', 'offline_access']);
    assert.equal(d.claims.scp, 'Docs.Read');
  });

  it('carries profile claims of the incoming token', () => {
    const token = { ...tasksToken(), preferred_username: 'alice@contoso.test', name: 'Alice Adams' };
    const d = allowed(exchange({ assertion: token }));
    assert.equal(d.claims.preferred_username, 'alice@contoso.test');
    assert.equal(d.claims.name, 'Alice Adams');
  });

  it("adds the user's app roles on the downstream API (user-assignable roles that exist)", () => {
    const withRoles = buildFixture((c) => {
      const docs = c.tenants[0]!.applications.find((a) => a.clientId === 'docs-api')!;
      docs.appRoles!.push({ value: 'Docs.Editor', description: 'Editors', allowedMemberTypes: ['User'] });
    });
    const userRoles: AppRoleAssignment[] = [
      { tenantId: 'contoso', principalType: 'user', principalId: alice.oid, resource: 'docs-api', roles: ['Docs.Editor', 'Docs.ReadAll', 'Docs.Gone'] },
      { tenantId: 'contoso', principalType: 'user', principalId: bob.oid, resource: 'docs-api', roles: ['Docs.Editor'] },
      { tenantId: 'contoso', principalType: 'user', principalId: alice.oid, resource: 'audit-api', roles: ['Docs.Editor'] },
    ];
    const d = allowed(exchange({ assertion: tasksToken({}, withRoles), userRoles }, NOW, withRoles));
    assert.deepEqual(d.claims.roles, ['Docs.Editor']);
    assert.equal('roles' in allowed(exchange({ userRoles: [] })).claims, false);
  });

  it('a live session: bounds exp and passes session-live', () => {
    const d = allowed(exchange({ assertion: tasksToken({ sid: 's-1' }), session: { live: true, expiresAt: NOW + 900 } }));
    assert.equal(d.claims.exp, NOW + 900);
    assert.equal(d.expiresIn, 900);
    assert.equal(d.claims.sid, 's-1');
    assert.deepEqual(d.trail.find((t) => t.rule === 'session-live'), { rule: 'session-live', outcome: 'pass' });
  });
});

describe('decideExchange — rule 1: caller-confidential', () => {
  it('refuses a public client (unauthorized_client, AADSTS700025)', () => {
    const token = assertion(fx, { client: 'tasks-web', api: 'tasks-api', scopes: ['Tasks.ReadWrite'] });
    refused(exchange({ caller: fx.app('tasks-web'), assertion: { ...token, aud: 'tasks-web' } }), 'caller-confidential', {
      error: 'unauthorized_client',
      entraCodes: [Entra.publicClientNotAllowed],
      description: /'tasks-web' is a public client: only a confidential client/,
    });
  });
});

describe('decideExchange — rule 2: the assertion', () => {
  it('refuses another issuer (AADSTS50013)', () => {
    refused(exchange({ assertion: { ...tasksToken(), iss: 'https://evil.test/contoso/v2.0' } }), 'assertion-issuer', grantError(Entra.assertionInvalid, /issued by 'https:\/\/evil.test\/contoso\/v2.0', not by this tenant \('https:\/\/baton.test\/contoso\/v2.0'\)/));
    refused(exchange({ assertion: { ...tasksToken(), iss: undefined } }), 'assertion-issuer', grantError(Entra.assertionInvalid, /issued by no issuer/));
  });

  it('refuses our issuer with another tenant id', () => {
    refused(exchange({ assertion: { ...tasksToken(), tid: 'another-tid' } }), 'assertion-issuer', grantError(Entra.assertionInvalid, /tid does not name tenant 'contoso'/));
  });

  it('accepts an issuer the multi-tenant hook trusts', () => {
    const foreign = 'https://baton.test/fabrikam/v2.0';
    const token = { ...tasksToken(), iss: foreign, tid: 'fabrikam-tid' };
    refused(exchange({ assertion: token }), 'assertion-issuer', grantError(Entra.assertionInvalid));
    allowed(exchange({ assertion: token, options: { trustedIssuer: (iss) => iss === foreign } }));
  });

  it("refuses a token addressed to another API, naming both (AADSTS50013)", () => {
    const d = refused(exchange({ caller: fx.app('docs-api') }), 'assertion-audience', grantError(Entra.assertionInvalid));
    assert.equal(d.error.description, "The assertion's audience is 'tasks-api' but the caller is 'docs-api': a middle tier may only exchange tokens addressed to itself.");
  });

  it('refuses a multi-audience or audience-less token, accepts a one-element array', () => {
    refused(exchange({ assertion: { ...tasksToken(), aud: ['tasks-api', 'docs-api'] } }), 'assertion-audience', grantError(Entra.assertionInvalid, /audience is 'tasks-api', 'docs-api'/));
    refused(exchange({ assertion: { ...tasksToken(), aud: undefined } }), 'assertion-audience', grantError(Entra.assertionInvalid, /audience is 'missing'/));
    refused(exchange({ assertion: { ...tasksToken(), aud: 'api://tasks' } }), 'assertion-audience', grantError(Entra.assertionInvalid));
    allowed(exchange({ assertion: { ...tasksToken(), aud: ['tasks-api'] } }));
  });

  describe('clock skew (default 60 s)', () => {
    it('exp: expired at now - 60, valid at now - 59 (AADSTS500133)', () => {
      refused(exchange({ assertion: { ...tasksToken(), exp: NOW - 60 } }), 'assertion-lifetime', grantError(Entra.assertionExpired, /expired at 2025-06-15T15:05:40.000Z: the client must send a fresh access token/));
      allowed(exchange({ assertion: { ...tasksToken(), exp: NOW - 59 } }));
    });

    it('nbf: valid at now + 60, refused at now + 61 (AADSTS50013)', () => {
      allowed(exchange({ assertion: { ...tasksToken(), nbf: NOW + 60, iat: NOW + 60 } }));
      refused(exchange({ assertion: { ...tasksToken(), nbf: NOW + 61 } }), 'assertion-lifetime', grantError(Entra.assertionInvalid, /not valid before .* \(nbf\)/));
    });

    it('iat: refused more than the skew in the future', () => {
      refused(exchange({ assertion: { ...tasksToken(), iat: NOW + 61 } }), 'assertion-lifetime', grantError(Entra.assertionInvalid, /issued in the future/));
    });

    it('a configured tolerance of 0', () => {
      const options = { clockToleranceSeconds: 0 };
      refused(exchange({ assertion: { ...tasksToken(), exp: NOW }, options }), 'assertion-lifetime', grantError(Entra.assertionExpired));
      allowed(exchange({ assertion: { ...tasksToken(), exp: NOW + 1 }, options }));
      refused(exchange({ assertion: { ...tasksToken(), nbf: NOW + 1 }, options }), 'assertion-lifetime', grantError(Entra.assertionInvalid));
    });

    it('refuses a missing or non-numeric exp or iat', () => {
      refused(exchange({ assertion: { ...tasksToken(), exp: undefined } }), 'assertion-lifetime', grantError(Entra.assertionInvalid, /no numeric 'exp'/));
      refused(exchange({ assertion: { ...tasksToken(), exp: String(NOW + 100) } }), 'assertion-lifetime', grantError(Entra.assertionInvalid, /no numeric 'exp'/));
      refused(exchange({ assertion: { ...tasksToken(), iat: undefined } }), 'assertion-lifetime', grantError(Entra.assertionInvalid, /no numeric 'iat'/));
      refused(exchange({ assertion: { ...tasksToken(), nbf: 'soon' } }), 'assertion-lifetime', grantError(Entra.assertionInvalid, /no numeric 'nbf'/));
    });
  });
});

describe('decideExchange — rule 3: delegated only', () => {
  const appOnlyError = grantError(Entra.appOnlyAssertion, /an application token cannot be exchanged on behalf of a user/);

  it("refuses the indexer's app-only token (AADSTS7000114)", () => {
    const appToken = buildAppOnlyClaims({ issuer: ISSUER, tenant: fx.tenant, client: fx.app('indexer'), api: fx.app('docs-api'), roles: ['Docs.ReadAll'], now: NOW - 10 });
    refused(exchange({ caller: fx.app('docs-api'), assertion: appToken, user: undefined, scope: 'api://audit/Audit.Write' }), 'assertion-delegated', appOnlyError);
  });

  it('refuses a token without scp, or with an empty scp, or with idtyp app', () => {
    refused(exchange({ assertion: { ...tasksToken(), scp: undefined } }), 'assertion-delegated', appOnlyError);
    refused(exchange({ assertion: { ...tasksToken(), scp: '' } }), 'assertion-delegated', appOnlyError);
    refused(exchange({ assertion: { ...tasksToken(), scp: ['Tasks.ReadWrite'] } }), 'assertion-delegated', appOnlyError);
    refused(exchange({ assertion: { ...tasksToken(), idtyp: 'app' } }), 'assertion-delegated', appOnlyError);
  });

  it('refuses a delegated token without oid', () => {
    refused(exchange({ assertion: { ...tasksToken(), oid: undefined } }), 'assertion-delegated', grantError(Entra.assertionInvalid, /no oid/));
  });
});

describe('decideExchange — rule 4: the user and the session', () => {
  it('refuses a user who no longer exists (AADSTS50034)', () => {
    refused(exchange({ user: undefined }), 'user-exists', grantError(Entra.userNotFound, /no longer exists in tenant 'contoso'/));
    refused(exchange({ user: bob }), 'user-exists', grantError(Entra.userNotFound));
    refused(exchange({ user: { ...alice, tenantId: 'fabrikam' } }), 'user-exists', grantError(Entra.userNotFound));
  });

  it('refuses a disabled user — Carol (AADSTS50057)', () => {
    const carol = fx.user('carol@contoso.test');
    assert.equal(carol.enabled, false);
    refused(exchange({ assertion: tasksToken({ username: 'carol@contoso.test' }), user: carol }), 'user-enabled', grantError(Entra.userDisabled, /disabled/));
  });

  it('refuses a token issued before the user\'s sessions were revoked (AADSTS50173), accepts one issued at that instant', () => {
    const token = tasksToken({ issuedAgo: 30, signedInAgo: 30 });
    refused(exchange({ assertion: token, user: { ...alice, revokedBefore: NOW - 29 } }), 'session-live', grantError(Entra.sessionRevoked, /revoked/));
    allowed(exchange({ assertion: token, user: { ...alice, revokedBefore: NOW - 30 } }));
  });

  it('refuses a later token from a sign-in before the revocation', () => {
    const token = tasksToken({ issuedAgo: 10, signedInAgo: 100 });
    refused(exchange({ assertion: token, user: { ...alice, revokedBefore: NOW - 50 } }), 'session-live', grantError(Entra.sessionRevoked));
  });

  it('refuses a session that is unknown, revoked or over', () => {
    const token = tasksToken({ sid: 's-1' });
    refused(exchange({ assertion: token }), 'session-live', grantError(Entra.sessionRevoked, /unknown or has ended/));
    refused(exchange({ assertion: token, session: { live: false } }), 'session-live', grantError(Entra.sessionRevoked, /signed out or revoked/));
    refused(exchange({ assertion: token, session: { live: true, expiresAt: NOW } }), 'session-live', grantError(Entra.sessionRevoked, /has ended/));
    allowed(exchange({ assertion: token, session: { live: true, expiresAt: NOW + 1 } }));
  });
});

describe('decideExchange — rule 5: one downstream API', () => {
  it('refuses a request without scope (invalid_request, AADSTS900144)', () => {
    refused(exchange({ scope: undefined }), 'downstream-scopes', { error: 'invalid_request', entraCodes: [Entra.malformedRequest], description: /must contain a 'scope' parameter/ });
  });

  it('refuses only OIDC scopes', () => {
    refused(exchange({ scope: 'openid profile' }), 'downstream-scopes', { error: 'invalid_scope', entraCodes: [Entra.invalidScope], description: /names no downstream API/ });
  });

  it('refuses scopes of two APIs, naming both (AADSTS70011)', () => {
    refused(exchange({ scope: 'api://docs/Docs.Read api://audit/Audit.Write' }), 'downstream-scopes', {
      error: 'invalid_scope',
      entraCodes: [Entra.invalidScope],
      description: /two APIs, 'api:\/\/docs' and 'api:\/\/audit'/,
    });
  });

  it('refuses an unknown API or scope, naming it', () => {
    refused(exchange({ scope: 'api://payroll/Pay.Read' }), 'downstream-scopes', { error: 'invalid_scope', entraCodes: [Entra.invalidScope], description: /'api:\/\/payroll'/ });
    refused(exchange({ scope: 'api://docs/Docs.Delete' }), 'downstream-scopes', { error: 'invalid_scope', entraCodes: [Entra.invalidScope], description: /'Docs.Delete' does not exist on API 'api:\/\/docs'/ });
    refused(exchange({ scope: 'api://docs/Docs.Read  x' }), 'downstream-scopes', { error: 'invalid_scope', entraCodes: [Entra.invalidScope], description: /empty item/ });
  });
});

describe('decideExchange — rule 6: consent', () => {
  const consentRequired = (description: RegExp | RegExp[]): ExpectedOAuthError => ({
    error: 'invalid_grant',
    entraCodes: [Entra.consentRequired],
    suberror: 'consent_required',
    description,
  });

  it('reports-api holds no consent: consent_required (AADSTS65001) with the admin-consent URL', () => {
    const token = assertion(fx, { client: 'tasks-web', api: 'reports-api', scopes: ['Reports.Read'] });
    const d = refused(exchange({ caller: fx.app('reports-api'), assertion: token }), 'consent', consentRequired([
      /The application 'reports-api' has no consent for 'api:\/\/docs\/Docs.Read' on behalf of this user/,
      /https:\/\/baton.test\/contoso\/adminconsent\?client_id=reports-api/,
    ]));
    assert.equal(d.error.toJSON().suberror, 'consent_required');
    assert.match(String(d.error.toJSON().error_description), /^AADSTS65001: /);
    refused(exchange({ caller: fx.app('reports-api'), assertion: token, scope: 'api://docs/.default' }), 'consent', consentRequired(/holds no consent for any scope of API 'api:\/\/docs'/));
  });

  it('tasks-api has no consent on audit-api: scopes never widen past consent', () => {
    refused(exchange({ scope: 'api://audit/Audit.Write' }), 'consent', consentRequired(/'tasks-api' has no consent for 'api:\/\/audit\/Audit.Write'/));
  });

  it('names only the missing scopes when part is consented', () => {
    const partial = buildFixture((c) => {
      c.tenants[0]!.consents[1]!.scopes = ['Docs.Read'];
    });
    refused(exchange({ scope: 'api://docs/Docs.Read api://docs/Docs.Write' }, NOW, partial), 'consent', consentRequired(/has no consent for 'api:\/\/docs\/Docs.Write' on behalf/));
  });

  describe("one user's consent versus 'all'", () => {
    const perUser = buildFixture((c) => {
      c.tenants[0]!.consents.push({ client: 'reports-api', resource: 'api://docs', scopes: ['Docs.Read', 'Docs.Write'], for: 'bob@contoso.test' });
    });
    const tokenFor = (username: string) => assertion(perUser, { client: 'tasks-web', api: 'reports-api', scopes: ['Reports.Read'], username });
    const base = { caller: perUser.app('reports-api') };

    it("Bob's own consent lets reports-api act for Bob", () => {
      const d = allowed(exchange({ ...base, assertion: tokenFor('bob@contoso.test'), user: bob, userConsents: perUser.userConsents('bob@contoso.test') }, NOW, perUser));
      assert.equal(d.claims.scp, 'Docs.Read');
    });

    it('but not for Alice', () => {
      refused(exchange({ ...base, assertion: tokenFor('alice@contoso.test'), userConsents: perUser.userConsents('alice@contoso.test') }, NOW, perUser), 'consent', consentRequired(/reports-api/));
    });

    it("nor with Bob's consent handed in for Alice (grants of other principals are ignored)", () => {
      refused(exchange({ ...base, assertion: tokenFor('alice@contoso.test'), userConsents: perUser.userConsents('bob@contoso.test') }, NOW, perUser), 'consent', consentRequired(/reports-api/));
    });

    it('a user cannot consent to an admin-consent-required scope (Docs.Write)', () => {
      refused(
        exchange({ ...base, assertion: tokenFor('bob@contoso.test'), user: bob, userConsents: perUser.userConsents('bob@contoso.test'), scope: 'api://docs/Docs.Write' }, NOW, perUser),
        'consent',
        consentRequired(/no consent for 'api:\/\/docs\/Docs.Write'/),
      );
      const d = allowed(exchange({ ...base, assertion: tokenFor('bob@contoso.test'), user: bob, userConsents: perUser.userConsents('bob@contoso.test'), scope: 'api://docs/.default' }, NOW, perUser));
      assert.deepEqual(d.scopes, ['Docs.Read']);
    });

    it('grants for another client, resource or tenant are ignored', () => {
      const bobs = perUser.userConsents('bob@contoso.test');
      const wrong = [
        { ...bobs[0]!, clientId: 'tasks-api' },
        { ...bobs[0]!, resource: 'audit-api' },
        { ...bobs[0]!, tenantId: 'fabrikam' },
      ];
      refused(exchange({ ...base, assertion: tokenFor('bob@contoso.test'), user: bob, userConsents: wrong }, NOW, perUser), 'consent', consentRequired(/reports-api/));
    });
  });

  it('builds the admin-consent URL from the base URL, trimming a trailing slash and encoding', () => {
    assert.equal(adminConsentUrl('https://baton.test/', 'contoso', 'a b'), 'https://baton.test/contoso/adminconsent?client_id=a%20b');
  });
});

describe('decideExchange — rule 7: conditional access', () => {
  it('Docs.Write without MFA: interaction_required (AADSTS50076) with the claims challenge', () => {
    const d = refused(exchange({ scope: 'api://docs/Docs.Write' }), 'conditional-access', {
      error: 'interaction_required',
      entraCodes: [Entra.mfaRequired],
      claims: MFA_CLAIMS,
      description: /'MFA to change documents' requires multi-factor authentication for API 'api:\/\/docs'/,
    });
    assert.deepEqual(d.challenge, { claims: MFA_CLAIMS, acrValues: [ACR_MFA] });
    assert.equal(d.error.toJSON().claims, MFA_CLAIMS);
  });

  it('otp alone is not mfa', () => {
    refused(exchange({ assertion: tasksToken({ amr: ['otp'] }), scope: 'api://docs/Docs.Write' }), 'conditional-access', { error: 'interaction_required', entraCodes: [Entra.mfaRequired], claims: MFA_CLAIMS });
  });

  const withPolicy = (policy: ReturnType<typeof buildFixture>['config']['tenants'][number]['policies'][number]) =>
    buildFixture((c) => {
      c.tenants[0]!.policies.push(policy);
    });

  it('block: invalid_grant (AADSTS53003)', () => {
    const f = withPolicy({ name: 'No audit from tasks', resources: ['api://audit'], clients: ['docs-api'], require: { block: true } });
    const first = allowed(exchange({}, NOW, f));
    refused(exchange({ caller: f.app('docs-api'), assertion: first.claims, scope: 'api://audit/Audit.Write' }, NOW, f), 'conditional-access', grantError(Entra.blockedByPolicy, /blocked by the conditional access policy 'No audit from tasks'/));
  });

  it('sign-in frequency: interaction_required (AADSTS70044) asking for a fresh sign-in', () => {
    const f = withPolicy({ name: 'Recent sign-in for docs', resources: ['api://docs'], require: { maxAuthAgeSeconds: 600 } });
    allowed(exchange({ assertion: tasksToken({ signedInAgo: 600 }, f) }, NOW, f));
    const d = refused(exchange({ assertion: tasksToken({ signedInAgo: 601 }, f) }, NOW, f), 'conditional-access', {
      error: 'interaction_required',
      entraCodes: [Entra.signInFrequency],
      claims: `{"access_token":{"nbf":{"essential":true,"value":"${NOW}"}},"id_token":{"auth_time":{"essential":true}}}`,
      description: /within the last 600 seconds/,
    });
    assert.equal(d.challenge?.maxAge, 600);
  });

  describe('IP ranges judge the sign-in address (from the session), else the request address', () => {
    const f = withPolicy({ name: 'Corp network', resources: ['api://docs'], require: { ipRanges: ['10.0.0.0/8', '2001:db8::/32'] } });
    const ipError = grantError(Entra.blockedByPolicy, /'Corp network'.*outside/);
    const token = tasksToken({ sid: 's-1' }, f);
    const at = (signInIp: string | undefined, requestIp?: string) =>
      exchange({ assertion: token, session: { live: true, ip: signInIp }, ip: requestIp }, NOW, f);

    it('IPv4', () => {
      allowed(at('10.1.2.3'));
      refused(at('192.0.2.1'), 'conditional-access', ipError);
    });

    it('IPv6', () => {
      allowed(at('2001:db8::42'));
      refused(at('2001:db9::42'), 'conditional-access', ipError);
    });

    it('IPv4-mapped IPv6', () => {
      allowed(at('::ffff:10.9.8.7'));
      refused(at('::ffff:192.0.2.1'), 'conditional-access', ipError);
    });

    it('only the sign-in address is judged: the middle tier\'s address never satisfies an IP policy', () => {
      allowed(at('10.1.2.3', '192.0.2.1'));
      refused(at('192.0.2.1', '10.1.2.3'), 'conditional-access', ipError);
      // The API runs inside the allowed range, but nobody knows where the user signed in: unmet.
      refused(at(undefined, '10.1.2.3'), 'conditional-access', ipError);
      refused(at(undefined, '192.0.2.1'), 'conditional-access', ipError);
      refused(at(undefined, undefined), 'conditional-access', ipError);
    });
  });
});

describe('decideExchange — rule 8: the delegation chain', () => {
  const tokenWithChain = (depth: number, f: Fixture = fx) => tasksToken({ act: actorChain(depth) }, f);

  it(`maxDepth ${fx.tenant.maxDelegationDepth}: an incoming chain of 3 becomes 4 and is allowed`, () => {
    const d = allowed(exchange({ assertion: tokenWithChain(3) }));
    assert.deepEqual(d.claims.act, { sub: 'tasks-api', client_id: 'tasks-api', act: actorChain(3) });
  });

  it('one deeper than maxDepth is refused (9100001, a Baton-specific code), showing the chain oldest first', () => {
    const d = refused(exchange({ assertion: tokenWithChain(4) }), 'delegation-depth', grantError(Entra.chainTooDeep));
    assert.equal(
      d.error.description,
      "This exchange would make a delegation chain of 5 APIs (api-1 → api-2 → api-3 → api-4 → tasks-api), more than tenant 'contoso' allows (delegation.maxDepth 4). Call the API from an earlier hop, or ask an administrator to raise the limit.",
    );
  });

  it('maxDepth 1: the first hop is allowed, the second refused', () => {
    const f = buildFixture((c) => {
      c.tenants[0]!.delegation = { maxDepth: 1 };
    });
    const first = allowed(exchange({ assertion: tasksToken({}, f) }, NOW, f));
    refused(exchange({ caller: f.app('docs-api'), assertion: first.claims, scope: 'api://audit/Audit.Write' }, NOW, f), 'delegation-depth', grantError(Entra.chainTooDeep, /chain of 2 APIs \(tasks-api → docs-api\)/));
  });

  it('refuses an absurdly deep chain without walking all of it', () => {
    refused(exchange({ assertion: tokenWithChain(500) }), 'delegation-depth', grantError(Entra.chainTooDeep, /chain of more than 32 APIs, more than tenant 'contoso' allows/));
  });

  it('refuses a malformed act claim (AADSTS50013)', () => {
    for (const act of ['tasks-web', { client_id: 'x' }, { sub: 'a', act: [] }, null]) {
      refused(exchange({ assertion: { ...tasksToken(), act } }), 'delegation-depth', grantError(Entra.assertionInvalid, /act claim is malformed/));
    }
  });
});

describe('decideExchange — chain rules (issue 14)', () => {
  /** Docs API may call back into Tasks API (all users), and Tasks API holds a narrower scope of its own. */
  const loopy = () =>
    buildFixture((c) => {
      const contoso = c.tenants[0]!;
      contoso.applications.find((a) => a.clientId === 'tasks-api')!.scopes!.push({ value: 'Tasks.Read', description: 'Read your tasks' });
      contoso.consents.push(
        { client: 'docs-api', resource: 'api://tasks', scopes: ['Tasks.ReadWrite'], for: 'all' },
        { client: 'tasks-api', resource: 'api://tasks', scopes: ['Tasks.Read', 'Tasks.ReadWrite'], for: 'all' },
      );
    });
  const loopError = (description?: RegExp): ExpectedOAuthError => grantError(Entra.chainLoop, description);
  const wideningError = (description?: RegExp): ExpectedOAuthError => ({ error: 'invalid_scope', entraCodes: [Entra.scopeWidening], ...(description ? { description } : {}) });

  describe('chain-loop: no API twice in a chain', () => {
    it('A → B → A is refused (9100002), naming the chain and the rule', () => {
      const f = loopy();
      const docs = allowed(exchange({}, NOW, f)); // tasks-api → docs-api
      const d = refused(exchange({ caller: f.app('docs-api'), assertion: docs.claims, scope: 'api://tasks/Tasks.ReadWrite' }, NOW, f), 'chain-loop', loopError());
      assert.equal(
        d.error.description,
        "This exchange would make the delegation chain tasks-api → docs-api → tasks-api, in which API 'tasks-api' appears twice: loops are refused (rule chain-loop). An API may call another API on the user's behalf, but never back into the chain it is part of.",
      );
    });

    it('the caller already in the presented chain is refused, deep or not', () => {
      // A token for tasks-api that docs-api obtained, going back to docs-api.
      refused(exchange({ assertion: tasksToken({ act: { sub: 'docs-api', client_id: 'docs-api' } }) }), 'chain-loop', loopError(/docs-api → tasks-api → docs-api/));
      // tasks-api earlier in the chain, then audit-api, now tasks-api again.
      const act = { sub: 'audit-api', client_id: 'audit-api', act: { sub: 'tasks-api', client_id: 'tasks-api' } };
      refused(exchange({ assertion: tasksToken({ act }) }), 'chain-loop', loopError(/tasks-api → audit-api → tasks-api → docs-api/));
    });

    it('an actor named by sub only (no client_id) still counts', () => {
      refused(exchange({ assertion: tasksToken({ act: { sub: 'docs-api' } }) }), 'chain-loop', loopError(/'docs-api' appears twice/));
    });

    it('a chain without repeats passes (the demo chain Tasks → Docs → Audit)', () => {
      const docs = allowed(exchange());
      const audit = allowed(exchange({ caller: fx.app('docs-api'), assertion: docs.claims, scope: 'api://audit/Audit.Write' }));
      assert.deepEqual(audit.trail.find((t) => t.rule === 'chain-loop'), { rule: 'chain-loop', outcome: 'pass' });
    });

    it('an exchange to the caller’s own audience stays at the same hop: not a loop, and the chain goes on from it', () => {
      const f = loopy();
      const own = allowed(exchange({ scope: 'api://tasks/Tasks.ReadWrite' }, NOW, f));
      assert.equal(own.claims.aud, 'tasks-api');
      const docs = allowed(exchange({ assertion: own.claims, scope: 'api://docs/Docs.Read' }, NOW, f));
      assert.deepEqual(docs.claims.act, { sub: 'tasks-api', client_id: 'tasks-api', act: { sub: 'tasks-api', client_id: 'tasks-api' } });
    });
  });

  describe('scope-narrowing: never more than the token being exchanged allowed', () => {
    const narrow = (f: Fixture) => tasksToken({ scopes: ['Tasks.Read'] }, f);

    it('to the same audience: a scope the token does not carry is refused (invalid_scope 9100003), naming the rule', () => {
      const f = loopy();
      const d = refused(exchange({ assertion: narrow(f), scope: 'api://tasks/Tasks.ReadWrite' }, NOW, f), 'scope-narrowing', wideningError());
      assert.equal(
        d.error.description,
        "Scopes never widen along the chain (rule scope-narrowing): the token being exchanged allows 'api://tasks/Tasks.Read' at 'api://tasks', and a token for the same API may not ask for more ('api://tasks/Tasks.ReadWrite').",
      );
      // Both forms, one rule: RFC 8693 keeps invalid_scope (it judges the request, not the subject token).
      refused(exchange({ form: 'token_exchange', scope: 'Tasks.Read Tasks.ReadWrite', audience: 'tasks-api', assertion: narrow(f) }, NOW, f), 'scope-narrowing', wideningError(/'api:\/\/tasks\/Tasks.ReadWrite'\)/));
    });

    it('to the same audience: a subset passes, and .default narrows to what the token carried', () => {
      const f = loopy();
      const explicit = allowed(exchange({ assertion: narrow(f), scope: 'api://tasks/Tasks.Read' }, NOW, f));
      assert.equal(explicit.claims.scp, 'Tasks.Read');
      assert.deepEqual(explicit.trail.find((t) => t.rule === 'scope-narrowing'), { rule: 'scope-narrowing', outcome: 'pass' });
      const all = allowed(exchange({ assertion: narrow(f), scope: 'api://tasks/.default' }, NOW, f));
      assert.deepEqual(all.scopes, ['Tasks.Read']);
      assert.equal(all.scope, 'api://tasks/Tasks.Read');
      const audienceOnly = allowed(exchange({ form: 'token_exchange', scope: undefined, audience: 'tasks-api', resource: 'api://tasks', assertion: narrow(f) }, NOW, f));
      assert.equal(audienceOnly.claims.scp, 'Tasks.Read');
    });

    it('across APIs the bound is the consent for the pair (the incoming scp is the middle tier’s, not comparable)', () => {
      const d = allowed(exchange({ scope: 'api://docs/Docs.Read api://docs/Docs.Write', assertion: tasksToken({ amr: ['pwd', 'mfa'] }) }));
      assert.deepEqual(d.scopes, ['Docs.Read', 'Docs.Write']);
      assert.deepEqual(d.trail.find((t) => t.rule === 'scope-narrowing'), { rule: 'scope-narrowing', outcome: 'pass' });
    });

    it('conditional access judges the narrowed scopes, and a widening is refused even when no policy applies', () => {
      const f = buildFixture((c) => {
        const contoso = c.tenants[0]!;
        contoso.applications.find((a) => a.clientId === 'tasks-api')!.scopes!.push({ value: 'Tasks.Read', description: 'Read your tasks' });
        contoso.consents.push({ client: 'tasks-api', resource: 'api://tasks', scopes: ['Tasks.Read', 'Tasks.ReadWrite'], for: 'all' });
        contoso.policies.push({ name: 'MFA to change tasks', resources: ['api://tasks'], scopes: ['Tasks.ReadWrite'], require: { mfa: true } });
      });
      // .default would be Tasks.Read + Tasks.ReadWrite by consent; narrowed to Tasks.Read, no MFA is asked.
      assert.deepEqual(allowed(exchange({ assertion: narrow(f), scope: 'api://tasks/.default' }, NOW, f)).scopes, ['Tasks.Read']);
    });
  });

  describe('one audience per token (RFC 8693 §2.2.2, under downstream-scopes)', () => {
    const rfc = (over: Over = {}) => exchange({ form: 'token_exchange', scope: undefined, ...over });
    const targetError = (description?: RegExp): ExpectedOAuthError => ({ error: 'invalid_target', entraCodes: [Entra.invalidTarget], ...(description ? { description } : {}) });

    it('two audience values, or two resource values, are refused even when they name the same API', () => {
      refused(rfc({ audience: ['docs-api', 'audit-api'] }), 'downstream-scopes', targetError(/names 2 'audience' values: one audience per token/));
      refused(rfc({ audience: ['docs-api', 'docs-api'] }), 'downstream-scopes', targetError(/names 2 'audience' values/));
      refused(rfc({ resource: ['api://docs', 'api://docs'] }), 'downstream-scopes', targetError(/names 2 'resource' values/));
    });

    it('audience and resource naming two APIs are refused; naming the same one (or one value in a list) is one audience', () => {
      refused(rfc({ audience: 'docs-api', resource: 'api://audit' }), 'downstream-scopes', targetError(/two APIs, 'api:\/\/docs' and 'api:\/\/audit'/));
      assert.equal(allowed(rfc({ audience: 'docs-api', resource: 'api://docs', scope: 'Docs.Read' })).claims.aud, 'docs-api');
      assert.equal(allowed(rfc({ audience: ['docs-api'], scope: 'Docs.Read' })).claims.aud, 'docs-api');
    });
  });

  describe('delegation-depth: the API’s own limit as well as the tenant’s', () => {
    it('the stricter applies: an API limit of 1 refuses the second hop the tenant (4) would allow, naming the API', () => {
      const f = buildFixture((c) => {
        c.tenants[0]!.applications.find((a) => a.clientId === 'audit-api')!.delegation = { maxDepth: 1 };
      });
      const docs = allowed(exchange({}, NOW, f)); // chain 1 into docs-api: no limit of its own
      const d = refused(exchange({ caller: f.app('docs-api'), assertion: docs.claims, scope: 'api://audit/Audit.Write' }, NOW, f), 'delegation-depth', grantError(Entra.chainTooDeep));
      assert.equal(
        d.error.description,
        "This exchange would make a delegation chain of 2 APIs (tasks-api → docs-api), more than API 'api://audit' allows (delegation.maxDepth 1). Call the API from an earlier hop, or ask an administrator to raise the limit.",
      );
      // The limit is the downstream API's: a first hop into audit-api is within it.
      const g = buildFixture((c) => {
        c.tenants[0]!.applications.find((a) => a.clientId === 'audit-api')!.delegation = { maxDepth: 1 };
        c.tenants[0]!.consents.push({ client: 'tasks-api', resource: 'api://audit', scopes: ['Audit.Write'], for: 'all' });
      });
      allowed(exchange({ scope: 'api://audit/Audit.Write' }, NOW, g));
    });

    it('an API limit looser than the tenant’s changes nothing: the tenant’s is named', () => {
      const f = buildFixture((c) => {
        c.tenants[0]!.delegation = { maxDepth: 1 };
        c.tenants[0]!.applications.find((a) => a.clientId === 'audit-api')!.delegation = { maxDepth: 8 };
      });
      const docs = allowed(exchange({}, NOW, f));
      refused(exchange({ caller: f.app('docs-api'), assertion: docs.claims, scope: 'api://audit/Audit.Write' }, NOW, f), 'delegation-depth', grantError(Entra.chainTooDeep, /more than tenant 'contoso' allows \(delegation.maxDepth 1\)/));
    });
  });
});

describe('decideExchange — RFC 8693 token exchange', () => {
  const rfc = (over: Over = {}, now = NOW) => exchange({ form: 'token_exchange', scope: undefined, ...over }, now);

  it('audience alone means .default on that API', () => {
    const d = allowed(rfc({ audience: 'docs-api', assertion: tasksToken({ amr: ['mfa'] }) }));
    assert.deepEqual(d.scopes, ['Docs.Read', 'Docs.Write']);
  });

  it('resource by identifier URI, bare scopes relative to it', () => {
    const d = allowed(rfc({ resource: 'api://docs', scope: 'Docs.Read' }));
    assert.equal(d.claims.aud, 'docs-api');
    assert.equal(d.claims.scp, 'Docs.Read');
  });

  it('qualified scope without audience works as in the Microsoft form', () => {
    assert.equal(allowed(rfc({ scope: 'api://docs/Docs.Read' })).claims.aud, 'docs-api');
  });

  it('refuses an unknown audience and scope/audience disagreement (invalid_target, AADSTS500011)', () => {
    refused(rfc({ audience: 'payroll' }), 'downstream-scopes', { error: 'invalid_target', entraCodes: [Entra.invalidTarget], description: /audience 'payroll' is not an API/ });
    refused(rfc({ audience: 'docs-api', scope: 'api://audit/Audit.Write' }), 'downstream-scopes', { error: 'invalid_target', entraCodes: [Entra.invalidTarget], description: /belongs to API 'api:\/\/audit'/ });
    refused(rfc({ audience: 'docs-api', resource: 'api://audit' }), 'downstream-scopes', { error: 'invalid_target', entraCodes: [Entra.invalidTarget] });
  });

  it('refuses a request naming no API', () => {
    refused(rfc(), 'downstream-scopes', { error: 'invalid_request', entraCodes: [Entra.malformedRequest], description: /Name the downstream API with 'audience', 'resource' or 'scope'/ });
  });

  it('subject-token refusals are invalid_request (RFC 8693 §2.2.2), same Entra code and description', () => {
    refused(rfc({ caller: fx.app('docs-api'), audience: 'audit-api' }), 'assertion-audience', { error: 'invalid_request', entraCodes: [Entra.assertionInvalid], description: /may only exchange tokens addressed to itself/ });
    refused(rfc({ audience: 'docs-api', assertion: { ...tasksToken(), exp: NOW - 100 } }), 'assertion-lifetime', { error: 'invalid_request', entraCodes: [Entra.assertionExpired] });
    refused(rfc({ audience: 'docs-api', assertion: { ...tasksToken(), idtyp: 'app' } }), 'assertion-delegated', { error: 'invalid_request', entraCodes: [Entra.appOnlyAssertion] });
    refused(rfc({ audience: 'docs-api', user: { ...alice, enabled: false } }), 'user-enabled', { error: 'invalid_request', entraCodes: [Entra.userDisabled] });
  });

  it('other refusals keep their codes: consent_required stays invalid_grant, public caller stays unauthorized_client', () => {
    const token = assertion(fx, { client: 'tasks-web', api: 'reports-api', scopes: ['Reports.Read'] });
    refused(rfc({ caller: fx.app('reports-api'), assertion: token, audience: 'docs-api' }), 'consent', { error: 'invalid_grant', entraCodes: [Entra.consentRequired], suberror: 'consent_required' });
    refused(rfc({ caller: fx.app('tasks-web'), audience: 'docs-api' }), 'caller-confidential', { error: 'unauthorized_client', entraCodes: [Entra.publicClientNotAllowed] });
  });

  describe('actor_token', () => {
    const tasksApi = fx.app('tasks-api');
    const own = () => buildAppOnlyClaims({ issuer: ISSUER, tenant: fx.tenant, client: tasksApi, api: fx.app('docs-api'), roles: ['Docs.ReadAll'], now: NOW - 10 });
    const notCaller = (description: RegExp): ExpectedOAuthError => ({ error: 'invalid_request', entraCodes: [Entra.actorTokenNotCaller], description: [description, /\(rule actor-token\)/] });

    it("the caller's own app-only token passes, and the new act names that actor with its sub, iss and client_id", () => {
      const d = allowed(rfc({ scope: 'api://docs/Docs.Read', actor: own() }));
      assert.deepEqual(d.trail.find((t) => t.rule === 'actor-token'), { rule: 'actor-token', outcome: 'pass' });
      assert.deepEqual(d.claims.act, { sub: tasksApi.servicePrincipalId, iss: ISSUER, client_id: 'tasks-api' });
      // The next hop nests it, and still sees one API per hop for the chain rules.
      const docsApi = fx.app('docs-api');
      const docsActor = buildAppOnlyClaims({ issuer: ISSUER, tenant: fx.tenant, client: docsApi, api: fx.app('audit-api'), roles: ['Audit.Read.All'], now: NOW - 10 });
      const next = allowed(rfc({ caller: docsApi, assertion: d.claims, scope: 'api://audit/Audit.Write', actor: docsActor }));
      assert.deepEqual(next.claims.act, { sub: docsApi.servicePrincipalId, iss: ISSUER, client_id: 'docs-api', act: { sub: tasksApi.servicePrincipalId, iss: ISSUER, client_id: 'tasks-api' } });
      refused(rfc({ caller: docsApi, assertion: d.claims, scope: 'api://tasks/Tasks.ReadWrite', actor: docsActor, userConsents: [{ tenantId: fx.tenant.id, clientId: 'docs-api', resource: 'tasks-api', scopes: ['Tasks.ReadWrite'], principal: alice.oid, createdAt: NOW }] }), 'chain-loop', grantError(Entra.chainLoop, /tasks-api → docs-api → tasks-api/));
    });

    it("another application's token, a user's token, or no client_id: refused (invalid_request, 9100005)", () => {
      const other = buildAppOnlyClaims({ issuer: ISSUER, tenant: fx.tenant, client: fx.app('indexer'), api: fx.app('docs-api'), roles: ['Docs.ReadAll'], now: NOW - 10 });
      refused(rfc({ scope: 'api://docs/Docs.Read', actor: other }), 'actor-token', notCaller(/^The actor_token does not represent the authenticated client 'tasks-api' \(its client_id is 'indexer'\)/));
      refused(rfc({ scope: 'api://docs/Docs.Read', actor: { ...own(), sub: 'someone-else' } }), 'actor-token', notCaller(/does not represent the authenticated client 'tasks-api'/));
      refused(rfc({ scope: 'api://docs/Docs.Read', actor: { ...own(), client_id: undefined, azp: undefined } }), 'actor-token', notCaller(/its client_id is missing/));
      refused(rfc({ scope: 'api://docs/Docs.Read', actor: tasksToken() }), 'actor-token', notCaller(/^The actor_token is not an application token \(idtyp 'app'\)/));
    });

    it('an expired, not yet valid, foreign or malformed actor token is refused', () => {
      refused(rfc({ scope: 'api://docs/Docs.Read', actor: { ...own(), exp: NOW - 60 } }), 'actor-token', { error: 'invalid_request', entraCodes: [Entra.assertionExpired], description: /^The actor_token expired at .*: obtain a fresh one \(rule actor-token\)\.$/ });
      refused(rfc({ scope: 'api://docs/Docs.Read', actor: { ...own(), nbf: NOW + 600 } }), 'actor-token', { error: 'invalid_request', entraCodes: [Entra.assertionInvalid], description: /actor_token is not valid yet \(nbf in the future\)/ });
      refused(rfc({ scope: 'api://docs/Docs.Read', actor: { ...own(), exp: undefined } }), 'actor-token', { error: 'invalid_request', entraCodes: [Entra.assertionInvalid], description: /actor_token has no numeric 'exp' claim/ });
      refused(rfc({ scope: 'api://docs/Docs.Read', actor: { ...own(), iss: 'https://evil.test' } }), 'actor-token', { error: 'invalid_request', entraCodes: [Entra.assertionInvalid], description: /^The actor_token was issued by 'https:\/\/evil.test', not by this tenant/ });
      refused(rfc({ scope: 'api://docs/Docs.Read', actor: { ...own(), tid: 'another-tenant' } }), 'actor-token', { error: 'invalid_request', entraCodes: [Entra.assertionInvalid], description: /actor_token's tid does not name tenant 'contoso'/ });
    });

    it('is not considered in the Microsoft form', () => {
      const d = allowed(exchange({ actor: { sub: 'whoever' } }));
      assert.deepEqual(d.trail.find((t) => t.rule === 'actor-token'), { rule: 'actor-token', outcome: 'skip' });
      assert.deepEqual(d.claims.act, { sub: 'tasks-api', client_id: 'tasks-api' });
    });
  });
});

describe('decideExchange — may-act (RFC 8693 §4.4): the token’s API says who may act for the user with it', () => {
  // Tasks API lets itself exchange its tokens only for the Docs API, and Reports API (a backend of
  // its own) for any API its consents reach.
  const mf = buildFixture((config) => {
    const contoso = config.tenants[0]!;
    contoso.applications.find((a) => a.clientId === 'tasks-api')!.delegation = { mayAct: [{ client: 'tasks-api', downstream: ['api://docs'] }, { client: 'reports-api' }] };
    contoso.consents.push(
      { client: 'reports-api', resource: 'api://docs', scopes: ['Docs.Read'], for: 'all' },
      { client: 'reports-api', resource: 'api://tasks', scopes: ['Tasks.ReadWrite'], for: 'all' },
      { client: 'tasks-api', resource: 'api://audit', scopes: ['Audit.Write'], for: 'all' },
    );
  });
  const token = (over: Partial<Parameters<typeof assertion>[1]> = {}) => tasksToken(over, mf);
  const run = (over: Over = {}) => exchange({ assertion: token(), userConsents: [], ...over }, NOW, mf);
  const mayActError = (description: RegExp, error = 'invalid_grant'): ExpectedOAuthError => ({ error, entraCodes: [Entra.actorNotAllowed], description: [description, /\(rule may-act\)/] });

  it('tokens addressed to the API carry may_act naming its middle tiers (one object, or an array when several)', () => {
    assert.deepEqual(token().may_act, [{ sub: 'tasks-api', client_id: 'tasks-api' }, { sub: 'reports-api', client_id: 'reports-api' }]);
    const one = buildFixture((config) => {
      config.tenants[0]!.applications.find((a) => a.clientId === 'docs-api')!.delegation = { mayAct: [{ client: 'docs-api' }] };
    });
    assert.deepEqual(assertion(one, { client: 'tasks-api', api: 'docs-api', scopes: ['Docs.Read'] }).may_act, { sub: 'docs-api', client_id: 'docs-api' });
    assert.equal(tasksToken().may_act, undefined, 'no registration, no claim');
  });

  it('the API itself, for a downstream API its entry names: allowed, the rule passes', () => {
    const d = allowed(run());
    assert.deepEqual(d.trail.find((t) => t.rule === 'may-act'), { rule: 'may-act', outcome: 'pass' });
    assert.equal(d.claims.may_act, undefined, 'Docs API registers no mayAct');
  });

  it('the API itself, for a downstream API its entry does not name: refused (9100004)', () => {
    refused(run({ scope: 'api://audit/Audit.Write' }), 'may-act', mayActError(/API 'api:\/\/tasks' allows 'tasks-api' to exchange the tokens addressed to it only for 'api:\/\/docs', not for 'api:\/\/audit'/));
  });

  it('another middle tier the API names exchanges the token; act names it, and the loop rule counts the token’s API', () => {
    const d = allowed(run({ caller: mf.app('reports-api') }));
    assert.deepEqual(d.claims.act, { sub: 'reports-api', client_id: 'reports-api' });
    assert.equal(d.claims.aud, 'docs-api');
    refused(run({ caller: mf.app('reports-api'), scope: 'api://tasks/Tasks.ReadWrite' }), 'chain-loop', grantError(Entra.chainLoop, /tasks-api → reports-api → tasks-api/));
  });

  it('a middle tier the API does not name: refused (9100004) — in the RFC 8693 form as invalid_request (§2.2.2)', () => {
    const expected = /API 'api:\/\/tasks' allows 'tasks-api', 'reports-api' to exchange the tokens addressed to it: 'docs-api' may not act for the user with them/;
    refused(run({ caller: mf.app('docs-api'), scope: 'api://audit/Audit.Write' }), 'may-act', mayActError(expected));
    refused(run({ form: 'token_exchange', caller: mf.app('docs-api'), scope: undefined, audience: 'audit-api' }), 'may-act', mayActError(expected, 'invalid_request'));
  });

  it('without a registration, a token addressed to another API stays refused by assertion-audience', () => {
    refused(exchange({ caller: fx.app('docs-api'), scope: 'api://audit/Audit.Write' }), 'assertion-audience', grantError(Entra.assertionInvalid, /audience is 'tasks-api' but the caller is 'docs-api'/));
  });

  it('the token’s own may_act claim is judged too (the stricter of token and registration); a malformed one is refused', () => {
    refused(exchange({ assertion: { ...tasksToken(), may_act: { sub: 'reports-api', client_id: 'reports-api' } } }), 'may-act', mayActError(/The token's may_act claim names 'reports-api', not 'tasks-api'/));
    allowed(exchange({ assertion: { ...tasksToken(), may_act: [{ sub: 'reports-api' }, { sub: 'tasks-api' }] } }));
    for (const bad of [null, 'tasks-api', [], [{ client_id: 'tasks-api' }], { sub: 7 }, { sub: 'tasks-api', client_id: 7 }]) {
      refused(exchange({ assertion: { ...tasksToken(), may_act: bad } }), 'may-act', mayActError(/may_act claim is malformed/));
    }
    // Registered now, but the token was issued naming only reports-api: tasks-api may not.
    refused(run({ assertion: { ...token(), may_act: { sub: 'reports-api' } } }), 'may-act', mayActError(/names 'reports-api', not 'tasks-api'/));
  });

  it('a sender-constrained token (cnf) is exchanged only by the API it is addressed to', () => {
    refused(run({ caller: mf.app('reports-api'), assertion: { ...token(), cnf: { jkt: 'x'.repeat(43) } } }), 'may-act', mayActError(/bound to a key \(cnf\).*not by 'reports-api'/));
  });
});

describe('decideExchange — claims-challenge: a claims challenge the middle tier passes on is applied, not dropped', () => {
  const ACRS_C1 = '{"access_token":{"acrs":{"essential":true,"value":"c1"}}}';
  const stepUp = (claims: string, code: number, description: RegExp): ExpectedOAuthError => ({
    error: 'interaction_required',
    entraCodes: [code],
    suberror: 'basic_action',
    claims,
    description: [description, /\(rule claims-challenge\)\. Return the claims challenge to the client/],
  });

  it('an acrs authentication context after a password-only sign-in: interaction_required 50076 carrying the challenge as passed on', () => {
    const d = refused(exchange({ claims: ACRS_C1, options: { stepUpSuberror: 'basic_action' } }), 'claims-challenge', stepUp(ACRS_C1, Entra.mfaRequired, /^The claims challenge passed on with this exchange \(the claims parameter\) asks for multi-factor authentication \(authentication context 'c1'\) for API 'api:\/\/docs'/));
    assert.deepEqual(d.challenge, { claims: ACRS_C1, acrValues: [ACR_MFA] });
  });

  it('the same challenge after an MFA sign-in: allowed, the rule passes', () => {
    const d = allowed(exchange({ claims: ACRS_C1, assertion: tasksToken({ amr: ['pwd', 'mfa'] }) }));
    assert.deepEqual(d.trail.find((t) => t.rule === 'claims-challenge'), { rule: 'claims-challenge', outcome: 'pass' });
  });

  it('amr mfa, acr multi-factor, nbf (a newer sign-in): each applied', () => {
    const amr = '{"access_token":{"amr":{"essential":true,"values":["mfa"]}}}';
    // Without stepUpSuberror in the options, no suberror.
    refused(exchange({ claims: amr }), 'claims-challenge', { ...stepUp(amr, Entra.mfaRequired, /asks for multi-factor authentication for API 'api:\/\/docs'/), suberror: undefined });
    const acr = JSON.stringify({ id_token: { acr: { essential: true, values: [ACR_MFA] } } });
    assert.equal(exchange({ claims: acr }).rule, 'claims-challenge');
    const nbf = `{"access_token":{"nbf":{"essential":true,"value":"${NOW - 10}"}}}`;
    const d = refused(exchange({ claims: nbf, options: { stepUpSuberror: 'basic_action' } }), 'claims-challenge', stepUp(nbf, Entra.signInFrequency, /asks for a sign-in at or after .* for API 'api:\/\/docs'/));
    assert.deepEqual(d.challenge, { claims: nbf });
    // A sign-in after the instant meets it.
    allowed(exchange({ claims: `{"access_token":{"nbf":{"essential":true,"value":"${NOW - 120}"}}}` }));
  });

  it('client capabilities (xms_cc) and claims merely asked for demand nothing', () => {
    allowed(exchange({ claims: '{"access_token":{"xms_cc":{"values":["cp1"]}}}' }));
    allowed(exchange({ claims: '{"access_token":{"email":null},"id_token":{"auth_time":{"essential":true}}}' }));
  });

  it('a policy refusal comes first; a malformed claims request is invalid_request (for core callers that did not check it)', () => {
    assert.equal(exchange({ claims: ACRS_C1, scope: 'api://docs/Docs.Write' }).rule, 'conditional-access');
    refused(exchange({ claims: '{"access_token":' }), 'claims-challenge', { error: 'invalid_request', entraCodes: [Entra.malformedRequest], description: /^The claims parameter is not valid JSON \(OpenID Connect Core §5\.5\)\.$/ });
  });
});

describe('decideExchange — audit trail and purity', () => {
  it('a refusal records the rules it passed and the one that refused', () => {
    const d = exchange({ scope: 'api://docs/Docs.Write' });
    assert.ok(!d.ok);
    assert.deepEqual(d.trail, [
      { rule: 'caller-confidential', outcome: 'pass' },
      { rule: 'actor-token', outcome: 'skip' },
      { rule: 'assertion-issuer', outcome: 'pass' },
      { rule: 'assertion-audience', outcome: 'pass' },
      { rule: 'assertion-lifetime', outcome: 'pass' },
      { rule: 'assertion-delegated', outcome: 'pass' },
      { rule: 'may-act', outcome: 'skip' },
      { rule: 'dpop-bound-subject', outcome: 'skip' },
      { rule: 'dpop-incoming', outcome: 'skip' },
      { rule: 'dpop-exchanged', outcome: 'skip' },
      { rule: 'dpop-api-key', outcome: 'skip' },
      { rule: 'dpop-required', outcome: 'skip' },
      { rule: 'user-exists', outcome: 'pass' },
      { rule: 'user-enabled', outcome: 'pass' },
      { rule: 'session-live', outcome: 'skip' },
      { rule: 'downstream-scopes', outcome: 'pass' },
      { rule: 'consent', outcome: 'pass' },
      { rule: 'conditional-access', outcome: 'refuse' },
    ]);
  });

  it('is deterministic for the same input and now', () => {
    assert.deepEqual(exchange(), exchange());
  });

  it('does not change its input', () => {
    const token = tasksToken({ act: actorChain(2) });
    const before = structuredClone(token);
    allowed(exchange({ assertion: token }));
    assert.deepEqual(token, before);
  });

  it('lets a programming error propagate instead of turning it into a refusal', () => {
    const broken = buildFixture();
    const docs = broken.directory.api('docs-api')!;
    const bad = { ...broken.directory, api: (name: string) => (name === 'api://docs' ? { ...docs, accessTokenLifetimeSeconds: -1 } : broken.directory.api(name)) };
    assert.throws(() => exchange({ directory: bad }, NOW, broken), TypeError);
  });
});

describe('decideExchange — DPoP (RFC 9449): bound in, bound out', () => {
  const CLIENT_JKT = 'c'.repeat(43);
  const API_JKT = 'a'.repeat(43);
  const boundToken = () => ({ ...tasksToken(), cnf: { jkt: CLIENT_JKT } });
  const withPolicy = (clientId: string, dpop: { incoming?: boolean; exchanged?: boolean; keys?: string[] }): Fixture => {
    return buildFixture((config) => {
      const app = config.tenants[0]!.applications.find((a) => a.clientId === clientId) as { dpop?: unknown };
      app.dpop = { incoming: false, exchanged: false, keys: [], ...dpop };
    });
  };

  it("a bound subject token with the API's proof: the new token is bound to the API's key", () => {
    const d = allowed(exchange({ assertion: boundToken(), dpop: { jkt: API_JKT } }));
    assert.deepEqual(d.claims.cnf, { jkt: API_JKT });
  });

  it('an unbound exchange with a proof binds the new token; without one it stays a bearer token', () => {
    assert.deepEqual(allowed(exchange({ dpop: { jkt: API_JKT } })).claims.cnf, { jkt: API_JKT });
    assert.equal(allowed(exchange()).claims.cnf, undefined);
  });

  it('dpop-bound-subject: a bound token without a proof is refused in both forms (never silently unbound)', () => {
    for (const form of ['on_behalf_of', 'token_exchange'] as const) {
      refused(exchange({ form, assertion: boundToken(), ...(form === 'token_exchange' ? { scope: undefined, audience: 'docs-api' } : {}) }), 'dpop-bound-subject', { error: 'invalid_dpop_proof', entraCodes: [Entra.dpopBoundSubject] });
    }
  });

  it("dpop-api-key: the proof may not be made with the subject token's own key, nor with a key the API did not register", () => {
    refused(exchange({ assertion: boundToken(), dpop: { jkt: CLIENT_JKT } }), 'dpop-api-key', { error: 'invalid_dpop_proof', entraCodes: [Entra.dpopNotApiKey] });
    const f = withPolicy('tasks-api', { keys: [API_JKT] });
    refused(exchange({ caller: f.app('tasks-api'), directory: f.directory, dpop: { jkt: 'x'.repeat(43) } }, NOW, f), 'dpop-api-key', { error: 'invalid_dpop_proof', entraCodes: [Entra.dpopNotApiKey] });
    allowed(exchange({ caller: f.app('tasks-api'), directory: f.directory, dpop: { jkt: API_JKT } }, NOW, f));
  });

  it("dpop-incoming and dpop-exchanged: the calling API's own policy", () => {
    const incoming = withPolicy('tasks-api', { incoming: true });
    refused(exchange({ caller: incoming.app('tasks-api'), directory: incoming.directory, dpop: { jkt: API_JKT } }, NOW, incoming), 'dpop-incoming', { error: 'invalid_grant', entraCodes: [Entra.dpopIncomingRequired] });
    const exchanged = withPolicy('tasks-api', { exchanged: true });
    refused(exchange({ caller: exchanged.app('tasks-api'), directory: exchanged.directory }, NOW, exchanged), 'dpop-exchanged', { error: 'invalid_dpop_proof', entraCodes: [Entra.dpopExchangedRequired] });
  });

  it("dpop-required: a token for an API whose policy requires DPoP is issued only bound", () => {
    const f = withPolicy('docs-api', { incoming: true });
    refused(exchange({ directory: f.directory, caller: f.app('tasks-api') }, NOW, f), 'dpop-required', { error: 'invalid_dpop_proof', entraCodes: [Entra.dpopRequired] });
    allowed(exchange({ directory: f.directory, caller: f.app('tasks-api'), dpop: { jkt: API_JKT } }, NOW, f));
  });
});

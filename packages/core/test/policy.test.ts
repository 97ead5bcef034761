import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  ACR_MFA,
  Entra,
  evaluatePolicies,
  ipInRanges,
  MAX_CLAIMS_BYTES,
  parseCidr,
  parseClaimsRequest,
  policyError,
  unmetDemands,
  type Policy,
  type PolicyInput,
} from '../src/index.ts';
import { buildFixture, NOW, throwsOAuth } from './fixtures.ts';

const fx = buildFixture();
const alice = fx.user('alice@contoso.test');
const bob = fx.user('bob@contoso.test');
const MFA_CLAIMS = '{"access_token":{"amr":{"essential":true,"values":["mfa"]}}}';
const FRESH_CLAIMS = `{"access_token":{"nbf":{"essential":true,"value":"${NOW}"}},"id_token":{"auth_time":{"essential":true}}}`;

const policy = (name: string, require: Policy['require'], selectors: Partial<Policy> = {}): Policy => ({ tenantId: 'contoso', name, resources: [], require, ...selectors });
const input = (policies: readonly Policy[], over: Partial<PolicyInput> = {}): PolicyInput => ({
  policies,
  resource: 'docs-api',
  scopes: ['Docs.Read'],
  clientId: 'tasks-api',
  userOid: alice.oid,
  auth: { amr: ['pwd'], acr: '1', authTime: NOW - 60 },
  now: NOW,
  ...over,
});

describe('evaluatePolicies', () => {
  const contract = fx.directory.policiesFor('docs-api');

  it('lets Docs.Read through the contract policy and asks for MFA on Docs.Write', () => {
    assert.deepEqual(evaluatePolicies(input(contract)), { ok: true });
    assert.deepEqual(evaluatePolicies(input(contract, { scopes: ['Docs.Read', 'Docs.Write'] })), {
      ok: false,
      kind: 'mfa',
      policy: 'MFA to change documents',
      claims: MFA_CLAIMS,
      acrValues: [ACR_MFA],
    });
  });

  it('is satisfied by mfa in amr', () => {
    assert.deepEqual(evaluatePolicies(input(contract, { scopes: ['Docs.Write'], auth: { amr: ['pwd', 'mfa'], authTime: NOW } })), { ok: true });
  });

  it('gives the exact Entra-shaped challenge that parseClaimsRequest reads back as an MFA demand', () => {
    const result = evaluatePolicies(input(contract, { scopes: ['Docs.Write'] }));
    assert.ok(!result.ok && result.claims !== undefined);
    assert.equal(result.claims, MFA_CLAIMS);
    const demands = parseClaimsRequest(result.claims);
    assert.equal(demands.mfa, true);
    assert.equal(demands.freshSignIn, false);
  });

  describe('selectors', () => {
    it('resources: empty matches all, otherwise only the listed APIs', () => {
      const all = [policy('all', { block: true })];
      assert.equal(evaluatePolicies(input(all, { resource: 'audit-api' })).ok, false);
      const docsOnly = [policy('docs', { block: true }, { resources: ['docs-api'] })];
      assert.equal(evaluatePolicies(input(docsOnly, { resource: 'audit-api' })).ok, true);
      assert.equal(evaluatePolicies(input(docsOnly)).ok, false);
    });

    it('scopes: matches when any requested scope is listed; empty list matches all', () => {
      const p = [policy('write', { block: true }, { scopes: ['Docs.Write', 'Docs.Admin'] })];
      assert.equal(evaluatePolicies(input(p, { scopes: ['Docs.Read'] })).ok, true);
      assert.equal(evaluatePolicies(input(p, { scopes: ['Docs.Read', 'Docs.Write'] })).ok, false);
      assert.equal(evaluatePolicies(input(p, { scopes: [] })).ok, true);
      assert.equal(evaluatePolicies(input([policy('any', { block: true }, { scopes: [] })], { scopes: [] })).ok, false);
    });

    it('clients and users', () => {
      const byClient = [policy('c', { block: true }, { clients: ['reports-api'] })];
      assert.equal(evaluatePolicies(input(byClient)).ok, true);
      assert.equal(evaluatePolicies(input(byClient, { clientId: 'reports-api' })).ok, false);
      const byUser = [policy('u', { block: true }, { users: [bob.oid] })];
      assert.equal(evaluatePolicies(input(byUser)).ok, true);
      assert.equal(evaluatePolicies(input(byUser, { userOid: bob.oid })).ok, false);
      assert.equal(evaluatePolicies(input([policy('e', { block: true }, { clients: [], users: [] })])).ok, false);
    });

    it('no policies: allowed', () => {
      assert.deepEqual(evaluatePolicies(input([])), { ok: true });
    });
  });

  it('block refuses, before anything a step-up could fix', () => {
    const result = evaluatePolicies(input([policy('mfa', { mfa: true }), policy('blocked', { block: true })]));
    assert.deepEqual(result, { ok: false, kind: 'block', policy: 'blocked' });
  });

  it('block: false is no requirement', () => {
    assert.deepEqual(evaluatePolicies(input([policy('off', { block: false, mfa: false })])), { ok: true });
  });

  describe('maxAuthAgeSeconds', () => {
    const fresh = [policy('fresh', { maxAuthAgeSeconds: 300 })];
    it('passes at exactly the maximum age and refuses one second later', () => {
      assert.deepEqual(evaluatePolicies(input(fresh, { auth: { amr: ['pwd'], authTime: NOW - 300 } })), { ok: true });
      assert.deepEqual(evaluatePolicies(input(fresh, { auth: { amr: ['pwd'], authTime: NOW - 301 } })), {
        ok: false,
        kind: 'freshness',
        policy: 'fresh',
        claims: FRESH_CLAIMS,
        maxAge: 300,
      });
    });

    it('treats an unknown auth_time as too old', () => {
      const result = evaluatePolicies(input(fresh, { auth: { amr: ['mfa'] } }));
      assert.equal(!result.ok && result.kind, 'freshness');
    });

    it('reports the strictest maximum age', () => {
      const result = evaluatePolicies(input([...fresh, policy('stricter', { maxAuthAgeSeconds: 120 })], { auth: { amr: ['pwd'], authTime: NOW - 1000 } }));
      assert.ok(!result.ok);
      assert.equal(result.maxAge, 120);
      assert.equal(result.policy, 'fresh');
    });
  });

  it('MFA and a fresh sign-in needed together: one merged challenge, kind mfa', () => {
    const result = evaluatePolicies(input([policy('fresh', { maxAuthAgeSeconds: 60 }), policy('mfa', { mfa: true })], { auth: { amr: ['pwd'], authTime: NOW - 61 } }));
    assert.deepEqual(result, {
      ok: false,
      kind: 'mfa',
      policy: 'mfa',
      claims: `{"access_token":{"amr":{"essential":true,"values":["mfa"]},"nbf":{"essential":true,"value":"${NOW}"}},"id_token":{"auth_time":{"essential":true}}}`,
      acrValues: [ACR_MFA],
      maxAge: 60,
    });
    assert.ok(!result.ok && result.claims);
    const demands = parseClaimsRequest(result.claims);
    assert.equal(demands.mfa, true);
    assert.equal(demands.signInAfter, NOW);
  });

  describe('ipRanges', () => {
    const corp = [policy('corp network', { ipRanges: ['10.0.0.0/8', '192.0.2.7', '2001:db8::/32'] })];
    const at = (ip: string | undefined, signInIp?: string) => evaluatePolicies(input(corp, { ip, auth: { amr: ['pwd'], authTime: NOW, ip: signInIp } }));

    it('IPv4 inside and outside', () => {
      assert.deepEqual(at('10.20.30.40'), { ok: true });
      assert.deepEqual(at('192.0.2.7'), { ok: true });
      assert.deepEqual(at('192.0.2.8'), { ok: false, kind: 'ip', policy: 'corp network' });
      assert.deepEqual(at('11.0.0.1'), { ok: false, kind: 'ip', policy: 'corp network' });
    });

    it('IPv6 inside and outside', () => {
      assert.deepEqual(at('2001:db8:1::5'), { ok: true });
      assert.deepEqual(at('2001:DB8::1'), { ok: true });
      assert.deepEqual(at('2001:db9::1'), { ok: false, kind: 'ip', policy: 'corp network' });
    });

    it('IPv4-mapped IPv6 is judged as the IPv4 address', () => {
      assert.deepEqual(at('::ffff:10.1.2.3'), { ok: true });
      assert.deepEqual(at('::ffff:a01:203'), { ok: true });
      assert.deepEqual(at('::ffff:11.1.2.3'), { ok: false, kind: 'ip', policy: 'corp network' });
    });

    it('judges the sign-in address when known, the request address otherwise', () => {
      assert.deepEqual(at('203.0.113.9', '10.0.0.1'), { ok: true });
      assert.deepEqual(at('10.0.0.1', '203.0.113.9'), { ok: false, kind: 'ip', policy: 'corp network' });
    });

    it('refuses an unknown or malformed address (fail closed)', () => {
      assert.deepEqual(at(undefined), { ok: false, kind: 'ip', policy: 'corp network' });
      assert.deepEqual(at('not-an-ip'), { ok: false, kind: 'ip', policy: 'corp network' });
    });

    it('an empty range list admits no address', () => {
      assert.equal(evaluatePolicies(input([policy('none', { ipRanges: [] })], { ip: '10.0.0.1' })).ok, false);
    });

    it('ip refusal comes before an MFA challenge', () => {
      const result = evaluatePolicies(input([policy('mfa', { mfa: true }), ...corp], { ip: '11.0.0.1' }));
      assert.equal(!result.ok && result.kind, 'ip');
    });
  });
});

describe('ipInRanges and parseCidr', () => {
  it('matches v4, v6, mapped, bare addresses and zones', () => {
    assert.equal(ipInRanges('10.255.255.255', ['10.0.0.0/8']), true);
    assert.equal(ipInRanges('11.0.0.0', ['10.0.0.0/8']), false);
    assert.equal(ipInRanges('0.0.0.1', ['0.0.0.0/0']), true);
    assert.equal(ipInRanges('fe80::1%eth0', ['fe80::/10']), true);
    assert.equal(ipInRanges('::1', ['::1']), true);
    assert.equal(ipInRanges('::2', ['::1']), false);
    assert.equal(ipInRanges('::ffff:192.168.1.1', ['192.168.0.0/16']), true);
    assert.equal(ipInRanges('192.168.1.1', ['::ffff:192.168.0.0/112']), true);
    assert.equal(ipInRanges('10.0.0.1', ['10.0.0.0/33', 'junk']), false);
    assert.equal(ipInRanges('10.0.0.1', []), false);
  });

  it('parses CIDRs strictly', () => {
    assert.deepEqual(parseCidr('10.0.0.0/8'), { address: '10.0.0.0', prefix: 8, family: 'ipv4' });
    assert.deepEqual(parseCidr('2001:db8::/32'), { address: '2001:db8::', prefix: 32, family: 'ipv6' });
    assert.deepEqual(parseCidr('192.0.2.1'), { address: '192.0.2.1', prefix: 32, family: 'ipv4' });
    assert.deepEqual(parseCidr('::1'), { address: '::1', prefix: 128, family: 'ipv6' });
    for (const bad of ['10.0.0.0/33', '10.0.0.0/', '10.0.0.0/-1', '10.0.0.0/8/9', '10.0.0.0/ 8', '::/129', '10.0.0/8', 'host/8', '']) {
      assert.equal(parseCidr(bad), undefined, bad);
    }
  });
});

describe('policyError', () => {
  it('block and ip: invalid_grant AADSTS53003 naming the policy and the API', () => {
    const block = policyError({ ok: false, kind: 'block', policy: 'No docs' }, 'api://docs');
    assert.equal(block.error, 'invalid_grant');
    assert.deepEqual(block.entraCodes, [Entra.blockedByPolicy]);
    assert.match(block.description, /Access to API 'api:\/\/docs' is blocked by the conditional access policy 'No docs'/);
    const ip = policyError({ ok: false, kind: 'ip', policy: 'corp' }, 'api://docs');
    assert.deepEqual([ip.error, ...ip.entraCodes], ['invalid_grant', Entra.blockedByPolicy]);
    assert.match(ip.description, /only from the network ranges it names/);
    assert.doesNotMatch(ip.description, /10\.0\.0\.0/);
  });

  it('mfa: interaction_required AADSTS50076 with the claims challenge', () => {
    const err = policyError({ ok: false, kind: 'mfa', policy: 'MFA', claims: MFA_CLAIMS, acrValues: [ACR_MFA] }, 'api://docs');
    assert.equal(err.error, 'interaction_required');
    assert.deepEqual(err.entraCodes, [Entra.mfaRequired]);
    assert.equal(err.claims, MFA_CLAIMS);
    assert.match(err.description, /requires multi-factor authentication for API 'api:\/\/docs'/);
    assert.match(err.description, /insufficient_claims/);
    assert.equal(err.toJSON().claims, MFA_CLAIMS);
  });

  it('freshness: interaction_required AADSTS70044 with the claims challenge', () => {
    const err = policyError({ ok: false, kind: 'freshness', policy: 'fresh', claims: FRESH_CLAIMS, maxAge: 300 }, 'api://docs');
    assert.deepEqual([err.error, ...err.entraCodes], ['interaction_required', Entra.signInFrequency]);
    assert.equal(err.claims, FRESH_CLAIMS);
    assert.match(err.description, /within the last 300 seconds/);
  });
});

describe('parseClaimsRequest', () => {
  const malformed = (description: RegExp) => ({ error: 'invalid_request', entraCodes: [Entra.malformedRequest], description });

  it('reads an amr MFA demand (Baton / Entra shape)', () => {
    const d = parseClaimsRequest(MFA_CLAIMS);
    assert.equal(d.mfa, true);
    assert.equal(d.freshSignIn, false);
    assert.equal(d.signInAfter, undefined);
    assert.deepEqual(d.request, { access_token: { amr: { essential: true, values: ['mfa'] } } });
  });

  it('reads an acr MFA demand only when every acceptable value means MFA', () => {
    assert.equal(parseClaimsRequest(`{"id_token":{"acr":{"essential":true,"value":"${ACR_MFA}"}}}`).mfa, true);
    const either = parseClaimsRequest(`{"id_token":{"acr":{"values":["1","${ACR_MFA}"]}}}`);
    assert.equal(either.mfa, false);
    assert.deepEqual(either.acrValues, ['1', ACR_MFA]);
  });

  it('reads a fresh sign-in demand from access_token.nbf (Entra CAE shape), as a string or a number', () => {
    const d = parseClaimsRequest(FRESH_CLAIMS);
    assert.equal(d.freshSignIn, true);
    assert.equal(d.signInAfter, NOW);
    assert.equal(d.mfa, false);
    assert.equal(parseClaimsRequest('{"access_token":{"nbf":{"essential":true,"value":1604106651}}}').signInAfter, 1604106651);
  });

  it('reads Entra authentication context demands', () => {
    assert.deepEqual(parseClaimsRequest('{"access_token":{"acrs":{"essential":true,"value":"c1"}}}').authContexts, ['c1']);
    assert.deepEqual(parseClaimsRequest('{"access_token":{"acrs":{"essential":true,"values":["c1","c2"]}}}').authContexts, ['c1', 'c2']);
  });

  it('accepts null entries, userinfo and an empty object, demanding nothing', () => {
    const d = parseClaimsRequest('{"userinfo":{"email":null},"id_token":{"auth_time":{"essential":true}}}');
    assert.deepEqual({ mfa: d.mfa, fresh: d.freshSignIn }, { mfa: false, fresh: false });
    assert.deepEqual(parseClaimsRequest('{}').request, {});
  });

  it('refuses more than 4 KB (counted in UTF-8 bytes)', () => {
    const pad = (n: number) => `{"userinfo":{"x":{"value":"${'a'.repeat(n)}"}}}`;
    const exact = pad(MAX_CLAIMS_BYTES - pad(0).length);
    assert.equal(Buffer.byteLength(exact), MAX_CLAIMS_BYTES);
    parseClaimsRequest(exact);
    throwsOAuth(() => parseClaimsRequest(pad(MAX_CLAIMS_BYTES - pad(0).length + 1)), malformed(/larger than 4096 bytes/));
    const multibyte = `{"userinfo":{"x":{"value":"${'é'.repeat(2100)}"}}}`;
    assert.ok(multibyte.length < MAX_CLAIMS_BYTES);
    throwsOAuth(() => parseClaimsRequest(multibyte), malformed(/larger than 4096 bytes/));
  });

  it('refuses what is not a JSON object', () => {
    throwsOAuth(() => parseClaimsRequest('{"access_token":'), malformed(/is not valid JSON/));
    for (const raw of ['[]', 'null', '"x"', '42']) throwsOAuth(() => parseClaimsRequest(raw), malformed(/must be a JSON object/));
  });

  it('refuses members other than access_token, id_token, userinfo', () => {
    throwsOAuth(() => parseClaimsRequest('{"refresh_token":{}}'), malformed(/member 'refresh_token'; only access_token, id_token, userinfo are allowed/));
  });

  it('refuses claim entries of the wrong shape', () => {
    throwsOAuth(() => parseClaimsRequest('{"access_token":[]}'), malformed(/member 'access_token' must be an object/));
    throwsOAuth(() => parseClaimsRequest('{"access_token":{"amr":"mfa"}}'), malformed(/'access_token.amr' must be null or an object/));
    throwsOAuth(() => parseClaimsRequest('{"access_token":{"amr":{"essential":"yes"}}}'), malformed(/essential' must be a boolean/));
    throwsOAuth(() => parseClaimsRequest('{"access_token":{"amr":{"values":"mfa"}}}'), malformed(/values' must be an array/));
    throwsOAuth(() => parseClaimsRequest('{"access_token":{"nbf":{"essential":true,"value":"soon"}}}'), malformed(/nbf.value' must be epoch seconds/));
    throwsOAuth(() => parseClaimsRequest('{"access_token":{"nbf":{"essential":true}}}'), malformed(/nbf.value' must be epoch seconds/));
  });
});

describe('unmetDemands', () => {
  const mfa = parseClaimsRequest(MFA_CLAIMS);
  const fresh = parseClaimsRequest(FRESH_CLAIMS);
  it('MFA: unmet without mfa in amr', () => {
    assert.deepEqual(unmetDemands(mfa, { amr: ['pwd'] }), { mfa: true, signIn: false });
    assert.deepEqual(unmetDemands(mfa, { amr: ['pwd', 'mfa'] }), { mfa: false, signIn: false });
  });

  it('fresh sign-in: unmet for a sign-in before the demanded instant', () => {
    assert.deepEqual(unmetDemands(fresh, { amr: ['pwd'], authTime: NOW - 1 }), { mfa: false, signIn: true });
    assert.deepEqual(unmetDemands(fresh, { amr: ['pwd'], authTime: NOW }), { mfa: false, signIn: false });
    assert.deepEqual(unmetDemands(fresh, { amr: ['pwd'] }), { mfa: false, signIn: true });
  });
});

/**
 * The store contract (STYLE: one conformance suite for every engine). Every Store engine must pass
 * every test here; an engine file only says how to open it.
 *
 * `open()` gives a migrated store; `openSecond()`, when given, a second instance on the SAME
 * database (another SQLite connection on the file, another PostgreSQL pool on the schema): the
 * races and invalidations are then also run across instances, which is what "two instances act
 * as one" means. Each test works in tenants of its own, so the suite may share one database.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import type { Application, AppRoleAssignment, ConsentGrant, Policy, SigningKeyRecord, Tenant, User } from '@baton/core';
import type { EphemeralRecord, Invalidation, QueuedSet, SignalStream, Store } from '../src/store/types.ts';

const uid = (): string => randomUUID().slice(0, 8);

/** 10 000 characters that do not compress: long values must survive unchanged. */
const LONG = randomBytes(7500).toString('base64');

/** Values that break string-built SQL, LIKE patterns or naive encodings. */
const HOSTILE = [
  `o'brien"; DROP TABLE tenants; --`,
  '100%_off\\%',
  'ünïcødé-用户-🔑-\u202egnp.exe',
  ' padded\ttab\nnewline ',
  '$1 ?1 :name @p',
];

function tenant(id = `t-${uid()}`, extra: Partial<Tenant> = {}): Tenant {
  return { id, tid: randomUUID(), name: `Tenant ${id}`, maxDelegationDepth: 3, ...extra };
}

function fullUser(tenantId: string, username = `alice-${uid()}@contoso.test`): User {
  return {
    tenantId,
    oid: randomUUID(),
    username,
    displayName: 'Alice Example',
    passwordHash: 'scrypt$16384$8$1$c2FsdA$aGFzaA',
    totpSecret: 'JBSWY3DPEHPK3PXP',
    enabled: true,
    revokedBefore: 1_700_000_000,
    email: 'alice@contoso.test',
    directoryRoles: ['admin'],
  };
}

function minimalUser(tenantId: string, username = `bob-${uid()}@contoso.test`): User {
  return { tenantId, oid: randomUUID(), username, displayName: 'Bob', passwordHash: 'scrypt$1$1$1$a$b', enabled: false };
}

function fullApp(tenantId: string, clientId = `app-${uid()}`): Application {
  return {
    tenantId,
    clientId,
    servicePrincipalId: randomUUID(),
    name: 'Tasks API',
    public: false,
    redirectUris: ['https://tasks.test/callback', 'http://localhost:3000/cb'],
    secrets: [
      { hash: 'hmac-sha256$abc', hint: 'tas', createdAt: 1_700_000_000, expiresAt: 1_800_000_000 },
      { hash: 'hmac-sha256$def', hint: 'xyz', createdAt: 1_700_000_001 },
    ],
    jwks: [{ kty: 'EC', crv: 'P-256', x: 'f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU', y: 'x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0', kid: 'k1' }],
    identifierUri: 'api://tasks',
    scopes: [{ id: randomUUID(), value: 'tasks.read', description: 'Read tasks', adminConsentRequired: false }],
    appRoles: [{ id: randomUUID(), value: 'Tasks.ReadWrite.All', description: 'All tasks', allowedMemberTypes: ['Application', 'User'] }],
    knownClientApplications: ['spa'],
    requiredAccess: [{ resource: 'docs-api', scopes: ['docs.read'] }, { resource: 'graph', roles: ['Directory.Read.All'] }],
    accessTokenLifetimeSeconds: 3600,
    signingAlg: 'ES256',
  };
}

function minimalApp(tenantId: string, clientId = `spa-${uid()}`): Application {
  return {
    tenantId,
    clientId,
    servicePrincipalId: randomUUID(),
    name: 'SPA',
    public: true,
    redirectUris: [],
    secrets: [],
    jwks: [],
    scopes: [],
    appRoles: [],
    knownClientApplications: [],
    requiredAccess: [],
    accessTokenLifetimeSeconds: 600,
    signingAlg: 'RS256',
  };
}

function key(tenantId: string, kid: string, status: SigningKeyRecord['status'], extra: Partial<SigningKeyRecord> = {}): SigningKeyRecord {
  return {
    tenantId,
    kid,
    alg: 'ES256',
    status,
    publicJwk: { kty: 'EC', crv: 'P-256', x: `x-${kid}`, y: `y-${kid}` },
    encryptedPrivateKey: `v1.iv.tag.${kid}`,
    createdAt: 1000,
    ...extra,
  };
}

function ephemeral(tenantId: string, extra: Partial<EphemeralRecord> = {}): EphemeralRecord {
  return {
    kind: 'code',
    id: `e-${uid()}`,
    tenantId,
    payload: { clientId: 'spa', scopes: ['openid'], nested: { n: 1, ok: true, none: null } },
    expiresAt: 2000,
    createdAt: 1000,
    ...extra,
  };
}

const byKid = (a: SigningKeyRecord, b: SigningKeyRecord): number => (a.kid < b.kid ? -1 : a.kid > b.kid ? 1 : 0);

/** Resolves with the first change `match` accepts; fails the test if none arrives in time. */
function nextChange(store: Store, match: (change: Invalidation) => boolean, timeoutMs = 5000): Promise<Invalidation> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      unsubscribe();
      reject(new Error(`no matching invalidation within ${timeoutMs} ms`));
    }, timeoutMs);
    const unsubscribe = store.onInvalidate((change) => {
      if (!match(change)) return;
      clearTimeout(timer);
      unsubscribe();
      resolve(change);
    });
  });
}

/**
 * Records the changes a store reports about one tenant, for synchronous assertions. (Other
 * tenants' changes may still be arriving from another instance's earlier writes.)
 */
function recorder(store: Store, tenantId: string): { changes: Invalidation[]; stop: () => void } {
  const changes: Invalidation[] = [];
  const stop = store.onInvalidate((change) => {
    if (change.tenantId === tenantId) changes.push(change);
  });
  return { changes, stop };
}

export function storeContract(name: string, open: () => Promise<Store>, openSecond?: () => Promise<Store>): void {
  describe(`store contract: ${name}`, () => {
    let store: Store;
    let second: Store | undefined;
    /** Two stores when the engine has a second instance, else the same one twice. */
    let pair: [Store, Store];

    before(async () => {
      store = await open();
      second = openSecond ? await openSecond() : undefined;
      pair = [store, second ?? store];
    });
    after(async () => {
      await store?.close();
      await second?.close();
    });

    async function newTenant(extra: Partial<Tenant> = {}): Promise<string> {
      const t = tenant(undefined, extra);
      await store.putTenant(t);
      return t.id;
    }

    // — migrations and lifecycle —

    it('migrate() again is a no-op that keeps the data', async () => {
      const t = tenant();
      await store.putTenant(t);
      await store.migrate();
      await store.migrate();
      assert.deepEqual(await store.getTenant(t.id), t);
      await store.putTenant({ ...t, name: 'after migrate' });
      assert.equal((await store.getTenant(t.id))?.name, 'after migrate');
    });

    it('close() may be called twice', async () => {
      const extra = await open();
      await extra.close();
      await extra.close();
    });

    // — tenants —

    it('tenants: put/get/list round-trip; a second put updates the one row', async () => {
      const t = tenant();
      await store.putTenant(t);
      await store.putTenant(t);
      assert.deepEqual(await store.getTenant(t.id), t);
      const updated = { ...t, name: 'Renamed', maxDelegationDepth: 5 };
      await store.putTenant(updated);
      assert.deepEqual(await store.getTenant(t.id), updated);
      const listed = (await store.listTenants()).filter((x) => x.id === t.id);
      assert.deepEqual(listed, [updated]);
      assert.equal(await store.getTenant(`missing-${uid()}`), undefined);
    });

    it('tenants: listTenants is ordered by id', async () => {
      const prefix = `order-${uid()}-`;
      for (const suffix of ['c', 'a', 'b']) await store.putTenant(tenant(prefix + suffix));
      const ids = (await store.listTenants()).map((t) => t.id).filter((id) => id.startsWith(prefix));
      assert.deepEqual(ids, [`${prefix}a`, `${prefix}b`, `${prefix}c`]);
    });

    // — users —

    it('users: every optional field round-trips present and absent', async () => {
      const tenantId = await newTenant();
      const full = fullUser(tenantId);
      const minimal = minimalUser(tenantId);
      await store.putUser(full);
      await store.putUser(minimal);
      assert.deepEqual(await store.getUserById(tenantId, full.oid), full);
      assert.deepEqual(await store.getUserByName(tenantId, full.username), full);
      const back = await store.getUserById(tenantId, minimal.oid);
      assert.deepEqual(back, minimal);
      for (const field of ['totpSecret', 'revokedBefore', 'email', 'directoryRoles']) {
        assert.equal(field in (back as object), false, `${field} must stay absent`);
      }
      assert.equal(await store.getUserById(tenantId, randomUUID()), undefined);
      assert.equal(await store.getUserByName(tenantId, 'nobody@contoso.test'), undefined);
      // Users are per tenant.
      const other = await newTenant();
      assert.equal(await store.getUserByName(other, full.username), undefined);
    });

    it('users: upsert by oid leaves one row and moves the username', async () => {
      const tenantId = await newTenant();
      const user = fullUser(tenantId, 'old@contoso.test');
      await store.putUser(user);
      await store.putUser(user);
      const renamed = { ...user, username: 'new@contoso.test', enabled: false };
      await store.putUser(renamed);
      assert.deepEqual(await store.listUsers(tenantId), [renamed]);
      assert.equal(await store.getUserByName(tenantId, 'old@contoso.test'), undefined);
      assert.deepEqual(await store.getUserByName(tenantId, 'new@contoso.test'), renamed);
    });

    it('users: a username taken by another oid is refused', async () => {
      const tenantId = await newTenant();
      const first = fullUser(tenantId, 'same@contoso.test');
      await store.putUser(first);
      await assert.rejects(store.putUser(minimalUser(tenantId, 'same@contoso.test')));
      assert.deepEqual(await store.listUsers(tenantId), [first]);
    });

    it('users: listUsers pages in username order', async () => {
      const tenantId = await newTenant();
      const users = ['u3', 'u0', 'u4', 'u1', 'u2'].map((name) => minimalUser(tenantId, name));
      for (const user of users) await store.putUser(user);
      const names = (list: User[]) => list.map((u) => u.username);
      assert.deepEqual(names(await store.listUsers(tenantId)), ['u0', 'u1', 'u2', 'u3', 'u4']);
      assert.deepEqual(names(await store.listUsers(tenantId, { limit: 2 })), ['u0', 'u1']);
      assert.deepEqual(names(await store.listUsers(tenantId, { limit: 2, offset: 1 })), ['u1', 'u2']);
      assert.deepEqual(names(await store.listUsers(tenantId, { offset: 3 })), ['u3', 'u4']);
      assert.deepEqual(await store.listUsers(tenantId, { limit: 0 }), []);
      assert.deepEqual(await store.listUsers(tenantId, { offset: 10 }), []);
      await assert.rejects(store.listUsers(tenantId, { limit: -1 }), TypeError);
      await assert.rejects(store.listUsers(tenantId, { offset: 1.5 }), TypeError);
    });

    it('registrations need their tenant to exist', async () => {
      const ghost = `ghost-${uid()}`;
      await assert.rejects(store.putUser(minimalUser(ghost)));
      await assert.rejects(store.putApplication(minimalApp(ghost)));
      await assert.rejects(store.putConsent({ tenantId: ghost, clientId: 'c', resource: 'r', scopes: [], principal: 'all', createdAt: 1 }));
      assert.deepEqual(await store.listUsers(ghost), []);
    });

    // — applications —

    it('applications: full and minimal records round-trip; upsert keeps one row', async () => {
      const tenantId = await newTenant();
      const full = fullApp(tenantId, 'b-api');
      const minimal = minimalApp(tenantId, 'a-spa');
      await store.putApplication(full);
      await store.putApplication(full);
      await store.putApplication(minimal);
      assert.deepEqual(await store.getApplication(tenantId, full.clientId), full);
      const back = await store.getApplication(tenantId, minimal.clientId);
      assert.deepEqual(back, minimal);
      assert.equal('identifierUri' in (back as object), false);
      assert.deepEqual(await store.listApplications(tenantId), [minimal, full]);
      const changed = { ...full, redirectUris: ['https://tasks.test/other'], secrets: [] };
      await store.putApplication(changed);
      assert.deepEqual(await store.listApplications(tenantId), [minimal, changed]);
      assert.equal(await store.getApplication(tenantId, 'missing'), undefined);
    });

    it('applications: a metadata-document client (an https URL as client id, its registration and token audience) round-trips', async () => {
      const tenantId = await newTenant();
      const clientId = 'https://agent.example/.well-known/oauth-client/metadata.json?v=1';
      const client = {
        ...minimalApp(tenantId, clientId),
        registration: { kind: 'metadata-document' as const, registeredAt: 1_700_000_000, expiresAt: 1_700_000_300, logoUri: 'https://agent.example/logo.png', clientUri: 'https://agent.example/' },
      };
      const mcp = { ...fullApp(tenantId, 'mcp-server'), identifierUri: 'https://mcp.example/mcp', tokenAudience: 'identifierUri' as const };
      await store.putApplication(client);
      await store.putApplication(mcp);
      assert.deepEqual(await store.getApplication(tenantId, clientId), client);
      assert.deepEqual(await store.getApplication(tenantId, 'mcp-server'), mcp);
      // Fetched again: the cached copy is replaced, one row.
      const refetched = { ...client, redirectUris: ['http://127.0.0.1/callback'], registration: { ...client.registration, registeredAt: 1_700_000_400, expiresAt: 1_700_000_700 } };
      await store.putApplication(refetched);
      assert.deepEqual((await store.listApplications(tenantId)).filter((a) => a.clientId === clientId), [refetched]);
    });

    // — consent —

    it('consents: putConsent replaces the scope set; one row per key', async () => {
      const tenantId = await newTenant();
      const grant: ConsentGrant = { tenantId, clientId: 'tasks', resource: 'docs', scopes: ['docs.read', 'docs.write'], principal: 'all', createdAt: 10 };
      await store.putConsent(grant);
      await store.putConsent(grant);
      assert.deepEqual(await store.listConsents({ tenantId }), [grant]);
      const narrowed = { ...grant, scopes: ['docs.read'], createdAt: 20 };
      await store.putConsent(narrowed);
      assert.deepEqual(await store.listConsents({ tenantId }), [narrowed]);
      const emptied = { ...grant, scopes: [], createdAt: 30 };
      await store.putConsent(emptied);
      assert.deepEqual(await store.listConsents({ tenantId }), [emptied]);
    });

    it('consents: listConsents filters by every field and combination', async () => {
      const tenantId = await newTenant();
      const other = await newTenant();
      const alice = randomUUID();
      const bob = randomUUID();
      const grants: ConsentGrant[] = [];
      for (const clientId of ['spa', 'tasks']) {
        for (const resource of ['docs', 'graph']) {
          for (const principal of ['all', alice, bob]) {
            grants.push({ tenantId, clientId, resource, principal, scopes: [`${clientId}.${resource}`], createdAt: 1 });
          }
        }
      }
      for (const grant of [...grants].reverse()) await store.putConsent(grant);
      await store.putConsent({ tenantId: other, clientId: 'spa', resource: 'docs', principal: 'all', scopes: ['x'], createdAt: 1 });

      const key = (g: ConsentGrant) => [g.clientId, g.resource, g.principal].join('|');
      const expect = (pick: (g: ConsentGrant) => boolean) => grants.filter(pick).sort((a, b) => (key(a) < key(b) ? -1 : 1));
      for (const clientId of [undefined, 'spa', 'tasks', 'nope']) {
        for (const resource of [undefined, 'docs', 'graph']) {
          for (const principal of [undefined, 'all', alice]) {
            const query = { tenantId, ...(clientId && { clientId }), ...(resource && { resource }), ...(principal && { principal }) };
            const expected = expect(
              (g) =>
                (clientId === undefined || g.clientId === clientId) &&
                (resource === undefined || g.resource === resource) &&
                (principal === undefined || g.principal === principal),
            );
            assert.deepEqual(await store.listConsents(query), expected, JSON.stringify(query));
          }
        }
      }
    });

    it('consents: deleteConsent says whether it removed something', async () => {
      const tenantId = await newTenant();
      const grant: ConsentGrant = { tenantId, clientId: 'tasks', resource: 'docs', scopes: ['docs.read'], principal: randomUUID(), createdAt: 1 };
      await store.putConsent(grant);
      await store.putConsent({ ...grant, principal: 'all' });
      assert.equal(await store.deleteConsent(tenantId, 'tasks', 'docs', grant.principal), true);
      assert.equal(await store.deleteConsent(tenantId, 'tasks', 'docs', grant.principal), false);
      assert.equal(await store.deleteConsent(tenantId, 'tasks', 'nope', 'all'), false);
      assert.deepEqual(await store.listConsents({ tenantId }), [{ ...grant, principal: 'all' }]);
    });

    // — app role assignments —

    it('role assignments: upsert by (type, principal, resource) replaces the roles', async () => {
      const tenantId = await newTenant();
      const base: AppRoleAssignment = { tenantId, principalType: 'application', principalId: 'indexer', resource: 'docs', roles: ['Docs.Read.All', 'Docs.Write.All'] };
      await store.putRoleAssignment(base);
      await store.putRoleAssignment(base);
      await store.putRoleAssignment({ ...base, resource: 'alpha', roles: ['A'] });
      // Same id, other principal type: a different assignment.
      await store.putRoleAssignment({ ...base, principalType: 'user', roles: ['U'] });
      assert.deepEqual(await store.listRoleAssignments(tenantId, 'application', 'indexer'), [{ ...base, resource: 'alpha', roles: ['A'] }, base]);
      const replaced = { ...base, roles: ['Docs.Read.All'] };
      await store.putRoleAssignment(replaced);
      assert.deepEqual(await store.listRoleAssignments(tenantId, 'application', 'indexer'), [{ ...base, resource: 'alpha', roles: ['A'] }, replaced]);
      assert.deepEqual(await store.listRoleAssignments(tenantId, 'user', 'indexer'), [{ ...base, principalType: 'user', roles: ['U'] }]);
      assert.deepEqual(await store.listRoleAssignments(tenantId, 'application', 'other'), []);
    });

    it('role assignments: deleteRoleAssignment removes one assignment and says whether it did', async () => {
      const tenantId = await newTenant();
      const base: AppRoleAssignment = { tenantId, principalType: 'application', principalId: 'indexer', resource: 'docs', roles: ['Docs.Read.All'] };
      await store.putRoleAssignment(base);
      await store.putRoleAssignment({ ...base, resource: 'alpha' });
      await store.putRoleAssignment({ ...base, principalType: 'user' });
      assert.equal(await store.deleteRoleAssignment(tenantId, 'application', 'indexer', 'docs'), true);
      assert.equal(await store.deleteRoleAssignment(tenantId, 'application', 'indexer', 'docs'), false);
      assert.deepEqual(await store.listRoleAssignments(tenantId, 'application', 'indexer'), [{ ...base, resource: 'alpha' }]);
      assert.deepEqual(await store.listRoleAssignments(tenantId, 'user', 'indexer'), [{ ...base, principalType: 'user' }]);
    });

    // — conditional access —

    it('policies: replacePolicies replaces the whole set, in order', async () => {
      const tenantId = await newTenant();
      const other = await newTenant();
      const p = (name: string, extra: Partial<Policy> = {}): Policy => ({ tenantId, name, resources: ['docs'], require: { mfa: true }, ...extra });
      const full = p('full', { scopes: ['docs.write'], clients: ['tasks'], users: [randomUUID()], require: { mfa: true, maxAuthAgeSeconds: 300, block: false, ipRanges: ['10.0.0.0/8'] } });
      await store.replacePolicies(tenantId, [p('zeta'), full, p('alpha', { resources: [] })]);
      await store.replacePolicies(other, [{ ...p('other'), tenantId: other }]);
      assert.deepEqual(await store.listPolicies(tenantId), [p('zeta'), full, p('alpha', { resources: [] })]);
      await store.replacePolicies(tenantId, [p('alpha', { resources: [] }), p('zeta')]);
      assert.deepEqual(await store.listPolicies(tenantId), [p('alpha', { resources: [] }), p('zeta')]);
      await store.replacePolicies(tenantId, []);
      assert.deepEqual(await store.listPolicies(tenantId), []);
      assert.deepEqual(await store.listPolicies(other), [{ ...p('other'), tenantId: other }]);
    });

    it('policies: a set that cannot be stored leaves the previous set whole', async () => {
      const tenantId = await newTenant();
      const p = (name: string): Policy => ({ tenantId, name, resources: [], require: { block: true } });
      await store.replacePolicies(tenantId, [p('a'), p('b')]);
      await assert.rejects(store.replacePolicies(tenantId, [p('c'), p('c')]));
      await assert.rejects(store.replacePolicies(tenantId, [{ ...p('d'), tenantId: 'someone-else' }]), TypeError);
      assert.deepEqual(await store.listPolicies(tenantId), [p('a'), p('b')]);
    });

    // — signing keys —

    it('signing keys: put/list round-trip with optional fields absent and present; upsert keeps one row', async () => {
      const tenantId = await newTenant();
      const next = key(tenantId, 'k-next', 'next', { createdAt: 3 });
      const current = key(tenantId, 'k-current', 'current', { createdAt: 2, activatedAt: 2 });
      const retired = key(tenantId, 'k-retired', 'retired', { createdAt: 1, activatedAt: 1, retiredAt: 2, removeAfter: 100, alg: 'RS256', publicJwk: { kty: 'RSA', n: 'AQAB', e: 'AQAB' } });
      for (const k of [next, current, retired, next]) await store.putSigningKey(k);
      assert.deepEqual(await store.listSigningKeys(tenantId), [retired, current, next]);
      const back = (await store.listSigningKeys(tenantId)).find((k) => k.kid === 'k-next');
      for (const field of ['activatedAt', 'retiredAt', 'removeAfter']) assert.equal(field in (back as object), false);
      assert.deepEqual(await store.listSigningKeys(await newTenant()), []);
    });

    it('signing keys: at most one current key per algorithm', async () => {
      const tenantId = await newTenant();
      await store.putSigningKey(key(tenantId, 'k1', 'current'));
      await store.putSigningKey(key(tenantId, 'r1', 'current', { alg: 'RS256' }));
      await assert.rejects(store.putSigningKey(key(tenantId, 'k2', 'current')));
      assert.deepEqual((await store.listSigningKeys(tenantId)).map((k) => k.kid).sort(), ['k1', 'r1']);
    });

    it('signing keys: rotateSigningKey with a stale expectCurrentKid returns false and changes nothing', async () => {
      const tenantId = await newTenant();
      await store.putSigningKey(key(tenantId, 'k1', 'current', { activatedAt: 1000 }));
      await store.putSigningKey(key(tenantId, 'k2', 'next'));
      const before = await store.listSigningKeys(tenantId);
      const rotate = (expectCurrentKid: string | undefined) =>
        store.rotateSigningKey({ tenantId, alg: 'ES256', expectCurrentKid, promoteKid: 'k2', next: key(tenantId, 'k3', 'next'), now: 2000, retireGraceSeconds: 60 });
      assert.equal(await rotate('k0'), false);
      assert.equal(await rotate(undefined), false);
      assert.deepEqual(await store.listSigningKeys(tenantId), before);
    });

    it('signing keys: a successful rotation promotes, retires with grace and inserts the next key', async () => {
      const tenantId = await newTenant();
      const k1 = key(tenantId, 'k1', 'current', { activatedAt: 1000 });
      const k2 = key(tenantId, 'k2', 'next', { createdAt: 1500 });
      const rs = key(tenantId, 'rs', 'current', { alg: 'RS256', activatedAt: 1000 });
      for (const k of [k1, k2, rs]) await store.putSigningKey(k);
      const k3 = key(tenantId, 'k3', 'next', { createdAt: 2000 });
      assert.equal(
        await store.rotateSigningKey({ tenantId, alg: 'ES256', expectCurrentKid: 'k1', promoteKid: 'k2', next: k3, now: 2000, retireGraceSeconds: 600 }),
        true,
      );
      assert.deepEqual((await store.listSigningKeys(tenantId)).sort(byKid), [
        { ...k1, status: 'retired', retiredAt: 2000, removeAfter: 2600 },
        { ...k2, status: 'current', activatedAt: 2000 },
        k3,
        rs,
      ]);
      // The same rotation again is now stale.
      assert.equal(
        await store.rotateSigningKey({ tenantId, alg: 'ES256', expectCurrentKid: 'k1', promoteKid: 'k2', next: key(tenantId, 'k4', 'next'), now: 2100, retireGraceSeconds: 600 }),
        false,
      );
      assert.equal((await store.listSigningKeys(tenantId)).length, 4);
    });

    it('signing keys: the first key is made current by a rotation expecting none', async () => {
      const tenantId = await newTenant();
      await store.putSigningKey(key(tenantId, 'k1', 'next'));
      const first = (kid: string) =>
        store.rotateSigningKey({ tenantId, alg: 'ES256', expectCurrentKid: undefined, promoteKid: 'k1', next: key(tenantId, kid, 'next'), now: 5, retireGraceSeconds: 60 });
      assert.equal(await first('k2'), true);
      assert.equal(await first('k3'), false);
      assert.deepEqual((await store.listSigningKeys(tenantId)).sort(byKid), [key(tenantId, 'k1', 'current', { activatedAt: 5 }), key(tenantId, 'k2', 'next')]);
    });

    it('signing keys: promoting a key that is not next fails; an unknown or wrong-alg key is a TypeError', async () => {
      const tenantId = await newTenant();
      await store.putSigningKey(key(tenantId, 'k1', 'current'));
      await store.putSigningKey(key(tenantId, 'old', 'retired', { retiredAt: 1, removeAfter: 10 }));
      await store.putSigningKey(key(tenantId, 'rs', 'next', { alg: 'RS256' }));
      const before = await store.listSigningKeys(tenantId);
      const rotate = (promoteKid: string, next = key(tenantId, 'k9', 'next')) =>
        store.rotateSigningKey({ tenantId, alg: 'ES256', expectCurrentKid: 'k1', promoteKid, next, now: 5, retireGraceSeconds: 60 });
      assert.equal(await rotate('old'), false);
      await assert.rejects(rotate('nope'), TypeError);
      await assert.rejects(rotate('rs'), TypeError);
      await assert.rejects(rotate('old', key(tenantId, 'k9', 'next', { alg: 'RS256' })), TypeError);
      await assert.rejects(rotate('old', key('another-tenant', 'k9', 'next')), TypeError);
      assert.deepEqual(await store.listSigningKeys(tenantId), before);
    });

    it('signing keys: concurrent rotations from one state: exactly one wins', async () => {
      const tenantId = await newTenant();
      await store.putSigningKey(key(tenantId, 'k1', 'current'));
      await store.putSigningKey(key(tenantId, 'k2', 'next'));
      const results = await Promise.all(
        Array.from({ length: 6 }, (_, i) =>
          (pair[i % 2] as Store).rotateSigningKey({
            tenantId,
            alg: 'ES256',
            expectCurrentKid: 'k1',
            promoteKid: 'k2',
            next: key(tenantId, `n${i}`, 'next'),
            now: 10,
            retireGraceSeconds: 60,
          }),
        ),
      );
      assert.equal(results.filter(Boolean).length, 1);
      const keys = await store.listSigningKeys(tenantId);
      assert.deepEqual(keys.filter((k) => k.status === 'current').map((k) => k.kid), ['k2']);
      assert.deepEqual(keys.filter((k) => k.status === 'retired').map((k) => k.kid), ['k1']);
      assert.deepEqual(keys.filter((k) => k.status === 'next').map((k) => k.kid), [`n${results.indexOf(true)}`]);
    });

    it('signing keys: concurrent first rotations (no current key yet): exactly one wins', async () => {
      const tenantId = await newTenant();
      for (let i = 0; i < 4; i++) await store.putSigningKey(key(tenantId, `c${i}`, 'next'));
      const results = await Promise.all(
        Array.from({ length: 4 }, (_, i) =>
          (pair[i % 2] as Store).rotateSigningKey({
            tenantId,
            alg: 'ES256',
            expectCurrentKid: undefined,
            promoteKid: `c${i}`,
            next: key(tenantId, `n${i}`, 'next'),
            now: 10,
            retireGraceSeconds: 60,
          }),
        ),
      );
      assert.equal(results.filter(Boolean).length, 1);
      const current = (await store.listSigningKeys(tenantId)).filter((k) => k.status === 'current');
      assert.deepEqual(current.map((k) => k.kid), [`c${results.indexOf(true)}`]);
    });

    it('signing keys: pruneSigningKeys drops only keys whose removeAfter has passed', async () => {
      const tenantId = await newTenant();
      const other = await newTenant();
      const keep = [
        key(tenantId, 'current', 'current'),
        key(tenantId, 'next', 'next'),
        key(tenantId, 'at-now', 'retired', { retiredAt: 1, removeAfter: 500 }),
        key(tenantId, 'later', 'retired', { retiredAt: 1, removeAfter: 900 }),
      ];
      const gone = [key(tenantId, 'gone1', 'retired', { retiredAt: 1, removeAfter: 100 }), key(tenantId, 'gone2', 'retired', { retiredAt: 1, removeAfter: 499 })];
      for (const k of [...keep, ...gone]) await store.putSigningKey(k);
      await store.putSigningKey(key(other, 'gone-elsewhere', 'retired', { retiredAt: 1, removeAfter: 100 }));
      assert.equal(await store.pruneSigningKeys(tenantId, 500), 2);
      assert.deepEqual((await store.listSigningKeys(tenantId)).sort(byKid), [...keep].sort(byKid));
      assert.equal(await store.pruneSigningKeys(tenantId, 500), 0);
      assert.equal((await store.listSigningKeys(other)).length, 1);
    });

    // — one-time values —

    it('useOnce: true once, false while unexpired, true again after expiry', async () => {
      const ns = `jti:${uid()}`;
      assert.equal(await store.useOnce(ns, 'a', 1000, 100), true);
      assert.equal(await store.useOnce(ns, 'a', 1000, 100), false);
      assert.equal(await store.useOnce(ns, 'a', 5000, 999), false);
      // Namespaces do not collide.
      assert.equal(await store.useOnce(`${ns}:other`, 'a', 1000, 100), true);
      // From its expiry on, the id may be recorded again (and is then live until the new expiry).
      assert.equal(await store.useOnce(ns, 'a', 2000, 1000), true);
      assert.equal(await store.useOnce(ns, 'a', 2000, 1500), false);
      assert.equal(await store.useOnce(ns, 'a', 3000, 2500), true);
    });

    it('useOnce: 20 concurrent calls (across instances when there are two): exactly one true', async () => {
      const ns = `jti:${uid()}`;
      const results = await Promise.all(Array.from({ length: 20 }, (_, i) => (pair[i % 2] as Store).useOnce(ns, 'same-jti', 1000, 1)));
      assert.equal(results.filter(Boolean).length, 1);
    });

    it('useProofOnce: true once, false while unexpired (on the other instance too), true again after expiry', async () => {
      const ns = `dpop:${uid()}`;
      assert.equal(await pair[0].useProofOnce(ns, 'jkt:jti-1', 1000, 100), true);
      assert.equal(await pair[0].useProofOnce(ns, 'jkt:jti-1', 1000, 100), false);
      assert.equal(await pair[1].useProofOnce(ns, 'jkt:jti-1', 1000, 999), false);
      assert.equal(await pair[1].useProofOnce(`${ns}:other`, 'jkt:jti-1', 1000, 100), true);
      assert.equal(await pair[1].useProofOnce(ns, 'jkt:jti-1', 2000, 1000), true);
      assert.equal(await pair[0].useProofOnce(ns, 'jkt:jti-1', 2000, 1500), false);
    });

    it('useProofOnce: 20 concurrent calls (across instances when there are two): exactly one true', async () => {
      const ns = `dpop:${uid()}`;
      const results = await Promise.all(Array.from({ length: 20 }, (_, i) => (pair[i % 2] as Store).useProofOnce(ns, 'same-jti', 1000, 1)));
      assert.equal(results.filter(Boolean).length, 1);
    });

    it('useProofOnce: a record outlives the instance that wrote it', { skip: openSecond === undefined && 'one instance: nothing to outlive' }, async () => {
      const ns = `dpop:${uid()}`;
      const writer = await (openSecond as () => Promise<Store>)();
      assert.equal(await writer.useProofOnce(ns, 'jti', 1000, 1), true);
      await writer.close();
      assert.equal(await store.useProofOnce(ns, 'jti', 1000, 2), false);
    });

    it('ephemeral: records round-trip with optional fields absent and present; put again replaces', async () => {
      const tenantId = `t-${uid()}`;
      const bare = ephemeral(tenantId);
      const withFamily = ephemeral(tenantId, { kind: 'refresh', familyId: `f-${uid()}`, payload: { deep: [1, 'two', { three: 3 }] } });
      await store.putEphemeral(bare);
      await store.putEphemeral(withFamily);
      const back = await store.getEphemeral(bare.kind, bare.id, 1500);
      assert.deepEqual(back, bare);
      for (const field of ['familyId', 'consumedAt', 'revokedAt']) assert.equal(field in (back as object), false);
      assert.deepEqual(await store.getEphemeral('refresh', withFamily.id, 1500), withFamily);
      // Kinds are separate namespaces of ids.
      assert.equal(await store.getEphemeral('session', bare.id, 1500), undefined);
      const replaced = { ...bare, payload: { replaced: true }, expiresAt: 3000 };
      await store.putEphemeral(replaced);
      assert.deepEqual(await store.getEphemeral(bare.kind, bare.id, 2500), replaced);
    });

    it('ephemeral: get hides expired, consumed and revoked records', async () => {
      const tenantId = `t-${uid()}`;
      const record = ephemeral(tenantId, { familyId: `f-${uid()}` });
      await store.putEphemeral(record);
      assert.ok(await store.getEphemeral(record.kind, record.id, 1999));
      assert.equal(await store.getEphemeral(record.kind, record.id, 2000), undefined);
      assert.equal(await store.getEphemeral(record.kind, record.id, 5000), undefined);
      const consumed = ephemeral(tenantId, { consumedAt: 1100 });
      await store.putEphemeral(consumed);
      assert.equal(await store.getEphemeral(consumed.kind, consumed.id, 1500), undefined);
      await store.revokeFamily(tenantId, record.familyId as string, 1200);
      assert.equal(await store.getEphemeral(record.kind, record.id, 1500), undefined);
      assert.equal(await store.getEphemeral('code', `unknown-${uid()}`, 1500), undefined);
    });

    it('ephemeral: a put cannot undo a consumption or revocation while the value lives', async () => {
      const tenantId = `t-${uid()}`;
      // Instance A read the session, instance B revoked it, A writes back its (stale) copy.
      const session = ephemeral(tenantId, { kind: 'session', familyId: `f-${uid()}` });
      await store.putEphemeral(session);
      await pair[1].revokeFamily(tenantId, session.familyId as string, 1100);
      await store.putEphemeral({ ...session, payload: { touched: true } });
      assert.equal(await store.getEphemeral('session', session.id, 1200), undefined);
      assert.deepEqual(await store.consumeEphemeral('session', session.id, 1200), {
        status: 'revoked',
        record: { ...session, payload: { touched: true }, revokedAt: 1100 },
      });
      const code = ephemeral(tenantId);
      await store.putEphemeral(code);
      assert.equal((await pair[1].consumeEphemeral('code', code.id, 1100)).status, 'ok');
      await store.putEphemeral(code);
      assert.equal((await store.consumeEphemeral('code', code.id, 1200)).status, 'replayed');
      // Once expired the value is gone; an id used again for a new value starts afresh.
      const reused = { ...code, payload: { second: true }, createdAt: 2000, expiresAt: 3000 };
      await store.putEphemeral(reused);
      assert.deepEqual(await store.getEphemeral('code', code.id, 2500), reused);
    });

    it('ephemeral: consume is ok, then replayed, then revoked after revokeFamily; unknown and expired are missing', async () => {
      const tenantId = `t-${uid()}`;
      const record = ephemeral(tenantId, { kind: 'refresh', familyId: `f-${uid()}` });
      await store.putEphemeral(record);
      assert.deepEqual(await store.consumeEphemeral('refresh', record.id, 1100), { status: 'ok', record: { ...record, consumedAt: 1100 } });
      assert.deepEqual(await store.consumeEphemeral('refresh', record.id, 1200), { status: 'replayed', record: { ...record, consumedAt: 1100 } });
      assert.equal(await store.revokeFamily(tenantId, record.familyId as string, 1300), 1);
      assert.deepEqual(await store.consumeEphemeral('refresh', record.id, 1400), {
        status: 'revoked',
        record: { ...record, consumedAt: 1100, revokedAt: 1300 },
      });
      assert.deepEqual(await store.consumeEphemeral('refresh', `unknown-${uid()}`, 1100), { status: 'missing' });
      assert.deepEqual(await store.consumeEphemeral('code', record.id, 1100), { status: 'missing' });
      const expiring = ephemeral(tenantId);
      await store.putEphemeral(expiring);
      assert.deepEqual(await store.consumeEphemeral('code', expiring.id, 2000), { status: 'missing' });
      // An expired record stays missing even once it was consumed or revoked.
      assert.deepEqual(await store.consumeEphemeral('refresh', record.id, 2000), { status: 'missing' });
      // A revoked, never consumed record reports revoked.
      const fresh = ephemeral(tenantId, { familyId: `f-${uid()}` });
      await store.putEphemeral(fresh);
      await store.revokeFamily(tenantId, fresh.familyId as string, 1050);
      assert.deepEqual(await store.consumeEphemeral('code', fresh.id, 1100), { status: 'revoked', record: { ...fresh, revokedAt: 1050 } });
    });

    it('ephemeral: 20 concurrent consumes (across instances when there are two): exactly one ok', async () => {
      const record = ephemeral(`t-${uid()}`);
      await store.putEphemeral(record);
      const results = await Promise.all(Array.from({ length: 20 }, (_, i) => (pair[i % 2] as Store).consumeEphemeral('code', record.id, 1500)));
      assert.equal(results.filter((r) => r.status === 'ok').length, 1);
      assert.equal(results.filter((r) => r.status === 'replayed').length, 19);
    });

    it('ephemeral: revokeFamily revokes every kind of the family in that tenant and counts them', async () => {
      const tenantId = `t-${uid()}`;
      const otherTenant = `t-${uid()}`;
      const familyId = `f-${uid()}`;
      const members = [
        ephemeral(tenantId, { kind: 'code', familyId }),
        ephemeral(tenantId, { kind: 'refresh', familyId }),
        ephemeral(tenantId, { kind: 'session', familyId }),
      ];
      const bystanders = [
        ephemeral(tenantId, { kind: 'refresh', familyId: `f-${uid()}` }),
        ephemeral(tenantId, { kind: 'refresh' }),
        ephemeral(otherTenant, { kind: 'refresh', familyId }),
      ];
      for (const r of [...members, ...bystanders]) await store.putEphemeral(r);
      assert.equal(await store.revokeFamily(tenantId, familyId, 1500), 3);
      for (const r of members) assert.equal((await store.consumeEphemeral(r.kind, r.id, 1600)).status, 'revoked');
      for (const r of bystanders) assert.deepEqual(await store.getEphemeral(r.kind, r.id, 1600), r);
      // Already revoked: nothing more to count.
      assert.equal(await store.revokeFamily(tenantId, familyId, 1700), 0);
      assert.equal(await store.revokeFamily(tenantId, `f-${uid()}`, 1700), 0);
    });

    it('ephemeral: deleteEphemeral removes the record', async () => {
      const record = ephemeral(`t-${uid()}`, { kind: 'interaction' });
      await store.putEphemeral(record);
      await store.deleteEphemeral('interaction', record.id);
      await store.deleteEphemeral('interaction', record.id);
      assert.equal(await store.getEphemeral('interaction', record.id, 1500), undefined);
      assert.deepEqual(await store.consumeEphemeral('interaction', record.id, 1500), { status: 'missing' });
    });

    it('sweep removes dynamic registrations deleted or expired unused, with their consents; their tenant hears it', async () => {
      // Below the other sweep test's clock (9e9), above every other test's.
      const t0 = 8_000_000_000;
      const tenantId = await newTenant();
      const dynamic = (clientId: string, registration: Record<string, unknown>): Application => ({
        ...minimalApp(tenantId, clientId),
        registration: { kind: 'dynamic', registeredAt: t0 - 100, accessTokenHash: 'h', ...registration },
      });
      const deleted = dynamic(`del-${uid()}`, { deletedAt: t0 });
      const unused = dynamic(`unused-${uid()}`, { expiresAt: t0 + 10 });
      const used = dynamic(`used-${uid()}`, {});
      const document = { ...minimalApp(tenantId, `https://agent.example/${uid()}.json`), registration: { kind: 'metadata-document' as const, registeredAt: t0 - 100, expiresAt: t0 - 50 } };
      const configured = fullApp(tenantId);
      for (const app of [deleted, unused, used, document, configured]) await store.putApplication(app);
      const consent = (clientId: string): ConsentGrant => ({ tenantId, clientId, resource: configured.clientId, scopes: ['x'], principal: 'all', createdAt: 1 });
      for (const app of [deleted, used]) await store.putConsent(consent(app.clientId));
      const heard = nextChange(pair[1], (c) => c.tenantId === tenantId && c.entity === 'application');
      assert.ok((await store.sweep(t0 + 5)) >= 2);
      await heard;
      assert.equal(await pair[1].getApplication(tenantId, deleted.clientId), undefined, 'deleted: swept');
      assert.deepEqual(await store.listConsents({ tenantId, clientId: deleted.clientId }), [], 'with its consents');
      assert.deepEqual(await store.getApplication(tenantId, unused.clientId), unused, 'not expired yet: kept');
      await store.sweep(t0 + 10);
      const left = (await pair[1].listApplications(tenantId)).map((a) => a.clientId).sort();
      assert.deepEqual(left, [used.clientId, document.clientId, configured.clientId].sort(), 'used, metadata-document and configured applications stay');
      assert.equal((await store.listConsents({ tenantId, clientId: used.clientId })).length, 1);
    });

    it('sweep removes expired ephemeral, one-time and proof replay values and counts them', async () => {
      // Far beyond every other test's clock, so the count is exactly this test's rows.
      const base = 9_000_000_000;
      await store.sweep(base);
      const tenantId = `t-${uid()}`;
      const ns = `jti:${uid()}`;
      const expired = [ephemeral(tenantId, { expiresAt: base + 10 }), ephemeral(tenantId, { kind: 'refresh', expiresAt: base + 100, consumedAt: base + 1 })];
      const live = ephemeral(tenantId, { expiresAt: base + 1000 });
      for (const r of [...expired, live]) await store.putEphemeral(r);
      assert.equal(await store.useOnce(ns, 'old', base + 50, base), true);
      assert.equal(await store.useOnce(ns, 'new', base + 5000, base), true);
      assert.equal(await pair[1].useProofOnce(ns, 'old-proof', base + 60, base), true);
      assert.equal(await pair[1].useProofOnce(ns, 'new-proof', base + 5000, base), true);
      assert.equal(await store.sweep(base + 100), 4);
      assert.equal(await store.sweep(base + 100), 0);
      assert.equal(await pair[1].useProofOnce(ns, 'new-proof', base + 5000, base + 100), false);
      assert.deepEqual(await store.getEphemeral(live.kind, live.id, base + 100), live);
      assert.deepEqual(await store.consumeEphemeral('refresh', (expired[1] as EphemeralRecord).id, base + 50), { status: 'missing' });
      assert.equal(await store.useOnce(ns, 'new', base + 5000, base + 100), false);
    });

    // — invalidation —

    it('onInvalidate: every registration write reports its tenant and entity before it resolves', async () => {
      const tenantId = `t-${uid()}`;
      const { changes, stop } = recorder(store, tenantId);
      const expectLast = (entity: Invalidation['entity']) => assert.deepEqual(changes.at(-1), { tenantId, entity });
      await store.putTenant(tenant(tenantId));
      expectLast('tenant');
      await store.putUser(minimalUser(tenantId));
      expectLast('user');
      await store.putApplication(minimalApp(tenantId));
      expectLast('application');
      await store.putConsent({ tenantId, clientId: 'c', resource: 'r', principal: 'all', scopes: ['s'], createdAt: 1 });
      expectLast('consent');
      await store.deleteConsent(tenantId, 'c', 'r', 'all');
      expectLast('consent');
      await store.putRoleAssignment({ tenantId, principalType: 'user', principalId: 'u', resource: 'r', roles: ['R'] });
      expectLast('roleAssignment');
      changes.length = 0;
      await store.deleteRoleAssignment(tenantId, 'user', 'u', 'r');
      expectLast('roleAssignment');
      await store.replacePolicies(tenantId, []);
      expectLast('policy');
      await store.putSigningKey(key(tenantId, 'k1', 'next'));
      expectLast('signingKey');
      await store.rotateSigningKey({ tenantId, alg: 'ES256', expectCurrentKid: undefined, promoteKid: 'k1', next: key(tenantId, 'k2', 'next'), now: 1, retireGraceSeconds: 0 });
      expectLast('signingKey');
      await store.rotateSigningKey({ tenantId, alg: 'ES256', expectCurrentKid: 'k1', promoteKid: 'k2', next: key(tenantId, 'k3', 'next'), now: 2, retireGraceSeconds: 0 });
      expectLast('signingKey');
      changes.length = 0;
      assert.equal(await store.pruneSigningKeys(tenantId, 3), 1);
      expectLast('signingKey');
      // Writes that change nothing cached report nothing.
      changes.length = 0;
      await store.deleteConsent(tenantId, 'c', 'r', 'all');
      await store.deleteRoleAssignment(tenantId, 'user', 'u', 'r');
      await store.rotateSigningKey({ tenantId, alg: 'ES256', expectCurrentKid: 'stale', promoteKid: 'k3', next: key(tenantId, 'k4', 'next'), now: 3, retireGraceSeconds: 0 });
      await store.putEphemeral(ephemeral(tenantId));
      await store.useOnce(`ns-${uid()}`, 'x', 10, 1);
      assert.deepEqual(changes, []);
      stop();
    });

    it('onInvalidate: unsubscribe stops the calls; a throwing listener does not fail the write', async () => {
      const tenantId = await newTenant();
      const first = recorder(store, tenantId);
      const kept = recorder(store, tenantId);
      const thrower = store.onInvalidate(() => {
        throw new Error('deliberate listener failure (test)');
      });
      const warned = new Promise((resolve) => process.once('warning', resolve));
      await store.putApplication(minimalApp(tenantId));
      await warned;
      first.stop();
      first.stop();
      thrower();
      await store.putApplication(minimalApp(tenantId));
      assert.equal(first.changes.length, 1);
      assert.equal(kept.changes.length, 2);
      kept.stop();
    });

    if (openSecond) {
      it('onInvalidate: a listener on the second instance hears a write made on the first', async () => {
        const b = second as Store;
        const tenantId = await newTenant();
        // Either the precise change or "everything" satisfies a cache; nothing at all must fail.
        const hears = (entity: Invalidation['entity']) =>
          nextChange(b, (c) => (c.tenantId === tenantId || c.tenantId === '*') && (c.entity === entity || c.entity === '*'));
        const heardApp = hears('application');
        await store.putApplication(minimalApp(tenantId));
        await heardApp;
        const heardConsent = hears('consent');
        await store.putConsent({ tenantId, clientId: 'c', resource: 'r', principal: 'all', scopes: [], createdAt: 1 });
        await heardConsent;
        const heardKey = hears('signingKey');
        await store.putSigningKey(key(tenantId, 'k1', 'next'));
        await heardKey;
        // And the other way round.
        const heardOnA = nextChange(store, (c) => (c.tenantId === tenantId || c.tenantId === '*') && (c.entity === 'policy' || c.entity === '*'));
        await b.replacePolicies(tenantId, []);
        await heardOnA;
      });

      it('onInvalidate: an unsubscribed listener on the second instance hears nothing more', async () => {
        const b = second as Store;
        const tenantId = await newTenant();
        const gone = recorder(b, tenantId);
        gone.stop();
        const heard = nextChange(b, (c) => c.tenantId === tenantId || c.tenantId === '*');
        await store.putUser(minimalUser(tenantId));
        await heard;
        assert.deepEqual(gone.changes, []);
      });

      it('two instances share the data', async () => {
        const b = second as Store;
        const t = tenant();
        await store.putTenant(t);
        assert.deepEqual(await b.getTenant(t.id), t);
        const app = fullApp(t.id);
        await b.putApplication(app);
        assert.deepEqual(await store.getApplication(t.id, app.clientId), app);
        const record = ephemeral(t.id);
        await store.putEphemeral(record);
        assert.equal((await b.consumeEphemeral('code', record.id, 1500)).status, 'ok');
        assert.equal((await store.consumeEphemeral('code', record.id, 1500)).status, 'replayed');
      });
    }

    // — hostile input —

    it('hostile input: quotes, %, unicode and 10 KB values round-trip unchanged', async () => {
      for (const hostile of HOSTILE) {
        const t = tenant(`${hostile}-${uid()}`, { name: LONG });
        await store.putTenant(t);
        assert.deepEqual(await store.getTenant(t.id), t);
        const user = { ...fullUser(t.id, hostile), oid: `${hostile}-oid`, displayName: LONG, directoryRoles: [hostile, LONG] };
        await store.putUser(user);
        assert.deepEqual(await store.getUserByName(t.id, hostile), user);
        assert.deepEqual(await store.getUserById(t.id, user.oid), user);
        // A LIKE wildcard or a quote in a lookup is only ever a literal.
        assert.equal(await store.getUserByName(t.id, '%'), undefined);
        assert.equal(await store.getUserByName(t.id, `' OR '1'='1`), undefined);
        const app = { ...fullApp(t.id, `${hostile}-client`), name: LONG, redirectUris: [`https://x.test/?q=${hostile}`] };
        await store.putApplication(app);
        assert.deepEqual(await store.listApplications(t.id), [app]);
        const grant: ConsentGrant = { tenantId: t.id, clientId: app.clientId, resource: hostile, principal: hostile, scopes: [hostile, LONG], createdAt: 1 };
        await store.putConsent(grant);
        assert.deepEqual(await store.listConsents({ tenantId: t.id, clientId: app.clientId, resource: hostile, principal: hostile }), [grant]);
        assert.deepEqual(await store.listConsents({ tenantId: t.id, principal: '%' }), []);
        assert.equal(await store.deleteConsent(t.id, app.clientId, hostile, hostile), true);
        const role: AppRoleAssignment = { tenantId: t.id, principalType: 'user', principalId: hostile, resource: hostile, roles: [LONG] };
        await store.putRoleAssignment(role);
        assert.deepEqual(await store.listRoleAssignments(t.id, 'user', hostile), [role]);
        const policy: Policy = { tenantId: t.id, name: hostile, resources: [hostile], require: { ipRanges: [LONG] } };
        await store.replacePolicies(t.id, [policy]);
        assert.deepEqual(await store.listPolicies(t.id), [policy]);
        const k = key(t.id, `${hostile}-kid`, 'next', { encryptedPrivateKey: LONG });
        await store.putSigningKey(k);
        assert.deepEqual(await store.listSigningKeys(t.id), [k]);
        const record = ephemeral(t.id, { id: `${hostile}-id`, familyId: hostile, payload: { state: hostile, nul: 'a\u0000b', long: LONG } });
        await store.putEphemeral(record);
        assert.deepEqual(await store.getEphemeral('code', record.id, 1500), record);
        assert.equal(await store.revokeFamily(t.id, hostile, 1600), 1);
        assert.equal(await store.useOnce(hostile, hostile, 10, 1), true);
        assert.equal(await store.useOnce(hostile, hostile, 10, 1), false);
      }
    });

    it('hostile input: 10 KB lookups and one-time ids are answered, never an error', async () => {
      const tenantId = await newTenant();
      assert.equal(await store.getTenant(LONG), undefined);
      assert.equal(await store.getUserByName(tenantId, LONG), undefined);
      assert.equal(await store.getUserById(tenantId, LONG), undefined);
      assert.equal(await store.getApplication(tenantId, LONG), undefined);
      assert.deepEqual(await store.listConsents({ tenantId, clientId: LONG, resource: LONG, principal: LONG }), []);
      assert.equal(await store.deleteConsent(tenantId, LONG, LONG, LONG), false);
      assert.equal(await store.getEphemeral('code', LONG, 1), undefined);
      assert.deepEqual(await store.consumeEphemeral('code', LONG, 1), { status: 'missing' });
      assert.equal(await store.revokeFamily(tenantId, LONG, 1), 0);
      // A client assertion's `jti` is chosen by the client: any length must work, once.
      const ns = `jti:${uid()}`;
      assert.equal(await store.useOnce(ns, LONG, 10, 1), true);
      assert.equal(await store.useOnce(ns, LONG, 10, 1), false);
      assert.equal(await store.useOnce(ns, `${LONG}x`, 10, 1), true);
    });

    // — security event streams (SSF) —

    function stream(tenantId: string, extra: Partial<SignalStream> = {}): SignalStream {
      return {
        tenantId,
        streamId: randomUUID(),
        clientId: 'receiver',
        audience: 'receiver',
        eventsRequested: ['https://schemas.openid.net/secevent/caep/event-type/session-revoked'],
        delivery: { method: 'poll', endpointUrl: 'https://baton.test/poll' },
        status: 'enabled',
        subjectFormat: 'iss_sub',
        removedSubjects: [],
        createdAt: 100,
        updatedAt: 100,
        ...extra,
      };
    }

    function queued(s: SignalStream, jti: string, extra: Partial<QueuedSet> = {}): QueuedSet {
      return { tenantId: s.tenantId, streamId: s.streamId, jti, set: `h.${jti}.s`, createdAt: 100, expiresAt: 10_000, attempts: 0, ...extra };
    }

    it('streams: put/get/list/delete round-trip; optional fields come back absent; hostile values survive', async () => {
      const tenantId = await newTenant();
      const full = stream(tenantId, { description: HOSTILE[0], reason: HOSTILE[2], removedSubjects: [HOSTILE[1]!], delivery: { method: 'push', endpointUrl: 'https://r.test/events', authorizationHeader: 'Bearer x' } });
      const minimal = stream(tenantId);
      await store.putStream(full);
      await store.putStream(minimal);
      assert.deepEqual(await pair[1].getStream(tenantId, full.streamId), full);
      assert.deepEqual(await store.getStream(tenantId, minimal.streamId), minimal);
      assert.deepEqual(Object.keys((await store.getStream(tenantId, minimal.streamId))!).includes('description'), false);
      assert.deepEqual((await store.listStreams(tenantId)).map((s) => s.streamId).sort(), [full.streamId, minimal.streamId].sort());
      const paused = { ...full, status: 'paused' as const, updatedAt: 200 };
      await store.putStream(paused);
      assert.deepEqual(await store.getStream(tenantId, full.streamId), paused);
      assert.equal(await store.getStream(tenantId, LONG), undefined);
      assert.equal(await store.deleteStream(tenantId, full.streamId), true);
      assert.equal(await store.deleteStream(tenantId, full.streamId), false);
      assert.deepEqual((await store.listStreams(tenantId)).map((s) => s.streamId), [minimal.streamId]);
    });

    it('queued SETs: polled oldest first a page at a time, acknowledged ones gone, unacknowledged ones returned again', async () => {
      const tenantId = await newTenant();
      const s = stream(tenantId);
      const other = stream(tenantId);
      await store.putStream(s);
      await store.putStream(other);
      const jtis = ['a', 'b', 'c', 'd', 'e'].map((x) => `${x}-${uid()}`);
      await store.queueSets(jtis.slice(0, 3).map((j) => queued(s, j)));
      await store.queueSets([...jtis.slice(3).map((j) => queued(s, j)), queued(other, 'other-1')]);
      // The same (stream, jti) twice and a stream that does not exist: skipped, no error.
      await store.queueSets([queued(s, jtis[0]!, { set: 'replaced' }), queued(stream(tenantId), 'nowhere')]);
      const first = await store.pollSets(tenantId, s.streamId, [], 2, 150);
      assert.deepEqual(first.sets.map((x) => x.jti), jtis.slice(0, 2));
      assert.equal(first.more, true);
      assert.equal(first.sets[0]!.set, `h.${jtis[0]}.s`);
      // Not acknowledged: the next poll answers the same again (nothing lost).
      assert.deepEqual((await pair[1].pollSets(tenantId, s.streamId, [], 2, 150)).sets.map((x) => x.jti), jtis.slice(0, 2));
      const second = await pair[1].pollSets(tenantId, s.streamId, jtis.slice(0, 2), 10, 150);
      assert.deepEqual(second.sets.map((x) => x.jti), jtis.slice(2));
      assert.equal(second.more, false);
      // An acknowledgement of another stream's jti, or an unknown one, removes nothing of it.
      assert.deepEqual((await store.pollSets(tenantId, s.streamId, ['other-1', 'unknown', LONG], 10, 150)).sets.length, 3);
      assert.deepEqual((await store.pollSets(tenantId, other.streamId, [], 10, 150)).sets.map((x) => x.jti), ['other-1']);
      assert.deepEqual(await store.pollSets(tenantId, s.streamId, jtis.slice(2), 10, 150), { sets: [], more: false });
      // Expired SETs are invisible; deleting a stream drops its SETs.
      await store.queueSets([queued(other, 'old', { expiresAt: 160 })]);
      assert.deepEqual((await store.pollSets(tenantId, other.streamId, [], 10, 170)).sets.map((x) => x.jti), ['other-1']);
      assert.equal(await store.deleteStream(tenantId, other.streamId), true);
      await store.putStream(other);
      assert.deepEqual(await store.pollSets(tenantId, other.streamId, [], 10, 150), { sets: [], more: false });
    });

    it('push SETs: a due SET is claimed by one of two concurrent claimers, leased, retried, then settled', async () => {
      const tenantId = await newTenant();
      const s = stream(tenantId, { delivery: { method: 'push', endpointUrl: 'https://r.test/events' } });
      await store.putStream(s);
      // Far in the future of every other test's clock: no other test's SETs are due then.
      const t0 = 5_000_000_000;
      const jtis = Array.from({ length: 6 }, (_, i) => `p${i}-${uid()}`);
      await store.queueSets(jtis.map((j) => queued(s, j, { nextAttemptAt: t0, expiresAt: t0 + 10_000 })));
      await store.queueSets([queued(s, `later-${uid()}`, { nextAttemptAt: t0 + 500, expiresAt: t0 + 10_000 }), queued(s, `polled-${uid()}`, { expiresAt: t0 + 10_000 })]);
      const [a, b] = await Promise.all([pair[0].claimPushSets(t0, t0 + 30, 4), pair[1].claimPushSets(t0, t0 + 30, 4)]);
      const claimed = [...a, ...b].filter((x) => x.tenantId === tenantId).map((x) => x.jti);
      assert.deepEqual([...claimed].sort(), [...jtis].sort(), 'each due SET claimed exactly once');
      // Leased: not due again before the lease ends.
      assert.deepEqual((await store.claimPushSets(t0 + 10, t0 + 40, 100)).filter((x) => x.tenantId === tenantId), []);
      await store.settlePushSet(tenantId, s.streamId, jtis[0]!, undefined, 1);
      await store.settlePushSet(tenantId, s.streamId, jtis[1]!, t0 + 20, 1);
      const retried = (await store.claimPushSets(t0 + 20, t0 + 50, 100)).filter((x) => x.tenantId === tenantId);
      assert.deepEqual(retried.map((x) => [x.jti, x.attempts]), [[jtis[1], 1]]);
      // After the lease, the unsettled ones are due again; the delivered one is gone.
      const again = (await store.claimPushSets(t0 + 100, t0 + 130, 100)).filter((x) => x.tenantId === tenantId).map((x) => x.jti);
      assert.deepEqual([...again].sort(), jtis.slice(1).sort());
      for (const jti of jtis.slice(1)) await store.settlePushSet(tenantId, s.streamId, jti, undefined, 1);
      assert.equal(await store.deleteStream(tenantId, s.streamId), true);
    });

    it('admin change log: appended events read back in order a page at a time, filtered by entity, target and instant', async () => {
      const tenantId = await newTenant();
      const other = await newTenant();
      const record = (entity: string, target: string, at: number, extra: Record<string, unknown> = {}) => ({
        tenantId,
        id: randomUUID(),
        at,
        entity,
        target,
        event: { action: `${entity}.update`, target, before: { name: HOSTILE[0] }, after: { name: HOSTILE[2], long: LONG }, ...extra },
      });
      const written = [record('user', 'u1', 1000), record('user', 'u2', 2000), record('policy', HOSTILE[0]!, 3000), record('user', 'u1', 4000)];
      for (const r of written) await store.appendAdminEvent(r);
      await store.appendAdminEvent({ ...record('user', 'u1', 1500), tenantId: other });
      const all = await pair[1].listAdminEvents({ tenantId, limit: 10 });
      assert.deepEqual(all.map((e) => e.record), written);
      assert.ok(all.every((e, i) => i === 0 || e.seq > all[i - 1]!.seq), 'seq grows');
      const page1 = await store.listAdminEvents({ tenantId, limit: 3 });
      const page2 = await store.listAdminEvents({ tenantId, limit: 3, after: page1.at(-1)!.seq });
      assert.deepEqual([...page1, ...page2].map((e) => e.record.id), written.map((r) => r.id));
      assert.deepEqual((await store.listAdminEvents({ tenantId, limit: 10, entity: 'user' })).map((e) => e.record.id), [0, 1, 3].map((i) => written[i]!.id));
      assert.deepEqual((await store.listAdminEvents({ tenantId, limit: 10, entity: 'user', target: 'u1' })).map((e) => e.record.id), [0, 3].map((i) => written[i]!.id));
      assert.deepEqual((await store.listAdminEvents({ tenantId, limit: 10, target: HOSTILE[0] })).map((e) => e.record.id), [written[2]!.id]);
      assert.deepEqual((await store.listAdminEvents({ tenantId, limit: 10, since: 2000 })).map((e) => e.record.id), written.slice(1).map((r) => r.id));
      assert.deepEqual(await store.listAdminEvents({ tenantId, limit: 10, entity: 'consent' }), []);
      // An event id is unique: appending the same event twice fails.
      await assert.rejects(store.appendAdminEvent(written[0]!));
    });

    it('atomically: every write or none; caches hear the change only when it commits', async () => {
      const tenantId = await newTenant();
      const s = stream(tenantId);
      await store.putStream(s);
      const user = fullUser(tenantId);
      const event = { tenantId, id: randomUUID(), at: 1000, entity: 'user', target: user.oid, event: { action: 'user.create' } };
      await store.appendAdminEvent(event);
      const heard = recorder(store, tenantId);
      // The last write fails (the event id is taken): the user, the SET and the policy are not stored.
      const policy: Policy = { tenantId, name: 'p', resources: ['docs'], require: { mfa: true } };
      await assert.rejects(
        store.atomically([
          { op: 'putUser', args: [user] },
          { op: 'replacePolicies', args: [tenantId, [policy]] },
          { op: 'queueSets', args: [[queued(s, 'atomic-1')]] },
          { op: 'appendAdminEvent', args: [event] },
        ]),
      );
      assert.equal(await pair[1].getUserById(tenantId, user.oid), undefined);
      assert.deepEqual(await store.listPolicies(tenantId), []);
      assert.deepEqual(await store.pollSets(tenantId, s.streamId, [], 10, 150), { sets: [], more: false });
      assert.equal((await store.listAdminEvents({ tenantId, limit: 10 })).length, 1);
      assert.deepEqual(heard.changes.filter((c) => c.entity === 'user' || c.entity === 'policy'), [], 'a rolled-back write notifies nobody');
      // The same writes with a fresh event id: all of them.
      const second = { ...event, id: randomUUID() };
      await store.atomically([
        { op: 'putUser', args: [user] },
        { op: 'replacePolicies', args: [tenantId, [policy]] },
        { op: 'queueSets', args: [[queued(s, 'atomic-1')]] },
        { op: 'appendAdminEvent', args: [second] },
      ]);
      assert.deepEqual(await pair[1].getUserById(tenantId, user.oid), user);
      assert.equal((await store.listPolicies(tenantId)).length, 1);
      assert.deepEqual((await store.pollSets(tenantId, s.streamId, [], 10, 150)).sets.map((x) => x.jti), ['atomic-1']);
      assert.deepEqual((await store.listAdminEvents({ tenantId, limit: 10 })).map((e) => e.record.id), [event.id, second.id]);
      assert.ok(heard.changes.some((c) => c.entity === 'user') && heard.changes.some((c) => c.entity === 'policy'), 'a committed write notifies');
      heard.stop();
      // A store call made meanwhile is no part of a failing batch (SQLite: the batch holds the
      // connection synchronously; PostgreSQL: the batch has a connection of its own).
      const bystander = minimalUser(tenantId);
      const failing = assert.rejects(store.atomically([{ op: 'putUser', args: [fullUser(tenantId)] }, { op: 'appendAdminEvent', args: [event] }]));
      await store.putUser(bystander);
      await failing;
      assert.deepEqual(await store.getUserById(tenantId, bystander.oid), bystander);
    });
  });
}

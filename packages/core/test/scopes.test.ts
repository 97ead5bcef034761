import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  Entra,
  parseScope,
  qualifiedScope,
  resolveResourceScopes,
  resolveScopeParameter,
  resolveTarget,
  SCOPE_LIMITS,
  splitScopes,
} from '../src/index.ts';
import { buildFixture, throwsOAuth } from './fixtures.ts';

const fx = buildFixture();
const d = fx.directory;
const docs = d.api('docs-api')!;
const audit = d.api('audit-api')!;

const invalidScope = (description?: RegExp | RegExp[]) => ({ error: 'invalid_scope', entraCodes: [Entra.invalidScope], ...(description ? { description } : {}) });
const invalidRequest = (description?: RegExp) => ({ error: 'invalid_request', entraCodes: [Entra.malformedRequest], ...(description ? { description } : {}) });
const invalidTarget = (description?: RegExp | RegExp[]) => ({ error: 'invalid_target', entraCodes: [Entra.invalidTarget], ...(description ? { description } : {}) });

describe('parseScope', () => {
  it('splits on single spaces and keeps order', () => {
    assert.deepEqual(parseScope('openid profile api://docs/Docs.Read'), ['openid', 'profile', 'api://docs/Docs.Read']);
    assert.deepEqual(parseScope('api://docs/.default'), ['api://docs/.default']);
  });

  it('gives [] for an absent or empty parameter', () => {
    assert.deepEqual(parseScope(undefined), []);
    assert.deepEqual(parseScope(''), []);
  });

  it('drops duplicates, keeping the first', () => {
    assert.deepEqual(parseScope('a/b openid a/b openid c/d'), ['a/b', 'openid', 'c/d']);
  });

  it('refuses empty items: two spaces, a leading or a trailing space', () => {
    throwsOAuth(() => parseScope('openid  profile'), invalidScope(/empty item at position 2/));
    throwsOAuth(() => parseScope(' openid'), invalidScope(/empty item at position 1/));
    throwsOAuth(() => parseScope('openid '), invalidScope(/empty item at position 2/));
    throwsOAuth(() => parseScope(' '), invalidScope(/empty item/));
  });

  it('refuses control characters (tab, newline, NUL, DEL, C1) as a malformed request', () => {
    for (const raw of ['openid\tprofile', 'openid\nprofile', 'a\u0000', 'a\u007f', 'a\u0085b', 'openid\r\nX-Injected: 1']) {
      throwsOAuth(() => parseScope(raw), invalidRequest(/control character/));
    }
  });

  it("refuses characters RFC 6749 §3.3 excludes: '\"', '\\', non-ASCII", () => {
    throwsOAuth(() => parseScope('api://docs/"Docs"'), invalidScope(/RFC 6749 §3.3 does not allow/));
    throwsOAuth(() => parseScope('api://docs\\Docs.Read'), invalidScope(/RFC 6749 §3.3/));
    throwsOAuth(() => parseScope('api://döcs/Docs.Read'), invalidScope(/RFC 6749 §3.3/));
  });

  it(`accepts ${SCOPE_LIMITS.maxScopes} scopes and refuses one more`, () => {
    const many = Array.from({ length: 64 }, (_, i) => `api://x/s${i}`);
    assert.equal(parseScope(many.join(' ')).length, 64);
    throwsOAuth(() => parseScope([...many, 'api://x/s64'].join(' ')), invalidRequest(/names 65 scopes; at most 64/));
  });

  it(`accepts a scope of ${SCOPE_LIMITS.maxScopeLength} characters and refuses 257`, () => {
    const at = 'a'.repeat(256);
    assert.deepEqual(parseScope(at), [at]);
    const err = throwsOAuth(() => parseScope(`${at}a`), invalidRequest(/longer than 256 characters/));
    assert.ok(err.description.length < 200, 'the over-long value is truncated in the description');
  });

  it('refuses an enormous parameter before splitting it', () => {
    throwsOAuth(() => parseScope('a '.repeat(20_000)), invalidRequest(/too long/));
  });
});

describe('splitScopes', () => {
  it('separates the OIDC scopes from resource scopes', () => {
    assert.deepEqual(splitScopes(['openid', 'api://docs/Docs.Read', 'profile', 'email', 'offline_access', 'docs-api/Docs.Write']), {
      oidc: ['openid', 'profile', 'email', 'offline_access'],
      resource: ['api://docs/Docs.Read', 'docs-api/Docs.Write'],
    });
    assert.deepEqual(splitScopes(['OpenID']), { oidc: [], resource: ['OpenID'] });
  });
});

describe('resolveResourceScopes', () => {
  it('resolves identifier-URI-qualified scopes', () => {
    const r = resolveResourceScopes(d, ['api://docs/Docs.Read', 'api://docs/Docs.Write']);
    assert.equal(r?.api, docs);
    assert.deepEqual(r?.scopes, ['Docs.Read', 'Docs.Write']);
    assert.equal(r?.isDefault, false);
  });

  it('resolves client-id-qualified scopes, and mixes of both forms for one API', () => {
    assert.deepEqual(resolveResourceScopes(d, ['docs-api/Docs.Read'])?.scopes, ['Docs.Read']);
    const mixed = resolveResourceScopes(d, ['docs-api/Docs.Write', 'api://docs/Docs.Read', 'api://docs/Docs.Write']);
    assert.equal(mixed?.api.clientId, 'docs-api');
    assert.deepEqual(mixed?.scopes, ['Docs.Write', 'Docs.Read']);
  });

  it('resolves .default', () => {
    assert.deepEqual(resolveResourceScopes(d, ['api://docs/.default']), { api: docs, scopes: [], isDefault: true });
    assert.deepEqual(resolveResourceScopes(d, ['audit-api/.default']), { api: audit, scopes: [], isDefault: true });
  });

  it('gives undefined for no resource scope', () => {
    assert.equal(resolveResourceScopes(d, []), undefined);
  });

  it('refuses scopes of two APIs, naming both (AADSTS70011)', () => {
    throwsOAuth(
      () => resolveResourceScopes(d, ['api://docs/Docs.Read', 'api://audit/Audit.Write']),
      invalidScope([/two APIs, 'api:\/\/docs' and 'api:\/\/audit'/, /one API/]),
    );
    throwsOAuth(() => resolveResourceScopes(d, ['api://docs/.default', 'audit-api/.default']), invalidScope(/'api:\/\/docs' and 'api:\/\/audit'/));
  });

  it('refuses an unknown API, naming it', () => {
    throwsOAuth(() => resolveResourceScopes(d, ['api://payroll/Pay.Read']), invalidScope(/names the API 'api:\/\/payroll', which does not exist in tenant 'contoso'/));
    throwsOAuth(() => resolveResourceScopes(d, ['indexer/.default']), invalidScope(/names the API 'indexer', which does not exist/));
  });

  it('refuses an unknown scope, naming it and what the API exposes', () => {
    throwsOAuth(() => resolveResourceScopes(d, ['api://docs/Docs.Delete']), invalidScope(/The scope 'Docs.Delete' does not exist on API 'api:\/\/docs'; it exposes Docs.Read, Docs.Write/));
    // Scope values are case-sensitive.
    throwsOAuth(() => resolveResourceScopes(d, ['api://docs/docs.read']), invalidScope(/'docs.read' does not exist/));
  });

  it('refuses an app role asked for as a delegated scope, pointing at client credentials', () => {
    throwsOAuth(() => resolveResourceScopes(d, ['api://docs/Docs.ReadAll']), invalidScope(/app role \(application permission\).*client credentials with 'api:\/\/docs\/.default'/));
  });

  it('refuses an API named without a scope', () => {
    throwsOAuth(() => resolveResourceScopes(d, ['api://docs']), invalidScope(/names the API 'api:\/\/docs' but no scope: ask for 'api:\/\/docs\/.default'/));
    throwsOAuth(() => resolveResourceScopes(d, ['docs-api']), invalidScope(/names the API 'api:\/\/docs' but no scope/));
    throwsOAuth(() => resolveResourceScopes(d, ['api://docs/']), invalidScope(/but no scope/));
  });

  it('refuses an unqualified scope without a target', () => {
    throwsOAuth(() => resolveResourceScopes(d, ['Docs.Read']), invalidScope(/does not name an API: qualify it.*'api:\/\/docs\/Docs.Read'/));
  });

  it('refuses .default combined with named scopes of the same API', () => {
    throwsOAuth(() => resolveResourceScopes(d, ['api://docs/.default', 'api://docs/Docs.Read']), invalidScope(/do not combine it with 'Docs.Read'/));
  });

  describe('with an RFC 8693 target', () => {
    it('resolves bare scopes and .default against the target', () => {
      assert.deepEqual(resolveResourceScopes(d, ['Docs.Read'], { target: docs })?.scopes, ['Docs.Read']);
      assert.equal(resolveResourceScopes(d, ['.default'], { target: docs })?.isDefault, true);
      assert.deepEqual(resolveResourceScopes(d, ['api://docs/Docs.Write', 'Docs.Read'], { target: docs })?.scopes, ['Docs.Write', 'Docs.Read']);
    });

    it('means .default when no scope is given', () => {
      assert.deepEqual(resolveResourceScopes(d, [], { target: audit }), { api: audit, scopes: [], isDefault: true });
    });

    it('refuses a qualified scope of another API as invalid_target', () => {
      throwsOAuth(() => resolveResourceScopes(d, ['api://audit/Audit.Write'], { target: docs }), invalidTarget([/belongs to API 'api:\/\/audit'/, /audience\/resource of this request is 'api:\/\/docs'/]));
    });

    it('still refuses an unknown bare scope on the target', () => {
      throwsOAuth(() => resolveResourceScopes(d, ['Audit.Write'], { target: docs }), invalidScope(/'Audit.Write' does not exist on API 'api:\/\/docs'/));
    });
  });
});

describe('resolveTarget', () => {
  it('resolves audience and resource by identifier URI or client id', () => {
    assert.equal(resolveTarget(d, { audience: 'docs-api' }), docs);
    assert.equal(resolveTarget(d, { audience: ['api://docs'] }), docs);
    assert.equal(resolveTarget(d, { resource: 'api://audit' }), audit);
    assert.equal(resolveTarget(d, { audience: ['docs-api', 'api://docs'], resource: ['api://docs'] }), docs);
  });

  it('gives undefined when neither is given', () => {
    assert.equal(resolveTarget(d, {}), undefined);
    assert.equal(resolveTarget(d, { audience: [], resource: undefined }), undefined);
  });

  it('refuses an unknown audience or resource (invalid_target), naming it', () => {
    throwsOAuth(() => resolveTarget(d, { audience: 'payroll-api' }), invalidTarget(/The audience 'payroll-api' is not an API of tenant 'contoso'/));
    throwsOAuth(() => resolveTarget(d, { resource: 'https://graph.microsoft.com' }), invalidTarget(/The resource 'https:\/\/graph.microsoft.com' is not an API/));
    throwsOAuth(() => resolveTarget(d, { audience: 'indexer' }), invalidTarget(/'indexer' is not an API/));
  });

  it('refuses two different APIs', () => {
    throwsOAuth(() => resolveTarget(d, { audience: 'docs-api', resource: 'api://audit' }), invalidTarget(/two APIs, 'api:\/\/docs' and 'api:\/\/audit'/));
  });
});

describe('resolveScopeParameter', () => {
  it('parses, splits and resolves in one call', () => {
    const r = resolveScopeParameter(d, 'openid offline_access api://docs/Docs.Read');
    assert.deepEqual(r.items, ['openid', 'offline_access', 'api://docs/Docs.Read']);
    assert.deepEqual(r.oidc, ['openid', 'offline_access']);
    assert.deepEqual(r.resource?.scopes, ['Docs.Read']);
    assert.equal(resolveScopeParameter(d, 'openid profile').resource, undefined);
  });

  it('qualifies a scope value with its API', () => {
    assert.equal(qualifiedScope(docs, 'Docs.Read'), 'api://docs/Docs.Read');
  });
});

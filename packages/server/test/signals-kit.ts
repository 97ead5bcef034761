/**
 * Shared by the signals*.test.ts files: receiver applications holding Baton.Signals, a small JSON
 * client for the SSF endpoints, and an independent SET receiver on plain jose (not Baton's code):
 * it verifies each SET's signature through the tenant's published JWKS, its `typ`, issuer and
 * audience, and refuses a `jti` it has seen.
 */
import assert from 'node:assert/strict';
import { createRemoteJWKSet, jwtVerify, type JWTPayload } from 'jose';
import { basic, type TestServer } from './harness.ts';
import { adminConfigure } from './admin-kit.ts';

export const RECEIVER_SECRET = 'receiver-Signals-secret-for-tests-1';
export const OTHER_SECRET = 'other-receiver-Signals-secret-for-tests-1';

export function signalsConfigure(raw: any): void {
  adminConfigure(raw);
  const contoso = raw.tenants[0];
  contoso.applications.push({ name: 'Receiver', clientId: 'receiver', secrets: [RECEIVER_SECRET] });
  contoso.applications.push({ name: 'Other receiver', clientId: 'other-receiver', secrets: [OTHER_SECRET] });
  contoso.appRoleAssignments.push({ client: 'receiver', resource: 'api://baton-admin', roles: ['Baton.Signals'] });
  contoso.appRoleAssignments.push({ client: 'other-receiver', resource: 'api://baton-admin', roles: ['Baton.Signals'] });
  // An email to name alice by, and a role users can hold (for token-claims-change).
  contoso.users.find((u: any) => u.username === 'alice@contoso.test').email = 'alice@contoso.example';
  contoso.applications.find((a: any) => a.clientId === 'docs-api').appRoles.push({ value: 'Docs.Editor', description: 'Edit documents', allowedMemberTypes: ['User'] });
}

/** An app-only token of a receiver (client credentials for the built-in API, Baton.Signals). */
export async function receiverToken(server: TestServer, client = 'receiver'): Promise<string> {
  const response = await server.post('/contoso/oauth2/v2.0/token', { grant_type: 'client_credentials', scope: 'api://baton-admin/.default' }, {
    authorization: basic(client, client === 'receiver' ? RECEIVER_SECRET : OTHER_SECRET),
  });
  assert.equal(response.status, 200, JSON.stringify(response.body));
  return response.body.access_token;
}

export interface JsonResponse {
  status: number;
  headers: Headers;
  body: any;
}

/** One call below `/{tenant}/ssf/v1` (or an absolute path starting with `http`). */
export async function ssf(server: TestServer, method: string, path: string, token: string | undefined, body?: unknown, tenant = 'contoso'): Promise<JsonResponse> {
  const headers: Record<string, string> = {};
  if (token !== undefined) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const url = path.startsWith('http') ? path : `${server.url}/${tenant}/ssf/v1${path}`;
  const response = await fetch(url, { method, headers, ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {}) });
  const text = await response.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // keep the text
  }
  return { status: response.status, headers: response.headers, body: parsed };
}

export interface VerifiedSet {
  jti: string;
  payload: JWTPayload & { sub_id: any; events: Record<string, any>; txn?: string };
  type: string;
  event: any;
}

/** A receiver written only against the RFCs, with jose: what any SSF receiver would do. */
export class JoseReceiver {
  readonly #jwks: ReturnType<typeof createRemoteJWKSet>;
  readonly #issuer: string;
  readonly #audience: string;
  readonly seen = new Set<string>();

  constructor(server: TestServer, audience: string, tenant = 'contoso') {
    this.#issuer = `${server.url}/${tenant}/v2.0`;
    this.#jwks = createRemoteJWKSet(new URL(`${server.url}/${tenant}/discovery/v2.0/keys`));
    this.#audience = audience;
  }

  /** Verifies a SET and records its jti; throws for a forged, foreign, other-audience or replayed one. */
  async accept(set: string): Promise<VerifiedSet> {
    const { payload, protectedHeader } = await jwtVerify(set, this.#jwks, { issuer: this.#issuer, audience: this.#audience, typ: 'secevent+jwt', algorithms: ['ES256'] });
    assert.equal(protectedHeader.typ, 'secevent+jwt');
    const jti = payload.jti;
    if (typeof jti !== 'string') throw new Error('SET without jti');
    if (this.seen.has(jti)) throw new Error(`replayed SET ${jti}`);
    // RFC 8417 §2.2: a SET is not an ID or access token: no `sub` claim at the top, exactly one event here.
    const events = (payload as any).events as Record<string, unknown>;
    const types = Object.keys(events ?? {});
    if (types.length !== 1) throw new Error('a SET with one event expected');
    this.seen.add(jti);
    return { jti, payload: payload as VerifiedSet['payload'], type: types[0]!, event: events[types[0]!] };
  }
}

/** Polls (RFC 8936) until `count` SETs have come, acknowledging none; returns them by jti. */
export async function pollAll(server: TestServer, token: string, streamId: string, options: { ack?: string[]; maxEvents?: number } = {}): Promise<{ sets: Record<string, string>; moreAvailable: boolean }> {
  const response = await ssf(server, 'POST', `/poll/${streamId}`, token, { ack: options.ack ?? [], returnImmediately: true, ...(options.maxEvents !== undefined ? { maxEvents: options.maxEvents } : {}) });
  assert.equal(response.status, 200, JSON.stringify(response.body));
  return response.body;
}

/**
 * Continuous access evaluation for the demo's APIs (issue 17, docs/cae.md): each API that is given
 * `signals` subscribes to the token service's security events with a stream of its own (OpenID
 * SSF) and hands the receiver to its guard (a token issued before its user's revocation is refused
 * with the CAE claims challenge) and to its OBO client (the tokens it cached for that user go).
 *
 * The API's application needs the app role `Baton.Signals` on `api://baton-admin`: its app-only
 * token (client credentials) manages the stream and, by poll, reads the events.
 *
 * - poll (RFC 8936): the stream is created first (its poll endpoint is the receiver's), then the
 *   receiver long-polls it from `start`.
 * - push (RFC 8935): the receiver exists first (the API mounts `PUSH_PATH` on its own server);
 *   `start` creates the stream with the API's listening URL and a random push authorization.
 *
 * The stream lives as long as the API: `close` deletes it, and `start` first deletes the streams a
 * previous run of the same API left behind (same description), so restarts do not pile up against
 * the per-receiver stream limit.
 */
import { randomBytes } from 'node:crypto';
import { createOboClient, createSignals, fetchWithCa, type FetchLike, type ReceivedEvent, type Signals } from '@baton/resource';
import type { ExampleLogger } from './log.ts';

/** Where a pushing API receives its SETs. */
export const PUSH_PATH = '/security-events';

const CAEP = 'https://schemas.openid.net/secevent/caep/event-type/';
const RISC = 'https://schemas.openid.net/secevent/risc/event-type/';
const EVENTS = [`${CAEP}session-revoked`, `${CAEP}credential-change`, `${CAEP}token-claims-change`, `${RISC}account-disabled`];
const POLL = 'urn:ietf:rfc:8936';
const PUSH = 'urn:ietf:rfc:8935';
/** The scope of the app-only token for the SSF endpoints (the built-in admin API). */
export const SIGNALS_SCOPE = 'api://baton-admin/.default';

/** What an API is given to receive security events (the option `signals` of start*Api). */
export interface ApiSignalsOptions {
  /** RFC 8936 poll (the default) or RFC 8935 push. */
  delivery?: 'poll' | 'push' | undefined;
  /** Told about each event the API accepted (a live view, a bench). */
  onEvent?: ((event: ReceivedEvent) => void) | undefined;
  /**
   * How the SETs name the user (SSF `subject_format`): `iss_sub` (the default: the pairwise `sub`
   * this API's tokens carry), `opaque` (her `oid`, which the chain view matches to its viewer) or `email`.
   */
  subjectFormat?: 'iss_sub' | 'opaque' | 'email' | undefined;
}

/** A signals receiver bound to one API. */
export interface ApiSignals {
  readonly signals: Signals;
  readonly delivery: 'poll' | 'push';
  /** The SSF stream's id, once it exists. */
  readonly streamId: string | undefined;
  /** Once the API listens at `apiUrl`: the push stream is created, and receiving starts. */
  start(apiUrl: string): Promise<void>;
  /** Stops receiving and deletes the stream. */
  close(): Promise<void>;
}

/** A named error for a refused stream call (status and the problem's title only, no token). */
export class SignalsSetupError extends Error {
  override name = 'SignalsSetupError';
  readonly status: number;
  constructor(what: string, status: number, detail: string) {
    super(`${what} answered ${status}${detail ? `: ${detail}` : ''}`);
    this.status = status;
  }
}

interface Metadata {
  issuer: string;
  jwks_uri: string;
  configuration_endpoint: string;
}

async function json(fetchFn: FetchLike, what: string, url: string, init: RequestInit, expected: number): Promise<any> {
  const response = await fetchFn(url, init);
  const text = await response.text();
  if (response.status !== expected) {
    let detail = '';
    try {
      const body = JSON.parse(text) as { title?: unknown; detail?: unknown };
      detail = typeof body.detail === 'string' ? body.detail : typeof body.title === 'string' ? body.title : '';
    } catch {
      // not JSON
    }
    throw new SignalsSetupError(what, response.status, detail);
  }
  return text === '' ? undefined : JSON.parse(text);
}

/**
 * A signals receiver for the API `clientId` at `authority`. For poll the stream is created here
 * (it needs the token service); for push on `start`.
 */
export async function apiSignals(
  options: ApiSignalsOptions,
  api: { authority: string; ca?: string | undefined; clientId: string; clientSecret: string; log: ExampleLogger },
): Promise<ApiSignals> {
  const delivery = options.delivery ?? 'poll';
  if (delivery !== 'poll' && delivery !== 'push') throw new TypeError(`signals.delivery must be 'poll' or 'push'`);
  const fetchFn: FetchLike = api.ca === undefined ? fetch : fetchWithCa(api.ca);
  // Its own client for the app-only token: plain Bearer (the API's OBO client binds its tokens to
  // DPoP), cached and renewed before it expires.
  const tokens = createOboClient({ authority: api.authority, clientId: api.clientId, credential: { clientSecret: api.clientSecret }, ...(api.ca === undefined ? {} : { ca: api.ca }), logger: api.log });
  const appToken = async () => (await tokens.appToken([SIGNALS_SCOPE])).accessToken;
  const authorityUrl = api.authority.replace(/\/+$/, '');
  const metadata = (await json(fetchFn, 'the transmitter configuration', `${authorityUrl}/.well-known/ssf-configuration`, { headers: { accept: 'application/json' } }, 200)) as Metadata;
  const streams = metadata.configuration_endpoint;
  const description = `${api.clientId} (Baton demo, ${delivery})`;
  const authorized = async (extra: Record<string, string> = {}) => ({ authorization: `Bearer ${await appToken()}`, accept: 'application/json', ...extra });

  /** Deletes this API's streams a previous run left (same description). */
  async function dropStale(): Promise<void> {
    const held = (await json(fetchFn, 'listing the streams', streams, { headers: await authorized() }, 200)) as unknown;
    const list = Array.isArray(held) ? held : held === undefined ? [] : [held];
    for (const stream of list as Array<{ stream_id: string; description?: string }>) {
      if (stream.description === description) await remove(stream.stream_id);
    }
  }
  async function remove(id: string): Promise<void> {
    await json(fetchFn, 'deleting a stream', `${streams}?stream_id=${encodeURIComponent(id)}`, { method: 'DELETE', headers: await authorized() }, 204);
  }
  async function create(deliveryMember: Record<string, unknown>): Promise<{ stream_id: string; delivery: { endpoint_url: string } }> {
    return json(fetchFn, 'creating the stream', streams, { method: 'POST', headers: await authorized({ 'content-type': 'application/json' }), body: JSON.stringify({ events_requested: EVENTS, delivery: deliveryMember, description, subject_format: options.subjectFormat ?? 'iss_sub' }) }, 201);
  }

  const common = { issuer: metadata.issuer, jwksUri: metadata.jwks_uri, audience: api.clientId, ...(api.ca === undefined ? {} : { ca: api.ca }), logger: api.log, ...(options.onEvent ? { onEvent: options.onEvent } : {}) };
  let streamId: string | undefined;
  let signals: Signals;
  let pushAuthorization: string | undefined;
  if (delivery === 'poll') {
    await dropStale();
    const stream = await create({ method: POLL });
    streamId = stream.stream_id;
    signals = createSignals({ ...common, poll: { endpoint: stream.delivery.endpoint_url, accessToken: appToken } });
  } else {
    pushAuthorization = `Bearer ${randomBytes(24).toString('base64url')}`;
    signals = createSignals({ ...common, pushAuthorization });
  }

  return {
    signals,
    delivery,
    get streamId() {
      return streamId;
    },
    async start(apiUrl: string) {
      if (delivery === 'push' && streamId === undefined) {
        await dropStale();
        const stream = await create({ method: PUSH, endpoint_url: new URL(PUSH_PATH, apiUrl).href, authorization_header: pushAuthorization });
        streamId = stream.stream_id;
      }
      await signals.start();
      api.log.info('receiving security events', { delivery, stream: streamId });
    },
    async close() {
      await signals.close();
      const id = streamId;
      streamId = undefined;
      try {
        if (id !== undefined) await remove(id);
      } catch (error) {
        api.log.warn('could not delete the security event stream', { stream: id, cause: (error as Error).message });
      } finally {
        await tokens.close();
      }
    },
  };
}

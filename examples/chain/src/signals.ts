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
 * The stream is found or created with the SDK's `ensureSignalStream` (same description and delivery:
 * a restart finds the stream a previous run left instead of adding one), and `close` deletes it.
 */
import { randomBytes } from 'node:crypto';
import { createOboClient, createSignals, ensureSignalStream, fetchWithCa, ssfConfigurationUrl, type FetchLike, type ReceivedEvent, type Signals, type SignalStream } from '@baton/resource';
import type { ExampleLogger } from './log.ts';

/** Where a pushing API receives its SETs. */
export const PUSH_PATH = '/security-events';

const CAEP = 'https://schemas.openid.net/secevent/caep/event-type/';
const RISC = 'https://schemas.openid.net/secevent/risc/event-type/';
const EVENTS = [`${CAEP}session-revoked`, `${CAEP}credential-change`, `${CAEP}token-claims-change`, `${RISC}account-disabled`];
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

/** The transmitter metadata (SSF 1.0 §7.2) members this file uses. */
async function metadataOf(fetchFn: FetchLike, issuer: string): Promise<{ jwks_uri: string; configuration_endpoint: string }> {
  const response = await fetchFn(ssfConfigurationUrl(issuer), { headers: { accept: 'application/json' } });
  if (response.status !== 200) {
    await response.body?.cancel();
    throw new SignalsSetupError('the transmitter configuration', response.status, '');
  }
  return (await response.json()) as { jwks_uri: string; configuration_endpoint: string };
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
  const description = `${api.clientId} (Baton demo, ${delivery})`;
  const issuer = api.authority.replace(/\/+$/, '');
  // SSF stream management (the SDK's ensureSignalStream): this API's stream, found or created.
  const ensure = (method: { method: 'poll' } | { method: 'push'; endpointUrl: string; authorization: string }) =>
    ensureSignalStream({ issuer, accessToken: appToken, description, events: EVENTS, subjectFormat: options.subjectFormat ?? 'iss_sub', delivery: method, fetch: fetchFn });
  async function remove(id: string, endpoint: string): Promise<void> {
    const response = await fetchFn(`${endpoint}?stream_id=${encodeURIComponent(id)}`, { method: 'DELETE', headers: { authorization: `Bearer ${await appToken()}` } });
    await response.body?.cancel();
    if (response.status !== 204) throw new SignalsSetupError('deleting the stream', response.status, '');
  }

  let stream: SignalStream | undefined;
  let signals: Signals;
  let pushAuthorization: string | undefined;
  const common = (found: { issuer: string; jwksUri: string }) => ({ issuer: found.issuer, jwksUri: found.jwksUri, audience: api.clientId, ...(api.ca === undefined ? {} : { ca: api.ca }), logger: api.log, ...(options.onEvent ? { onEvent: options.onEvent } : {}) });
  if (delivery === 'poll') {
    stream = await ensure({ method: 'poll' });
    signals = createSignals({ ...common(stream), poll: { endpoint: stream.pollEndpoint!, accessToken: appToken } });
  } else {
    pushAuthorization = `Bearer ${randomBytes(24).toString('base64url')}`;
    // The issuer's keys are known before the stream exists (its metadata names them).
    signals = createSignals({ ...common({ issuer, jwksUri: (await metadataOf(fetchFn, issuer)).jwks_uri }), pushAuthorization });
  }
  /** The stream management endpoint, from the transmitter metadata (for DELETE on close). */
  const configurationEndpoint = async () => (await metadataOf(fetchFn, issuer)).configuration_endpoint;

  return {
    signals,
    delivery,
    get streamId() {
      return stream?.streamId;
    },
    async start(apiUrl: string) {
      if (delivery === 'push' && stream === undefined) {
        stream = await ensure({ method: 'push', endpointUrl: new URL(PUSH_PATH, apiUrl).href, authorization: pushAuthorization! });
      }
      await signals.start();
      api.log.info('receiving security events', { delivery, stream: stream?.streamId });
    },
    async close() {
      await signals.close();
      const id = stream?.streamId;
      stream = undefined;
      try {
        if (id !== undefined) await remove(id, await configurationEndpoint());
      } catch (error) {
        api.log.warn('could not delete the security event stream', { stream: id, cause: (error as Error).message });
      } finally {
        await tokens.close();
      }
    },
  };
}

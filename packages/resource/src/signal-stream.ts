/**
 * An API's security event stream at an OpenID Shared Signals Framework transmitter (issue 17,
 * docs/cae.md): `ensureSignalStream` finds the stream this receiver created before (same
 * `description` and delivery) or creates it, through the transmitter's stream management API
 * (SSF 1.0 §8.1.1), and answers what `createSignals` needs — the issuer, its JWKS and, for a polled
 * stream, the poll endpoint (RFC 8936).
 *
 * The transmitter metadata is read at `{origin}/.well-known/ssf-configuration{issuer path}` (SSF 1.0
 * §7.2). The calls carry `accessToken()` as a bearer token: at Baton, an app-only token
 * (client credentials, `api://baton-admin/.default`) of an application holding `Baton.Signals`.
 * A receiver that restarts finds its stream again instead of adding one per start (Baton keeps at
 * most 16 per receiver); a stream found with other events requested is updated to these.
 *
 * @example
 * const accessToken = async () => (await obo.appToken(['api://baton-admin/.default'])).accessToken;
 * const stream = await ensureSignalStream({ issuer, accessToken, description: 'Tasks API' });
 * const signals = createSignals({ issuer: stream.issuer, jwksUri: stream.jwksUri, audience: stream.audience,
 *   poll: { endpoint: stream.pollEndpoint!, accessToken } });
 * await signals.start();
 */
import { checkUrl, resolveFetch, type CaOption, type FetchLike } from './http.ts';
import { REVOKING_EVENTS } from './signals.ts';

export const POLL_DELIVERY = 'urn:ietf:rfc:8936';
export const PUSH_DELIVERY = 'urn:ietf:rfc:8935';
const WHERE = 'ensureSignalStream';
const MAX_BODY = 256 * 1024;

/** The transmitter or its stream management API answered something a receiver cannot use. */
export class SignalStreamError extends Error {
  override name = 'SignalStreamError';
  /** The HTTP status, when the transmitter answered one. */
  readonly status: number | undefined;
  constructor(message: string, status?: number) {
    super(message);
    this.status = status;
  }
}

export interface SignalStreamOptions {
  /** The transmitter's issuer (Baton: the tenant's issuer, `{base}/{tenant}/v2.0`). */
  issuer: string;
  /** A bearer token for the stream management API (Baton: an app-only token of a `Baton.Signals` application). */
  accessToken: () => Promise<string>;
  /** What tells this receiver's stream from its others (kept as the stream's `description`). */
  description: string;
  /** Events to request. Default: those that void tokens (`REVOKING_EVENTS`). */
  events?: readonly string[];
  /**
   * How SETs name the user (SSF `subject_format`): `iss_sub` (default; at Baton the pairwise `sub`
   * this API's tokens carry), `opaque` (her `oid`) or `email`. A stream found with another is updated.
   */
  subjectFormat?: 'iss_sub' | 'opaque' | 'email';
  /** Default poll (RFC 8936); push (RFC 8935) to `endpointUrl`, with `authorization` sent as `Authorization`. */
  delivery?: { method: 'poll' } | { method: 'push'; endpointUrl: string; authorization?: string };
  fetch?: FetchLike;
  ca?: CaOption;
}

export interface SignalStream {
  streamId: string;
  /** The transmitter's issuer, from its metadata. */
  issuer: string;
  /** Its keys (SETs are verified with them). */
  jwksUri: string;
  /** The stream's audience: what the SETs' `aud` holds (`createSignals({ audience })`). */
  audience: string | string[];
  /** RFC 8936 poll endpoint, for a polled stream. */
  pollEndpoint: string | undefined;
  eventsDelivered: string[];
  subjectFormat: string;
  /** Whether this call created it (false: found from an earlier start). */
  created: boolean;
}

type Json = Record<string, unknown>;

async function readJson(res: Response, what: string): Promise<unknown> {
  const text = await res.text();
  if (text.length > MAX_BODY) throw new SignalStreamError(`${what}: the answer is larger than ${MAX_BODY} bytes`, res.status);
  try {
    return text === '' ? undefined : JSON.parse(text);
  } catch {
    throw new SignalStreamError(`${what}: the answer is not JSON (status ${res.status})`, res.status);
  }
}

function detailOf(body: unknown): string {
  if (body === null || typeof body !== 'object') return '';
  const b = body as Json;
  const detail = typeof b.detail === 'string' ? b.detail : typeof b.error_description === 'string' ? b.error_description : typeof b.error === 'string' ? b.error : '';
  return detail === '' ? '' : `: ${detail.slice(0, 300)}`;
}

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x) => b.includes(x));
}

/** The transmitter metadata's location for an issuer (SSF 1.0 §7.2: the well-known segment before the issuer's path). */
export function ssfConfigurationUrl(issuer: string): string {
  const url = new URL(checkUrl(issuer, `${WHERE}: issuer`));
  const path = url.pathname === '/' ? '' : url.pathname.replace(/\/$/, '');
  return `${url.origin}/.well-known/ssf-configuration${path}`;
}

/** Finds this receiver's stream (same description and delivery) or creates it. @throws SignalStreamError */
export async function ensureSignalStream(options: SignalStreamOptions): Promise<SignalStream> {
  if (options === null || typeof options !== 'object') throw new TypeError(`${WHERE}: options are required`);
  if (typeof options.accessToken !== 'function') throw new TypeError(`${WHERE}: accessToken must be a function`);
  if (typeof options.description !== 'string' || options.description === '' || options.description.length > 256) throw new TypeError(`${WHERE}: description must be 1–256 characters`);
  const events = [...(options.events ?? REVOKING_EVENTS)];
  if (events.length === 0) throw new TypeError(`${WHERE}: events must not be empty`);
  const delivery = options.delivery ?? { method: 'poll' };
  const subjectFormat = options.subjectFormat ?? 'iss_sub';
  if (!['iss_sub', 'opaque', 'email'].includes(subjectFormat)) throw new TypeError(`${WHERE}: subjectFormat must be iss_sub, opaque or email`);
  const pushUrl = delivery.method === 'push' ? checkUrl(delivery.endpointUrl, `${WHERE}: delivery.endpointUrl`) : undefined;
  const fetch = resolveFetch(options, WHERE);

  const metadataUrl = ssfConfigurationUrl(options.issuer);
  const metaResponse = await fetch(metadataUrl, { headers: { accept: 'application/json' } });
  const meta = await readJson(metaResponse, 'ssf-configuration');
  if (metaResponse.status !== 200 || meta === null || typeof meta !== 'object') throw new SignalStreamError(`ssf-configuration at ${metadataUrl} answered ${metaResponse.status}`, metaResponse.status);
  const m = meta as Json;
  if (m.issuer !== options.issuer) throw new SignalStreamError(`ssf-configuration names issuer ${String(m.issuer)}, not ${options.issuer}`);
  const jwksUri = checkUrl(m.jwks_uri, `${WHERE}: ssf-configuration jwks_uri`);
  const endpoint = checkUrl(m.configuration_endpoint, `${WHERE}: ssf-configuration configuration_endpoint`);
  const method = delivery.method === 'push' ? PUSH_DELIVERY : POLL_DELIVERY;
  if (Array.isArray(m.delivery_methods_supported) && !m.delivery_methods_supported.includes(method)) throw new SignalStreamError(`the transmitter does not deliver by ${method}`);

  const call = async (httpMethod: string, body?: unknown): Promise<{ status: number; body: unknown }> => {
    const res = await fetch(endpoint, {
      method: httpMethod,
      headers: { authorization: `Bearer ${await options.accessToken()}`, accept: 'application/json', ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: res.status, body: await readJson(res, `${httpMethod} ${endpoint}`) };
  };
  const toStream = (raw: unknown, created: boolean): SignalStream => {
    const s = (raw ?? {}) as Json;
    const d = (s.delivery ?? {}) as Json;
    if (typeof s.stream_id !== 'string' || s.stream_id === '') throw new SignalStreamError('the stream has no stream_id');
    const aud = s.aud;
    if (!(typeof aud === 'string' || (Array.isArray(aud) && aud.every((a) => typeof a === 'string')))) throw new SignalStreamError('the stream has no aud');
    return {
      streamId: s.stream_id,
      issuer: options.issuer,
      jwksUri,
      audience: aud as string | string[],
      pollEndpoint: d.method === POLL_DELIVERY ? checkUrl(d.endpoint_url, `${WHERE}: the stream's poll endpoint_url`) : undefined,
      eventsDelivered: Array.isArray(s.events_delivered) ? s.events_delivered.filter((e): e is string => typeof e === 'string') : [],
      subjectFormat: typeof s.subject_format === 'string' ? s.subject_format : 'iss_sub',
      created,
    };
  };

  const listed = await call('GET');
  if (listed.status !== 200) throw new SignalStreamError(`listing streams answered ${listed.status}${detailOf(listed.body)}`, listed.status);
  const all = Array.isArray(listed.body) ? listed.body : listed.body === undefined ? [] : [listed.body];
  const found = all.find((raw) => {
    const s = (raw ?? {}) as Json;
    const d = (s.delivery ?? {}) as Json;
    return s.description === options.description && d.method === method && (pushUrl === undefined || d.endpoint_url === pushUrl);
  }) as Json | undefined;
  const deliveryBody = delivery.method === 'push' ? { method, endpoint_url: pushUrl, ...(delivery.authorization === undefined ? {} : { authorization_header: delivery.authorization }) } : { method };

  if (found !== undefined) {
    const requested = Array.isArray(found.events_requested) ? (found.events_requested as string[]) : [];
    // The push authorization is never shown back: sent again, so a changed one takes effect.
    if (sameSet(requested, events) && (found.subject_format ?? 'iss_sub') === subjectFormat && delivery.method === 'poll') return toStream(found, false);
    const patched = await call('PATCH', { stream_id: found.stream_id, events_requested: events, delivery: deliveryBody, subject_format: subjectFormat });
    if (patched.status !== 200) throw new SignalStreamError(`updating stream ${String(found.stream_id)} answered ${patched.status}${detailOf(patched.body)}`, patched.status);
    return toStream(patched.body, false);
  }
  const created = await call('POST', { events_requested: events, delivery: deliveryBody, description: options.description, subject_format: subjectFormat });
  if (created.status !== 201 && created.status !== 200) throw new SignalStreamError(`creating a stream answered ${created.status}${detailOf(created.body)}`, created.status);
  return toStream(created.body, true);
}

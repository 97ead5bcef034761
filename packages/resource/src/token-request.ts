/**
 * One token request to the token service, as a client that survives a busy or flaky service:
 * 5xx, 429 and network failures are retried with jittered backoff, honouring `Retry-After`,
 * bounded; each request carries a `client-request-id` (MSAL's correlation header, the same across
 * retries) and the W3C trace context of its own CLIENT span (or, without an OpenTelemetry SDK, of
 * the request being served). The answer is a checked token
 * response or a typed `OboError`.
 */
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { decodeJws, type DpopProver } from '@baton/core';
import type { ClientAuthentication } from './client-auth.ts';
import { currentContext, outgoingTraceHeaders } from './context.ts';
import { SpanKind, failSpan, httpClientAttributes, inSpan, recordHttpStatus } from './tracing.ts';
import { OboError, oboErrorFrom, type TokenErrorBody } from './errors.ts';
import { readJsonObject, type FetchLike } from './http.ts';
import type { Logger } from './logger.ts';

export interface TokenResponse {
  access_token: string;
  token_type: string;
  expires_in: number;
  scope?: string;
}

export interface TokenRequesterOptions {
  clientId: string;
  authentication: ClientAuthentication;
  fetch: FetchLike;
  /** Milliseconds per attempt. */
  timeout: number;
  retries: number;
  baseDelayMs: number;
  maxDelayMs: number;
  clock: () => number;
  logger: Logger;
  /** This API's DPoP key (RFC 9449): each token request carries a fresh proof, and the tokens come back bound to it. */
  dpop?: DpopProver | undefined;
}

/** Seconds to wait per `Retry-After` (delta-seconds or HTTP-date), or `undefined`. */
export function retryAfterSeconds(value: string | null, nowMs: number): number | undefined {
  if (value === null) return undefined;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v);
  const date = Date.parse(v);
  return Number.isNaN(date) ? undefined : Math.max(0, Math.ceil((date - nowMs) / 1000));
}

/** What one attempt came to: a response to read, or a wait before the next attempt. */
/** An answer to read, or a retry after a wait (`status` 0: the service was not reached). */
type Attempt = { response: Response } | { retryAfterMs: number; status: number; nonce?: true };

export class TokenRequester {
  readonly #o: TokenRequesterOptions;
  /** The token service's latest `DPoP-Nonce` (RFC 9449 §8), sent in the next proof. */
  #dpopNonce: string | undefined;

  constructor(options: TokenRequesterOptions) {
    this.#o = options;
  }

  /** POSTs `params` (grant `what`, for logs) to `url`, retrying what may pass, and reads the token response. */
  async post(url: string, params: Record<string, string>, what: string): Promise<TokenResponse> {
    // Correlation with the token service's logs and audit events: MSAL's `client-request-id` (one
    // per token request, kept across retries) and the W3C trace of the request being served, if any.
    const clientRequestId = randomUUID();
    const served = currentContext();
    const target = new URL(url);
    let nonceRetried = false;
    for (let attempt = 0; ; attempt++) {
      // One CLIENT span per HTTP request (OTel HTTP conventions); the token service continues it.
      const outcome = await inSpan('POST', { kind: SpanKind.CLIENT, attributes: { ...httpClientAttributes('POST', target), 'baton.obo.grant': what, ...(attempt > 0 ? { 'http.request.resend_count': attempt } : {}) } }, async (span) => {
        const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json', 'client-request-id': clientRequestId, ...outgoingTraceHeaders(served) };
        const result = await this.#attempt(url, params, headers, attempt, what, nonceRetried);
        if ('response' in result || result.status > 0) recordHttpStatus(span, 'response' in result ? result.response.status : result.status);
        else failSpan(span, { error: 'network_error' });
        return result;
      });
      if ('response' in outcome) return this.#readTokenResponse(outcome.response);
      if (outcome.nonce) {
        // use_dpop_nonce: once more at once with the nonce just given; not counted as a retry.
        nonceRetried = true;
        attempt--;
        continue;
      }
      await sleep(outcome.retryAfterMs);
    }
  }

  async #attempt(url: string, params: Record<string, string>, headers: Record<string, string>, attempt: number, what: string, nonceRetried: boolean): Promise<Attempt> {
    const { clientId, retries, logger, dpop } = this.#o;
    const clientRequestId = headers['client-request-id'];
    const body = new URLSearchParams(params);
    this.#o.authentication.apply(body, headers, url);
    // A fresh proof per attempt (a proof is single use), with the service's latest nonce.
    if (dpop !== undefined) headers.dpop = dpop.prove('POST', url, { nonce: this.#dpopNonce });
    let res: Response;
    try {
      res = await this.#o.fetch(url, { method: 'POST', headers, body, redirect: 'manual', signal: AbortSignal.timeout(this.#o.timeout) });
    } catch (error) {
      if (attempt < retries) {
        logger.warn('token request failed, retrying', { clientId, grant: what, clientRequestId, attempt: attempt + 1, cause: (error as Error)?.name });
        return { retryAfterMs: this.#backoff(attempt), status: 0 };
      }
      throw new OboError(0, { error: 'temporarily_unavailable', error_description: 'the token service could not be reached' }, { cause: error });
    }
    const nonce = res.headers.get('dpop-nonce');
    if (dpop !== undefined && nonce !== null && nonce !== '') {
      const fresh = nonce !== this.#dpopNonce;
      this.#dpopNonce = nonce;
      if (fresh && !nonceRetried && res.status === 400) {
        const refusal = await readJsonObject(res.clone(), 64 * 1024).catch(() => undefined);
        if (refusal?.error === 'use_dpop_nonce') {
          await res.body?.cancel().catch(() => {});
          return { retryAfterMs: 0, status: 400, nonce: true };
        }
      }
    }
    if (res.status !== 429 && res.status < 500) return { response: res };
    const wait = retryAfterSeconds(res.headers.get('retry-after'), this.#o.clock());
    const delay = wait === undefined ? this.#backoff(attempt) : wait * 1000;
    const parsed = await readJsonObject(res, 64 * 1024).catch(() => undefined);
    if (attempt < retries && delay <= this.#o.maxDelayMs) {
      logger.warn('token service busy, retrying', { clientId, grant: what, clientRequestId, status: res.status, attempt: attempt + 1, delayMs: Math.round(delay) });
      return { retryAfterMs: delay, status: res.status };
    }
    throw busyError(res.status, parsed);
  }

  #backoff(attempt: number): number {
    const ceiling = Math.min(this.#o.maxDelayMs, this.#o.baseDelayMs * 2 ** attempt);
    return ceiling / 2 + Math.random() * (ceiling / 2);
  }

  async #readTokenResponse(res: Response): Promise<TokenResponse> {
    let json: Record<string, unknown>;
    try {
      json = await readJsonObject(res, 256 * 1024);
    } catch {
      throw new OboError(res.status, { error: 'server_error', error_description: `the token service answered HTTP ${res.status} without a JSON object` });
    }
    if (res.status !== 200) {
      if (typeof json.error !== 'string') throw new OboError(res.status, { error: 'server_error', error_description: `the token service answered HTTP ${res.status}` });
      throw oboErrorFrom(res.status, json as unknown as TokenErrorBody);
    }
    if (typeof json.access_token !== 'string' || json.access_token === '') {
      throw new OboError(res.status, { error: 'server_error', error_description: 'the token response has no access_token' });
    }
    const tokenType = typeof json.token_type === 'string' ? json.token_type.toLowerCase() : '';
    // A DPoP-bound token only when this client sent a proof (RFC 9449 §5); a Bearer one otherwise.
    if (tokenType !== 'bearer' && !(tokenType === 'dpop' && this.#o.dpop !== undefined)) {
      throw new OboError(res.status, { error: 'server_error', error_description: `the token response is not a ${this.#o.dpop === undefined ? 'Bearer' : 'Bearer or DPoP'} token` });
    }
    const expiresIn = this.#expiresIn(json.expires_in, json.access_token);
    return { access_token: json.access_token, token_type: tokenType === 'dpop' ? 'DPoP' : 'Bearer', expires_in: expiresIn, ...(typeof json.scope === 'string' ? { scope: json.scope } : {}) };
  }

  /** RFC 6749 §5.1 makes `expires_in` optional: without it, the JWT access token's `exp`, else a minute. */
  #expiresIn(value: unknown, accessToken: string): number {
    const expiresIn = typeof value === 'number' ? value : typeof value === 'string' ? Number(value) : NaN;
    if (Number.isFinite(expiresIn) && expiresIn > 0) return expiresIn;
    try {
      const exp = decodeJws(accessToken).payload.exp;
      return typeof exp === 'number' ? exp - Math.floor(this.#o.clock() / 1000) : 60;
    } catch {
      return 60;
    }
  }
}

/** The error of a 429 or 5xx answer that will not be retried. */
function busyError(status: number, parsed: Record<string, unknown> | undefined): OboError {
  const error = typeof parsed?.error === 'string' ? parsed.error : status === 429 ? 'temporarily_unavailable' : 'server_error';
  return new OboError(status, {
    ...(parsed as Partial<TokenErrorBody> | undefined),
    error,
    error_description: typeof parsed?.error_description === 'string' ? parsed.error_description : `the token service answered HTTP ${status}`,
  });
}

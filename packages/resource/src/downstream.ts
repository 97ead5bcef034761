/**
 * Calls to the next API in the chain, always with a token addressed to it, obtained On-Behalf-Of
 * the caller: never the caller's own token (it is addressed to this API: the passthrough guard,
 * `refuseTokenPassthrough`, refuses it anywhere in the request), never this API's app-only token
 * (the confused deputy, refused by the OBO client).
 *
 * - A claims challenge from the downstream API (401 `insufficient_claims`) is first tried against
 *   the token service (OBO with those claims, then one retry); if the user must step up, it becomes
 *   a `ClaimsChallengeError`, which the adapters turn into the 401 the Client App acts on.
 * - `interaction_required` from the token service becomes the same `ClaimsChallengeError`.
 * - Each call is an OpenTelemetry CLIENT span whose W3C trace context the request carries; without
 *   an OpenTelemetry SDK, the inbound `traceparent`/`tracestate` are passed on unchanged.
 * - A downstream API that does not answer is a `DownstreamUnavailableError`, which the adapters
 *   answer with 502 problem+json.
 *
 * @example
 * const docs = createDownstream({ obo, scopes: ['api://docs/Docs.Read'], baseUrl: 'https://docs.example' });
 * app.get('/tasks/:id/doc', requireAuth(guard, { scopes: { any: ['Tasks.Read'] } }), async (req, res) => {
 *   const r = await docs().fetch(`/documents/${req.params.id}`); // the caller is found by the adapter's context
 *   res.status(r.status).send(await r.text());
 * });
 */
import { performance } from 'node:perf_hooks';
import { bearerChallengeOf, decodeClaimsChallenge } from './challenge.ts';
import { currentContext, outgoingTraceHeaders } from './context.ts';
import { SpanKind, httpClientAttributes, inSpan, recordHttpStatus } from './tracing.ts';
import { ClaimsChallengeError, DownstreamUnavailableError, InteractionRequiredError, TokenPassthroughError } from './errors.ts';
import { resolveFetch, type CaOption, type FetchLike } from './http.ts';
import { normaliseScopes, type OboClient } from './obo.ts';
import { checkMetrics, statusClass, type DownstreamOutcome, type ResourceMetrics } from './metrics.ts';
import type { Principal } from './principal.ts';

export interface DownstreamOptions {
  obo: OboClient;
  /** Scopes of the downstream API (one API per `createDownstream`). */
  scopes: readonly string[];
  /**
   * Where the API lives. Relative URLs resolve against it, and absolute URLs must stay on its origin,
   * so a token for this API is never sent anywhere else.
   */
  baseUrl?: string;
  /** Fetch for the downstream calls (default: global fetch). Exclusive with `ca`. */
  fetch?: FetchLike;
  ca?: CaOption;
  /**
   * The application's metrics (metrics.ts): each call by outcome and its duration, token
   * acquisition included, under the downstream API's resource (`api://docs`).
   */
  metrics?: ResourceMetrics;
}

export interface DownstreamApi {
  fetch(input: string | URL, init?: RequestInit): Promise<Response>;
}

export type Downstream = (principal?: Principal) => DownstreamApi;

function replayable(body: RequestInit['body']): boolean {
  return body === undefined || body === null || typeof body === 'string' || body instanceof URLSearchParams || body instanceof ArrayBuffer || ArrayBuffer.isView(body) || body instanceof Blob || body instanceof FormData;
}

export function createDownstream(options: DownstreamOptions): Downstream {
  const where = 'createDownstream';
  if (options === null || typeof options !== 'object') throw new TypeError(`${where}: options are required`);
  if (!options.obo || typeof options.obo.onBehalfOf !== 'function') throw new TypeError(`${where}: obo must be an OBO client`);
  const scopes = normaliseScopes(options.scopes, where);
  const fetchFn = resolveFetch(options, where);
  let base: URL | undefined;
  if (options.baseUrl !== undefined) {
    try {
      base = new URL(options.baseUrl);
    } catch {
      throw new TypeError(`${where}: baseUrl must be an absolute URL`);
    }
  }
  const obo = options.obo;
  const metrics = checkMetrics(options.metrics, where);
  /** The downstream API's latest `DPoP-Nonce` (RFC 9449 §9), per origin. */
  const dpopNonces = new Map<string, string>();
  const api = resourceOf(scopes[0] as string);

  return (principal?: Principal) => {
    const ctx = currentContext();
    const caller = principal ?? ctx?.principal;
    if (caller === undefined) {
      throw new TypeError('downstream(): no caller. Call it inside a request handled by a Baton adapter, or pass the Principal; app-only calls use obo.appToken().');
    }
    const trace = ctx !== undefined && ctx.principal === caller ? ctx : undefined;

    return {
      async fetch(input, init = {}) {
        const url = base ? new URL(String(input), base) : new URL(String(input));
        if (base && url.origin !== base.origin) throw new TypeError(`downstream fetch: ${url.origin} is not the origin of this downstream API`);
        const headers = new Headers(init.headers);
        refuseTokenPassthrough(caller, url, headers, init.body);
        if (headers.has('authorization')) throw new TypeError('downstream fetch: do not set Authorization; the On-Behalf-Of token is added');
        // The caller's own trace headers stand; otherwise each call carries its span's (tracing.ts).
        const ownTrace = headers.has('traceparent');
        const method = (init.method ?? 'GET').toUpperCase();
        const attributes = httpClientAttributes(method, url);

        const obtain = async (claims?: string) => {
          try {
            return await obo.onBehalfOf(caller, scopes, claims === undefined ? {} : { claims, forceRefresh: true });
          } catch (error) {
            if (error instanceof InteractionRequiredError) {
              const challenge = error.claims ?? claims;
              if (challenge !== undefined) throw new ClaimsChallengeError(challenge, { cause: error });
            }
            throw error;
          }
        };
        // One CLIENT span per HTTP request (OTel HTTP client conventions); the next API continues it.
        const send = (token: { accessToken: string; tokenType: string }) =>
          inSpan(method, { kind: SpanKind.CLIENT, attributes }, async (span) => {
            // A DPoP-bound token goes with a proof of this API's key, made for this method and URL (RFC 9449 §7).
            const prover = token.tokenType === 'DPoP' ? obo.dpop : undefined;
            if (prover !== undefined) {
              headers.set('authorization', `DPoP ${token.accessToken}`);
              headers.set('dpop', prover.prove(method, url.href, { accessToken: token.accessToken, nonce: dpopNonces.get(url.origin) }));
            } else {
              headers.set('authorization', `Bearer ${token.accessToken}`);
            }
            if (!ownTrace) for (const [name, value] of Object.entries(outgoingTraceHeaders(trace))) headers.set(name, value);
            try {
              const res = await fetchFn(url, { ...init, headers });
              recordHttpStatus(span, res.status);
              const nonce = res.headers.get('dpop-nonce');
              if (prover !== undefined && nonce !== null && nonce !== '') dpopNonces.set(url.origin, nonce);
              return res;
            } catch (error) {
              // The caller's own abort stays an abort; a network failure is the downstream API's.
              if (init.signal?.aborted) throw error;
              throw new DownstreamUnavailableError(url.origin, { cause: error });
            }
          });
        // The API asked for its DPoP nonce: once more with it (a proof is single use; the body must be replayable).
        const call = async (token: { accessToken: string; tokenType: string }) => {
          const res = await send(token);
          if (res.status !== 401 || token.tokenType !== 'DPoP' || !replayable(init.body) || !/^DPoP\b[^]*error="use_dpop_nonce"/i.test(res.headers.get('www-authenticate') ?? '')) return res;
          await res.body?.cancel().catch(() => {});
          return send(token);
        };

        const exchange = async (): Promise<Response> => {
          const first = await call(await obtain());
          const claims = claimsChallengeOf(first);
          if (claims === undefined) return first;
          await first.body?.cancel().catch(() => {});
          if (!replayable(init.body)) throw new ClaimsChallengeError(claims);
          // The token service may satisfy the claims from the original sign-in; otherwise it answers
          // interaction_required and the user steps up.
          const second = await call(await obtain(claims));
          const again = claimsChallengeOf(second);
          if (again === undefined) return second;
          await second.body?.cancel().catch(() => {});
          throw new ClaimsChallengeError(again);
        };
        if (metrics === undefined) return exchange();
        const started = performance.now();
        try {
          const response = await exchange();
          metrics.downstream(api, statusClass(response.status), (performance.now() - started) / 1000);
          return response;
        } catch (error) {
          metrics.downstream(api, init.signal?.aborted ? 'aborted' : outcomeOf(error), (performance.now() - started) / 1000);
          throw error;
        }
      },
    };
  };
}

/** The resource a scope belongs to (`api://docs/Docs.Read` → `api://docs`): the metrics' `api`, fixed per downstream. */
function resourceOf(scope: string): string {
  const slash = scope.lastIndexOf('/');
  return slash > 0 && !scope.slice(0, slash).endsWith('/') ? scope.slice(0, slash) : scope;
}

/** A failed call's outcome: a step-up, no answer, or no token to call with. */
function outcomeOf(error: unknown): DownstreamOutcome {
  if (error instanceof ClaimsChallengeError) return 'claims_challenge';
  if (error instanceof DownstreamUnavailableError) return 'unavailable';
  return 'token_error';
}

/**
 * The passthrough guard, beside the confused-deputy one: refuses (`TokenPassthroughError`) a request
 * to another API that carries the token `caller` arrived with — as a bearer, in any other header,
 * in the URL or in a text body. That token is addressed to this API; the next API gets one of its
 * own, On-Behalf-Of (`createDownstream` does both). Nothing is sent when it throws.
 *
 * @example
 * refuseTokenPassthrough(req.auth, 'https://docs.example/documents', { authorization: `Bearer ${req.auth.token}` }); // throws
 */
export function refuseTokenPassthrough(caller: Principal | { token: string }, target: string | URL, headers?: RequestInit['headers'], body?: RequestInit['body']): void {
  const token = caller?.token;
  if (typeof token !== 'string' || token.length < 16) return;
  const to = (() => {
    try {
      return new URL(String(target)).origin;
    } catch {
      return String(target).slice(0, 100);
    }
  })();
  const refuse = (where: string): never => {
    throw new TokenPassthroughError(
      `The token this request arrived with was about to be sent to ${to} (${where}). It is addressed to this API, not to ${to}, which must refuse it (audience); forwarding it is token passthrough, which the MCP authorization specification forbids. Call ${to} with a token of its own, obtained On-Behalf-Of the user (createDownstream).`,
    );
  };
  if (String(target).includes(token)) refuse('in the URL');
  for (const [name, value] of new Headers(headers)) if (value.includes(token)) refuse(name === 'authorization' ? 'as the bearer' : `in the ${name} header`);
  const text = typeof body === 'string' ? body : body instanceof URLSearchParams ? body.toString() : undefined;
  if (text !== undefined && (text.includes(token) || (body instanceof URLSearchParams && [...body.values()].some((v) => v.includes(token))))) refuse('in the body');
}

/** The claims (JSON text) of a 401 `insufficient_claims` challenge, if that is what `res` is. */
export function claimsChallengeOf(res: Response): string | undefined {
  if (res.status !== 401) return undefined;
  const challenge = bearerChallengeOf(res.headers.get('www-authenticate'));
  if (challenge?.params.error !== 'insufficient_claims' || challenge.params.claims === undefined) return undefined;
  return decodeClaimsChallenge(challenge.params.claims);
}

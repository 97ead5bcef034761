/**
 * @baton/resource: what an API imports to accept tokens and call the next API on behalf of the user.
 *
 * Framework adapters live in subpaths: `@baton/resource/express`, `/fastify`, `/hono`, `/node`;
 * the Redis token cache in `@baton/resource/redis`; Prometheus metrics in `@baton/resource/prometheus`.
 */
export { createGuard, checkRequirement, DEFAULT_ALGORITHMS, type Guard, type GuardOptions, type Requirement, type AnyAll } from './guard.ts';
export type { Principal, Actor } from './principal.ts';
export { MAX_AUTHORIZATION_LENGTH, type AuthorizationInput, type TokenScheme } from './bearer.ts';
export { MemoryDpopReplayCache, dpopRequestOf, type DpopMode, type DpopReplayCache, type DpopRequestInput, type GuardDpopOptions } from './dpop.ts';
/** DPoP proofs for a client of your own (one per request: `prover.prove(method, url, { accessToken })`). */
export { createDpopProver, type DpopProver, type DpopAlg } from '@baton/core';
export {
  GuardError,
  ClaimsChallengeError,
  claimsChallenge,
  insufficientUserAuthentication,
  OboError,
  InvalidGrantError,
  ConsentRequiredError,
  InteractionRequiredError,
  ConfusedDeputyError,
  TokenPassthroughError,
  DownstreamUnavailableError,
  type ProblemDetails,
  type GuardErrorCode,
  type GuardErrorReason,
  type TokenErrorBody,
} from './errors.ts';
export { bearerChallenge, encodeClaimsChallenge, decodeClaimsChallenge, parseChallenges, bearerChallengeOf, type Challenge } from './challenge.ts';
export { protectedResourceMetadata, type ProtectedResourceMetadata, type ProtectedResourceMetadataOptions } from './metadata.ts';
export { runWithPrincipal, currentPrincipal, currentContext, type RequestContext } from './context.ts';
export {
  createOboClient,
  tokenCacheKey,
  consoleLogger,
  type OboClient,
  type OboClientOptions,
  type OboRequest,
  type AcquiredToken,
  type AppTokenOptions,
  type ClientCredential,
  type Logger,
} from './obo.ts';
export { MemoryTokenCacheStore, type TokenCacheStore, type CachedToken, type MemoryTokenCacheOptions } from './cache.ts';
export { createDownstream, claimsChallengeOf, refuseTokenPassthrough, type Downstream, type DownstreamApi, type DownstreamOptions } from './downstream.ts';
export { fetchWithCa, type FetchLike, type CaOption } from './http.ts';
export { RemoteJwks, JwksUnavailableError, type RemoteJwksOptions } from './jwks.ts';
export { errorResponse, errorFetchResponse, writeErrorResponse, type ErrorResponse } from './respond.ts';
export { createSignals, revocationKeysOf, revocationKeysOfSubject, REVOKING_EVENTS, SetError, type Signals, type SignalsOptions, type ReceivedEvent, type SetErrorCode } from './signals.ts';
export { ensureSignalStream, ssfConfigurationUrl, SignalStreamError, POLL_DELIVERY, PUSH_DELIVERY, type SignalStream, type SignalStreamOptions } from './signal-stream.ts';
export type { ResourceMetrics, GuardResult, CacheLookup, TokenKind, DownstreamOutcome } from './metrics.ts';

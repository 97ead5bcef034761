/**
 * Client authentication at the token endpoint (RFC 6749 §2.3, RFC 7523 §2.2, OIDC Core §9):
 * `client_secret_basic`, `client_secret_post`, `private_key_jwt`, or none for public clients.
 *
 * Costs one HMAC for a secret (client secrets are high-entropy: a keyed hash is the right tool and
 * keeps the token endpoint CPU-bound on signatures, not on bcrypt) and one signature verification
 * plus one atomic store write (the `jti`) for an assertion.
 */
import { hash, type KeyObject } from 'node:crypto';
import {
  OAuthError,
  Entra,
  CLIENT_ASSERTION_HEADER,
  checkJwsHeader,
  decodeJws,
  importPublicJwk,
  JwtError,
  keyFitsAlg,
  verifyJwsSignatureAsync,
  JwsFormatError,
  type Application,
  type ClientSecretRecord,
  type TenantDirectory,
} from '@baton/core';
import type { FormParams } from './http/form.ts';
import { verifyClientSecret } from './crypto/secrets.ts';
import { registrationGone } from './registration/dynamic.ts';
import { issuerOf, tokenEndpointOf, type AuthenticatedClient, type ServerContext } from './context.ts';

export type { AuthenticatedClient } from './context.ts';

export const CLIENT_ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

/** Client assertions may live at most this long (RFC 7523 §3 item 4: "reasonable"; Entra: 10 min). */
const MAX_ASSERTION_LIFETIME = 600;
const SKEW = 60;

function invalidClient(description: string, entra: number, basic: boolean, detail?: string): OAuthError {
  return new OAuthError('invalid_client', {
    description,
    entraCodes: [entra],
    ...(detail ? { detail } : {}),
    // RFC 6749 §5.2: 401 + WWW-Authenticate matching the scheme the client used.
    status: basic ? 401 : 400,
    headers: basic ? { 'www-authenticate': 'Basic realm="baton", charset="UTF-8"' } : {},
  });
}

interface BasicCredentials {
  clientId: string;
  secret: string;
}

/** RFC 6749 §2.3.1: both parts are form-urlencoded before base64. */
function parseBasic(header: string | undefined): BasicCredentials | undefined {
  if (header === undefined) return undefined;
  const match = /^Basic +([A-Za-z0-9+/]+=*) *$/i.exec(header);
  if (!match) {
    if (/^Basic\b/i.test(header)) throw invalidClient('The Basic authorization header is malformed.', Entra.unknownClient, true);
    return undefined;
  }
  const decoded = Buffer.from(match[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) throw invalidClient('The Basic authorization header is malformed.', Entra.unknownClient, true);
  try {
    return {
      clientId: decodeURIComponent(decoded.slice(0, colon).replace(/\+/g, ' ')),
      secret: decodeURIComponent(decoded.slice(colon + 1).replace(/\+/g, ' ')),
    };
  } catch {
    throw invalidClient('The Basic authorization header is malformed.', Entra.unknownClient, true);
  }
}

/**
 * The client id a request names (the Basic user, else `client_id`), NOT authenticated: only for
 * what checks it against the directory afterwards (the metrics' client label of a refusal).
 */
export function presentedClientId(params: FormParams, authorization: string | undefined): string | undefined {
  try {
    return parseBasic(authorization)?.clientId ?? params.client_id;
  } catch {
    return params.client_id;
  }
}

/**
 * Authenticates the client of a token request. Returns the application; public clients come back
 * with method `none` — grants that need a confidential client check that themselves.
 */
export async function authenticateClient(
  ctx: ServerContext,
  directory: TenantDirectory,
  params: FormParams,
  authorization: string | undefined,
): Promise<AuthenticatedClient> {
  const basic = parseBasic(authorization);
  const hasPostSecret = params.client_secret !== undefined;
  const hasAssertion = params.client_assertion !== undefined || params.client_assertion_type !== undefined;
  // RFC 6749 §2.3: a client MUST NOT use more than one authentication method per request.
  if ([basic !== undefined, hasPostSecret, hasAssertion].filter(Boolean).length > 1) {
    throw new OAuthError('invalid_request', {
      description: 'The request uses more than one client authentication method; use exactly one.',
      entraCodes: [Entra.malformedRequest],
    });
  }

  if (hasAssertion) return authenticateAssertion(ctx, directory, params);

  const clientId = basic?.clientId ?? params.client_id;
  if (clientId === undefined || clientId === '') {
    throw new OAuthError('invalid_request', {
      description: "The request must identify the client: 'client_id', a Basic authorization header, or a client assertion.",
      entraCodes: [Entra.malformedRequest],
    });
  }
  if (basic && params.client_id !== undefined && params.client_id !== basic.clientId) {
    throw invalidClient("The 'client_id' parameter does not match the authenticated client.", Entra.unknownClient, true);
  }
  const app = directory.application(clientId);
  // A dynamic registration that was deleted or expired unused (RFC 7591/7592) is unknown too.
  if (!app || registrationGone(app, ctx.now())) {
    throw invalidClient(`Application '${clientId.slice(0, 128)}' was not found in tenant '${directory.tenant.id}'.`, Entra.unknownClient, basic !== undefined);
  }
  const secret = basic?.secret ?? params.client_secret;
  if (secret === undefined) {
    if (app.public) return { app, method: 'none' };
    throw invalidClient(
      `The request body must contain 'client_secret' or 'client_assertion': '${app.clientId}' is a confidential client.`,
      7000218,
      false,
    );
  }
  if (app.public) {
    throw invalidClient(`'${app.clientId}' is a public client: it has no secret and must not send one.`, Entra.wrongClientSecret, basic !== undefined);
  }
  if (!secretMatches(ctx, app, secret)) {
    throw invalidClient(`Invalid client secret provided for '${app.clientId}'.`, Entra.wrongClientSecret, basic !== undefined, `client_id=${app.clientId}`);
  }
  return { app, method: basic ? 'client_secret_basic' : 'client_secret_post' };
}

/**
 * Secrets that verified, per registration (the directory builds new application objects when one
 * changes, so a removed or rotated secret is forgotten with the old object), by SHA-256 of the
 * secret. A client presents the same secret on every request; this spares the HMAC on all but the
 * first. Only secrets that verified are remembered (a wrong one costs the full check every time),
 * a few per application, and the record's expiry is checked on every use. The digest never leaves
 * the process: in memory it tells an attacker nothing the pepper beside it would not.
 */
const MAX_REMEMBERED_SECRETS = 8;
const verifiedSecrets = new WeakMap<Application['secrets'], Map<string, ClientSecretRecord>>();

function secretMatches(ctx: ServerContext, app: Application, secret: string): boolean {
  if (secret.length === 0 || secret.length > 1024) return false; // verifyClientSecret's bounds, before hashing
  const now = ctx.now();
  const live = (record: ClientSecretRecord) => record.expiresAt === undefined || record.expiresAt > now;
  let remembered = verifiedSecrets.get(app.secrets);
  const digest = hash('sha256', secret, 'base64');
  const known = remembered?.get(digest);
  if (known !== undefined) return live(known);
  const record = app.secrets.find((r) => live(r) && verifyClientSecret(secret, r.hash, ctx.pepper));
  if (record === undefined) return false;
  if (remembered === undefined) {
    remembered = new Map();
    verifiedSecrets.set(app.secrets, remembered);
  }
  if (remembered.size >= MAX_REMEMBERED_SECRETS) remembered.clear();
  remembered.set(digest, record);
  return true;
}

/** Public keys of an application for assertions, imported once per key set. */
const importedKeys = new WeakMap<Application['jwks'], { kid?: string; key: KeyObject }[]>();
function clientKeys(app: Application): { kid?: string; key: KeyObject }[] {
  let keys = importedKeys.get(app.jwks);
  if (keys === undefined) {
    keys = [];
    for (const jwk of app.jwks) {
      try {
        keys.push({ ...(typeof jwk.kid === 'string' ? { kid: jwk.kid } : {}), key: importPublicJwk(jwk) });
      } catch {
        // A malformed key in the registration cannot authenticate anything; skip it.
      }
    }
    importedKeys.set(app.jwks, keys);
  }
  return keys;
}

/** RFC 7523 §3 + §2.2; `jti` single use across all instances (store.useProofOnce). */
async function authenticateAssertion(ctx: ServerContext, directory: TenantDirectory, params: FormParams): Promise<AuthenticatedClient> {
  const bad = (description: string, detail?: string) => invalidClient(description, Entra.invalidClientAssertion, false, detail);
  if (params.client_assertion_type !== CLIENT_ASSERTION_TYPE) {
    throw bad(`'client_assertion_type' must be '${CLIENT_ASSERTION_TYPE}'.`);
  }
  const assertion = params.client_assertion;
  if (assertion === undefined || assertion === '') throw bad("The request must contain 'client_assertion'.");
  let decoded;
  try {
    decoded = decodeJws(assertion, 8 * 1024);
  } catch (error) {
    throw bad(`The client assertion is not a valid JWT: ${(error as JwsFormatError).message}.`);
  }
  const { header, payload } = decoded;
  const iss = payload.iss;
  const sub = payload.sub;
  if (typeof iss !== 'string' || typeof sub !== 'string' || iss !== sub) {
    throw bad("The client assertion's 'iss' and 'sub' must both be the client id.");
  }
  if (params.client_id !== undefined && params.client_id !== iss) {
    throw bad("The 'client_id' parameter does not match the client assertion's issuer.");
  }
  const app = directory.application(iss);
  if (!app) throw invalidClient(`Application '${iss.slice(0, 128)}' was not found in tenant '${directory.tenant.id}'.`, Entra.unknownClient, false);
  if (app.public) throw bad(`'${app.clientId}' is a public client and cannot authenticate with an assertion.`);

  // The one header policy (core's checkJwsHeader): unknown `crit` refused (RFC 7515 §4.1.11),
  // asymmetric algorithms only (`none` and HMAC keyed with a public key are on no list), no
  // `jku`/`x5u`/`jwk` (the key comes from the registration, never from the assertion), and an
  // access token (`typ: at+jwt`) is not a client assertion.
  let alg;
  try {
    ({ alg } = checkJwsHeader(header, CLIENT_ASSERTION_HEADER));
  } catch (error) {
    if (error instanceof JwtError) throw bad(`The client assertion's header is refused: ${error.message}.`);
    throw error;
  }
  const candidates = clientKeys(app).filter((k) => (header.kid === undefined || k.kid === undefined || k.kid === header.kid) && keyFitsAlg(k.key, alg));
  if (candidates.length === 0) throw bad(`No key registered for '${app.clientId}' matches the client assertion (kid, algorithm).`);
  let verified = false;
  for (const candidate of candidates) {
    if (verified) break;
    const verifying = verifyJwsSignatureAsync(decoded, candidate.key, alg);
    verified = await (ctx.metrics ? ctx.metrics.jws('verify', alg, verifying) : verifying);
  }
  if (!verified) {
    throw bad('The client assertion signature is invalid.', `client_id=${app.clientId} kid=${String(header.kid)}`);
  }

  const now = ctx.now();
  const audiences = typeof payload.aud === 'string' ? [payload.aud] : Array.isArray(payload.aud) ? payload.aud : [];
  const accepted = [tokenEndpointOf(ctx, directory.tenant.id), issuerOf(ctx, directory.tenant.id)];
  if (!audiences.some((a) => typeof a === 'string' && accepted.includes(a))) {
    throw bad(`The client assertion's audience must be the token endpoint (${accepted[0]}) or the issuer.`);
  }
  const exp = payload.exp;
  if (typeof exp !== 'number' || !Number.isFinite(exp)) throw bad("The client assertion must carry a numeric 'exp'.");
  if (exp <= now - SKEW) throw bad('The client assertion has expired.');
  if (exp > now + MAX_ASSERTION_LIFETIME + SKEW) throw bad(`The client assertion lives too long: 'exp' may be at most ${MAX_ASSERTION_LIFETIME} seconds ahead.`);
  if (typeof payload.nbf === 'number' && payload.nbf > now + SKEW) throw bad('The client assertion is not valid yet.');
  if (typeof payload.iat === 'number' && payload.iat > now + SKEW) throw bad('The client assertion was issued in the future.');
  const jti = payload.jti;
  if (typeof jti !== 'string' || jti.length === 0 || jti.length > 256) throw bad("The client assertion must carry a 'jti'.");
  // Recorded until it could no longer be accepted anyway, then swept.
  const fresh = await ctx.store.useProofOnce(`client-assertion:${directory.tenant.id}:${app.clientId}`, jti, exp + SKEW, now);
  if (!fresh) throw bad('The client assertion was already used (jti replay).', `client_id=${app.clientId}`);
  return { app, method: 'private_key_jwt' };
}

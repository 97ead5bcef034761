/**
 * DPoP (RFC 9449): the proof a client sends in the `DPoP` header to show it holds the private key a
 * token is (or will be) bound to. One checker for both ends — the token endpoint, which binds the
 * tokens it issues to the proof's key (`cnf.jkt`), and the SDK guard, which checks that the caller
 * of an API holds the key its token is bound to — and one prover for the SDK's outgoing calls.
 *
 * `checkDpopProof` is §4.3's list, in order, as a pure function of (proof, request, now) plus one
 * signature verification: exactly one well-formed JWS; `typ: dpop+jwt`; an asymmetric `alg` from
 * the verifier's allow-list; a public `jwk` in the header (no private members) that fits the `alg`;
 * the signature under that key; `jti`, `htm`, `htu`, `iat` present; `htm` the request's method;
 * `htu` the request's URI without query and fragment, both normalised (RFC 3986 §6.2.2, §6.2.3);
 * `iat` within the window; `ath` the hash of the access token presented with it. The nonce and the
 * `jti` replay check need state (a nonce source, a replay store): the caller judges them with what
 * this returns.
 *
 * The key's thumbprint is RFC 7638's (core's `jwkThumbprint`, the one that names Baton's signing
 * keys; test/dpop.test.ts checks it against jose's `calculateJwkThumbprint`).
 */
import { createHmac, createPrivateKey, createPublicKey, randomUUID, sign as cryptoSign, constants, timingSafeEqual, type JsonWebKey, type KeyObject } from 'node:crypto';
import { decodeJws, derToP1363, jwkThumbprint, keyFitsAlg, sha256b64u, verifyJwsSignature, verifyJwsSignatureAsync, JwsFormatError, type DecodedJws, type JwsAlg } from './jws.ts';
import { normaliseTyp } from './jws-header.ts';

/**
 * A proof's algorithm: a JWS algorithm core verifies, or `Ed25519` — RFC 9864's fully-specified name
 * for EdDSA over Ed25519, which current clients (oauth4webapi, openid-client) put in their proofs.
 */
export type DpopAlg = JwsAlg | 'Ed25519';

/** The algorithms a DPoP proof may be signed with (asymmetric only; `none` and HMAC never). */
export const DPOP_ALGS: readonly DpopAlg[] = ['ES256', 'RS256', 'PS256', 'EdDSA', 'Ed25519'];

/** The longest proof accepted, in characters: an RSA-4096 `jwk` and a long `htu` stay far below it. */
export const MAX_DPOP_PROOF_CHARS = 8 * 1024;

/** Seconds a proof's `iat` may lie in the past (a proof is made for one request, right before it). */
export const DPOP_MAX_AGE_SECONDS = 300;
/** Seconds a proof's `iat` may lie in the future (clock skew). */
export const DPOP_FUTURE_SECONDS = 60;

/** Why a proof is refused, for logs and metrics; the description says it in words. */
export type DpopFailure =
  | 'missing'
  | 'multiple'
  | 'malformed'
  | 'typ'
  | 'alg'
  | 'jwk'
  | 'signature'
  | 'claims'
  | 'htm'
  | 'htu'
  | 'iat'
  | 'ath'
  | 'nonce'
  | 'replay'
  | 'key-mismatch';

/** A refused proof: `invalid_dpop_proof`, or `use_dpop_nonce` when only the server's nonce is missing or stale. */
export class DpopProofError extends Error {
  override name = 'DpopProofError';
  readonly error: 'invalid_dpop_proof' | 'use_dpop_nonce';
  readonly failure: DpopFailure;
  constructor(failure: DpopFailure, description: string) {
    super(description);
    this.failure = failure;
    this.error = failure === 'nonce' ? 'use_dpop_nonce' : 'invalid_dpop_proof';
  }
}

export interface DpopRequest {
  /** The request's method (`POST`), compared with `htm` exactly. */
  method: string;
  /** The request's full URI as the client addressed it; query and fragment are ignored. */
  url: string;
}

export interface DpopCheckOptions {
  /** Accepted algorithms; default {@link DPOP_ALGS}. */
  algorithms?: readonly DpopAlg[] | undefined;
  /** Epoch seconds. */
  now: number;
  /** Default {@link DPOP_MAX_AGE_SECONDS}. */
  maxAgeSeconds?: number | undefined;
  /** Default {@link DPOP_FUTURE_SECONDS}. */
  futureSeconds?: number | undefined;
  /** The access token presented with the proof (at a resource): `ath` must be its SHA-256. */
  accessToken?: string | undefined;
}

/** A proof that passed {@link checkDpopProof}. */
export interface DpopProof {
  /** RFC 7638 thumbprint of the proof's key: the `cnf.jkt` a token is bound to. */
  jkt: string;
  jti: string;
  iat: number;
  /** The server-provided nonce the proof carries, if any; the caller judges it. */
  nonce: string | undefined;
  alg: DpopAlg;
}

/** The RFC 7800 confirmation claim of a DPoP-bound token. */
export interface DpopConfirmation {
  jkt: string;
}

const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'];

/**
 * The one `DPoP` header of a request: Node's `headersDistinct` array or a plain value. A repeated
 * header (or values Node joined with a comma: a JWS has none) is refused (RFC 9449 §4.3 step 1).
 * Returns undefined when there is none.
 */
export function singleDpopHeader(value: string | readonly string[] | undefined): string | undefined {
  if (value === undefined) return undefined;
  const values = typeof value === 'string' ? [value] : value;
  if (values.length === 0) return undefined;
  if (values.length > 1 || (values[0] as string).includes(',')) throw new DpopProofError('multiple', 'The request carries more than one DPoP header: send exactly one proof.');
  return (values[0] as string).trim();
}

/**
 * Checks a DPoP proof against the request it came with (RFC 9449 §4.3). Throws {@link DpopProofError};
 * returns the key's thumbprint and what the caller must still judge (`jti` replay, `nonce`).
 *
 * @example
 * const proof = checkDpopProof(header, { method: 'POST', url: tokenEndpoint }, { now });
 * if (!(await store.useProofOnce(`dpop:${tenant}`, `${proof.jkt}:${proof.jti}`, proof.iat + 300, now))) throw replayed;
 */
export function checkDpopProof(proof: string, request: DpopRequest, options: DpopCheckOptions): DpopProof {
  const inspected = inspectDpopProof(proof, options);
  if (!verifyJwsSignature(inspected.signed, inspected.key.object, inspected.jwsAlg)) throw badSignature();
  return finishDpopProof(inspected, request, options);
}

/**
 * {@link checkDpopProof} with the signature verified on libuv's thread pool
 * (`verifyJwsSignatureAsync`): the same checks in the same order, the event loop free meanwhile.
 * For a server checking a proof per request (the token endpoint), as it verifies and signs tokens.
 * Rejects with {@link DpopProofError}.
 */
export async function checkDpopProofAsync(proof: string, request: DpopRequest, options: DpopCheckOptions): Promise<DpopProof> {
  const inspected = inspectDpopProof(proof, options);
  if (!(await verifyJwsSignatureAsync(inspected.signed, inspected.key.object, inspected.jwsAlg))) throw badSignature();
  return finishDpopProof(inspected, request, options);
}

/** What a proof is before its signature is verified: decoded, its header and key judged. */
interface InspectedProof {
  signed: DecodedJws;
  key: { object: KeyObject; jkt: string };
  jwsAlg: JwsAlg;
  alg: DpopAlg;
}

function badSignature(): DpopProofError {
  return new DpopProofError('signature', "The DPoP proof's signature does not verify with the key in its header.");
}

/** §4.3 steps 1–6: one JWS, `typ`, no `crit`, `alg` accepted, a public `jwk` that fits it. */
function inspectDpopProof(proof: string, options: DpopCheckOptions): InspectedProof {
  let decoded: DecodedJws;
  try {
    decoded = decodeJws(proof, MAX_DPOP_PROOF_CHARS);
  } catch (error) {
    if (error instanceof JwsFormatError) throw new DpopProofError('malformed', `The DPoP proof is not a signed JWT (${error.message}).`);
    throw error;
  }
  const { header } = decoded;
  if (typeof header.typ !== 'string' || normaliseTyp(header.typ) !== 'dpop+jwt') throw new DpopProofError('typ', "The DPoP proof's typ header must be 'dpop+jwt'.");
  if (header.crit !== undefined) throw new DpopProofError('malformed', 'The DPoP proof names critical header extensions (crit), and none is supported.');
  const algorithms = options.algorithms ?? DPOP_ALGS;
  const alg = header.alg;
  if (!(algorithms as readonly string[]).includes(alg)) throw new DpopProofError('alg', `The DPoP proof's algorithm is not accepted; use ${algorithms.join(', ')}.`);
  const key = proofKey(header.jwk);
  // `Ed25519` is EdDSA with an Ed25519 key (RFC 9864 §2.2): verified as such.
  const jwsAlg: JwsAlg = alg === 'Ed25519' ? 'EdDSA' : (alg as JwsAlg);
  if (!keyFitsAlg(key.object, jwsAlg) || (alg === 'Ed25519' && key.object.asymmetricKeyType !== 'ed25519')) {
    throw new DpopProofError('jwk', `The DPoP proof's jwk does not fit its algorithm ${alg} (RSA keys must be at least 2048 bits).`);
  }
  const signed = alg === 'Ed25519' ? { ...decoded, header: { ...header, alg: 'EdDSA' } } : decoded;
  return { signed, key, jwsAlg, alg: alg as DpopAlg };
}

/** §4.3 steps 7–11, after the signature: `jti`, `htm`, `htu`, `iat`, `ath`, the nonce's form. */
function finishDpopProof(inspected: InspectedProof, request: DpopRequest, options: DpopCheckOptions): DpopProof {
  const { payload } = inspected.signed;
  const { key, alg } = inspected;
  const { jti, htm, htu, iat } = payload;
  if (typeof jti !== 'string' || jti === '' || jti.length > 256) throw new DpopProofError('claims', 'The DPoP proof needs a jti (a unique string of at most 256 characters).');
  if (typeof htm !== 'string' || typeof htu !== 'string' || typeof iat !== 'number' || !Number.isFinite(iat)) {
    throw new DpopProofError('claims', 'The DPoP proof needs htm, htu and iat claims (RFC 9449 §4.2).');
  }
  if (htm !== request.method) throw new DpopProofError('htm', `The DPoP proof was made for method ${truncateText(htm, 16)}, not ${request.method}.`);
  const expected = normaliseHtu(request.url);
  const claimed = normaliseHtu(htu);
  if (claimed === undefined || claimed !== expected) {
    throw new DpopProofError('htu', `The DPoP proof was made for another URI ('${truncateText(htu, 120)}'); this request's is '${expected ?? request.url}'.`);
  }
  const now = options.now;
  if (iat < now - (options.maxAgeSeconds ?? DPOP_MAX_AGE_SECONDS) || iat > now + (options.futureSeconds ?? DPOP_FUTURE_SECONDS)) {
    throw new DpopProofError('iat', "The DPoP proof's iat is outside the accepted window: make a fresh proof for each request (and check the client's clock).");
  }
  if (options.accessToken !== undefined) {
    if (typeof payload.ath !== 'string' || payload.ath !== sha256b64u(options.accessToken)) {
      throw new DpopProofError('ath', "The DPoP proof's ath is not the hash of the access token sent with it.");
    }
  }
  const nonce = payload.nonce;
  if (nonce !== undefined && (typeof nonce !== 'string' || nonce.length > 256)) throw new DpopProofError('claims', "The DPoP proof's nonce is malformed.");
  return { jkt: key.jkt, jti, iat, nonce, alg };
}

/**
 * Imported proof keys by their RFC 7638 members: a client proves with the same key request after
 * request, and importing it (`createPublicKey`) and reading its type and size cost more than the
 * signature check itself (about 90 µs of every DPoP request at the token endpoint, profiled under
 * load: docs/performance.md). The members are the whole public key, so the same members are the
 * same key. Bounded: when full, every entry is dropped at once (a flood of fresh keys costs what it
 * did without the cache).
 */
const proofKeys = new Map<string, { object: KeyObject; jkt: string }>();
const PROOF_KEYS_MAX = 1024;

/** The proof's `jwk`: a public EC, RSA or OKP key, imported, with its thumbprint. */
function proofKey(jwk: unknown): { object: KeyObject; jkt: string } {
  if (jwk === null || typeof jwk !== 'object' || Array.isArray(jwk)) throw new DpopProofError('jwk', 'The DPoP proof has no jwk header holding its public key.');
  const members = jwk as Record<string, unknown>;
  if (PRIVATE_MEMBERS.some((name) => name in members)) throw new DpopProofError('jwk', "The DPoP proof's jwk holds private key material: send the public key only.");
  if (members.kty !== 'EC' && members.kty !== 'RSA' && members.kty !== 'OKP') throw new DpopProofError('jwk', "The DPoP proof's jwk must be an EC, RSA or OKP public key.");
  const required = members.kty === 'EC' ? ['crv', 'x', 'y'] : members.kty === 'RSA' ? ['n', 'e'] : ['crv', 'x'];
  if (required.some((name) => typeof members[name] !== 'string')) throw new DpopProofError('jwk', "The DPoP proof's jwk is incomplete.");
  // RFC 7638 §3.2: the required members in lexicographic order — the thumbprint's input, the key
  // imported, and the cache's key all at once.
  const key: JsonWebKey =
    members.kty === 'EC'
      ? { crv: members.crv as string, kty: 'EC', x: members.x as string, y: members.y as string }
      : members.kty === 'RSA'
        ? { e: members.e as string, kty: 'RSA', n: members.n as string }
        : { crv: members.crv as string, kty: 'OKP', x: members.x as string };
  const canonical = JSON.stringify(key);
  const known = proofKeys.get(canonical);
  if (known !== undefined) return known;
  let object: KeyObject;
  try {
    object = createPublicKey({ key, format: 'jwk' });
  } catch {
    throw new DpopProofError('jwk', "The DPoP proof's jwk is not a valid public key.");
  }
  const imported = { object, jkt: sha256b64u(canonical) };
  if (proofKeys.size >= PROOF_KEYS_MAX) proofKeys.clear();
  proofKeys.set(canonical, imported);
  return imported;
}

const UNRESERVED = /[A-Za-z0-9\-._~]/;

/**
 * An `htu` as compared (RFC 9449 §4.3 step 9, RFC 3986 §6.2.2 and §6.2.3): the WHATWG parser
 * lower-cases scheme and host, drops a default port and resolves dot segments; percent-encodings
 * are upper-cased and unreserved characters decoded; an empty path is `/`; query and fragment are
 * dropped. Undefined for anything that is not an absolute http(s) URI.
 *
 * @example
 * normaliseHtu('HTTPS://Login.Example:443/t/oauth2/%7etoken?x=1'); // 'https://login.example/t/oauth2/~token'
 */
export function normaliseHtu(value: string): string | undefined {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return undefined;
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return undefined;
  const path = url.pathname.replace(/%([0-9A-Fa-f]{2})/g, (_, hex: string) => {
    const char = String.fromCharCode(Number.parseInt(hex, 16));
    return UNRESERVED.test(char) ? char : `%${hex.toUpperCase()}`;
  });
  return `${url.protocol}//${url.host}${path === '' ? '/' : path}`;
}

function truncateText(value: string, max: number): string {
  const clean = value.replace(/[\u0000-\u001f\u007f]/g, '?');
  return clean.length <= max ? clean : `${clean.slice(0, max)}…`;
}

// ——— server nonces (RFC 9449 §8, §9) ———

/**
 * Server-provided nonces without server state: a nonce is an HMAC of (scope, time slot) under a
 * secret every instance shares, so any instance accepts a nonce another handed out. The current
 * slot's and the previous slot's are accepted: a nonce lives between one and two periods.
 *
 * @example
 * const nonces = new DpopNonces(secret, 300);
 * if (!nonces.accepts('contoso', proof.nonce, now)) throw useDpopNonce(nonces.current('contoso', now));
 */
export class DpopNonces {
  readonly #key: KeyObject | Buffer;
  readonly #period: number;

  constructor(secret: KeyObject | Buffer, periodSeconds = 300) {
    if (!Number.isInteger(periodSeconds) || periodSeconds < 10) throw new TypeError('DpopNonces: periodSeconds must be an integer of at least 10');
    this.#key = secret;
    this.#period = periodSeconds;
  }

  /** The nonce to hand out now for `scope` (a tenant, an API). */
  current(scope: string, now: number): string {
    return this.#nonce(scope, Math.floor(now / this.#period));
  }

  /** Whether `nonce` is this slot's or the previous one's for `scope`. */
  accepts(scope: string, nonce: string | undefined, now: number): boolean {
    if (nonce === undefined || nonce.length !== 43) return false;
    const slot = Math.floor(now / this.#period);
    const given = Buffer.from(nonce);
    return [slot, slot - 1].some((s) => timingSafeEqual(given, Buffer.from(this.#nonce(scope, s))));
  }

  #nonce(scope: string, slot: number): string {
    return createHmac('sha256', this.#key).update(`dpop-nonce|${scope}|${slot}`).digest('base64url');
  }
}

// ——— making proofs (the SDK's outgoing calls; tests) ———

export interface DpopProver {
  /** RFC 7638 thumbprint of the key: the `cnf.jkt` of the tokens it gets bound. */
  readonly jkt: string;
  readonly alg: JwsAlg;
  /** A fresh proof for one request; `accessToken` adds `ath`, `nonce` the server's nonce. */
  prove(method: string, url: string, extra?: { accessToken?: string | undefined; nonce?: string | undefined; now?: number | undefined }): string;
}

/**
 * A prover for one private key (a `KeyObject` or a private JWK). The public `jwk` header and the
 * signing options are computed once; each proof is one signature.
 *
 * @example
 * const prover = createDpopProver(privateJwk);
 * fetch(url, { headers: { authorization: `DPoP ${token}`, dpop: prover.prove('GET', url, { accessToken: token }) } });
 */
export function createDpopProver(key: KeyObject | JsonWebKey, alg?: JwsAlg): DpopProver {
  const privateKey = isKeyObject(key) ? key : createPrivateKey({ key, format: 'jwk' });
  if (privateKey.type !== 'private') throw new TypeError('createDpopProver: a private key is required');
  const chosen = alg ?? defaultAlg(privateKey);
  if (!DPOP_ALGS.includes(chosen) || !keyFitsAlg(privateKey, chosen)) throw new TypeError(`createDpopProver: the key does not fit ${chosen}`);
  const full = createPublicKey(privateKey).export({ format: 'jwk' });
  const jwk: JsonWebKey = full.kty === 'EC' ? { kty: 'EC', crv: full.crv, x: full.x, y: full.y } : full.kty === 'RSA' ? { kty: 'RSA', n: full.n, e: full.e } : { kty: 'OKP', crv: full.crv, x: full.x };
  const head = Buffer.from(JSON.stringify({ typ: 'dpop+jwt', alg: chosen, jwk })).toString('base64url');
  const hash = chosen === 'EdDSA' ? null : 'sha256';
  const options = chosen === 'PS256' ? { key: privateKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 } : privateKey;
  return {
    jkt: jwkThumbprint(jwk),
    alg: chosen,
    prove(method, url, extra = {}) {
      const payload: Record<string, unknown> = {
        jti: randomUUID(),
        htm: method,
        htu: stripQuery(url),
        iat: extra.now ?? Math.floor(Date.now() / 1000),
      };
      if (extra.accessToken !== undefined) payload.ath = sha256b64u(extra.accessToken);
      if (extra.nonce !== undefined) payload.nonce = extra.nonce;
      const input = `${head}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}`;
      const raw = cryptoSign(hash, Buffer.from(input), options);
      return `${input}.${(chosen === 'ES256' ? derToP1363(raw, 32) : raw).toString('base64url')}`;
    },
  };
}

function isKeyObject(key: KeyObject | JsonWebKey): key is KeyObject {
  return typeof (key as KeyObject).asymmetricKeyType === 'string' || typeof (key as KeyObject).export === 'function';
}

function defaultAlg(key: KeyObject): JwsAlg {
  const type = key.asymmetricKeyType;
  if (type === 'ec') return 'ES256';
  if (type === 'ed25519') return 'EdDSA';
  return 'PS256';
}

function stripQuery(url: string): string {
  const cut = url.search(/[?#]/);
  return cut === -1 ? url : url.slice(0, cut);
}

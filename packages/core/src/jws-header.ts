/**
 * One JWS header policy for every JWS Baton reads: client assertions (`private_key_jwt`, RFC 7523),
 * the On-Behalf-Of assertion and RFC 8693 subject/actor tokens, access tokens at UserInfo and
 * introspection, `id_token_hint`s at logout, and access tokens at an API's guard.
 *
 * A pure function of (header, policy): the readers differ only in the policy they pass, so a rule
 * added here (a new header parameter to refuse) reaches all of them at once. Before this existed,
 * the OBO path refused `crit` and client authentication did not (issue 12).
 *
 * The rules, in the order they are checked:
 * 1. `crit` (RFC 7515 §4.1.11): "If any of the listed extension Header Parameters are not understood
 *    and supported by the recipient, then the JWS is invalid." Baton understands no extension, so any
 *    `crit` — even a malformed one — makes the JWS invalid. This also covers `b64: false` (RFC 7797),
 *    which must be listed in `crit`.
 * 2. `alg` from the reader's allow-list (RFC 8725 §3.1): `none` and HMAC are on no list, so
 *    algorithm-confusion tokens stop here; the key the signature is checked with comes from the
 *    reader's own records, never from the token.
 * 3. `typ` per use (RFC 8725 §3.11, explicit typing): an access token (`at+jwt`, RFC 9068) is not a
 *    client assertion, an ID token is not an access token. Compared case-insensitively with the
 *    optional `application/` prefix (RFC 7515 §4.1.9).
 * 4. No key from the token (RFC 8725 §3.10 and §2.5): `jku`, `x5u` and `jwk` would let the token name
 *    the key it is verified with; they are refused rather than ignored, so a client relying on them
 *    learns at once that it must register its key. `x5t`, `x5t#S256` and `x5c` are only hints (MSAL
 *    sends `x5t` with certificate credentials) and are never used to pick or trust a key.
 * 5. `kid`, when present, is a short string; some readers require it (tokens Baton issued always
 *    carry one, and the key is looked up by it).
 */
import { JwtError } from './jwt.ts';
import { SUPPORTED_JWS_ALGS, type JwsAlg, type JwsHeader } from './jws.ts';
import { SIGNING_ALGS } from './types.ts';

export interface JwsHeaderPolicy {
  /** What the JWS is, for messages: `client assertion`, `access token`, `ID token`. */
  readonly what: string;
  /** The algorithms this reader accepts (asymmetric only). */
  readonly algorithms: readonly JwsAlg[];
  /**
   * Accepted `typ` values, lower case without the `application/` prefix; `null` admits a header
   * without `typ`.
   */
  readonly typ: readonly (string | null)[];
  /** Whether the header must name its key (`kid`). */
  readonly requireKid: boolean;
}

/** The parts of a header a reader uses after {@link checkJwsHeader} accepted it. */
export interface CheckedJwsHeader {
  alg: JwsAlg;
  kid: string | undefined;
  typ: string | undefined;
}

/** Header parameters that would let a token choose the key it is verified with (RFC 8725 §3.10). */
const KEY_REFERENCES = ['jku', 'x5u', 'jwk'] as const;

/** Longest `kid` accepted: our thumbprints are 43 characters; registrations rarely exceed 100. */
export const MAX_KID_LENGTH = 256;

/** `typ` as compared: lower case, `application/` prefix removed (RFC 7515 §4.1.9). */
export function normaliseTyp(typ: string): string {
  const lower = typ.toLowerCase();
  return lower.startsWith('application/') ? lower.slice('application/'.length) : lower;
}

/**
 * Checks a decoded JWS header against a reader's policy; throws {@link JwtError} (its message is
 * safe to show: it never contains the token) or returns the `alg`, `kid` and `typ` to use.
 *
 * @example
 * const { alg, kid } = checkJwsHeader(decodeJws(assertion).header, CLIENT_ASSERTION_HEADER);
 */
export function checkJwsHeader(header: JwsHeader, policy: JwsHeaderPolicy): CheckedJwsHeader {
  if (header.crit !== undefined) {
    throw new JwtError('ERR_JOSE_CRIT_UNSUPPORTED', `the ${policy.what} names critical header extensions (crit), and none is supported`);
  }
  const alg = header.alg;
  if (typeof alg !== 'string' || !(policy.algorithms as readonly string[]).includes(alg)) {
    throw new JwtError('ERR_JOSE_ALG_NOT_ALLOWED', `the ${policy.what}'s algorithm is not accepted; use ${policy.algorithms.join(', ')}`);
  }
  const typ = header.typ;
  if (typ !== undefined && typeof typ !== 'string') throw new JwtError('ERR_JWT_TYP_INVALID', `the ${policy.what}'s typ header is not a string`);
  const accepted = typ === undefined ? policy.typ.includes(null) : policy.typ.includes(normaliseTyp(typ));
  if (!accepted) {
    const expected = policy.typ.map((t) => (t === null ? '(none)' : t)).join(' or ');
    throw new JwtError('ERR_JWT_TYP_INVALID', `the ${policy.what}'s typ must be ${expected}`);
  }
  for (const name of KEY_REFERENCES) {
    if (header[name] !== undefined) {
      throw new JwtError('ERR_JOSE_KEY_REFERENCE', `the ${policy.what} names its own key ('${name}' header); keys are never taken from a token, only from the registration`);
    }
  }
  const kid = header.kid;
  if (kid !== undefined && (typeof kid !== 'string' || kid === '' || kid.length > MAX_KID_LENGTH)) {
    throw new JwtError('ERR_JWS_INVALID', `the ${policy.what}'s kid header is malformed`);
  }
  if (kid === undefined && policy.requireKid) throw new JwtError('ERR_JWS_INVALID', `the ${policy.what} has no kid header`);
  return { alg: alg as JwsAlg, kid, typ };
}

/**
 * `private_key_jwt` client assertions (RFC 7523 §3). No `typ` or `JWT` is what clients send today;
 * `client-authentication+jwt` is the explicit type of draft-ietf-oauth-rfc7523bis. An access token
 * (`at+jwt`) is refused: a token issued to a client is not a proof that the client holds its key.
 */
export const CLIENT_ASSERTION_HEADER: JwsHeaderPolicy = {
  what: 'client assertion',
  algorithms: SUPPORTED_JWS_ALGS,
  typ: [null, 'jwt', 'client-authentication+jwt'],
  requireKid: false,
};

/** Access tokens Baton issued, read back (OBO assertion, RFC 8693 subject/actor token, UserInfo, introspection). */
export const ACCESS_TOKEN_HEADER: JwsHeaderPolicy = {
  what: 'access token',
  algorithms: SIGNING_ALGS,
  typ: ['at+jwt'],
  requireKid: true,
};

/** ID tokens Baton issued, read back (`id_token_hint` at logout): `typ` is `JWT` or absent. */
export const ID_TOKEN_HEADER: JwsHeaderPolicy = {
  what: 'ID token',
  algorithms: SIGNING_ALGS,
  typ: [null, 'jwt'],
  requireKid: true,
};

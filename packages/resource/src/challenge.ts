/**
 * `WWW-Authenticate` challenges: writing ours (RFC 6750 §3, RFC 9470 §3, RFC 9728 §5.1, Entra claims
 * challenges) and reading a downstream API's (RFC 7235 §4.1 syntax).
 *
 * Quoting: RFC 6750 restricts `error_description` and `scope` to printable ASCII without `"` and `\`,
 * so those are sanitised (never escaped); every other value is an RFC 7230 quoted-string with `"` and
 * `\` backslash-escaped. Control characters are replaced in all of them (no header injection).
 */

/** Printable ASCII without `"` and `\`: RFC 6750 §3 `error_description` / `scope` characters. */
function restricted(value: string, max: number): string {
  const clean = value.replace(/"/g, "'").replace(/[^\x20\x21\x23-\x5b\x5d-\x7e]/g, '?');
  return clean.length <= max ? clean : `${clean.slice(0, max - 1)}?`;
}

function quoted(value: string): string {
  return value.replace(/[^\x20-\x7e]/g, '?').replace(/["\\]/g, (c) => `\\${c}`);
}

/** `Bearer name="value", …`. `params` order is kept (`realm` first by convention). */
export function bearerChallenge(params: ReadonlyArray<readonly [string, string]>): string {
  return authChallenge('Bearer', params);
}

/** A challenge of `scheme` (`Bearer`, or `DPoP` for RFC 9449 §7.1), its parameters quoted as {@link bearerChallenge}'s. */
export function authChallenge(scheme: 'Bearer' | 'DPoP', params: ReadonlyArray<readonly [string, string]>): string {
  if (params.length === 0) return scheme;
  const parts = params.map(([name, value]) => {
    if (!/^[a-z0-9_.-]+$/i.test(name)) throw new TypeError(`invalid challenge parameter name ${JSON.stringify(name)}`);
    const v = name === 'error_description' ? restricted(value, 400) : name === 'scope' ? restricted(value, 2000) : quoted(value);
    return `${name}="${v}"`;
  });
  return `${scheme} ${parts.join(', ')}`;
}

/**
 * The `claims` value of a claims challenge: standard base64 (RFC 4648 §4) *with* padding.
 *
 * Not base64url: MSAL.NET's `WwwAuthenticateParameters` (what Microsoft.Identity.Web clients use)
 * decodes `claims` with `Convert.FromBase64String` only when its length is a multiple of 4, and
 * otherwise hands the undecoded text to the authorize request; Entra's own challenges are padded
 * standard base64. MSAL.js and Node's `Buffer.from(x, 'base64')` accept this form as well.
 */
export function encodeClaimsChallenge(claimsJson: string): string {
  return Buffer.from(claimsJson, 'utf8').toString('base64');
}

/** Decodes a `claims` challenge value (base64 or base64url, padded or not) to JSON text; `undefined` if it is not a JSON object. */
export function decodeClaimsChallenge(value: string): string | undefined {
  const trimmed = value.trim();
  let text = trimmed;
  if (!trimmed.startsWith('{')) {
    if (!/^[A-Za-z0-9+/_-]+=*$/.test(trimmed)) return undefined;
    text = Buffer.from(trimmed, 'base64').toString('utf8');
  }
  try {
    const parsed: unknown = JSON.parse(text);
    return parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed) ? text : undefined;
  } catch {
    return undefined;
  }
}

export interface Challenge {
  /** Lower-cased auth scheme (`bearer`). */
  scheme: string;
  /** Lower-cased parameter names. */
  params: Record<string, string>;
  token68?: string;
}

const TOKEN = "[!#$%&'*+.^_`|~0-9A-Za-z-]+";
const PARAM = new RegExp(`^(${TOKEN})\\s*=\\s*(?:"((?:[^"\\\\]|\\\\.)*)"|(${TOKEN}))$`);
const SCHEME_REST = new RegExp(`^(${TOKEN})(?:\\s+(.*))?$`, 's');
const TOKEN68 = /^[A-Za-z0-9\-._~+/]+=*$/;

/** Splits on commas outside quoted strings. */
function splitElements(header: string): string[] {
  const out: string[] = [];
  let current = '';
  let inQuotes = false;
  for (let i = 0; i < header.length; i++) {
    const c = header[i] as string;
    if (inQuotes && c === '\\' && i + 1 < header.length) {
      current += c + header[++i];
      continue;
    }
    if (c === '"') inQuotes = !inQuotes;
    if (c === ',' && !inQuotes) {
      out.push(current);
      current = '';
    } else {
      current += c;
    }
  }
  out.push(current);
  return out.map((e) => e.trim()).filter(Boolean);
}

/**
 * Parses one or more `WWW-Authenticate` values (Fetch joins repeated headers with `, `) into
 * challenges (RFC 7235 §4.1): `scheme [token68 | name=value *(, name=value)]`.
 */
export function parseChallenges(header: string): Challenge[] {
  const out: Challenge[] = [];
  let current: Challenge | undefined;
  const addParam = (element: string): boolean => {
    const m = PARAM.exec(element);
    if (!m || !current) return false;
    const name = (m[1] as string).toLowerCase();
    const value = m[2] !== undefined ? m[2].replace(/\\(.)/g, '$1') : (m[3] as string);
    if (!(name in current.params)) current.params[name] = value;
    return true;
  };
  for (const element of splitElements(header)) {
    if (addParam(element)) continue;
    const m = SCHEME_REST.exec(element);
    if (!m) continue; // not understood: skip rather than guess
    current = { scheme: (m[1] as string).toLowerCase(), params: {} };
    out.push(current);
    const rest = m[2]?.trim();
    if (!rest) continue;
    if (!addParam(rest) && TOKEN68.test(rest)) current.token68 = rest;
  }
  return out;
}

/** The first Bearer challenge of a response, if any. */
export function bearerChallengeOf(header: string | null | undefined): Challenge | undefined {
  if (!header) return undefined;
  return parseChallenges(header).find((c) => c.scheme === 'bearer');
}

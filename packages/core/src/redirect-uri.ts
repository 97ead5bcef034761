/**
 * Redirect URI matching (RFC 6749 §3.1.2.3, RFC 9700 §4.1.3, OAuth 2.1 §2.3.1): the URI a request
 * names must be one of the registered URIs, compared as strings, character for character.
 *
 * No normalisation happens before the comparison, on purpose: every open-redirect trick works by
 * making two layers disagree about what a URI means (`/callback/../x`, `host@evil`, `%2e%2e`,
 * case, a trailing slash, an extra query parameter). Comparing the exact text leaves nothing to
 * disagree about.
 *
 * The one relaxation is RFC 8252 §7.3 for native apps: a registered loopback URI (`http://127.0.0.1`
 * or `http://[::1]`) written WITHOUT a port matches the same URI with any port, because the app
 * picks a free port at run time. A registration that names a port is matched exactly.
 */

/** Longest redirect URI accepted in a request (Entra: 256 characters for registrations; requests a bit more). */
export const MAX_REDIRECT_URI_LENGTH = 2048;

/**
 * The URI to redirect to — `requested`, when it is registered (or, for a registered portless
 * loopback URI, the same URI with the app's port) — or `undefined`.
 *
 * @example
 * matchRedirectUri('http://127.0.0.1:7000/callback', ['http://127.0.0.1:7000/callback']); // 'http://127.0.0.1:7000/callback'
 * matchRedirectUri('http://127.0.0.1:7000/callback/../x', ['http://127.0.0.1:7000/callback']); // undefined
 */
export function matchRedirectUri(requested: string, registered: readonly string[]): string | undefined {
  if (requested.length === 0 || requested.length > MAX_REDIRECT_URI_LENGTH) return undefined;
  if (registered.includes(requested)) return requested;
  const loopback = loopbackWithoutPort(requested);
  if (loopback === undefined) return undefined;
  // The requested URI, port included: that is where the app listens (RFC 8252 §7.3).
  return registered.some((uri) => uri === loopback && isPortlessLoopback(uri)) ? requested : undefined;
}

/** `http://127.0.0.1:51234/cb` → `http://127.0.0.1/cb` (textually), for RFC 8252 §7.3; otherwise undefined. */
function loopbackWithoutPort(uri: string): string | undefined {
  const match = /^http:\/\/(127\.0\.0\.1|\[::1\]):([0-9]{1,5})([/?][^#]*)?$/.exec(uri);
  if (match === null) return undefined;
  const port = Number(match[2]);
  if (port < 1 || port > 65535 || match[2]!.startsWith('0')) return undefined;
  return `http://${match[1]}${match[3] ?? ''}`;
}

function isPortlessLoopback(uri: string): boolean {
  return /^http:\/\/(127\.0\.0\.1|\[::1\])([/?]|$)/.test(uri);
}

/**
 * The `form-action` CSP source that allows a form (or a redirect after a form) to reach `uri`:
 * its origin for http(s), its scheme for a private-use scheme (`com.example.app:`).
 */
export function cspSourceFor(uri: string): string | undefined {
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    return undefined;
  }
  if (url.protocol === 'http:' || url.protocol === 'https:') return url.origin;
  return /^[a-z][a-z0-9+.-]*:$/.test(url.protocol) ? url.protocol : undefined;
}

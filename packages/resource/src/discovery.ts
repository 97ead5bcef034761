/**
 * OpenID Connect Discovery 1.0 (`{authority}/.well-known/openid-configuration`), the few members
 * the SDK uses.
 */
import { checkUrl, isAcceptableUrl, readJsonObject, type FetchLike } from './http.ts';

export interface DiscoveredIssuer {
  issuer: string;
  /** `{tenantid}` in the issuer (Entra's multi-tenant documents): substituted with the token's `tid`. */
  issuerTemplate: boolean;
  jwksUri: string;
  tokenEndpoint: string | undefined;
  authorizationEndpoint: string | undefined;
}

const MAX_DISCOVERY_BYTES = 256 * 1024;

/** The authority without trailing slashes; TypeError if it is not an https (or loopback http) URL. */
export function normaliseAuthority(authority: unknown, where: string): string {
  return checkUrl(authority, where).replace(/\/+$/, '');
}

export async function discover(fetchFn: FetchLike, authority: string, timeoutMs: number): Promise<DiscoveredIssuer> {
  const url = `${authority}/.well-known/openid-configuration`;
  let res: Response;
  try {
    res = await fetchFn(url, { headers: { accept: 'application/json' }, redirect: 'manual', signal: AbortSignal.timeout(timeoutMs) });
  } catch (error) {
    const timedOut = error instanceof Error && (error.name === 'TimeoutError' || error.name === 'AbortError');
    throw new Error(timedOut ? `discovery timed out after ${timeoutMs} ms` : `discovery fetch failed (${(error as Error)?.message ?? 'network error'})`);
  }
  if (res.status !== 200) {
    await res.body?.cancel().catch(() => {});
    throw new Error(`discovery answered HTTP ${res.status}`);
  }
  const doc = await readJsonObject(res, MAX_DISCOVERY_BYTES);
  const issuer = doc.issuer;
  if (typeof issuer !== 'string' || issuer === '') throw new Error('discovery document has no issuer');
  const issuerTemplate = issuer.includes('{tenantid}');
  // OpenID Connect Discovery §4.3: the issuer must be the authority the document was fetched from,
  // which stops one issuer's document from pointing at another's keys (mix-up).
  if (!issuerTemplate && issuer.replace(/\/+$/, '') !== authority) throw new Error('discovery issuer does not match the authority');
  if (!isAcceptableUrl(doc.jwks_uri)) throw new Error('discovery jwks_uri is missing or not https');
  return {
    issuer,
    issuerTemplate,
    jwksUri: doc.jwks_uri,
    tokenEndpoint: isAcceptableUrl(doc.token_endpoint) ? doc.token_endpoint : undefined,
    authorizationEndpoint: isAcceptableUrl(doc.authorization_endpoint) ? doc.authorization_endpoint : undefined,
  };
}

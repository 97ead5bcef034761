/**
 * Tasks Web's OpenID Connect client (openid-client v6): authorization code + PKCE (S256) with
 * `state` and `nonce`, the ID token validated by the library, refresh tokens, RP-initiated logout.
 *
 * Tasks Web is a *public* client (`tasks-web` has no secret): PKCE is what binds the code to this
 * server's sign-in attempt, and DPoP (RFC 9449) what binds its tokens to this server: each token
 * request carries a proof of Tasks Web's own key (openid-client's DPoP support), so the access and
 * refresh tokens it gets are worthless to anyone without that key. Calls to the Tasks API carry a
 * proof of the same key per request (`proof`).
 */
import { generateKeyPairSync, webcrypto } from 'node:crypto';
import * as client from 'openid-client';
import { createDpopProver, fetchWithCa } from '@baton/resource';

export interface OidcOptions {
  /** `https://localhost:8443/contoso/v2.0` */
  authority: string;
  clientId: string;
  redirectUri: string;
  /** Scopes Tasks Web asks for: OIDC ones plus the Tasks API's. */
  scope: string;
  /** CA (PEM) to trust for the token service (the dev CA). */
  ca?: string | undefined;
}

/** What Tasks Web keeps between the redirect to Baton and the callback. */
export interface PendingSignIn {
  state: string;
  nonce: string;
  verifier: string;
  returnTo: string;
  /** The claims the sign-in was asked to satisfy (step-up), if any. */
  claims?: string | undefined;
  createdAt: number;
}

export interface SignedIn {
  accessToken: string;
  /** `dpop` (bound to Tasks Web's key) or `bearer`. */
  tokenType: string;
  refreshToken: string | undefined;
  idToken: string | undefined;
  /** Epoch ms. */
  expiresAt: number;
  user: { oid: string; tid: string | undefined; name: string; username: string | undefined };
}

export interface Oidc {
  /** The URL to send the browser to, and what to remember for the callback. */
  start(input: { returnTo: string; claims?: string | undefined; loginHint?: string | undefined; prompt?: string | undefined }): Promise<{ url: string; pending: PendingSignIn }>;
  /** Redeems the code of a callback (`search` = the callback's query string). */
  finish(search: string, pending: PendingSignIn): Promise<SignedIn>;
  refresh(refreshToken: string, previous: SignedIn): Promise<SignedIn>;
  /** RP-initiated logout URL. */
  logoutUrl(idToken: string | undefined, postLogoutRedirectUri: string, state: string): Promise<string>;
  /** A DPoP proof of Tasks Web's key for one API request (`ath` = the access token's hash). */
  proof(method: string, url: string, accessToken: string): string;
  /** The RFC 7638 thumbprint of Tasks Web's DPoP key (its tokens' `cnf.jkt`). */
  readonly jkt: string;
}

export function createOidc(options: OidcOptions): Oidc {
  // Tasks Web's DPoP key, for this process's lifetime: one key, two uses — openid-client's proofs at
  // the token endpoint (a WebCrypto key pair), core's prover for the API calls.
  const pair = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const prover = createDpopProver(pair.privateKey);
  const algorithm = { name: 'ECDSA', namedCurve: 'P-256' };
  const dpopKeys = Promise.all([
    webcrypto.subtle.importKey('jwk', pair.privateKey.export({ format: 'jwk' }), algorithm, false, ['sign']),
    webcrypto.subtle.importKey('jwk', pair.publicKey.export({ format: 'jwk' }), algorithm, true, ['verify']),
  ]).then(([privateKey, publicKey]) => ({ privateKey, publicKey }) as client.CryptoKeyPair);
  const dpop = async (c: client.Configuration) => client.getDPoPHandle(c, await dpopKeys);
  let configuration: Promise<client.Configuration> | undefined;
  const config = () => {
    configuration ??= client
      .discovery(new URL(options.authority), options.clientId, { token_endpoint_auth_method: 'none' }, client.None(), {
        ...(options.ca === undefined ? {} : { [client.customFetch]: fetchWithCa(options.ca) as client.CustomFetch }),
        timeout: 10,
      })
      .catch((error: unknown) => {
        configuration = undefined;
        throw error;
      });
    return configuration;
  };

  const signedIn = (tokens: client.TokenEndpointResponse & client.TokenEndpointResponseHelpers, previous?: SignedIn): SignedIn => {
    const claims = tokens.claims();
    const user =
      claims === undefined
        ? (previous?.user ?? { oid: '?', tid: undefined, name: 'unknown', username: undefined })
        : {
            oid: typeof claims.oid === 'string' ? claims.oid : claims.sub,
            tid: typeof claims.tid === 'string' ? claims.tid : undefined,
            name: typeof claims.name === 'string' ? claims.name : typeof claims.preferred_username === 'string' ? claims.preferred_username : claims.sub,
            username: typeof claims.preferred_username === 'string' ? claims.preferred_username : undefined,
          };
    return {
      accessToken: tokens.access_token,
      tokenType: tokens.token_type,
      refreshToken: tokens.refresh_token ?? previous?.refreshToken,
      idToken: tokens.id_token ?? previous?.idToken,
      expiresAt: Date.now() + (tokens.expiresIn() ?? 300) * 1000,
      user,
    };
  };

  return {
    async start(input) {
      const c = await config();
      const verifier = client.randomPKCECodeVerifier();
      const pending: PendingSignIn = {
        state: client.randomState(),
        nonce: client.randomNonce(),
        verifier,
        returnTo: input.returnTo,
        claims: input.claims,
        createdAt: Date.now(),
      };
      const params: Record<string, string> = {
        redirect_uri: options.redirectUri,
        scope: options.scope,
        code_challenge: await client.calculatePKCECodeChallenge(verifier),
        code_challenge_method: 'S256',
        state: pending.state,
        nonce: pending.nonce,
      };
      // Step-up: the claims challenge the API answered with, passed as the OIDC `claims` parameter.
      if (input.claims !== undefined) params.claims = input.claims;
      if (input.loginHint !== undefined) params.login_hint = input.loginHint;
      if (input.prompt !== undefined) params.prompt = input.prompt;
      return { url: client.buildAuthorizationUrl(c, params).href, pending };
    },
    async finish(search, pending) {
      const c = await config();
      // The URL Baton redirected to, rebuilt on the registered redirect URI (not on the Host header).
      const current = new URL(options.redirectUri);
      current.search = search;
      const tokens = await client.authorizationCodeGrant(
        c,
        current,
        {
          pkceCodeVerifier: pending.verifier,
          expectedState: pending.state,
          expectedNonce: pending.nonce,
          idTokenExpected: true,
        },
        undefined,
        { DPoP: await dpop(c) },
      );
      return signedIn(tokens);
    },
    async refresh(refreshToken, previous) {
      const c = await config();
      // No `scope`: the original grant is renewed (Baton's refresh tokens are multi-resource, like Entra's).
      // The refresh token is bound to Tasks Web's key (a public client's): the proof is required.
      return signedIn(await client.refreshTokenGrant(c, refreshToken, undefined, { DPoP: await dpop(c) }), previous);
    },
    async logoutUrl(idToken, postLogoutRedirectUri, state) {
      const c = await config();
      const params: Record<string, string> = { post_logout_redirect_uri: postLogoutRedirectUri, state, client_id: options.clientId };
      if (idToken !== undefined) params.id_token_hint = idToken;
      return client.buildEndSessionUrl(c, params).href;
    },
    proof(method, url, accessToken) {
      return prover.prove(method, url, { accessToken });
    },
    jkt: prover.jkt,
  };
}

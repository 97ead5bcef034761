/**
 * How this API authenticates to the token service (RFC 6749 §2.3): a client secret in the Basic
 * header or the body, or a `private_key_jwt` client assertion (RFC 7523 §2.2). Checked when the
 * client is created; applied to every attempt of every token request.
 */
import { createPrivateKey, randomUUID, type KeyObject } from 'node:crypto';
import { createSigner, type SigningAlg, type Signer } from '@baton/core';

const CLIENT_ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

export type ClientCredential =
  | { clientSecret: string; method?: 'client_secret_basic' | 'client_secret_post' }
  | { privateKey: KeyObject | string; keyId: string; algorithm?: SigningAlg };

function formEncode(value: string): string {
  // RFC 6749 §2.3.1 / Appendix B: application/x-www-form-urlencoded before Basic encoding.
  return encodeURIComponent(value).replace(/%20/g, '+');
}

export interface ClientAuthentication {
  /** Adds the credential to one token request sent to `tokenEndpoint`. */
  apply(body: URLSearchParams, headers: Record<string, string>, tokenEndpoint: string): void;
}

class ClientSecret implements ClientAuthentication {
  readonly #clientId: string;
  readonly #secret: string;
  readonly #method: 'client_secret_basic' | 'client_secret_post';

  constructor(clientId: string, secret: string, method: 'client_secret_basic' | 'client_secret_post') {
    this.#clientId = clientId;
    this.#secret = secret;
    this.#method = method;
  }

  apply(body: URLSearchParams, headers: Record<string, string>): void {
    if (this.#method === 'client_secret_basic') {
      headers.authorization = `Basic ${Buffer.from(`${formEncode(this.#clientId)}:${formEncode(this.#secret)}`).toString('base64')}`;
      return;
    }
    body.set('client_id', this.#clientId);
    body.set('client_secret', this.#secret);
  }
}

class PrivateKeyJwt implements ClientAuthentication {
  readonly #clientId: string;
  readonly #signer: Signer;
  readonly #clock: () => number;

  constructor(clientId: string, signer: Signer, clock: () => number) {
    this.#clientId = clientId;
    this.#signer = signer;
    this.#clock = clock;
  }

  apply(body: URLSearchParams, _headers: Record<string, string>, tokenEndpoint: string): void {
    body.set('client_id', this.#clientId);
    // RFC 7523 §3: iss = sub = client, aud = the token endpoint, short-lived, unique jti.
    const now = Math.floor(this.#clock() / 1000);
    const clientId = this.#clientId;
    const assertion = this.#signer.sign({ iss: clientId, sub: clientId, aud: tokenEndpoint, iat: now, nbf: now, exp: now + 120, jti: randomUUID() });
    body.set('client_assertion_type', CLIENT_ASSERTION_TYPE);
    body.set('client_assertion', assertion);
  }
}

/** TypeError (prefixed with `where`) for a credential that cannot work. */
export function clientAuthentication(credential: ClientCredential, clientId: string, clock: () => number, where: string): ClientAuthentication {
  if (credential === null || typeof credential !== 'object') throw new TypeError(`${where}: credential is required`);
  if ('clientSecret' in credential) {
    if (typeof credential.clientSecret !== 'string' || credential.clientSecret === '') throw new TypeError(`${where}: credential.clientSecret must be a non-empty string`);
    const method = credential.method ?? 'client_secret_basic';
    if (method !== 'client_secret_basic' && method !== 'client_secret_post') throw new TypeError(`${where}: credential.method must be client_secret_basic or client_secret_post`);
    return new ClientSecret(clientId, credential.clientSecret, method);
  }
  if ('privateKey' in credential) {
    const key = typeof credential.privateKey === 'string' ? createPrivateKey(credential.privateKey) : credential.privateKey;
    if (key.type !== 'private') throw new TypeError(`${where}: credential.privateKey must be a private key`);
    if (typeof credential.keyId !== 'string' || credential.keyId === '') throw new TypeError(`${where}: credential.keyId is required`);
    const alg = credential.algorithm ?? (key.asymmetricKeyType === 'ec' ? 'ES256' : 'PS256');
    // TypeError if the key does not fit the algorithm.
    return new PrivateKeyJwt(clientId, createSigner(key, credential.keyId, alg), clock);
  }
  throw new TypeError(`${where}: credential needs clientSecret, or privateKey and keyId`);
}

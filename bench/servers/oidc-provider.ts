/**
 * The peer: panva's `oidc-provider` (npm, the certified Node.js authorization server) issuing JWT
 * access tokens by `client_credentials`, configured as its documentation says for that case:
 * `features.clientCredentials`, `features.resourceIndicators` with a resource server whose tokens
 * are JWTs signed ES256 (the same algorithm Baton uses), the client authenticating with
 * `client_secret_basic`. In-memory storage (its default adapter; JWT access tokens are not stored).
 *
 * HTTPS with a P-256 certificate from the same dev CA code Baton uses (`ensureDevTls`), Node's
 * `https.createServer` with keep-alive. Same protocol as bench/servers/baton.ts: options as JSON
 * in argv[2], `{"ready": {...}}` on stdout, exits on SIGTERM or when stdin closes.
 */
import { createServer } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Provider from 'oidc-provider';
import { installControl } from './control.ts';
import { ensureDevTls } from '../../packages/server/src/tls/dev-ca.ts';

export interface PeerReady {
  url: string;
  ca: string;
  clientId: string;
  clientSecret: string;
  resource: string;
  scope: string;
}

export const PEER_CLIENT = { clientId: 'indexer', clientSecret: 'indexer-demo-secret-for-local-use-only' };
const RESOURCE = 'api://docs';
const SCOPE = 'Docs.ReadAll';

let dataDir: string | undefined;
let stopping = false;
async function cleanup(code = 0): Promise<void> {
  if (stopping) return;
  stopping = true;
  if (dataDir !== undefined) await rm(dataDir, { recursive: true, force: true });
  process.exit(code);
}
installControl(() => void cleanup());

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'baton-bench-peer-'));
  dataDir = dir;
  const tls = await ensureDevTls(join(dir, 'tls'));

  let handler: ((req: IncomingMessage, res: ServerResponse) => void) | undefined;
  const server = createServer({ key: tls.key, cert: tls.cert }, (req, res) => (handler as (q: IncomingMessage, s: ServerResponse) => void)(req, res));
  server.keepAliveTimeout = 72_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;

  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk = { ...privateKey.export({ format: 'jwk' }), kid: 'bench-es256', alg: 'ES256', use: 'sig' };

  const provider = new Provider(`https://localhost:${port}`, {
    clients: [
      {
        client_id: PEER_CLIENT.clientId,
        client_secret: PEER_CLIENT.clientSecret,
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
        token_endpoint_auth_method: 'client_secret_basic',
        // Only an ES256 key is configured; the ID-token default (RS256) would have no key.
        id_token_signed_response_alg: 'ES256',
        scope: SCOPE,
      },
    ],
    jwks: { keys: [jwk] },
    scopes: ['openid', SCOPE],
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => RESOURCE,
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx: unknown, resourceIndicator: string) => {
          if (resourceIndicator !== RESOURCE) throw new Error('unknown resource');
          return { scope: SCOPE, audience: RESOURCE, accessTokenTTL: 3600, accessTokenFormat: 'jwt', jwt: { sign: { alg: 'ES256' } } };
        },
      },
    },
  });
  provider.proxy = false;
  // oidc-provider reports server errors on its 'server_error' event; surface them in the log.
  provider.on('server_error', (_ctx: unknown, error: Error) => process.stderr.write(`server_error: ${error.message}\n`));
  handler = provider.callback();

  const ready: PeerReady = { url: `https://127.0.0.1:${port}`, ca: tls.ca, clientId: PEER_CLIENT.clientId, clientSecret: PEER_CLIENT.clientSecret, resource: RESOURCE, scope: SCOPE };
  process.stdout.write(`${JSON.stringify({ ready })}\n`);
}

main().catch((error: Error) => {
  process.stdout.write(`${JSON.stringify({ error: error.stack ?? error.message })}\n`);
  void cleanup(1);
});

/**
 * What every example API is started with. The values a real deployment would take from its
 * environment (authority, client secret, the next API's URL) are plain options here.
 */
import type { ResourceMetrics, TokenCacheStore } from '@baton/resource';
import type { KeyObject } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import type { HopObserver } from './observe.ts';
import type { LineWriter } from './log.ts';
import type { ApiSignalsOptions } from './signals.ts';

export interface ApiOptions {
  /** The tenant's authority: `https://localhost:8443/contoso/v2.0`. */
  authority: string;
  /** CA certificate (PEM) to trust for the token service (`baton dev`'s local CA). */
  ca?: string | undefined;
  /** This API's client secret (the demo's are in baton.json; a real API reads it from a vault). */
  clientSecret: string;
  host?: string | undefined;
  /** 0 = any free port. */
  port?: number | undefined;
  /** SQLite file; `':memory:'` by default. */
  dataFile?: string | undefined;
  /** Reports each request for the chain view. */
  observer?: HopObserver | undefined;
  log?: LineWriter | undefined;
  /** The SDK's metrics (metrics.ts), for the API's guard, OBO client and downstream calls. */
  metrics?: ResourceMetrics | undefined;
  /**
   * Continuous access evaluation (docs/cae.md, signals.ts): subscribe to the token service's
   * security events (its own SSF stream, by poll or push); the guard then refuses a revoked user's
   * earlier tokens and the OBO client drops the tokens it cached for them. The API's application
   * needs the app role `Baton.Signals` on `api://baton-admin`. Absent: no subscription.
   */
  signals?: ApiSignalsOptions | undefined;
  /** The OBO client's token cache (default: in memory, `MemoryTokenCacheStore`); an API without OBO ignores it. */
  oboCache?: TokenCacheStore | undefined;
  /** This API's DPoP private key for its OBO tokens and downstream calls (default: a new P-256 key per start). */
  dpopKey?: KeyObject | undefined;
}

export interface RunningApi {
  url: string;
  close(): Promise<void>;
}

/** The base URL of a listening server. Servers of the demo bind the loopback address only. */
export function urlOf(server: Server): string {
  const { port } = server.address() as AddressInfo;
  return `http://127.0.0.1:${port}`;
}

/** What to do about a taken API port. */
export const API_PORT_HINT = 'Stop what uses it, or move the APIs with `baton dev --api-port N` (or BATON_API_PORT=N).';

/** `EADDRINUSE` as a readable error that says which flag moves the port; any other error as it is. */
export function listenError(error: NodeJS.ErrnoException, what: string, port: number | undefined, host: string, hint = API_PORT_HINT): Error {
  return error.code === 'EADDRINUSE' ? new Error(`${what}: port ${port} on ${host} is already in use (another \`npm start\`?). ${hint}`) : error;
}

/** Listens, rejecting with a readable message (`hint`: what to do about it) when the port is taken. */
export function listen(server: Server, port: number, host: string, what: string, hint = API_PORT_HINT): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (error: NodeJS.ErrnoException) => {
      server.off('listening', onListening);
      reject(listenError(error, what, port, host, hint));
    };
    const onListening = () => {
      server.off('error', onError);
      resolve();
    };
    server.once('error', onError);
    server.once('listening', onListening);
    server.listen(port, host);
  });
}

/** Closes a server, ending idle keep-alive connections (and, after `graceMs`, every connection). */
export function closeServer(server: Server, graceMs = 2000): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) return resolve();
    const timer = setTimeout(() => server.closeAllConnections(), graceMs);
    timer.unref();
    server.close(() => {
      clearTimeout(timer);
      resolve();
    });
    server.closeIdleConnections();
  });
}

/** JSON error body the example APIs answer with (OAuth-style field names). */
export function errorBody(error: string, description: string): { error: string; error_description: string } {
  return { error, error_description: description };
}

/**
 * Tasks Web — the seed's *Client App* — a server-side web app on Hono.
 *
 * - Sign-in: authorization code + PKCE through Baton (openid-client), tokens kept server-side
 *   (`signin.ts`, `oidc.ts`, `sessions.ts`).
 * - Every page calls the Tasks API with the user's access token (`api://tasks/Tasks.ReadWrite`;
 *   `tasks-client.ts`, `task-routes.ts`).
 * - A `401` with `error="insufficient_claims"` from the Tasks API (the Docs API's MFA policy,
 *   surfaced through the On-Behalf-Of exchange) sends the user back to Baton's authorize endpoint
 *   with those `claims`; after the step-up, the action the user asked for is retried.
 * - `/chain`: the chain view (a local development tool), fed by Server-Sent Events (`chain-view.ts`).
 *
 * This file only puts the parts together and listens.
 */
import { createServer } from 'node:http';
import { Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { getRequestListener } from '@hono/node-server';
import type { ChainLog } from '../chain-log.ts';
import { closeServer, listen } from '../common.ts';
import { exampleLogger, type LineWriter } from '../log.ts';
import { ChainView, type ChainControls } from './chain-view.ts';
import { assetRoutes, Forms, securityHeaders, SessionCookies, type Env } from './http.ts';
import { createOidc } from './oidc.ts';
import { errorPage, type DemoUser } from './pages.ts';
import { Sessions } from './sessions.ts';
import { SignInFlow } from './signin.ts';
import { TaskRoutes } from './task-routes.ts';
import { TasksClient } from './tasks-client.ts';

export const TASKS_WEB = 'tasks-web';
const SCOPE = 'openid profile offline_access api://tasks/Tasks.ReadWrite';

export interface TasksWebOptions {
  authority: string;
  ca?: string | undefined;
  /** Where Tasks Web listens; the token service must have `http://127.0.0.1:<port>/callback` registered (`withWebPort`). */
  port: number;
  tasksApiUrl: string;
  /** The chain view (omit to run Tasks Web alone). */
  chain?: ChainLog | undefined;
  /** Developer controls shown on the chain view. */
  controls?: ChainControls;
  /**
   * Usernames that may ask the chain view for every user's requests (`?view=all`). Everyone else
   * sees only the requests made in their own name (and app-only ones).
   */
  chainAdmins?: readonly string[] | undefined;
  /** A trace UI's URL with `{traceId}`: the chain view links each hop there. */
  traceUrl?: string | undefined;
  /** Demo accounts to show, and a TOTP generator for alice's current code (local development only). */
  demo?: { users: readonly DemoUser[]; totpSecret?: string | undefined; totp?: ((username: string) => { code: string; remaining: number } | undefined) | undefined } | undefined;
  /** Renew the access token this long before it expires (default 60 000 ms). */
  refreshMarginMs?: number | undefined;
  log?: LineWriter | undefined;
}

export interface RunningWeb {
  url: string;
  close(): Promise<void>;
}

export async function startTasksWeb(options: TasksWebOptions): Promise<RunningWeb> {
  const log = exampleLogger('tasks-web', options.log);
  const origin = `http://127.0.0.1:${options.port}`;
  const redirectUri = `${origin}/callback`;
  const oidc = createOidc({ authority: options.authority, clientId: TASKS_WEB, redirectUri, scope: SCOPE, ca: options.ca });
  const sessions = new Sessions();
  const cookies = new SessionCookies(sessions);
  const forms = new Forms(origin);
  const tasks = new TasksClient({ oidc, tasksApiUrl: options.tasksApiUrl, chain: options.chain, refreshMarginMs: options.refreshMarginMs, log });
  const signIn = new SignInFlow({ oidc, sessions, cookies, tasks, authority: options.authority, redirectUri, log });
  const chainView = new ChainView({ chain: options.chain, controls: options.controls, admins: options.chainAdmins, sessions, cookies, forms, demo: options.demo, traceUrl: options.traceUrl, log });

  const app = new Hono<Env>();
  app.use('*', securityHeaders(options.port, options.authority));
  app.use('*', bodyLimit({ maxSize: 64 * 1024, onError: (c) => c.text('Request too large.', 413) }));
  assetRoutes(app);
  app.get('/healthz', (c) => c.json({ status: 'ok' }));
  app.get('/signin', (c) => signIn.begin(c));
  app.get('/callback', (c) => signIn.callback(c));
  app.post('/signout', async (c) => {
    const session = cookies.of(c);
    if (session === undefined) return c.redirect('/', 303);
    if ((await forms.read(c, session.csrf)) === undefined) return forms.forbidden(c);
    return signIn.signOut(c, session);
  });
  new TaskRoutes({ cookies, forms, tasks, signIn, demo: options.demo }).register(app);
  chainView.register(app);
  app.notFound((c) => c.html(errorPage({ title: 'Not found', message: 'There is no page here.' }), 404));
  app.onError((error, c) => {
    log.error('request failed', { path: c.req.path, cause: error.message });
    return c.html(errorPage({ title: 'Something went wrong', message: 'Tasks Web failed to handle this request. The terminal running `npm start` has the details.' }), 500);
  });

  const server = createServer(getRequestListener(app.fetch, { overrideGlobalObjects: false }));
  await listen(server, options.port, '127.0.0.1', 'Tasks Web', 'Stop what uses it, or move Tasks Web with `baton dev --web-port N` (or BATON_WEB_PORT=N); its registered redirect URI follows.');
  return {
    url: origin,
    async close() {
      chainView.close();
      await closeServer(server, 500);
    },
  };
}

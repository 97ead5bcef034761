/**
 * Docs MCP — an MCP server (the official `@modelcontextprotocol/sdk`, Streamable HTTP) in the demo
 * chain: an AI agent → Docs MCP → Docs API, for the signed-in user.
 *
 * What the MCP authorization specification asks of it, done with Baton's SDK:
 * - RFC 9728 protected-resource metadata at `/.well-known/oauth-protected-resource/mcp`, naming
 *   the tenant's issuer as its authorization server; a request without a valid token gets 401 with
 *   `WWW-Authenticate: Bearer resource_metadata="…"`, which is how an MCP client finds Baton.
 * - It accepts only tokens whose `aud` is exactly its canonical URI (`http://127.0.0.1:7004/mcp`;
 *   registered in baton.json with `tokenAudience: "identifierUri"`).
 * - Each tool requires its scope (`Docs.Search`, `Docs.Create`); a tool call without it is 403
 *   `insufficient_scope` naming the scope, so the client can ask for it.
 * - It never passes the agent's token on: each tool call reaches the Docs API with a token obtained
 *   On-Behalf-Of the user (`act` names docs-mcp), so the Docs API applies the user's own permissions.
 *
 * Stateless Streamable HTTP (a new McpServer per request, no session): every request carries its
 * token and is authorized on its own.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { z } from 'zod';
import { createDownstream, createGuard, createOboClient, protectedResourceMetadata, runWithPrincipal, ClaimsChallengeError, OboError, type Principal } from '@baton/resource';
import { protect } from '@baton/resource/node';
import { closeServer, listen, type ApiOptions, type RunningApi } from '../common.ts';
import { exampleLogger } from '../log.ts';
import { hopOf, traceIdOf, trackHop } from '../observe.ts';

export const DOCS_MCP = 'docs-mcp';
/** The path of the MCP endpoint: the canonical URI is `http://127.0.0.1:<port>/mcp`. */
export const MCP_PATH = '/mcp';
/** Which scope each tool requires. */
export const TOOL_SCOPES = { search_documents: 'Docs.Search', create_document: 'Docs.Create' } as const;
const MAX_BODY = 64 * 1024;

export interface DocsMcpOptions extends ApiOptions {
  /** Where the Docs API lives. */
  docsUrl: string;
}

export interface RunningDocsMcp extends RunningApi {
  /** The canonical URI (the `resource` MCP clients ask tokens for, and the `aud` it accepts). */
  resource: string;
  /** The protected-resource metadata's URL. */
  metadataUrl: string;
}

type Tool = keyof typeof TOOL_SCOPES;

/** The document fields the tools answer with. */
interface DocumentView {
  id: string;
  title: string;
  owner?: string;
  content?: string;
}

export async function startDocsMcp(options: DocsMcpOptions): Promise<RunningDocsMcp> {
  const log = exampleLogger(DOCS_MCP, options.log);
  const tls = options.ca === undefined ? {} : { ca: options.ca };
  const host = options.host ?? '127.0.0.1';
  const server = createServer();
  await listen(server, options.port ?? 0, host, 'Docs MCP');
  const address = server.address();
  const origin = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  const resource = `${origin}${MCP_PATH}`;

  const metadata = protectedResourceMetadata({
    resource,
    authorizationServers: [options.authority],
    scopesSupported: Object.values(TOOL_SCOPES),
    resourceName: 'Docs MCP (Baton demo)',
  });
  // Only tokens addressed to this MCP server's canonical URI; 401s point at the metadata.
  const guard = createGuard({ authority: options.authority, audience: resource, resourceMetadata: metadata.url, ...tls, metrics: options.metrics, onError: (e) => log.warn('token issuer unreachable', { cause: e.message }) });
  const obo = createOboClient({ authority: options.authority, clientId: DOCS_MCP, credential: { clientSecret: options.clientSecret }, ...tls, logger: log, metrics: options.metrics });
  const docsRead = createDownstream({ obo, scopes: ['api://docs/Docs.Read'], baseUrl: options.docsUrl, metrics: options.metrics });
  const docsWrite = createDownstream({ obo, scopes: ['api://docs/Docs.Write'], baseUrl: options.docsUrl, metrics: options.metrics });

  /** A tool's answer: text for the model, the same as structured content. */
  const result = (value: unknown, isError = false) => ({ content: [{ type: 'text' as const, text: JSON.stringify(value) }], ...(isError ? { isError: true } : { structuredContent: value as Record<string, unknown> }) });

  /** What went wrong downstream, as a tool error (never a token, never the stack). */
  const failure = (error: unknown) => {
    if (error instanceof ClaimsChallengeError) return result({ error: 'step_up_required', description: 'The Docs API needs a stronger sign-in (a second factor) for this: sign in again.' }, true);
    if (error instanceof OboError) return result({ error: error.error, description: error.description }, true);
    throw error;
  };

  /**
   * One McpServer per request, for its caller. Each tool runs in the caller's request context (the
   * MCP SDK's transport does not carry it through), so its Docs API call joins the request's trace.
   */
  const mcpFor = (principal: Principal, trace: { traceparent?: string | undefined }) => {
    const asCaller = <T>(fn: () => Promise<T>) => runWithPrincipal(principal, fn, trace);
    const mcp = new McpServer({ name: 'docs-mcp', version: '1.0.0' });
    mcp.registerTool(
      'search_documents',
      {
        title: 'Search documents',
        description: 'Finds the documents the signed-in user may read whose title or content contains the query.',
        inputSchema: { query: z.string().max(200) },
      },
      ({ query }) =>
        asCaller(async () => {
          try {
            const res = await docsRead(principal).fetch(`/documents?q=${encodeURIComponent(query)}`);
            const body = (await res.json()) as { documents?: DocumentView[]; error?: string };
            if (!res.ok) return result({ error: body.error ?? `Docs API ${res.status}` }, true);
            return result({ documents: (body.documents ?? []).map((d) => ({ id: d.id, title: d.title, owner: d.owner })) });
          } catch (error) {
            return failure(error);
          }
        }),
    );
    mcp.registerTool(
      'create_document',
      {
        title: 'Create a document',
        description: "Creates a document owned by the signed-in user in the Docs API (recorded in the user's name at the Audit API).",
        inputSchema: { title: z.string().min(1).max(200), content: z.string().max(20_000) },
      },
      ({ title, content }) =>
        asCaller(async () => {
          try {
            const res = await docsWrite(principal).fetch('/documents', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ title, content }) });
            const body = (await res.json()) as DocumentView & { error?: string; error_description?: string };
            if (!res.ok) return result({ error: body.error ?? `Docs API ${res.status}`, description: body.error_description }, true);
            return result({ id: body.id, title: body.title, owner: body.owner });
          } catch (error) {
            return failure(error);
          }
        }),
    );
    return mcp;
  };

  // Any token for this server opens the endpoint; each tool then needs its own scope.
  const endpoint = protect(guard, { scopes: { any: Object.values(TOOL_SCOPES) } }, async (req, res, principal) => {
    hopOf(req).principal = principal;
    let body: unknown;
    if (req.method === 'POST') {
      body = await readJson(req);
      if (body === undefined) {
        hopOf(req).reason = 'not a JSON-RPC message';
        return void res.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', error: { code: -32700, message: 'Parse error' }, id: null }));
      }
      // A tool call without the tool's scope: 403 insufficient_scope naming it (MCP step-up).
      for (const tool of toolsCalled(body)) {
        try {
          guard.authorize(principal, { scopes: { any: [TOOL_SCOPES[tool]] } });
        } catch (error) {
          hopOf(req).reason = `${tool} needs the scope ${TOOL_SCOPES[tool]}`;
          throw error;
        }
      }
      hopOf(req).reason = describeCall(body);
    }
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
    const traceparent = req.headers.traceparent;
    const mcp = mcpFor(principal, { traceparent: Array.isArray(traceparent) ? traceparent[0] : traceparent });
    res.once('close', () => {
      void transport.close();
      void mcp.close();
    });
    await mcp.connect(transport);
    const auth = { token: principal.token, clientId: principal.clientId ?? '', scopes: [...principal.scopes], resource: new URL(resource) };
    await transport.handleRequest(Object.assign(req, { auth }), res, body);
  });

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === metadata.path) return metadata.handler(req, res);
    if (path !== MCP_PATH) return void res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not_found"}');
    // One trace per agent request (MCP clients send none): the Docs API's hop joins it in the chain view.
    if (traceIdOf(req.headers.traceparent) === undefined) req.headers.traceparent = `00-${randomBytes(16).toString('hex')}-${randomBytes(8).toString('hex')}-01`;
    trackHop(options.observer, DOCS_MCP, req, res);
    await endpoint(req, res);
  };

  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    handle(req, res).catch((error: unknown) => {
      log.error('request failed', { cause: (error as Error).message });
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' }).end('{"error":"server_error"}');
      else res.destroy();
    });
  });

  return {
    url: origin,
    resource,
    metadataUrl: metadata.url,
    async close() {
      await closeServer(server);
      await obo.close();
    },
  };
}

/** The tools a JSON-RPC message (or batch) calls. */
function toolsCalled(body: unknown): Tool[] {
  const messages = Array.isArray(body) ? body : [body];
  const tools: Tool[] = [];
  for (const message of messages) {
    if (message === null || typeof message !== 'object') continue;
    const { method, params } = message as { method?: unknown; params?: { name?: unknown } };
    if (method !== 'tools/call') continue;
    const name = params?.name;
    if (typeof name === 'string' && Object.hasOwn(TOOL_SCOPES, name)) tools.push(name as Tool);
  }
  return tools;
}

/** What the chain view says the agent asked for: `tools/call create_document`, `initialize` … */
function describeCall(body: unknown): string | undefined {
  const messages = (Array.isArray(body) ? body : [body]) as Array<{ method?: unknown; params?: { name?: unknown } } | null>;
  const names = messages.map((m) => (m === null || typeof m !== 'object' || typeof m.method !== 'string' ? undefined : m.method === 'tools/call' && typeof m.params?.name === 'string' ? `tools/call ${m.params.name}` : m.method)).filter((n): n is string => n !== undefined);
  return names.length === 0 ? undefined : `MCP ${names.join(', ').slice(0, 120)}`;
}

/** The request's JSON body (at most 64 KiB), or `undefined` when it is not JSON. */
async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY) return undefined;
    chunks.push(chunk);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    return undefined;
  }
}

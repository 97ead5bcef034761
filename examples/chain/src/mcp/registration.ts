/**
 * The Docs MCP's registration at the token service, and the pre-registered agent that may use it.
 * Like `demo-admin`, it lives in the demo's code, not in baton.json (the chain's contract
 * configuration): an MCP server's canonical URI names its port, so `baton dev` adds it for the port
 * the Docs MCP listens on.
 *
 * - `docs-mcp`: an API whose identifier URI is its canonical URI (`http://127.0.0.1:7004/mcp`) and
 *   whose tokens are addressed to exactly that URI (`tokenAudience: 'identifierUri'`); a confidential
 *   client too, to call the Docs API On-Behalf-Of the user (admin consent for Docs.Read/Docs.Write).
 * - `docs-agent`: a public client for MCP hosts, redirect URI `http://127.0.0.1/callback` (any port).
 * - "MFA for agents creating documents": `Docs.Create` asks for a second factor at sign-in, since
 *   the Docs API asks for one for `Docs.Write` (the Docs MCP cannot relay a claims challenge to an
 *   MCP client).
 * - Client ID Metadata Documents accepted, loopback included: agents on this machine publish their
 *   metadata on 127.0.0.1 (the development allow-list; never in production); and Dynamic Client
 *   Registration (RFC 7591) for agents with loopback redirect URIs.
 */
import type { BatonConfig } from '@baton/server';
import { DOCS_MCP, MCP_PATH, TOOL_SCOPES } from './server.ts';

export const DOCS_AGENT = 'docs-agent';

export const DOCS_MCP_APP = {
  clientId: DOCS_MCP,
  /** A demo secret, as public as the demo users' passwords; `DOCS_MCP_CLIENT_SECRET` overrides it. */
  secret: process.env.DOCS_MCP_CLIENT_SECRET ?? 'docs-mcp-demo-secret-for-local-use-only',
} as const;

/** The Docs MCP's canonical URI on `port`. */
export function docsMcpUri(port: number): string {
  return `http://127.0.0.1:${port}${MCP_PATH}`;
}

/** The configuration with the Docs MCP (canonical URI on `port`) and the agent in its first tenant. */
export function withDocsMcp(config: BatonConfig, port: number): BatonConfig {
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new RangeError(`Docs MCP needs a fixed port (1–65535) for its canonical URI, not ${port}`);
  return {
    ...config,
    registration: {
      ...config.registration,
      metadataDocuments: { enabled: true, allowLoopback: true, ...config.registration?.metadataDocuments },
      dynamic: { enabled: true, redirectUris: 'loopback', ...config.registration?.dynamic },
    },
    tenants: config.tenants.map((tenant, i) =>
      i !== 0 || tenant.applications.some((a) => a.clientId === DOCS_MCP)
        ? tenant
        : {
            ...tenant,
            applications: [
              ...tenant.applications,
              {
                clientId: DOCS_MCP,
                name: 'Docs MCP',
                public: false,
                redirectUris: [],
                secrets: [DOCS_MCP_APP.secret],
                jwks: [],
                identifierUri: docsMcpUri(port),
                tokenAudience: 'identifierUri',
                scopes: [
                  { value: TOOL_SCOPES.search_documents, description: 'Search the documents you can read', adminConsentRequired: false },
                  { value: TOOL_SCOPES.create_document, description: 'Create documents in your name', adminConsentRequired: false },
                ],
                appRoles: [],
                knownClientApplications: [],
                requiredAccess: [{ resource: 'api://docs', scopes: ['Docs.Read', 'Docs.Write'] }],
                accessTokenLifetimeSeconds: 3600,
                signingAlg: 'ES256',
              },
              {
                clientId: DOCS_AGENT,
                name: 'Docs Agent',
                public: true,
                redirectUris: ['http://127.0.0.1/callback'],
                secrets: [],
                jwks: [],
                scopes: [],
                appRoles: [],
                knownClientApplications: [],
                requiredAccess: [],
                accessTokenLifetimeSeconds: 3600,
                signingAlg: 'ES256',
              },
            ],
            consents: [...tenant.consents, { client: DOCS_MCP, resource: 'api://docs', scopes: ['Docs.Read', 'Docs.Write'], for: 'all' }],
            policies: [...tenant.policies, { name: 'MFA for agents creating documents', resources: [DOCS_MCP], scopes: [TOOL_SCOPES.create_document], require: { mfa: true } }],
          },
    ),
  };
}

/**
 * What `baton dev` prints once everything listens: where to go, who to sign in as, and how to trust
 * the local CA. Passwords and the TOTP secret are the demo's own (baton.json), printed on purpose;
 * no token and no client secret is ever printed.
 */
import { totpNow, type DemoConfig } from './demo-config.ts';
import { DEMO_ADMIN } from './demo-admin.ts';

export interface BannerInput {
  tokenServiceUrl: string;
  tenant: string;
  caPath: string | undefined;
  dataDir: string;
  urls: { web: string; chain: string; tasksApi: string; docsApi: string; auditApi: string; docsMcp?: string | undefined };
  demo: DemoConfig;
  indexerIntervalMs: number;
  antiPattern: boolean;
  /** ANSI colours (a terminal). */
  color?: boolean | undefined;
}

export function banner(input: BannerInput): string {
  const c = input.color ?? false;
  const bold = (s: string) => (c ? `\u001b[1m${s}\u001b[22m` : s);
  const dim = (s: string) => (c ? `\u001b[2m${s}\u001b[22m` : s);
  const green = (s: string) => (c ? `\u001b[32m${s}\u001b[39m` : s);
  const cyan = (s: string) => (c ? `\u001b[36m${s}\u001b[39m` : s);
  const row = (label: string, value: string, note = '') => `  ${label.padEnd(24)} ${value}${note ? `  ${dim(note)}` : ''}`;
  const authority = `${input.tokenServiceUrl}/${input.tenant}/v2.0`;
  const lines: string[] = [];
  lines.push('', bold('Baton dev — the demo chain is running'), '');
  lines.push(row('Tasks Web (Client App)', green(bold(input.urls.web)), '← open this in a browser'));
  lines.push(row('Chain view', cyan(input.urls.chain), 'every hop, its token and the decision, live'));
  lines.push(row('Token service', authority, `discovery: ${authority}/.well-known/openid-configuration`));
  lines.push(row('Tasks API', input.urls.tasksApi, 'Original API · Express · Tasks.ReadWrite'));
  lines.push(row('Docs API', input.urls.docsApi, 'Downstream API · Fastify · Docs.Read / Docs.Write'));
  lines.push(row('Audit API', input.urls.auditApi, 'third hop · Hono · Audit.Write'));
  if (input.urls.docsMcp !== undefined) lines.push(row('Docs MCP', input.urls.docsMcp, 'MCP server · Streamable HTTP · point an MCP client here (docs/mcp.md)'));
  lines.push(row('Indexer', input.indexerIntervalMs > 0 ? `every ${Math.round(input.indexerIntervalMs / 1000)} s` : 'on demand', 'app-only · client credentials · Docs.ReadAll'));
  lines.push(row('Admin API', `${input.tokenServiceUrl}/${input.tenant}/admin/v1`, `baton admin … as ${DEMO_ADMIN.clientId} (README: "Administer the running demo")`));
  if (input.antiPattern) lines.push(row('Anti-pattern switch', 'ON', 'the Tasks API will try to act as itself (the SDK refuses)'));
  lines.push('', bold(`Demo users (tenant ${input.tenant})`));
  for (const user of input.demo.users) {
    const secret = input.demo.totpSecrets[user.username];
    let extra = '';
    if (!user.enabled) extra = dim('(disabled: sign-in is refused)');
    else if (secret !== undefined) {
      const { code, remaining } = totpNow(secret);
      extra = `TOTP secret ${bold(secret)} — current code ${bold(`${code.slice(0, 3)} ${code.slice(3)}`)} ${dim(`(${remaining} s left; the chain view shows it live)`)}`;
    }
    lines.push(`  ${user.username.padEnd(22)} ${user.password.padEnd(20)} ${extra}`);
  }
  lines.push('', bold('Trust the local CA'), `  The sign-in pages are served by the token service over HTTPS with a certificate from a CA made for this machine:`);
  const ca = input.caPath ?? '<data>/tls/ca.pem';
  lines.push(`  ${bold(ca)}`);
  lines.push(`  Until a browser trusts it, ${input.tokenServiceUrl} shows a certificate warning (proceed, or trust the CA once):`);
  lines.push(`    macOS    sudo security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain "${ca}"`);
  lines.push(`    Linux    sudo cp "${ca}" /usr/local/share/ca-certificates/baton-dev.crt && sudo update-ca-certificates`);
  lines.push(`             Chrome/Firefox keep their own store: Settings → Certificates → Authorities → Import`);
  lines.push(`    Windows  certutil -user -addstore Root "${ca}"`);
  lines.push(`    Node.js  NODE_EXTRA_CA_CERTS="${ca}"      curl  --cacert "${ca}"`);
  lines.push('', `Data: ${input.dataDir} (delete it to start over). ${bold('Ctrl-C')} stops everything.`, '');
  return lines.join('\n');
}

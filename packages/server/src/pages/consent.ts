/** The consent page, the "needs admin approval" page and the admin-consent result page. */
import { html, type SafeHtml } from './html.ts';
import { csrfField, initialOf, page, type FormPageInput, type Page } from './layout.ts';

export interface PermissionView {
  description: string;
  /** `api://tasks/Tasks.ReadWrite`, shown small under the description. */
  scope: string;
  adminOnly?: boolean;
}

export interface ConsentPageInput extends FormPageInput {
  /**
   * The client. `unverified`: it registered itself (a Client ID Metadata Document): its name, logo
   * and home page are what its metadata says, so the page marks it and names where it comes from.
   */
  app: { name: string; clientId: string; unverified?: { source: string; dynamic?: boolean | undefined; logoUri?: string | undefined; clientUri?: string | undefined } | undefined };
  /** The API the request is for; undefined for an OIDC-only request with prompt=consent. */
  api?: { name: string; identifier: string } | undefined;
  permissions: PermissionView[];
  /** Combined consent: what the API itself receives for the user. */
  combined: Array<{ apiName: string; permissions: PermissionView[] }>;
  username: string;
  /** Show "Consent on behalf of your organization" (an administrator, admin-only scopes requested). */
  asAdmin: boolean;
  /** The admin checkbox must be ticked to accept (some scopes need admin consent). */
  adminRequired: boolean;
  /** Admin-consent flow: the consent is for every user of the tenant. */
  organization?: boolean;
}

function permissionList(permissions: readonly PermissionView[]): SafeHtml {
  return html`<ul class="perms">${permissions.map(
    (p) => html`<li><span class="check" aria-hidden="true"></span><span><span class="perm-text">${p.description}${p.adminOnly ? html`<span class="badge">Admin consent</span>` : ''}</span><span class="perm-scope">${p.scope}</span></span></li>`,
  )}</ul>`;
}

export function consentPage(input: ConsentPageInput): Page {
  const { app, api } = input;
  const unverified = app.unverified;
  const logoOrigin = unverified?.logoUri === undefined ? undefined : new URL(unverified.logoUri).origin;
  return page({
    title: 'Permissions requested',
    brand: input.brand,
    formTargets: input.formTargets,
    ...(logoOrigin === undefined ? {} : { imageSources: [logoOrigin] }),
    body: html`<h1>Permissions requested</h1>
<p class="who"><span class="dot" aria-hidden="true">${initialOf(input.username)}</span><span>Signed in as ${input.username}</span></p>
<div class="app">
${unverified?.logoUri === undefined ? html`<span class="avatar" aria-hidden="true">${initialOf(app.name)}</span>` : html`<img class="avatar logo" src="${unverified.logoUri}" alt="" width="40" height="40" referrerpolicy="no-referrer">`}
<span><span class="app-name">${app.name}${unverified === undefined ? '' : html`<span class="badge" id="unverified">Not pre-registered</span>`}</span><span class="app-sub">${api === undefined ? html`App ID ${app.clientId}` : html`wants to access ${api.name} (${api.identifier})`}</span></span>
</div>
${unverified === undefined
  ? ''
  : html`<p class="note" id="client-source">${app.name} is not registered with ${input.brand}: it described itself ${unverified.dynamic ? 'when it registered itself (dynamic client registration)' : html`at <span class="perm-scope">${unverified.source}</span>`}${unverified.clientUri === undefined ? '' : html` (home page <a href="${unverified.clientUri}" rel="noreferrer noopener" target="_blank">${unverified.clientUri}</a>)`}. Its name and logo are its own claims; continue only if you recognise it.</p>`}
<h2 id="perms-heading">${input.organization ? html`This app would like to, for everyone in ${input.brand}:` : html`This app would like to:`}</h2>
${permissionList(input.permissions)}
${input.combined.map((c) => html`<h2>${c.apiName} will also be able to, on your behalf:</h2>${permissionList(c.permissions)}`)}
<form method="post" action="${input.action}">
${csrfField(input.csrf)}
${input.asAdmin
  ? html`<div class="admin"><input type="checkbox" id="organization" name="organization" value="1"${input.adminRequired ? ' required' : ''}><label for="organization">Consent on behalf of your organization${input.adminRequired ? ' (required: some permissions need an administrator)' : ''}</label></div>`
  : ''}
<p class="note">Accepting allows ${app.name} to use this data as described. Only accept if you trust the app; an administrator can remove its access.</p>
<div class="actions">
<button type="submit" name="decision" value="cancel" class="secondary">Cancel</button>
<button type="submit" name="decision" value="accept" class="primary" autofocus>Accept</button>
</div>
</form>`,
  });
}

export interface AdminRequiredPageInput extends FormPageInput {
  appName: string;
  permissions: PermissionView[];
  adminConsentUrl: string;
}

export function adminRequiredPage(input: AdminRequiredPageInput): Page {
  return page({
    title: 'Need admin approval',
    brand: input.brand,
    formTargets: input.formTargets,
    status: 403,
    body: html`<h1>Need admin approval</h1>
<p class="lead"><strong>${input.appName}</strong> needs permission to access resources in your organization that only an administrator can grant.</p>
${permissionList(input.permissions)}
<p class="note">Ask an administrator to grant consent at <span class="perm-scope">${input.adminConsentUrl}</span></p>
<form method="post" action="${input.action}">
${csrfField(input.csrf)}
<div class="actions">
<button type="submit" name="decision" value="cancel" class="primary" autofocus>Return to the application</button>
</div>
</form>`,
  });
}

export function adminConsentDonePage(input: { brand: string; appName: string }): Page {
  return page({
    title: 'Permissions granted',
    brand: input.brand,
    body: html`<h1>Permissions granted</h1>
<p class="lead">Everyone in ${input.brand} can now use <strong>${input.appName}</strong> with the permissions you accepted. You can close this window.</p>`,
  });
}

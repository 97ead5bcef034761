/** Sign-in (username + password) and account picker pages. */
import { html } from './html.ts';
import { csrfField, initialOf, page, type FormPageInput, type Page } from './layout.ts';

export interface PageError {
  message: string;
  /** AADSTS number shown beside the message. */
  code?: number | undefined;
}

export interface SignInPageInput extends FormPageInput {
  appName: string;
  username?: string | undefined;
  error?: PageError | undefined;
  status?: number;
}

export function alert(error: PageError | undefined) {
  if (error === undefined) return '';
  return html`<div class="alert" role="alert" id="form-error">${error.message}${error.code === undefined ? '' : html` <span class="visually-hidden">Error code</span>(AADSTS${error.code})`}</div>`;
}

export function signInPage(input: SignInPageInput): Page {
  const hasUser = input.username !== undefined && input.username !== '';
  const described = input.error === undefined ? '' : html` aria-describedby="form-error"`;
  return page({
    title: 'Sign in',
    brand: input.brand,
    formTargets: input.formTargets,
    status: input.status,
    body: html`<h1>Sign in</h1>
<p class="lead">to continue to <strong>${input.appName}</strong></p>
${alert(input.error)}
<form method="post" action="${input.action}" novalidate>
${csrfField(input.csrf)}
<div class="field">
<label for="username">Username</label>
<input type="text" id="username" name="username" autocomplete="username" autocapitalize="none" spellcheck="false" required maxlength="256" value="${input.username ?? ''}"${hasUser ? '' : html` autofocus`}${described}>
</div>
<div class="field">
<label for="password">Password</label>
<input type="password" id="password" name="password" autocomplete="current-password" required maxlength="1024"${hasUser ? html` autofocus` : ''}${described}>
</div>
<div class="actions stack">
<button type="submit" class="primary block">Sign in</button>
</div>
</form>`,
  });
}

export interface SelectAccountPageInput extends FormPageInput {
  appName: string;
  account: { displayName: string; username: string };
}

export function selectAccountPage(input: SelectAccountPageInput): Page {
  return page({
    title: 'Pick an account',
    brand: input.brand,
    formTargets: input.formTargets,
    body: html`<h1>Pick an account</h1>
<p class="lead">to continue to <strong>${input.appName}</strong></p>
<form method="post" action="${input.action}">
${csrfField(input.csrf)}
<button type="submit" name="account" value="current" class="account" autofocus>
<span class="avatar" aria-hidden="true">${initialOf(input.account.displayName)}</span>
<span><strong>${input.account.displayName}</strong><span class="sub">${input.account.username} · Signed in</span></span>
</button>
<button type="submit" name="account" value="other" class="account">
<span class="avatar" aria-hidden="true">+</span>
<span><strong>Use another account</strong></span>
</button>
</form>`,
  });
}

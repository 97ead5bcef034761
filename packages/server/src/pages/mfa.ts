/** The second-factor page: a TOTP code (RFC 6238) from the user's authenticator app. */
import { html } from './html.ts';
import { csrfField, page, type FormPageInput, type Page } from './layout.ts';
import { alert, type PageError } from './signin.ts';

export interface MfaPageInput extends FormPageInput {
  appName: string;
  username: string;
  /** Why a second factor is asked for, in the user's words (the policy and the API it protects). */
  why: string;
  error?: PageError | undefined;
  status?: number;
}

export function mfaPage(input: MfaPageInput): Page {
  const described = input.error === undefined ? html` aria-describedby="code-hint"` : html` aria-describedby="form-error code-hint"`;
  return page({
    title: 'Verify your identity',
    brand: input.brand,
    formTargets: input.formTargets,
    status: input.status,
    body: html`<h1>Verify your identity</h1>
<p class="lead" id="mfa-why">${input.why}</p>
<p>Enter the code from the authenticator app registered for <strong>${input.username}</strong> to continue to <strong>${input.appName}</strong>.</p>
${alert(input.error)}
<form method="post" action="${input.action}" novalidate>
${csrfField(input.csrf)}
<div class="field">
<label for="code">Code</label>
<input type="text" id="code" name="code" class="code" inputmode="numeric" pattern="[0-9 ]*" autocomplete="one-time-code" maxlength="10" required autofocus${described}>
<p class="hint" id="code-hint">6 digits. The code changes every 30 seconds.</p>
</div>
<div class="actions stack">
<button type="submit" class="primary block">Verify</button>
</div>
</form>`,
  });
}

/**
 * HTML templating for the sign-in pages: a tagged template that escapes every interpolated value
 * unless it is already `SafeHtml`. An application's display name, a scope description, a login
 * hint, an error description — all of it is attacker-influenced, so nothing is ever concatenated
 * into markup unescaped (OWASP XSS cheat sheet, rule #1 for HTML body and quoted attributes).
 */

/** Markup that is already safe (built by `html` or `raw`). */
export class SafeHtml {
  readonly value: string;
  constructor(value: string) {
    this.value = value;
  }
  toString(): string {
    return this.value;
  }
}

const ENTITIES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;', '`': '&#96;' };

/** Escapes text for an HTML body or a double- or single-quoted attribute value. */
export function escapeHtml(value: string): string {
  return value.replace(/[&<>"'`]/g, (c) => ENTITIES[c]!);
}

/** Marks a constant, trusted string as markup. Never call it with data. */
export function raw(value: string): SafeHtml {
  return new SafeHtml(value);
}

export type HtmlValue = SafeHtml | string | number | boolean | undefined | null | readonly HtmlValue[];

function render(value: HtmlValue): string {
  if (value === undefined || value === null || value === false) return '';
  if (value instanceof SafeHtml) return value.value;
  if (Array.isArray(value)) return value.map(render).join('');
  return escapeHtml(String(value));
}

/**
 * @example
 * html`<p>${app.name} wants to access ${api.name}</p>`; // both names escaped
 */
export function html(strings: TemplateStringsArray, ...values: HtmlValue[]): SafeHtml {
  let out = strings[0] ?? '';
  for (let i = 0; i < values.length; i++) out += render(values[i]!) + (strings[i + 1] ?? '');
  return new SafeHtml(out);
}

/**
 * HTML built from template literals: every interpolated value is escaped unless it is markup that
 * `html` made itself, so no repository name, description, file name or error message can become
 * markup. Templates quote every attribute, so escaping `"` and `'` keeps values inside them.
 */

/** Markup safe to insert as is. */
export class Html {
  constructor(readonly markup: string) {}
  toString(): string {
    return this.markup;
  }
}

/** What a template may interpolate: text (escaped), numbers, markup, lists of them; nothing for false and null. */
export type Fragment = Html | string | number | boolean | null | undefined | readonly Fragment[];

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

export const escapeHtml = (text: string): string => text.replace(/[&<>"']/g, (c) => ESCAPES[c]!);

function render(value: Fragment): string {
  if (value instanceof Html) return value.markup;
  if (Array.isArray(value)) return (value as readonly Fragment[]).map(render).join('');
  if (value === null || value === undefined || typeof value === 'boolean') return '';
  return escapeHtml(String(value));
}

export function html(strings: TemplateStringsArray, ...values: Fragment[]): Html {
  let markup = strings[0]!;
  for (let i = 0; i < values.length; i++) markup += render(values[i]) + strings[i + 1]!;
  return new Html(markup);
}

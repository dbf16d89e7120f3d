/** Signing in by pasting a token, and the page of an error. */
import type { HttpError } from '../../errors.js';
import { html, type Html } from '../html.js';
import { csrfField, page, type PageContext } from '../layout.js';

export function signInPage(ctx: PageContext, next: string, error?: string): Html {
  return page(ctx, {
    title: 'Sign in',
    section: 'sign-in',
    main: html`<h1>Sign in</h1>
      ${error ? html`<p class="error" role="alert">${error}</p>` : ''}
      <form method="post" action="${ctx.paths.signIn()}" class="card narrow">
        ${csrfField(ctx)}
        <input type="hidden" name="next" value="${next}">
        <label for="token">Your token</label>
        <input id="token" name="token" type="password" required autocomplete="off" spellcheck="false" aria-describedby="token-hint">
        <p id="token-hint" class="sub">The same bearer token the API and the CLI take, e.g. from <code>snapfork token create --user alice</code>.
          It is checked once, then kept in this browser only, in a cookie no script can read, until it expires (12 hours at most) or you sign out.</p>
        <button type="submit">Sign in</button>
      </form>`,
  });
}

const TITLES: Record<number, string> = {
  400: 'This request is not valid',
  401: 'Sign-in needed',
  403: 'Not allowed',
  404: 'Not found',
  409: 'Conflict',
  413: 'Too large',
  422: 'Not possible',
  429: 'Too many at once',
  503: 'Busy, try again shortly',
  507: 'The store is full',
};

/** An error message as a sentence: capitalised, with a full stop. */
const sentence = (message: string) => `${message.charAt(0).toUpperCase()}${message.slice(1)}${/[.!?)]$/.test(message) ? '' : '.'}`;

/** `back`: a page of the UI to return to, when known. */
export function errorPage(ctx: PageContext, e: HttpError, requestId: string, back: string | undefined): Html {
  const title = TITLES[e.status] ?? (e.status >= 500 ? 'Something went wrong on the server' : 'This request failed');
  const retry = e.headers?.['Retry-After'];
  return page(ctx, {
    title,
    main: html`<h1>${title}</h1>
      <p class="error" role="alert">${sentence(e.message)}</p>
      ${retry ? html`<p>Try again in ${retry} seconds.</p>` : ''}
      ${e.status === 401 ? html`<p><a href="${ctx.paths.signIn()}">Sign in</a> with a token.</p>` : ''}
      <p>${back ? html`<a href="${back}">Go back</a> · ` : ''}<a href="${ctx.paths.home()}">All repositories</a></p>
      <p class="sub">HTTP ${e.status} · request ${requestId}</p>`,
  });
}

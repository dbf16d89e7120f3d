/** The frame every page shares (header, navigation, notices) and the small pieces pages reuse. */
import type { Visibility } from '../../domain/model.js';
import { html, type Fragment, type Html } from './html.js';
import type { UiPaths } from './paths.js';

/** Who looks at the page. */
export interface Viewer {
  /** Null for an anonymous visitor. */
  login: string | null;
  /** A site administrator (the token's `admin` scope). */
  admin: boolean;
}

/** What every page is rendered with. */
export interface PageContext {
  paths: UiPaths;
  viewer: Viewer;
  /** The session's CSRF token, which every form carries; null without a session. */
  csrf: string | null;
  /** A sentence about what the last action did, shown once above the page. */
  notice?: string;
}

export type Section = 'catalogue' | 'storage' | 'vms' | 'sign-in';

export interface PageSpec {
  title: string;
  main: Fragment;
  /** The navigation entry marked current. */
  section?: Section;
}

export function page(ctx: PageContext, spec: PageSpec): Html {
  const { paths, viewer } = ctx;
  const nav = (section: Section, href: string, label: string) =>
    html`<li><a href="${href}"${spec.section === section ? html` aria-current="page"` : ''}>${label}</a></li>`;
  const who = viewer.login
    ? html`<span class="who">Signed in as <strong>${viewer.login}</strong></span>
        <form method="post" action="${paths.signOut()}" class="inline">${csrfField(ctx)}<button type="submit" class="link">Sign out</button></form>`
    : html`<a href="${paths.signIn()}"${spec.section === 'sign-in' ? html` aria-current="page"` : ''}>Sign in</a>`;
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${spec.title} · snapfork</title>
<link rel="stylesheet" href="${paths.asset('ui.css')}">
<script src="${paths.asset('ui.js')}" defer></script>
</head>
<body>
<a class="skip" href="#main">Skip to content</a>
<header class="top">
  <nav aria-label="Site">
    <a class="brand" href="${paths.home()}">snapfork</a>
    <ul>
      ${nav('catalogue', paths.home(), 'Repositories')}
      ${nav('storage', paths.storage(), 'Storage')}
      ${nav('vms', paths.vms(), 'VMs')}
    </ul>
    <div class="account">${who}</div>
  </nav>
</header>
<main id="main">
${ctx.notice ? html`<p class="notice" role="status">${ctx.notice}</p>` : ''}
${spec.main}
</main>
<footer class="bottom"><p>snapfork · the API this page uses is described at <a href="${paths.root.replace(/\/ui$/, '')}/openapi.yaml">openapi.yaml</a></p></footer>
</body>
</html>
`;
}

/** The hidden field that proves a form came from a page of this session. */
export const csrfField = (ctx: PageContext): Html => html`<input type="hidden" name="csrf" value="${ctx.csrf ?? ''}">`;

/** A form of one button that POSTs to `action`; `confirm`: a question ui.js asks first. */
export function postButton(ctx: PageContext, action: string, label: string, options: { confirm?: string; danger?: boolean; name?: string } = {}): Html {
  return html`<form method="post" action="${action}" class="inline"${options.confirm ? html` data-confirm="${options.confirm}"` : ''}>${csrfField(ctx)}<button type="submit"${options.danger ? html` class="danger"` : ''}${options.name ? html` aria-label="${options.name}"` : ''}>${label}</button></form>`;
}

export const visibilityBadge = (visibility: Visibility): Html => html`<span class="badge badge-${visibility}">${visibility}</span>`;

/** Links to the neighbouring pages of a list; nothing when it fits on one. */
export function pager(current: number, hasNext: boolean, link: (page: number) => string): Fragment {
  if (current <= 1 && !hasNext) return '';
  return html`<nav class="pager" aria-label="Pages">
    ${current > 1 ? html`<a href="${link(current - 1)}" rel="prev">Previous page</a>` : ''}
    <span>Page ${current}</span>
    ${hasNext ? html`<a href="${link(current + 1)}" rel="next">Next page</a>` : ''}
  </nav>`;
}

/** A message for a signed-out visitor where a page needs a signed-in one. */
export const signInPrompt = (ctx: PageContext, why: string, next: string): Html =>
  html`<p class="empty">${why} <a href="${ctx.paths.signIn(next)}">Sign in</a> with a token to see it.</p>`;

/** The catalogue (every repository the viewer may see, searchable) and a namespace's repositories. */
import type { Namespace, Repository } from '../../../domain/model.js';
import { html, type Html } from '../html.js';
import { page, pager, visibilityBadge, type PageContext } from '../layout.js';
import { plural } from '../format.js';

/** A repository as a list shows it. */
export interface RepositoryRow {
  repository: Repository;
  /** The source of a fork, when the viewer may see it. */
  parent: Repository | null;
  /** Forks the viewer may see. */
  forks: number;
}

export interface Listing {
  rows: RepositoryRow[];
  total: number;
  page: number;
  hasNext: boolean;
}

function repositoryTable(ctx: PageContext, caption: string, { rows }: Listing): Html {
  const { paths } = ctx;
  if (rows.length === 0) return html`<p class="empty">No repositories here.</p>`;
  return html`<div class="table-wrap"><table class="repos">
    <caption>${caption}</caption>
    <thead><tr><th scope="col">Repository</th><th scope="col">Visibility</th><th scope="col">Forks</th><th scope="col">Description</th></tr></thead>
    <tbody>
    ${rows.map(
      ({ repository: r, parent, forks }) => html`<tr>
        <th scope="row"><a href="${paths.repo(r.namespace, r.name)}">${r.namespace}/${r.name}</a>
          ${parent ? html`<span class="sub">fork of <a href="${paths.repo(parent.namespace, parent.name)}">${parent.namespace}/${parent.name}</a></span>` : ''}
          ${r.archived ? html`<span class="badge">archived</span>` : ''}</th>
        <td>${visibilityBadge(r.visibility)}</td>
        <td><a href="${paths.network(r.namespace, r.name)}" aria-label="${plural(forks, 'fork')} of ${r.namespace}/${r.name}">${forks}</a></td>
        <td>${r.description}</td>
      </tr>`,
    )}
    </tbody>
  </table></div>`;
}

export function cataloguePage(ctx: PageContext, listing: Listing, search: string, namespaces: Namespace[]): Html {
  const { paths } = ctx;
  const caption = search ? `${plural(listing.total, 'repository', 'repositories')} matching “${search}”` : `${plural(listing.total, 'repository', 'repositories')} you can see`;
  return page(ctx, {
    title: 'Repositories',
    section: 'catalogue',
    main: html`<h1>Repositories</h1>
      <form method="get" action="${paths.home()}" class="search" role="search">
        <label for="q">Search by repository or namespace name</label>
        <div class="row"><input id="q" name="q" type="search" value="${search}" maxlength="100"><button type="submit">Search</button></div>
      </form>
      <div class="columns">
        <section class="wide">${repositoryTable(ctx, caption, listing)}
          ${pager(listing.page, listing.hasNext, (n) => paths.home({ q: search, page: n }))}</section>
        ${namespaces.length > 0
          ? html`<aside aria-labelledby="your-namespaces"><h2 id="your-namespaces">Your namespaces</h2><ul class="plain">
              ${namespaces.map((ns) => html`<li><a href="${paths.namespace(ns.name)}">${ns.name}</a> <span class="sub">${ns.kind === 'org' ? 'organization' : 'user'}</span></li>`)}
            </ul></aside>`
          : ''}
      </div>`,
  });
}

export function namespacePage(ctx: PageContext, namespace: Namespace, listing: Listing): Html {
  const { paths } = ctx;
  return page(ctx, {
    title: namespace.name,
    section: 'catalogue',
    main: html`<nav aria-label="Breadcrumb" class="crumbs"><a href="${paths.home()}">Repositories</a> / <span>${namespace.name}</span></nav>
      <h1>${namespace.name} <span class="sub">${namespace.kind === 'org' ? 'organization' : 'user'}</span></h1>
      ${repositoryTable(ctx, `${plural(listing.total, 'repository', 'repositories')} of ${namespace.name} you can see`, listing)}
      ${pager(listing.page, listing.hasNext, (n) => paths.namespace(namespace.name, { page: n }))}`,
  });
}

/** A repository: its overview (tags, recent commits, fork and tag forms), a tag's history, file tree and files. */
import type { Commit, Repository, Tag } from '../../../domain/model.js';
import type { TreeNode } from '../../../domain/snapshot.service.js';
import { html, type Fragment, type Html } from '../html.js';
import { csrfField, page, pager, postButton, visibilityBadge, type PageContext } from '../layout.js';
import { bytes, plural, shortId, when } from '../format.js';

export type RepositoryTab = 'overview' | 'network' | 'storage';

/** The heading and tabs of every page of one repository. */
export function repositoryHeader(ctx: PageContext, repo: Repository, parent: Repository | null, tab: RepositoryTab | null): Html {
  const { paths } = ctx;
  const tabLink = (which: RepositoryTab, href: string, label: string) =>
    html`<li><a href="${href}"${tab === which ? html` aria-current="page"` : ''}>${label}</a></li>`;
  return html`<nav aria-label="Breadcrumb" class="crumbs"><a href="${paths.home()}">Repositories</a> / <a href="${paths.namespace(repo.namespace)}">${repo.namespace}</a> / <span>${repo.name}</span></nav>
    <h1>${repo.namespace}/${repo.name} ${visibilityBadge(repo.visibility)}${repo.archived ? html` <span class="badge">archived</span>` : ''}</h1>
    ${parent ? html`<p class="sub">Fork of <a href="${paths.repo(parent.namespace, parent.name)}">${parent.namespace}/${parent.name}</a></p>` : ''}
    ${repo.description ? html`<p>${repo.description}</p>` : ''}
    <nav aria-label="Repository" class="tabs"><ul>
      ${tabLink('overview', paths.repo(repo.namespace, repo.name), 'Tags and commits')}
      ${tabLink('network', paths.network(repo.namespace, repo.name), 'Fork network')}
      ${tabLink('storage', paths.repoStorage(repo.namespace, repo.name), 'Storage')}
    </ul></nav>`;
}

function commitList(ctx: PageContext, repo: Repository, commits: Commit[], caption: string): Html {
  if (commits.length === 0) return html`<p class="empty">No commits.</p>`;
  return html`<div class="table-wrap"><table>
    <caption>${caption}</caption>
    <thead><tr><th scope="col">Commit</th><th scope="col">Message</th><th scope="col">Author</th><th scope="col">Made</th>${ctx.viewer.login ? html`<th scope="col"><span class="visually-hidden">Actions</span></th>` : ''}</tr></thead>
    <tbody>${commits.map(
      (c) => html`<tr>
        <td><code title="${c.id}">${shortId(c.id)}</code></td>
        <td>${c.message || html`<span class="sub">(no message)</span>`}</td>
        <td>${c.author}</td>
        <td><time datetime="${c.createdAt}">${when(c.createdAt)}</time></td>
        ${ctx.viewer.login ? html`<td><a href="${ctx.paths.repo(repo.namespace, repo.name, { commit: c.id })}#new-tag">Tag this commit</a></td>` : ''}
      </tr>`,
    )}</tbody>
  </table></div>`;
}

export interface Overview {
  repository: Repository;
  parent: Repository | null;
  /** This page of tags, by name. */
  tags: Tag[];
  tagPage: number;
  moreTags: boolean;
  /** The newest commits of the default tag. */
  recent: Commit[];
  /** Every tag's name, for the fork form. */
  tagNames: string[];
  /** The namespaces the viewer may fork into (their own first); empty for a visitor. */
  namespaces: string[];
  /** A commit to prefill the new tag form with. */
  commit: string;
}

export function overviewPage(ctx: PageContext, o: Overview): Html {
  const { paths, viewer } = ctx;
  const r = o.repository;
  const tagsTable = o.tags.length === 0
    ? html`<p class="empty">No tags yet. Push a snapshot with <code>snapfork push</code> to make one.</p>`
    : html`<div class="table-wrap"><table class="tags">
        <caption>Tags</caption>
        <thead><tr><th scope="col">Tag</th><th scope="col">Commit</th><th scope="col">Updated</th><th scope="col">Actions</th></tr></thead>
        <tbody>${o.tags.map(
          (t) => html`<tr>
            <th scope="row"><a href="${paths.tree(r.namespace, r.name, t.name)}">${t.name}</a>${t.name === r.defaultTag ? html` <span class="badge">default</span>` : ''}</th>
            <td><code title="${t.commitId}">${shortId(t.commitId)}</code></td>
            <td><time datetime="${t.updatedAt}">${when(t.updatedAt)}</time></td>
            <td class="actions">
              <a href="${paths.tree(r.namespace, r.name, t.name)}">Files</a>
              <a href="${paths.history(r.namespace, r.name, t.name)}">History</a>
              <a href="${paths.archive(r.namespace, r.name, t.name)}" download>Download .tar</a>
              ${viewer.login ? postButton(ctx, paths.deleteTag(r.namespace, r.name, t.name), 'Delete', { confirm: `Delete tag ${t.name} of ${r.namespace}/${r.name}?`, danger: true, name: `Delete tag ${t.name}` }) : ''}
            </td>
          </tr>`,
        )}</tbody>
      </table></div>
      ${pager(o.tagPage, o.moreTags, (n) => paths.repo(r.namespace, r.name, { page: n }))}`;
  const forms: Fragment = viewer.login
    ? html`<div class="forms">
        <section aria-labelledby="fork-heading" class="card">
          <h2 id="fork-heading">Fork this repository</h2>
          <p class="sub">A fork shares every byte with its source: it costs a few rows, whatever the size.</p>
          <form method="post" action="${paths.fork(r.namespace, r.name)}">
            ${csrfField(ctx)}
            <label for="fork-namespace">Into namespace</label>
            <input id="fork-namespace" name="namespace" list="fork-namespaces" value="${o.namespaces[0] ?? ''}" required maxlength="39" autocomplete="off">
            <datalist id="fork-namespaces">${o.namespaces.map((n) => html`<option value="${n}"></option>`)}</datalist>
            <label for="fork-name">Name of the fork</label>
            <input id="fork-name" name="name" value="${r.name}" required maxlength="100" autocomplete="off">
            <label for="fork-visibility">Visibility</label>
            <select id="fork-visibility" name="visibility">
              <option value="">The widest the source allows</option>
              <option value="public">public</option>
              <option value="internal">internal</option>
              <option value="private">private</option>
            </select>
            <label for="fork-tag">Tags</label>
            <select id="fork-tag" name="tag">
              <option value="">All tags</option>
              ${o.tagNames.map((t) => html`<option value="${t}">${t}</option>`)}
            </select>
            <button type="submit">Fork</button>
          </form>
        </section>
        <section aria-labelledby="new-tag" class="card">
          <h2 id="new-tag">Create a tag</h2>
          <form method="post" action="${paths.tags(r.namespace, r.name)}">
            ${csrfField(ctx)}
            <label for="tag-name">Tag name</label>
            <input id="tag-name" name="name" required maxlength="64" autocomplete="off">
            <label for="tag-commit">Commit id</label>
            <input id="tag-commit" name="commit" value="${o.commit}" required maxlength="64" autocomplete="off" aria-describedby="tag-commit-hint">
            <p id="tag-commit-hint" class="sub">Any commit you can read; “Tag this commit” in a history fills it in.</p>
            <button type="submit">Create tag</button>
          </form>
        </section>
      </div>`
    : html`<p class="sub"><a href="${paths.signIn(paths.repo(r.namespace, r.name))}">Sign in</a> to fork this repository or change its tags.</p>`;
  return page(ctx, {
    title: `${r.namespace}/${r.name}`,
    section: 'catalogue',
    main: html`${repositoryHeader(ctx, r, o.parent, 'overview')}
      <section aria-labelledby="tags-heading"><h2 id="tags-heading">Tags</h2>${tagsTable}</section>
      <section aria-labelledby="recent-heading"><h2 id="recent-heading">Recent commits${r.defaultTag ? html` of <a href="${paths.history(r.namespace, r.name, r.defaultTag)}">${r.defaultTag}</a>` : ''}</h2>
        ${commitList(ctx, r, o.recent, r.defaultTag ? `The newest commits of ${r.defaultTag}` : 'Commits')}</section>
      ${forms}`,
  });
}

export function historyPage(ctx: PageContext, repo: Repository, tag: string, commits: Commit[], pageNumber: number, hasNext: boolean): Html {
  const { paths } = ctx;
  return page(ctx, {
    title: `History of ${tag} · ${repo.namespace}/${repo.name}`,
    section: 'catalogue',
    main: html`${repositoryHeader(ctx, repo, null, null)}
      <h2>History of ${tag}</h2>
      ${commitList(ctx, repo, commits, `Commits of ${tag}, newest first`)}
      ${pager(pageNumber, hasNext, (n) => paths.history(repo.namespace, repo.name, tag, { page: n }))}`,
  });
}

/** The links of each directory above `path` within a tag's tree. */
function pathCrumbs(ctx: PageContext, repo: Repository, tag: string, path: string): Html {
  const parts = path === '' ? [] : path.split('/');
  return html`<nav aria-label="Path" class="crumbs"><a href="${ctx.paths.tree(repo.namespace, repo.name, tag)}">${tag}</a>${parts.map((part, i) =>
    i === parts.length - 1
      ? html` / <span>${part}</span>`
      : html` / <a href="${ctx.paths.tree(repo.namespace, repo.name, tag, parts.slice(0, i + 1).join('/'))}">${part}</a>`,
  )}</nav>`;
}

export interface TreeListing {
  repository: Repository;
  tag: string;
  commit: Commit;
  path: string;
  /** This page of the directory's entries, by name (byte order, as the API lists them). */
  nodes: TreeNode[];
  /** The name this page starts after; null on the first page. */
  after: string | null;
  /** The name the next page starts after; null on the last page. */
  next: string | null;
}

export function treePage(ctx: PageContext, t: TreeListing): Html {
  const { paths } = ctx;
  const r = t.repository;
  const rows = t.nodes.map((n) => {
    const name =
      n.type === 'dir'
        ? html`<a href="${paths.tree(r.namespace, r.name, t.tag, n.path)}">${n.name}/</a>`
        : n.type === 'file'
          ? html`<a href="${paths.file(r.namespace, r.name, t.tag, n.path)}">${n.name}</a>`
          : html`${n.name} <span class="sub">→ ${n.linkTarget ?? ''}</span>`;
    return html`<tr><th scope="row">${name}</th><td>${n.type === 'dir' ? 'directory' : n.type}</td><td class="num">${n.type === 'file' ? bytes(n.size) : ''}</td></tr>`;
  });
  return page(ctx, {
    title: `${t.path || t.tag} · ${r.namespace}/${r.name}`,
    section: 'catalogue',
    main: html`${repositoryHeader(ctx, r, null, null)}
      ${pathCrumbs(ctx, r, t.tag, t.path)}
      <p class="sub">Tag ${t.tag} at commit <code title="${t.commit.id}">${shortId(t.commit.id)}</code> · <a href="${paths.archive(r.namespace, r.name, t.tag)}" download>Download ${t.tag} as .tar</a></p>
      ${t.nodes.length === 0 && t.after === null
        ? html`<p class="empty">This directory is empty.</p>`
        : html`<div class="table-wrap"><table>
            <caption>${t.after === null && t.next === null ? plural(t.nodes.length, 'entry', 'entries') : 'Entries'} in /${t.path}</caption>
            <thead><tr><th scope="col">Name</th><th scope="col">Type</th><th scope="col" class="num">Size</th></tr></thead>
            <tbody>${rows}</tbody></table></div>`}
      ${t.after === null && t.next === null
        ? ''
        : html`<nav class="pager" aria-label="Pages">
            ${t.after === null ? '' : html`<a href="${paths.tree(r.namespace, r.name, t.tag, t.path)}">First page</a>`}
            ${t.next === null ? '' : html`<a href="${paths.tree(r.namespace, r.name, t.tag, t.path, { after: t.next })}" rel="next">Next page</a>`}
          </nav>`}`,
  });
}

export interface FilePreview {
  repository: Repository;
  tag: string;
  path: string;
  size: number;
  mode: number;
  chunks: number;
  /** SHA-256 of the file's chunk list (the API's ETag): equal contents, equal digests. */
  digest: string;
  /** The first bytes as text; null for a binary file. */
  text: string | null;
  /** True when the file holds more than `text` shows. */
  cut: boolean;
}

export function filePage(ctx: PageContext, f: FilePreview): Html {
  const r = f.repository;
  return page(ctx, {
    title: `${f.path} · ${r.namespace}/${r.name}`,
    section: 'catalogue',
    main: html`${repositoryHeader(ctx, r, null, null)}
      ${pathCrumbs(ctx, r, f.tag, f.path)}
      <dl class="facts">
        <dt>Size</dt><dd>${bytes(f.size)} (${f.size} bytes)</dd>
        <dt>Mode</dt><dd><code>${f.mode.toString(8).padStart(4, '0')}</code></dd>
        <dt>Chunks</dt><dd>${f.chunks}</dd>
        <dt>Content digest</dt><dd><code class="digest">${f.digest}</code> <span class="sub">(SHA-256 of its chunk list)</span></dd>
      </dl>
      ${f.text === null
        ? html`<p class="empty">A binary file: its size and digest are shown above; download the tag to read it.</p>`
        : html`<h2>${f.cut ? 'First bytes' : 'Contents'}</h2><pre class="preview" tabindex="0" aria-label="Contents of ${f.path}">${f.text}</pre>
            ${f.cut ? html`<p class="sub">The file goes on beyond what is shown here.</p>` : ''}`}`,
  });
}

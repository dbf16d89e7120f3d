/** A repository's fork network: the graph, and the same nodes as a table. */
import type { Repository } from '../../../domain/model.js';
import { forkGraph, figuresText, type GraphNode } from '../fork-graph.js';
import { html, type Html } from '../html.js';
import { page, visibilityBadge, type PageContext } from '../layout.js';
import { plural } from '../format.js';
import { repositoryHeader } from './repository.js';

export interface NetworkView {
  repository: Repository;
  parent: Repository | null;
  nodes: GraphNode[];
  /** The network holds more than the page shows. */
  truncated: boolean;
  /** The most nodes a page shows, and the most whose figures it computes. */
  maxNodes: number;
  maxFigures: number;
}

export function networkPage(ctx: PageContext, v: NetworkView): Html {
  const r = v.repository;
  const byId = new Map(v.nodes.map((n) => [n.id, n]));
  const skipped = v.nodes.some((n) => n.figures.kind === 'skipped');
  const busy = v.nodes.some((n) => n.figures.kind === 'busy');
  const title = `Fork network of ${r.namespace}/${r.name}: ${plural(v.nodes.length, 'repository', 'repositories')}`;
  return page(ctx, {
    title: `Fork network · ${r.namespace}/${r.name}`,
    section: 'catalogue',
    main: html`${repositoryHeader(ctx, r, v.parent, 'network')}
      <h2>Fork network</h2>
      <p class="sub">Each box is a repository you can see; a line joins a fork to its source. A fork shows the stored bytes it
        shares with its source and those only it holds. Select a box to open that repository.</p>
      ${v.truncated ? html`<p class="notice" role="status">This network is larger than a page shows: the ${v.maxNodes} repositories nearest to ${r.namespace}/${r.name} are drawn.</p>` : ''}
      ${skipped ? html`<p class="sub">Figures are computed for the ${v.maxFigures} repositories nearest to this one; the others show theirs on their storage page.</p>` : ''}
      ${busy ? html`<p class="notice" role="status">The server is computing many storage figures right now: some boxes say when to ask again. <a href="${ctx.paths.network(r.namespace, r.name)}">Reload</a></p>` : ''}
      <figure class="graph-frame" tabindex="0" aria-label="${title}">${forkGraph(v.nodes, title)}</figure>
      <div class="table-wrap"><table class="network">
        <caption>${title}</caption>
        <thead><tr><th scope="col">Repository</th><th scope="col">Fork of</th><th scope="col">Visibility</th><th scope="col">Bytes</th></tr></thead>
        <tbody>${v.nodes.map((n) => {
          const parent = n.parentId === null ? undefined : byId.get(n.parentId);
          return html`<tr${n.focus ? html` class="focus"` : ''}>
            <th scope="row"><a href="${n.href}">${n.label}</a></th>
            <td>${parent ? html`<a href="${parent.href}">${parent.label}</a>` : '—'}</td>
            <td>${visibilityBadge(n.visibility)}</td>
            <td>${figuresText(n.figures)}</td></tr>`;
        })}</tbody>
      </table></div>`,
  });
}

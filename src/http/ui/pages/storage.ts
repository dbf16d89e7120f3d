/** Storage figures: one repository's, and the whole store's for site administrators. */
import type { Repository } from '../../../domain/model.js';
import type { RepositoryStats, StorageReport } from '../../../domain/storage-stats.service.js';
import { html, type Html } from '../html.js';
import { page, signInPrompt, type PageContext } from '../layout.js';
import { bytes, ratio } from '../format.js';
import { repositoryHeader } from './repository.js';

const figure = (label: string, value: string, hint = '') =>
  html`<div class="figure"><dt>${label}</dt><dd>${value}${hint ? html` <span class="sub">${hint}</span>` : ''}</dd></div>`;

export function repositoryStoragePage(ctx: PageContext, repo: Repository, parent: Repository | null, s: RepositoryStats): Html {
  const { paths } = ctx;
  const fork = s.fork;
  let share: Html | string = '';
  if (fork) {
    share =
      fork.source && fork.sharedBytes !== null && fork.ownBytes !== null
        ? html`<section aria-labelledby="share-heading"><h2 id="share-heading">Shared with its source</h2>
            <p>Of the ${bytes(s.storedBytes)} this fork's tags reach, <strong>${bytes(fork.sharedBytes)}</strong> are shared with
              <a href="${paths.repo(fork.source.namespace, fork.source.name)}">${fork.source.namespace}/${fork.source.name}</a> and
              <strong>${bytes(fork.ownBytes)}</strong> are its own.</p>
            <label for="shared-meter">Shared part of its stored bytes</label>
            <meter id="shared-meter" min="0" max="${Math.max(s.storedBytes, 1)}" value="${fork.sharedBytes}">${bytes(fork.sharedBytes)} of ${bytes(s.storedBytes)}</meter>
          </section>`
        : html`<p class="sub">A fork whose source you cannot see (or that was deleted): what it shares is not shown.</p>`;
  }
  return page(ctx, {
    title: `Storage · ${repo.namespace}/${repo.name}`,
    section: 'catalogue',
    main: html`${repositoryHeader(ctx, repo, parent, 'storage')}
      <h2>Storage</h2>
      <p class="sub">Over the distinct snapshots its ${s.tags} tag(s) point at now.</p>
      <dl class="figures">
        ${figure('Logical bytes', bytes(s.logicalBytes), 'the files, as pulled')}
        ${figure('Bytes stored', bytes(s.storedBytes), 'distinct chunks, compressed')}
        ${figure('Dedup ratio', ratio(s.dedupRatio))}
        ${figure('Chunks', String(s.chunks))}
        ${figure('Files', String(s.files))}
      </dl>
      ${s.exact ? '' : html`<p class="sub">Chunk figures are estimates: this repository holds more distinct chunks than are counted exactly.</p>`}
      ${share}`,
  });
}

export function storePage(ctx: PageContext, report: StorageReport | null): Html {
  let main: Html;
  if (ctx.viewer.login === null) {
    main = signInPrompt(ctx, 'The store-wide figures are for site administrators.', ctx.paths.storage());
  } else if (report === null) {
    main = html`<p class="empty">The store-wide figures are for site administrators (a token with the <code>admin</code> scope).
      Each repository's figures are on its Storage tab: open one from <a href="${ctx.paths.home()}">Repositories</a>.</p>`;
  } else {
    main = html`<dl class="figures">
        ${figure('Logical bytes', bytes(report.logicalBytes), 'every live repository’s snapshots, as pulled')}
        ${figure('Bytes stored', bytes(report.storedBytes), 'every stored chunk, compressed')}
        ${figure('Dedup ratio', ratio(report.dedupRatio))}
        ${figure('Pack bytes', bytes(report.packBytes), 'on disk, deleted chunks included until repacked')}
        ${figure('Repositories', String(report.repositories))}
        ${figure('Commits', String(report.commits))}
        ${figure('Snapshots', String(report.manifests), 'distinct manifests')}
        ${figure('Chunks', String(report.chunks))}
        ${figure('Packs', String(report.packs))}
      </dl>`;
  }
  return page(ctx, { title: 'Storage', section: 'storage', main: html`<h1>Storage of the whole store</h1>${main}` });
}

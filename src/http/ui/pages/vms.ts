/** The caller's VMs, with the actions the VM service offers on each. */
import type { Repository, Vm } from '../../../domain/model.js';
import { html, type Html } from '../html.js';
import { page, pager, postButton, signInPrompt, type PageContext } from '../layout.js';
import { shortId, when } from '../format.js';

export interface VmRow {
  vm: Vm;
  /** The repository its commit was made in, when the viewer may read it. */
  repository: Repository | null;
}

export function vmsPage(ctx: PageContext, rows: VmRow[] | null, pageNumber: number, hasNext: boolean): Html {
  const { paths } = ctx;
  let main: Html;
  if (rows === null) {
    main = signInPrompt(ctx, 'VMs belong to their namespace.', paths.vms());
  } else if (rows.length === 0) {
    main = html`<p class="empty">No VMs. Start one from a commit with <code>snapfork vm</code> or the VM API.</p>`;
  } else {
    main = html`<div class="table-wrap"><table class="vms">
      <caption>VMs of your namespace, oldest first</caption>
      <thead><tr><th scope="col">VM</th><th scope="col">State</th><th scope="col">From commit</th><th scope="col">Created</th><th scope="col">Actions</th></tr></thead>
      <tbody>${rows.map(({ vm, repository }) => {
        const label = shortId(vm.id);
        const live = vm.state === 'running' || vm.state === 'booting';
        return html`<tr>
          <th scope="row"><code title="${vm.id}">${label}</code></th>
          <td><span class="badge state-${vm.state}">${vm.state}</span></td>
          <td><code title="${vm.commitId}">${shortId(vm.commitId)}</code>${repository ? html` in <a href="${paths.repo(repository.namespace, repository.name)}">${repository.namespace}/${repository.name}</a>` : ''}</td>
          <td><time datetime="${vm.createdAt}">${when(vm.createdAt)}</time></td>
          <td class="actions">
            ${live ? postButton(ctx, paths.vmAction(vm.id, 'pause'), 'Pause', { name: `Pause VM ${label}` }) : postButton(ctx, paths.vmAction(vm.id, 'resume'), 'Resume', { name: `Resume VM ${label}` })}
            ${postButton(ctx, paths.vmAction(vm.id, 'commit'), 'Commit', { name: `Commit VM ${label}` })}
            ${postButton(ctx, paths.vmAction(vm.id, 'delete'), 'Delete', { name: `Delete VM ${label}`, danger: true, confirm: `Delete VM ${label}? Its process stops and it is gone.` })}
          </td></tr>`;
      })}</tbody></table></div>
      ${pager(pageNumber, hasNext, (n) => paths.vms({ page: n }))}`;
  }
  return page(ctx, { title: 'VMs', section: 'vms', main: html`<h1>Your VMs</h1>${main}` });
}

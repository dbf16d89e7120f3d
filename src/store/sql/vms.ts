/** VM records: what each VM was started from, its state, and its soft deletion. */
import type { Selectable } from 'kysely';
import type { Vm, VmState } from '../../domain/model.js';
import type { Executor, VmTable } from './schema.js';

export async function insertVm(db: Executor, vm: Vm): Promise<void> {
  await db.insertInto('vms').values(fromVm(vm)).execute();
}

export async function getVm(db: Executor, id: string): Promise<Vm | undefined> {
  const row = await db.selectFrom('vms').selectAll().where('id', '=', id).executeTakeFirst();
  return row && toVm(row);
}

export async function listVms(db: Executor, namespaceId: number): Promise<Vm[]> {
  const rows = await db
    .selectFrom('vms')
    .selectAll()
    .where('namespace_id', '=', namespaceId)
    .where('deleted_at', 'is', null)
    .orderBy('created_at')
    .orderBy('id')
    .execute();
  return rows.map(toVm);
}

/** Whether a live VM `id` was there to change. */
export async function setVmState(db: Executor, id: string, state: VmState): Promise<boolean> {
  const { numUpdatedRows } = await db
    .updateTable('vms')
    .set({ state })
    .where('id', '=', id)
    .where('deleted_at', 'is', null)
    .executeTakeFirstOrThrow();
  return numUpdatedRows > 0n;
}

/** Whether a live VM `id` was there to delete. */
export async function deleteVm(db: Executor, id: string, now: () => string): Promise<boolean> {
  const { numUpdatedRows } = await db
    .updateTable('vms')
    .set({ state: 'dead', deleted_at: now() })
    .where('id', '=', id)
    .where('deleted_at', 'is', null)
    .executeTakeFirstOrThrow();
  return numUpdatedRows > 0n;
}

/** The ids of `host`'s live VMs (and host-less ones) that were booting, running or paused, now dead. */
export async function markRunningVmsDead(db: Executor, host: string): Promise<string[]> {
  const rows = await db
    .updateTable('vms')
    .set({ state: 'dead' })
    .where('state', 'in', ['booting', 'running', 'paused'])
    .where('deleted_at', 'is', null)
    .where((eb) => eb.or([eb('host', '=', host), eb('host', 'is', null)]))
    .returning('id')
    .execute();
  return rows.map((r) => r.id);
}

/** Whether the live sleeping VM `id` was there to become `host`'s, booting. */
export async function claimSleepingVm(db: Executor, id: string, host: string): Promise<boolean> {
  const { numUpdatedRows } = await db
    .updateTable('vms')
    .set({ state: 'booting', host })
    .where('id', '=', id)
    .where('state', '=', 'sleeping')
    .where('deleted_at', 'is', null)
    .executeTakeFirstOrThrow();
  return numUpdatedRows > 0n;
}

const toVm = (r: Selectable<VmTable>): Vm => ({
  id: r.id,
  commitId: r.commit_id,
  repositoryId: r.repository_id,
  namespaceId: r.namespace_id,
  state: r.state,
  labels: JSON.parse(r.labels) as Record<string, string>,
  vcpuCount: r.vcpu_count,
  memSizeMib: r.mem_size_mib,
  createdAt: r.created_at,
  deletedAt: r.deleted_at,
  host: r.host,
});

const fromVm = (v: Vm): Selectable<VmTable> => ({
  id: v.id,
  commit_id: v.commitId,
  repository_id: v.repositoryId,
  namespace_id: v.namespaceId,
  state: v.state,
  labels: JSON.stringify(v.labels),
  vcpu_count: v.vcpuCount,
  mem_size_mib: v.memSizeMib,
  created_at: v.createdAt,
  deleted_at: v.deletedAt,
  host: v.host,
});

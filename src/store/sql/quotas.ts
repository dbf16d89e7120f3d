/**
 * Quotas per namespace and what counts against them: the bytes of the chunks charged to the
 * namespace (a chunk is charged once, to the namespace whose commit first referenced it, and
 * released when garbage collection removes it), its live repositories and its active VMs.
 */
import type { Selectable } from 'kysely';
import type { NamespaceQuota, QuotaLimits } from '../../domain/model.js';
import type { SqlDialect } from './dialect.js';
import { batches, digestBytes, unique } from './reachability.js';
import type { Executor, NamespaceQuotaTable } from './schema.js';

/** The VM states that hold a host's memory: what a running-VM quota counts. */
const ACTIVE_VM_STATES = ['booting', 'running', 'paused'] as const;

export async function getQuota(db: Executor, namespaceId: number): Promise<NamespaceQuota | undefined> {
  const row = await db.selectFrom('namespace_quotas').selectAll().where('namespace_id', '=', namespaceId).executeTakeFirst();
  return row && toQuota(row);
}

/** Sets the limits given in `limits` (null: back to the default), keeping the others. */
export async function setQuota(db: Executor, namespaceId: number, limits: Partial<QuotaLimits>, now: () => string): Promise<NamespaceQuota> {
  const values = {
    ...(limits.bytes !== undefined && { max_bytes: limits.bytes }),
    ...(limits.repositories !== undefined && { max_repositories: limits.repositories }),
    ...(limits.runningVms !== undefined && { max_running_vms: limits.runningVms }),
    updated_at: now(),
  };
  const row = await db
    .insertInto('namespace_quotas')
    .values({ namespace_id: namespaceId, max_bytes: null, max_repositories: null, max_running_vms: null, ...values })
    .onConflict((oc) => oc.column('namespace_id').doUpdateSet(values))
    .returningAll()
    .executeTakeFirstOrThrow();
  return toQuota(row);
}

export async function storedBytes(db: Executor, namespaceId: number): Promise<number> {
  const row = await db.selectFrom('namespace_usage').select('stored_bytes').where('namespace_id', '=', namespaceId).executeTakeFirst();
  return Number(row?.stored_bytes ?? 0);
}

/**
 * Charges to the namespace those of the chunks (digest -> size) charged to no one yet and
 * returns its stored bytes after. Run it inside the transaction that records the commit.
 */
export async function chargeChunks(db: Executor, namespaceId: number, sizes: ReadonlyMap<string, number>): Promise<number> {
  let charged = 0;
  for (const batch of batches(unique([...sizes.keys()]))) {
    const rows = await db
      .insertInto('chunk_charges')
      .values(batch.map((d) => ({ digest: digestBytes(d), namespace_id: namespaceId, size: sizes.get(d)! })))
      .onConflict((oc) => oc.column('digest').doNothing())
      .returning('size')
      .execute();
    for (const row of rows) charged += Number(row.size);
  }
  if (charged === 0) return storedBytes(db, namespaceId);
  const row = await db
    .insertInto('namespace_usage')
    .values({ namespace_id: namespaceId, stored_bytes: charged })
    .onConflict((oc) => oc.column('namespace_id').doUpdateSet((eb) => ({ stored_bytes: eb('namespace_usage.stored_bytes', '+', charged) })))
    .returning('stored_bytes')
    .executeTakeFirstOrThrow();
  return Number(row.stored_bytes);
}

/** Releases the charges of chunks no longer stored (raw 32-byte digests, one batch). */
export async function releaseCharges(db: Executor, digests: readonly Buffer[]): Promise<void> {
  if (digests.length === 0) return;
  const rows = await db.deleteFrom('chunk_charges').where('digest', 'in', digests).returning(['namespace_id', 'size']).execute();
  const released = new Map<number, number>();
  for (const row of rows) released.set(row.namespace_id, (released.get(row.namespace_id) ?? 0) + Number(row.size));
  for (const [namespaceId, bytes] of released) {
    if (bytes === 0) continue;
    await db
      .updateTable('namespace_usage')
      .set((eb) => ({ stored_bytes: eb('stored_bytes', '-', bytes) }))
      .where('namespace_id', '=', namespaceId)
      .execute();
  }
}

/**
 * The namespace's live repositories. With `lock`, first locks the namespace's row until the
 * transaction ends (where the engine has row locks), so that two creators checking a quota
 * queue instead of both passing it.
 */
export async function countRepositories(db: Executor, dialect: SqlDialect, namespaceId: number, lock: boolean): Promise<number> {
  if (lock && dialect.rowLocks) {
    await db.selectFrom('namespaces').select('id').where('id', '=', namespaceId).forUpdate().execute();
  }
  const row = await db
    .selectFrom('repositories')
    .select((eb) => eb.fn.countAll<number | string>().as('n'))
    .where('namespace_id', '=', namespaceId)
    .where('deleted_at', 'is', null)
    .executeTakeFirst();
  return Number(row?.n ?? 0);
}

/** The namespace's VMs that hold memory on some server (booting, running or paused). */
export async function countActiveVms(db: Executor, namespaceId: number): Promise<number> {
  const row = await db
    .selectFrom('vms')
    .select((eb) => eb.fn.countAll<number | string>().as('n'))
    .where('namespace_id', '=', namespaceId)
    .where('deleted_at', 'is', null)
    .where('state', 'in', ACTIVE_VM_STATES)
    .executeTakeFirst();
  return Number(row?.n ?? 0);
}

function toQuota(row: Selectable<NamespaceQuotaTable>): NamespaceQuota {
  return {
    namespaceId: row.namespace_id,
    limits: { bytes: row.max_bytes, repositories: row.max_repositories, runningVms: row.max_running_vms },
    updatedAt: row.updated_at,
  };
}

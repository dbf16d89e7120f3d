/** Site administration jobs: garbage collections and fsck runs in the background, and their outcome. */
import type { Selectable } from 'kysely';
import type { AdminJob } from '../../domain/model.js';
import type { AdminJobTable, Executor, Timestamp } from './schema.js';

export async function insertJob(db: Executor, job: AdminJob): Promise<void> {
  await db
    .insertInto('admin_jobs')
    .values({
      id: job.id,
      kind: job.kind,
      status: job.status,
      options: JSON.stringify(job.options),
      result: null,
      error: null,
      host: job.host,
      created_at: job.createdAt,
      finished_at: null,
    })
    .execute();
}

/** Records the outcome of a running job; a job finished already is left as it is. */
export async function finishJob(db: Executor, id: string, outcome: { result: unknown } | { error: string }, at: Timestamp): Promise<void> {
  await db
    .updateTable('admin_jobs')
    .set('result' in outcome ? { status: 'succeeded', result: JSON.stringify(outcome.result), finished_at: at } : { status: 'failed', error: outcome.error, finished_at: at })
    .where('id', '=', id)
    .where('status', '=', 'running')
    .execute();
}

export async function getJob(db: Executor, id: string): Promise<AdminJob | undefined> {
  const row = await db.selectFrom('admin_jobs').selectAll().where('id', '=', id).executeTakeFirst();
  return row && toJob(row);
}

/** The newest jobs first. */
export async function listJobs(db: Executor, limit: number): Promise<AdminJob[]> {
  const rows = await db.selectFrom('admin_jobs').selectAll().orderBy('created_at', 'desc').orderBy('id', 'desc').limit(limit).execute();
  return rows.map(toJob);
}

/** Fails the jobs `host` left running (it stopped before they finished); answers how many. */
export async function abandonJobs(db: Executor, host: string, at: Timestamp): Promise<number> {
  const { numUpdatedRows } = await db
    .updateTable('admin_jobs')
    .set({ status: 'failed', error: 'the server running it stopped before it finished', finished_at: at })
    .where('host', '=', host)
    .where('status', '=', 'running')
    .executeTakeFirst();
  return Number(numUpdatedRows);
}

const toJob = (r: Selectable<AdminJobTable>): AdminJob => ({
  id: r.id,
  kind: r.kind,
  status: r.status,
  options: JSON.parse(r.options) as Record<string, unknown>,
  result: r.result === null ? null : (JSON.parse(r.result) as unknown),
  error: r.error,
  host: r.host,
  createdAt: r.created_at,
  finishedAt: r.finished_at,
});

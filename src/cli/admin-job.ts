/**
 * Runs a site administration operation (garbage collection, fsck) as a server-side job and waits
 * for its report: one request starts it (`Prefer: respond-async`, 202 with the job), then the job
 * is polled. A long run on a large store so never depends on one connection staying open.
 */
import { CliError } from './errors.js';
import type { ApiClient } from './http-client.js';

/** GET /api/v1/admin/jobs/{job_id}'s answer (openapi/snapfork.yaml, AdminJob), the fields read here. */
interface AdminJob<T> {
  job_id: string;
  status: 'running' | 'succeeded' | 'failed';
  result: T | null;
  error: string | null;
}

/** The first pause between two polls; each next one is longer, up to MAX_POLL_MS. */
const FIRST_POLL_MS = 200;
const MAX_POLL_MS = 5000;

/** POSTs `json` to `path` as a job and resolves with its report; a failed job is a CliError naming why. */
export async function runAdminJob<T>(client: ApiClient, path: string, json: unknown): Promise<T> {
  const started = await client.request('POST', path, { json, headers: { prefer: 'respond-async' } });
  // A server that does not run it as a job answers the report itself.
  if (started.status !== 202) return client.readJson<T>(started);
  let job = await client.readJson<AdminJob<T>>(started);
  for (let pause = FIRST_POLL_MS; job.status === 'running'; pause = Math.min(pause * 2, MAX_POLL_MS)) {
    await new Promise((resolve) => setTimeout(resolve, pause));
    job = await client.json<AdminJob<T>>('GET', `/api/v1/admin/jobs/${encodeURIComponent(job.job_id)}`);
  }
  if (job.status === 'failed' || job.result === null) throw new CliError(`job ${job.job_id} failed: ${job.error ?? 'no report'}`);
  return job.result;
}

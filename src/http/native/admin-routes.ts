/**
 * Site administration under /api/v1/admin: operations over the whole store rather than one
 * repository, for a caller whose token holds the `admin` scope. The services check the scope
 * (AccessPolicy.requireScope: 401 without a token, 403 without the scope), as every other rule;
 * this file maps HTTP only. Each operation's answer is a report in JSON.
 */
import { type Request, type Response, Router } from 'express';
import type { AdminJob } from '../../domain/model.js';
import type { Services } from '../../domain/services.js';
import { principalOf } from '../auth.js';
import { publicBase } from '../public-url.js';
import { adminJobJson, fsckReportJson, gcReportJson, storageReportJson } from './mapping.js';

interface GcBody {
  dry_run?: boolean;
  purge_deleted?: boolean;
  grace_seconds?: number;
}

interface FsckBody {
  read_data?: boolean;
  read_data_subset?: string;
}

/** Whether the request's Prefer header asks for `respond-async` (RFC 7240). */
const prefersAsync = (req: Request) => /(^|[\s,;])respond-async($|[\s,;=])/i.test(req.get('prefer') ?? '');

/** 202 with the job, and where to read how it ends. */
function jobStarted(req: Request, res: Response, job: AdminJob): void {
  res.status(202).set({ Location: `${publicBase(req)}/api/v1/admin/jobs/${job.id}`, 'Preference-Applied': 'respond-async' }).json(adminJobJson(job));
}

/** Mounted at /api/v1/admin by the native dialect. */
export function adminRoutes(services: Services): Router {
  const router = Router();

  router.post('/gc', async (req, res) => {
    const body = (req.body ?? {}) as GcBody;
    const options = {
      dryRun: body.dry_run,
      purgeDeleted: body.purge_deleted,
      graceMs: body.grace_seconds === undefined ? undefined : body.grace_seconds * 1000,
    };
    if (prefersAsync(req)) return jobStarted(req, res, await services.jobs.startGc(principalOf(res), options));
    res.json(gcReportJson(await services.gc.collect(principalOf(res), options)));
  });

  router.post('/fsck', async (req, res) => {
    // The body is optional: no body checks the metadata and the chunk index without reading data.
    const body = (req.body ?? {}) as FsckBody;
    const options = { readData: body.read_data, readDataSubset: body.read_data_subset };
    if (prefersAsync(req)) return jobStarted(req, res, await services.jobs.startFsck(principalOf(res), options));
    res.json(fsckReportJson(await services.fsck.run(principalOf(res), options)));
  });

  router.get('/jobs', async (req, res) => {
    const limit = req.query.limit === undefined ? undefined : Number(req.query.limit);
    res.json((await services.jobs.list(principalOf(res), limit)).map(adminJobJson));
  });

  router.get('/jobs/:job_id', async (req, res) => {
    res.json(adminJobJson(await services.jobs.get(principalOf(res), req.params.job_id)));
  });

  router.get('/storage', async (_req, res) => {
    res.json(storageReportJson(await services.stats.storage(principalOf(res))));
  });

  return router;
}

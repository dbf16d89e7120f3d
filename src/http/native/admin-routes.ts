/**
 * Site administration under /api/v1/admin: operations over the whole store rather than one
 * repository, for a caller whose token holds the `admin` scope. The services check the scope
 * (AccessPolicy.requireScope: 401 without a token, 403 without the scope), as every other rule;
 * this file maps HTTP only. Each operation's answer is a report in JSON.
 */
import { Router } from 'express';
import type { Services } from '../../domain/services.js';
import { principalOf } from '../auth.js';
import { fsckReportJson, gcReportJson, storageReportJson } from './mapping.js';

interface GcBody {
  dry_run?: boolean;
  purge_deleted?: boolean;
  grace_seconds?: number;
}

interface FsckBody {
  read_data?: boolean;
  read_data_subset?: string;
}

/** Mounted at /api/v1/admin by the native dialect. */
export function adminRoutes(services: Services): Router {
  const router = Router();

  router.post('/gc', async (req, res) => {
    const body = (req.body ?? {}) as GcBody;
    const report = await services.gc.collect(principalOf(res), {
      dryRun: body.dry_run,
      purgeDeleted: body.purge_deleted,
      graceMs: body.grace_seconds === undefined ? undefined : body.grace_seconds * 1000,
    });
    res.json(gcReportJson(report));
  });

  router.post('/fsck', async (req, res) => {
    // The body is optional: no body checks the metadata and the chunk index without reading data.
    const body = (req.body ?? {}) as FsckBody;
    const report = await services.fsck.run(principalOf(res), { readData: body.read_data, readDataSubset: body.read_data_subset });
    res.json(fsckReportJson(report));
  });

  router.get('/storage', async (_req, res) => {
    res.json(storageReportJson(await services.stats.storage(principalOf(res))));
  });

  return router;
}

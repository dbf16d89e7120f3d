/**
 * Site administration under /api/v1/admin: operations over the whole store rather than one
 * repository, for a caller whose token holds the `admin` scope. The services check the scope
 * (AccessPolicy.requireScope: 401 without a token, 403 without the scope), as every other rule;
 * this file maps HTTP only. Each operation's answer is a report in JSON.
 */
import { Router } from 'express';
import type { Services } from '../../domain/services.js';
import { principalOf } from '../auth.js';
import { gcReportJson, storageReportJson } from './mapping.js';

interface GcBody {
  dry_run?: boolean;
  purge_deleted?: boolean;
  grace_seconds?: number;
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

  router.get('/storage', async (_req, res) => {
    res.json(storageReportJson(await services.stats.storage(principalOf(res))));
  });

  return router;
}

/**
 * What operators and load balancers ask: liveness, readiness and metrics. Mounted before
 * authentication and body parsing: open to anyone, cheap, never reading a body. A token sent
 * along (even a bad one) is ignored.
 */
import { Router } from 'express';
import type { Services } from '../domain/services.js';
import type { Metrics } from './metrics.js';

export function opsRoutes(services: Services, metrics: Metrics): Router {
  const router = Router();
  // The process answers: nothing else is asked, so a slow store never fails liveness.
  router.get('/healthz', (_req, res) => void res.json({ status: 'ok' }));
  router.get('/readyz', async (_req, res) => {
    const { ready, checks } = await services.health.readiness();
    res.status(ready ? 200 : 503).json({ status: ready ? 'ready' : 'unavailable', checks });
  });
  router.get('/metrics', async (_req, res) => {
    const { contentType, text } = await metrics.scrape();
    res.type(contentType).send(text);
  });
  return router;
}

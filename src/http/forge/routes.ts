/**
 * The GitHub-shaped forge dialect (seed 002) under /api/v1: `GET|POST /repos/{owner}/{repo}/forks`
 * lists a repository's forks and forks it into the caller's own namespace.
 */
import { Router, type Request } from 'express';
import type { Repository, Visibility } from '../../domain/model.js';
import type { Principal } from '../../domain/principal.js';
import type { Services } from '../../domain/services.js';
import { principalOf } from '../auth.js';
import type { Dialect } from '../dialect.js';
import { pageOf, setPageHeaders } from '../pagination.js';
import { publicBase } from '../public-url.js';
import { versErrorBody } from '../vers/routes.js';
import { forgeForkJson, forgeRepoJson } from './mapping.js';

interface CreateForkRequest {
  name?: string;
  visibility?: Visibility;
}

export const forgeDialect: Dialect = { name: 'forge', prefix: '/api/v1', routes: forgeRoutes, errorBody: versErrorBody };

const sourceOf = (req: Request) => ({ owner: String(req.params.owner), name: String(req.params.repo) });

function forgeRoutes(services: Services): Router {
  const { accounts, forks, policy, repositories } = services;
  const router = Router();

  const rowOf = async (base: string, principal: Principal, repo: Repository, source: Repository) =>
    forgeRepoJson(base, repo, await accounts.getNamespace(repo.namespace), await forks.countForks(principal, repo), source);

  router.get('/repos/:owner/:repo/forks', async (req, res) => {
    const principal = principalOf(res);
    const page = pageOf(req);
    const source = await repositories.resolve(principal, sourceOf(req));
    const { items, total } = await forks.listForks(principal, { id: source.id }, { limit: page.limit, offset: page.offset });
    setPageHeaders(req, res, page, total);
    const base = publicBase(req);
    res.json(await Promise.all(items.map((r) => rowOf(base, principal, r, source))));
  });

  router.post('/repos/:owner/:repo/forks', async (req, res) => {
    const principal = principalOf(res);
    const body = (req.body ?? {}) as CreateForkRequest;
    // Org targets are not part of this dialect yet: always the caller's own namespace.
    const { login } = policy.requireUser(principal);
    const fork = await forks.fork(principal, {
      source: sourceOf(req),
      targetNamespace: login,
      name: body.name,
      visibility: body.visibility,
    });
    res.status(201).json(forgeForkJson(publicBase(req), fork.repository, await accounts.getNamespace(login), fork.source));
  });

  return router;
}

/**
 * The Oxen dialect (seed 000), mounted at /api: `POST /api/repos/{namespace}/{repo_name}/fork`
 * forks a whole repository (all tags) into the namespace named in the body, with its polling
 * endpoint and the repository lookup Oxen's client makes first.
 */
import { Router, type Request } from 'express';
import { forbidden, isDomainError, notFound } from '../../domain/errors.js';
import type { Services } from '../../domain/services.js';
import { principalOf } from '../auth.js';
import type { Dialect } from '../dialect.js';
import { forkStartedJson, forkStatusJson, oxenErrorBody, repositoryResponseJson } from './mapping.js';

interface ForkRequest {
  namespace: string;
  new_repo_name?: string | null;
}

export const oxenDialect: Dialect = { name: 'oxen', prefix: '/api', routes: oxenRoutes, errorBody: oxenErrorBody };

const refOf = (req: Request) => ({ owner: String(req.params.namespace), name: String(req.params.repo_name) });

function oxenRoutes(services: Services): Router {
  const { accounts, forks, repositories, snapshots } = services;
  const router = Router();

  router.get('/repos/:namespace/:repo_name', async (req, res) => {
    const principal = principalOf(res);
    const { owner, name } = refOf(req);
    const { repository, tags } = await snapshots.listTags(principal, owner, name);
    const { bytes } = await snapshots.footprint(repository);
    res.json(repositoryResponseJson(repository, { size: bytes, tagCount: tags.length }));
  });

  router.post('/repos/:namespace/:repo_name/fork', async (req, res) => {
    const principal = principalOf(res);
    const body = req.body as ForkRequest;
    const source = refOf(req);
    // A missing source is 404 even when the destination is bad too, as in Oxen.
    await repositories.resolve(principal, source);
    // Oxen names no destination it cannot write to: a namespace that does not exist is one.
    await accounts.getNamespace(body.namespace).catch((e: unknown) => {
      throw isDomainError(e) && e.kind === 'not_found' ? forbidden(`no write access to namespace ${body.namespace}`) : e;
    });
    const fork = await forks.fork(principal, { source, targetNamespace: body.namespace, name: body.new_repo_name });
    res.status(202).json(forkStartedJson(fork.repository));
  });

  router.get('/repos/:namespace/:repo_name/fork/status', async (req, res) => {
    const repo = await repositories.resolve(principalOf(res), refOf(req));
    if (repo.forkedFromRepoId === null) throw notFound(`${repo.namespace}/${repo.name} is not a fork: no fork status`);
    res.json(forkStatusJson(repo));
  });

  return router;
}

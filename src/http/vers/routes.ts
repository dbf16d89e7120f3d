/**
 * The Vers dialect (seed 001): `POST /api/v1/repositories/fork` forks a tag of a repository into
 * the organization of the caller's token and boots a VM record from the new commit.
 */
import { Router } from 'express';
import type { Tag } from '../../domain/model.js';
import { reference } from '../../domain/names.js';
import type { Services } from '../../domain/services.js';
import { principalOf } from '../auth.js';

interface ForkRepositoryRequest {
  source_org: string;
  source_repo: string;
  source_tag: string;
  repo_name?: string | null;
  tag_name?: string | null;
}

export function versRoutes(services: Services): Router {
  const router = Router();

  router.post('/repositories/fork', async (req, res) => {
    const body = req.body as ForkRepositoryRequest;
    // Vers repositories are private unless made public, forks included.
    const fork = await services.forks.fork(principalOf(res), {
      source: { owner: body.source_org, name: body.source_repo },
      tags: [{ source: body.source_tag, target: body.tag_name }],
      name: body.repo_name,
      visibility: 'private',
      withVm: true,
    });
    const [tag] = fork.tags as [Tag];
    res.status(201).json({
      vm_id: fork.vm?.id,
      commit_id: tag.commitId,
      repo_name: fork.repository.name,
      tag_name: tag.name,
      reference: reference(fork.repository.name, tag.name),
    });
  });

  return router;
}

/**
 * The Vers dialect (seed 001): `POST /api/v1/repositories/fork` forks a tag of a repository into
 * the organization of the caller's token and boots a VM record from the new commit.
 */
import { Router } from 'express';
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
    const fork = await services.forks.forkTag(principalOf(res), {
      sourceOwner: body.source_org,
      sourceRepo: body.source_repo,
      sourceTag: body.source_tag,
      repoName: body.repo_name,
      tagName: body.tag_name,
      withVm: true,
    });
    res.status(201).json({
      vm_id: fork.vm?.id,
      commit_id: fork.commit.id,
      repo_name: fork.repository.name,
      tag_name: fork.tag.name,
      reference: reference(fork.repository.name, fork.tag.name),
    });
  });

  return router;
}

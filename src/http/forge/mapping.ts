import type { Namespace, Repository } from '../../domain/model.js';
import { ownerJson } from '../gitverse/mapping.js';
import { INIT_STATUS, repositoryUrls } from '../native/mapping.js';

/**
 * The forge's rows of forks of `source` (seed 002), as its fork list and fork create answer them:
 * the seed's fields, then GitHub's identifying ones (`full_name`, `owner`, the URL fields, `fork`
 * and `parent`), which GitHub clients read from a fork answer and follow instead of the
 * `/repositories/{id}` they would otherwise build from `id`. `base`: the request's public base URL.
 */
export const forgeRepoJson = (base: string, repo: Repository, owner: Namespace, forkCount: number, source: Repository) => ({
  id: repo.id,
  name: repo.name,
  owner_login: owner.name,
  owner_display_name: owner.displayName,
  description: repo.description,
  visibility: repo.visibility,
  // There are no stars yet.
  star_count: 0,
  fork_count: forkCount,
  init_status: INIT_STATUS,
  created_at: repo.createdAt,
  full_name: `${repo.namespace}/${repo.name}`,
  owner: ownerJson(base, owner),
  ...repositoryUrls(base, repo),
  fork: true,
  parent: { id: source.id, full_name: `${source.namespace}/${source.name}` },
});

/** The persisted row of a new fork, with its source and default branch (our default tag). */
export const forgeForkJson = (base: string, fork: Repository, owner: Namespace, source: Repository) => ({
  ...forgeRepoJson(base, fork, owner, 0, source),
  source_repo_id: source.id,
  default_branch: fork.defaultTag,
});

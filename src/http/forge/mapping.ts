import type { Namespace, Repository } from '../../domain/model.js';
import { INIT_STATUS } from '../native/mapping.js';

/** The forge's repository rows (seed 002), as its fork list and fork create answer them. */

export const forgeRepoJson = (repo: Repository, owner: Namespace, forkCount: number) => ({
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
});

/** The persisted row of a new fork, with its source and default branch (our default tag). */
export const forgeForkJson = (fork: Repository, owner: Namespace, source: Repository) => ({
  ...forgeRepoJson(fork, owner, 0),
  source_repo_id: source.id,
  default_branch: fork.defaultTag,
});

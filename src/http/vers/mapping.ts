import type { Request } from 'express';
import type { Commit, Page, Repository, Tag, Vm } from '../../domain/model.js';
import type { ExecLogRecord, ExecOutputRecord } from '../../domain/ports/exec-log.js';
import { reference } from '../../domain/names.js';
import { pagingInteger } from '../pagination.js';

/**
 * Domain objects as Vers' JSON (openapi/snapfork.yaml, the `Vers*` schemas). Vers keeps an unset
 * description as null where snapfork keeps an empty string.
 */

const nullIfEmpty = (s: string): string | null => (s === '' ? null : s);

/** Vers' `is_public` is our `public`; anything narrower (internal, private) is not public. */
export const isPublic = (repo: Repository) => repo.visibility === 'public';

export const repositoryInfoJson = (repo: Repository) => ({
  repo_id: repo.uuid,
  name: repo.name,
  description: nullIfEmpty(repo.description),
  is_public: isPublic(repo),
  created_at: repo.createdAt,
});

export const publicRepositoryInfoJson = (repo: Repository) => ({
  repo_id: repo.uuid,
  org_name: repo.namespace,
  name: repo.name,
  full_name: `${repo.namespace}/${repo.name}`,
  description: nullIfEmpty(repo.description),
  created_at: repo.createdAt,
});

export const tagInfoJson = (repo: Repository, tag: Tag) => ({
  tag_id: tag.id,
  tag_name: tag.name,
  commit_id: tag.commitId,
  reference: reference(repo.name, tag.name),
  description: nullIfEmpty(tag.description),
  created_at: tag.createdAt,
  updated_at: tag.updatedAt,
});

export const tagListJson = (repo: Repository, tags: readonly Tag[]) => ({
  repository: repo.name,
  tags: tags.map((t) => tagInfoJson(repo, t)),
});

/**
 * Vers' lineage runs commit -> VM -> commit: `parent_vm_id` is the VM a commit was taken from
 * and `grandparent_commit_id` "the commit that this commit's parent VM was started from". Our
 * commits are never taken from a VM (a fork boots its VM from the new commit, not the other way
 * round), so `parent_vm_id` is null and the snapshot a commit was derived from, the VM's place
 * skipped, is its first parent: the tag's previous commit for a push, the source commit for a
 * fork. That is what a Vers client walking the lineage by `grandparent_commit_id` expects.
 */
export const commitInfoJson = ({ commit, ownerId }: { commit: Commit; ownerId: number }) => ({
  commit_id: commit.id,
  name: commit.title ?? '',
  // Vers' owner_id is a string (an account id): the owning namespace's id, as text.
  owner_id: String(ownerId),
  is_public: commit.isPublic,
  created_at: commit.createdAt,
  description: nullIfEmpty(commit.description),
  parent_vm_id: commit.parentVmId ?? null,
  grandparent_commit_id: commit.parentIds[0] ?? null,
});

/** Vers' VmCommitEntity (GET /vm/commits/{id}/parents): a commit's CommitInfo, its id as `id`. */
export const vmCommitEntityJson = (owned: { commit: Commit; ownerId: number }) => {
  const { commit_id: id, ...info } = commitInfoJson(owned);
  return { id, ...info };
};

export const commitListJson = (commits: { commit: Commit; ownerId: number }[], total: number, page: Page) => ({
  commits: commits.map(commitInfoJson),
  total,
  limit: page.limit,
  offset: page.offset,
});

/** Vers answers every commit list 50 at a time by default, and every repository list whole. */
export const DEFAULT_COMMIT_LIMIT = 50;
/** One answer's bound; the rest is reached with `offset` (reported in `X-Total-Count`). */
export const MAX_LIMIT = 1000;

/** Vers' `limit` and `offset` query parameters; a larger `limit` is MAX_LIMIT. */
export function limitOffset(req: Request, defaultLimit: number): Page {
  const limit = Math.min(MAX_LIMIT, Math.max(1, pagingInteger(req, 'limit', defaultLimit)));
  return { limit, offset: Math.max(0, pagingInteger(req, 'offset', 0)) };
}

/** A VM as Vers' `VM` (list and status); `owner_id` is the owning namespace's id, as text. */
export const vmJson = (vm: Vm) => ({
  vm_id: vm.id,
  owner_id: String(vm.namespaceId),
  state: vm.state,
  created_at: vm.createdAt,
  labels: vm.labels,
});

/**
 * A VM as Vers' `VmMetadataResponse`. `ip` is null: snapfork's microVMs have no network device
 * (reach them by exec and files). `grandparent_vm_id` is null until VMs branch from VMs.
 */
export const vmMetadataJson = (vm: Vm, grandparentVmId: string | null) => ({
  vm_id: vm.id,
  owner_id: String(vm.namespaceId),
  created_at: vm.createdAt,
  state: vm.state,
  ip: null,
  vcpu_count: vm.vcpuCount,
  mem_size_mib: vm.memSizeMib,
  deleted_at: vm.deletedAt,
  parent_commit_id: vm.commitId,
  grandparent_vm_id: grandparentVmId,
});

/** An output record as Vers' `VmExecLogEntry`. */
export const execLogEntryJson = (record: ExecOutputRecord) => ({
  timestamp: record.timestamp,
  stream: record.stream,
  data_b64: record.data.toString('base64'),
  exec_id: record.execId,
});

/** A line of an exec stream: a log entry with its cursor, or the exec's exit. */
export const execStreamLineJson = (record: ExecLogRecord) =>
  record.kind === 'output'
    ? { ...execLogEntryJson(record), cursor: record.cursor }
    : { exec_id: record.execId, cursor: record.cursor, exit_code: record.exitCode, timestamp: record.timestamp };

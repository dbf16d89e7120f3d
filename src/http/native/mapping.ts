import type { CorruptProblem, FsckOptions, FsckReport, MissingProblem } from '../../domain/fsck.service.js';
import type { AdminJob, Commit, Manifest, Namespace, QuotaLimits, Repository, Tag } from '../../domain/model.js';
import type { QuotaReport } from '../../domain/quota.service.js';
import { reference } from '../../domain/names.js';
import { manifestEntryJson } from '../../lib/manifest-json.js';
import type { RepositoryView } from '../../domain/repository.service.js';
import type { PushResult, TreeNode } from '../../domain/snapshot.service.js';
import type { GcOptions, GcReport } from '../../domain/gc.service.js';
import type { RepositoryStats, StorageReport } from '../../domain/storage-stats.service.js';

/** Domain objects as the native API's JSON (openapi/snapfork.yaml, components/schemas). */

/**
 * The forge's `init_status` (seed 002), which it polls on this API's single-repository answer. A
 * fork completes before the call returns (it copies no data), so none is ever `init_pending`.
 */
export const INIT_STATUS = 'initialized';

export const orgJson = (org: Namespace) => ({
  id: org.id,
  name: org.name,
  type: 'Organization' as const,
  created_at: org.createdAt,
});

/**
 * GitHub's URL fields of a repository under /api/v1, which GitHub clients follow (PyGithub POSTs a
 * fork to `{url}/forks`, served by the forge dialect, and completes an object by GETting `url`).
 * `base`: the request's public base URL.
 */
export function repositoryUrls(base: string, repo: Repository) {
  const url = `${base}/api/v1/repos/${repo.namespace}/${repo.name}`;
  return {
    url,
    // No web interface: the page of a repository is its resource.
    html_url: url,
    forks_url: `${url}/forks`,
    tags_url: `${url}/tags`,
  };
}

/** `base`: the request's public base URL. */
export function repositoryJson(base: string, { repository: repo, owner, parent }: RepositoryView) {
  return {
    id: repo.id,
    uuid: repo.uuid,
    owner: {
      id: repo.namespaceId,
      login: repo.namespace,
      type: owner.kind === 'org' ? ('Organization' as const) : ('User' as const),
    },
    name: repo.name,
    full_name: `${repo.namespace}/${repo.name}`,
    description: repo.description,
    visibility: repo.visibility,
    private: repo.visibility === 'private',
    fork: repo.forkedFromRepoId !== null,
    parent: parent ? { id: parent.id, full_name: `${parent.namespace}/${parent.name}` } : null,
    forked_from_commit_id: repo.forkedFromCommitId,
    default_tag: repo.defaultTag,
    archived: repo.archived,
    init_status: INIT_STATUS,
    created_at: repo.createdAt,
    updated_at: repo.updatedAt,
    ...repositoryUrls(base, repo),
  };
}

export const tagJson = (repo: Repository, tag: Tag) => ({
  name: tag.name,
  commit_id: tag.commitId,
  reference: reference(repo.name, tag.name),
  created_at: tag.createdAt,
  updated_at: tag.updatedAt,
});

export const commitJson = (c: Commit) => ({
  id: c.id,
  repository_id: c.repositoryId,
  parent_ids: c.parentIds,
  manifest_digest: c.manifestDigest,
  message: c.message,
  author: c.author,
  created_at: c.createdAt,
});

export const pushJson = (p: PushResult) => ({
  commit_id: p.commit.id,
  repo_name: p.repository.name,
  tag_name: p.tag.name,
  reference: reference(p.repository.name, p.tag.name),
  files: p.files,
  bytes: p.bytes,
  new_bytes: p.newBytes,
});

export const treeJson = (n: TreeNode) => ({
  name: n.name,
  path: n.path,
  type: n.type,
  mode: n.mode,
  size: n.size,
  mtime: n.mtime,
  link_target: n.linkTarget,
});

export const manifestJson = (commit: Commit, m: Manifest) => ({
  commit_id: commit.id,
  digest: m.digest,
  entries: m.entries.map(manifestEntryJson),
});

export function gcReportJson(r: GcReport) {
  return {
    dry_run: r.dryRun,
    repositories_purged: r.repositoriesPurged,
    commits: r.commits,
    manifests: r.manifests,
    chunks: r.chunks,
    bytes: r.bytes,
    packs: r.packs,
    uploads_pruned: r.uploadsPruned,
    writes_abandoned: r.writesAbandoned,
    repacked_packs: r.repackedPacks,
    repacked_bytes: r.repackedBytes,
    seconds: r.seconds,
  };
}
const fsckProblemJson = (problem: MissingProblem | CorruptProblem) => {
  if (problem.kind !== 'size_mismatch') return problem;
  const { expectedSize, actualSize, ...rest } = problem;
  return { ...rest, expected_size: expectedSize, actual_size: actualSize };
};

/** A job's options and report in the words of the request body and the report each endpoint answers. */
export const adminJobJson = (job: AdminJob) => {
  const gc = job.kind === 'gc';
  const options = job.options as GcOptions & FsckOptions;
  return {
    job_id: job.id,
    kind: job.kind,
    status: job.status,
    options: gc
      ? { dry_run: options.dryRun ?? false, purge_deleted: options.purgeDeleted ?? false, ...(options.graceMs !== undefined && { grace_seconds: options.graceMs / 1000 }) }
      : { read_data: options.readData ?? false, ...(options.readDataSubset !== undefined && { read_data_subset: options.readDataSubset }) },
    result: job.result === null ? null : gc ? gcReportJson(job.result as GcReport) : fsckReportJson(job.result as FsckReport),
    error: job.error,
    host: job.host,
    created_at: job.createdAt,
    finished_at: job.finishedAt,
  };
};

export const fsckReportJson = (report: FsckReport) => ({
  ok: report.ok,
  read_data: report.readData,
  read_data_subset: report.readDataSubset,
  commits_checked: report.commitsChecked,
  manifests_checked: report.manifestsChecked,
  references_checked: report.referencesChecked,
  chunks_checked: report.chunksChecked,
  missing: report.missing.map(fsckProblemJson),
  missing_total: report.missingTotal,
  corrupt: report.corrupt.map(fsckProblemJson),
  corrupt_total: report.corruptTotal,
  seconds: report.seconds,
});

export const storageReportJson = (r: StorageReport) => ({
  repositories: r.repositories,
  commits: r.commits,
  manifests: r.manifests,
  chunks: r.chunks,
  packs: r.packs,
  logical_bytes: r.logicalBytes,
  stored_bytes: r.storedBytes,
  pack_bytes: r.packBytes,
  dedup_ratio: r.dedupRatio,
});

const quotaLimitsJson = (l: QuotaLimits) => ({ bytes: l.bytes, repositories: l.repositories, running_vms: l.runningVms });

export const quotaReportJson = (r: QuotaReport) => ({
  namespace: r.namespace.name,
  limits: quotaLimitsJson(r.limits),
  overrides: quotaLimitsJson(r.overrides),
  usage: { bytes: r.usage.bytes, repositories: r.usage.repositories, running_vms: r.usage.runningVms },
});

/** A quota change as the domain takes it: only the limits the body names. */
export const quotaLimitsInput = (body: { bytes?: number | null; repositories?: number | null; running_vms?: number | null }): Partial<QuotaLimits> => ({
  ...(body.bytes !== undefined && { bytes: body.bytes }),
  ...(body.repositories !== undefined && { repositories: body.repositories }),
  ...(body.running_vms !== undefined && { runningVms: body.running_vms }),
});

export const repositoryStatsJson = (s: RepositoryStats) => ({
  logical_bytes: s.logicalBytes,
  stored_bytes: s.storedBytes,
  dedup_ratio: s.dedupRatio,
  chunks: s.chunks,
  files: s.files,
  tags: s.tags,
  exact: s.exact,
  ...(s.fork && {
    source: s.fork.source && `${s.fork.source.namespace}/${s.fork.source.name}`,
    shared_bytes: s.fork.sharedBytes,
    own_bytes: s.fork.ownBytes,
  }),
});

import type { Repository } from '../../domain/model.js';
import type { HttpError } from '../errors.js';

/** Oxen's JSON shapes (liboxen `view::StatusMessage`, `RepositoryResponse`, `ForkStatusResponse`). */

/** The oxen-server release whose API this dialect speaks (seed 000). */
export const OXEN_VERSION = '0.50.0';
/**
 * The repository format version Oxen's client accepts (its `MinOxenVersion::LATEST`); it rejects
 * any string it does not know, so this is not the server's version.
 */
const MIN_VERSION = '0.36.0';

/** Oxen's `status_message` vocabulary (liboxen `view::http`); other kinds keep their own name. */
const REASON: Partial<Record<HttpError['kind'], string>> = {
  invalid: 'bad_request',
  not_found: 'resource_not_found',
  conflict: 'conflict',
  internal: 'internal_server_error',
  corrupt: 'internal_server_error',
};

/**
 * Oxen's `StatusMessageDescription`: the client shows `status_description` when present, so
 * the reason a request failed reaches the user.
 */
export const oxenErrorBody = (e: HttpError) => ({
  status: 'error' as const,
  status_message: REASON[e.kind] ?? e.kind,
  oxen_version: OXEN_VERSION,
  status_description: e.message,
});

/**
 * A `StatusMessage` of success plus the `ForkStartResponse` fields oxen-server answered with, so
 * that clients reading either shape find what they expect. Our fork is complete on return.
 */
export const forkStartedJson = (fork: Repository) => ({
  status: 'success' as const,
  status_message: 'resource_created',
  oxen_version: OXEN_VERSION,
  repository: `${fork.namespace}/${fork.name}`,
  fork_status: 'complete' as const,
});

/** `ForkStatusResponse` of a fork: complete as soon as it exists, since forking copies nothing. */
export const forkStatusJson = (fork: Repository) => ({
  repository: `${fork.namespace}/${fork.name}`,
  status: 'complete' as const,
  progress: null,
  error: null,
});

export interface RepositoryFacts {
  /** Bytes of file content under the default tag (Oxen's size of `main`). */
  size: number;
  /** Tags stand in for Oxen's branches. */
  tagCount: number;
}

/**
 * Oxen's `StorageKind` of a repository: where its version files live. Ours are in the embedded
 * chunk store, a local directory (storage/README.md).
 */
const STORAGE_KIND = 'local';

/**
 * `RepositoryDataTypesResponse` of `GET /api/repos/{namespace}/{repo_name}`. liboxen's client
 * reads `repository` as its `RepositoryView`, whose `namespace`, `name`, `is_empty`,
 * `storage_kind` and `min_version` it requires ("Could not deserialize repository" otherwise).
 */
export const repositoryResponseJson = (repo: Repository, facts: RepositoryFacts) => ({
  status: 'success' as const,
  status_message: 'resource_found',
  oxen_version: OXEN_VERSION,
  repository: {
    namespace: repo.namespace,
    name: repo.name,
    size: facts.size,
    // Files are not classified by type (image, tabular, ...) here.
    data_types: [],
    min_version: MIN_VERSION,
    is_empty: facts.tagCount === 0,
    storage_kind: STORAGE_KIND,
    branch_count: facts.tagCount,
  },
});

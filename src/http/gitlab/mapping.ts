/**
 * GitLab's shapes (seed 003) over snapfork's model: a repository is a GitLab project (`path` is
 * our URL name, `name` our display name), a tag is a branch, a namespace is a user or a group.
 */
import { invalid, isDomainError } from '../../domain/errors.js';
import type { ForkInput } from '../../domain/fork.service.js';
import type { Namespace, Repository, Visibility } from '../../domain/model.js';
import type { RepositoryRef, RepositoryView } from '../../domain/repository.service.js';
import type { ForkOrder, ForkQuery } from '../../store/types.js';

/**
 * Project fields with no snapfork counterpart, set to what GitLab answers for a project without
 * the feature: snapfork has no issues, merge requests, CI, wiki, snippets, registry, packages,
 * pages, stars, topics, avatars, rendered READMEs or access requests. The one place these live.
 */
export const ABSENT_FEATURES = {
  /** In every project shape, `simple=true` included. */
  basic: {
    tag_list: [] as string[],
    topics: [] as string[],
    readme_url: null,
    avatar_url: null,
    star_count: 0,
    // No SSH transport: GitLab always has one, so there is no "absent" value to copy; null says so.
    ssh_url_to_repo: null,
  },
  /** In the full project shape only. */
  full: {
    issues_enabled: false,
    merge_requests_enabled: false,
    jobs_enabled: false,
    wiki_enabled: false,
    snippets_enabled: false,
    can_create_merge_request_in: false,
    resolve_outdated_diff_discussions: false,
    container_registry_enabled: false,
    container_registry_access_level: 'disabled',
    security_and_compliance_access_level: 'disabled',
    issues_access_level: 'disabled',
    merge_requests_access_level: 'disabled',
    builds_access_level: 'disabled',
    wiki_access_level: 'disabled',
    snippets_access_level: 'disabled',
    pages_access_level: 'disabled',
    packages_enabled: false,
    service_desk_enabled: false,
    lfs_enabled: false,
    shared_runners_enabled: false,
    group_runners_enabled: false,
    public_jobs: false,
    shared_with_groups: [] as unknown[],
    only_allow_merge_if_pipeline_succeeds: false,
    allow_merge_on_skipped_pipeline: false,
    only_allow_merge_if_all_discussions_are_resolved: false,
    remove_source_branch_after_merge: false,
    request_access_enabled: false,
    merge_method: 'merge',
    squash_option: 'default_off',
    autoclose_referenced_issues: false,
    enforce_auth_checks_on_uploads: true,
    suggestion_commit_message: null,
    merge_commit_template: null,
    squash_commit_template: null,
    import_url: null,
    import_type: null,
    import_error: null,
  },
} as const;

/** What a project's JSON needs beside its view: the visible fork count and this server's public base. */
export interface ProjectFacts {
  view: RepositoryView;
  forksCount: number;
  /** The request's public base URL (http/public-url.ts), so every URL works against this server. */
  base: string;
}

const repoUrl = (base: string, repo: Repository) => `${base}/api/v1/repos/${repo.namespace}/${repo.name}`;

export function namespaceJson(ns: Namespace, base: string) {
  const kind = ns.kind === 'org' ? 'group' : 'user';
  return {
    id: ns.id,
    name: ns.displayName,
    path: ns.name,
    kind,
    full_path: ns.name,
    parent_id: null,
    avatar_url: null,
    web_url: `${base}/api/v1/${kind === 'group' ? 'orgs' : 'users'}/${ns.name}/repos`,
  };
}

/** GitLab's BasicProjectDetails: the `simple=true` shape and the one `forked_from_project` uses. */
export function simpleProjectJson({ view: { repository: repo, owner }, forksCount, base }: ProjectFacts) {
  // No HTML pages or git transport here: both URLs lead to the repository's native resource,
  // from which its tags and archives are reached.
  const url = repoUrl(base, repo);
  return {
    id: repo.id,
    description: repo.description,
    name: repo.displayName,
    name_with_namespace: `${owner.displayName} / ${repo.displayName}`,
    path: repo.name,
    path_with_namespace: `${repo.namespace}/${repo.name}`,
    created_at: repo.createdAt,
    default_branch: repo.defaultTag,
    visibility: repo.visibility,
    http_url_to_repo: url,
    web_url: url,
    forks_count: forksCount,
    last_activity_at: repo.updatedAt,
    namespace: namespaceJson(owner, base),
    ...ABSENT_FEATURES.basic,
  };
}

/** GitLab's full Project entity; `forked_from_project` only when the caller may see the source. */
export function projectJson(facts: ProjectFacts, forkedFrom: ReturnType<typeof simpleProjectJson> | null) {
  const { repository: repo, owner } = facts.view;
  const { base } = facts;
  return {
    ...simpleProjectJson(facts),
    ...ABSENT_FEATURES.full,
    updated_at: repo.updatedAt,
    archived: repo.archived,
    // A fork is complete when the call returns: there is never an import under way.
    import_status: repo.forkedFromRepoId === null ? 'none' : 'finished',
    ...(owner.kind === 'user'
      ? { owner: { id: owner.id, username: owner.name, name: owner.displayName, state: 'active', avatar_url: null, web_url: namespaceJson(owner, base).web_url } }
      : {}),
    ...(forkedFrom ? { forked_from_project: forkedFrom } : {}),
    _links: {
      self: `${base}/api/v4/projects/${repo.id}`,
      repo_branches: `${repoUrl(base, repo)}/tags`,
    },
  };
}

/** `:id` as GitLab takes it: an integer id or a URL-encoded `namespace/project` path. */
export function projectRef(id: string): RepositoryRef | undefined {
  if (/^\d+$/.test(id)) return { id: Number(id) };
  const slash = id.lastIndexOf('/');
  return slash > 0 ? { owner: id.slice(0, slash), name: id.slice(slash + 1) } : undefined;
}

// Grape's Boolean coercion accepts these spellings (python-gitlab sends `True`/`False`).
const TRUE = new Set(['1', 't', 'true', 'y', 'yes', 'on']);
const FALSE = new Set(['0', 'f', 'false', 'n', 'no', 'off']);

/** A GitLab boolean from a query string, a form field or JSON; openapi/ has checked the spelling. */
export function flag(value: unknown): boolean | undefined {
  if (typeof value === 'boolean') return value;
  if (typeof value !== 'string') return undefined;
  const v = value.toLowerCase();
  return TRUE.has(v) ? true : FALSE.has(v) ? false : undefined;
}

/** POST /projects/:id/fork, as JSON or form fields (so numbers may arrive as strings). */
export interface GitlabForkBody {
  branches?: string;
  description?: string;
  /** Accepted and ignored: snapfork has no merge requests for it to steer. */
  mr_default_target_self?: boolean | string;
  name?: string;
  namespace_id?: number | string;
  namespace_path?: string;
  namespace?: number | string;
  path?: string;
  visibility?: Visibility;
}

/** Which namespace the body names, by id or path, in GitLab's order of precedence. */
export function targetRef(body: GitlabForkBody): { id: number } | { path: string } | undefined {
  if (body.namespace_id !== undefined && body.namespace_id !== '') return { id: Number(body.namespace_id) };
  if (body.namespace_path) return { path: body.namespace_path };
  const ns = body.namespace;
  if (ns === undefined || ns === '') return undefined;
  return typeof ns === 'number' || /^\d+$/.test(ns) ? { id: Number(ns) } : { path: ns };
}

/**
 * The domain's fork input. As GitLab's ForkService does, an omitted `path` keeps the source's
 * path and an omitted `name` keeps the source's name (the path is not derived from the name).
 */
export function forkInputOf(source: Repository, body: GitlabForkBody, target: Namespace | undefined): ForkInput {
  const branches = body.branches?.split(',').map((b) => b.trim()).filter((b) => b !== '') ?? [];
  return {
    source: { id: source.id },
    tags: branches.length > 0 ? branches.map((b) => ({ source: b })) : undefined,
    targetNamespace: target?.name,
    name: body.path || undefined,
    displayName: body.name || source.displayName,
    description: body.description,
    visibility: body.visibility,
  };
}

/**
 * GitLab's model validation errors, `{field: [reasons]}`, for a domain error whose details name
 * the fields it is about: taken names (our `displayName` is GitLab's `name`, our `name` its
 * `path`) and a visibility wider than the fork source's. Undefined for any other error.
 */
export function validationErrors(e: unknown): Record<string, string[]> | undefined {
  if (!isDomainError(e) || e.details === undefined) return undefined;
  const { taken, field, visibility } = e.details;
  if (e.kind === 'conflict' && Array.isArray(taken)) {
    return {
      ...(taken.includes('displayName') ? { name: ['has already been taken'] } : {}),
      ...(taken.includes('name') ? { path: ['has already been taken'] } : {}),
    };
  }
  if (e.kind === 'unprocessable' && field === 'visibility') {
    return { visibility_level: [`${String(visibility)} is not allowed since the fork source project has lower visibility.`] };
  }
  return undefined;
}

/** GitLab's access levels: owners of a namespace have 50, other members 30 (Developer). */
export const ACCESS_LEVEL = { owner: 50, member: 30 } as const;

/** The fork-list query string after openapi/ has checked it (strings, `per_page`/`page` numbers). */
export type ForksQueryString = Record<string, string | undefined>;

/**
 * The filters of GET /projects/:id/forks the store answers directly. `updated_*` become
 * canonical ISO strings since the store compares timestamps as strings.
 */
export function forkFilters(q: ForksQueryString): Omit<ForkQuery, 'viewer' | 'limit' | 'offset' | 'namespaceIds'> {
  return {
    archived: flag(q.archived),
    visibility: q.visibility as Visibility | undefined,
    search: q.search || undefined,
    updatedAfter: instant(q, 'updated_after'),
    updatedBefore: instant(q, 'updated_before'),
    orderBy: q.order_by as ForkOrder | undefined,
    sort: q.sort as 'asc' | 'desc' | undefined,
  };
}

function instant(q: ForksQueryString, name: string): string | undefined {
  const value = q[name];
  if (value === undefined || value === '') return undefined;
  const t = new Date(value);
  if (Number.isNaN(t.getTime())) throw invalid(`${name} is invalid`);
  return t.toISOString();
}

/**
 * Filters on features snapfork lacks: no project is starred or has issues or merge requests
 * enabled, so asking for those is truthfully answered with an empty list.
 */
export const asksForAbsentFeature = (q: ForksQueryString) =>
  flag(q.starred) === true || flag(q.with_issues_enabled) === true || flag(q.with_merge_requests_enabled) === true;

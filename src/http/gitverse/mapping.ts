import type { Namespace, Repository } from '../../domain/model.js';

/** Domain objects as GitVerse's JSON (seed 004, `response.Repository`), with URLs on this server. */

/** The caller's rights on a repository, as GitHub-shaped forges report them. */
export interface Permissions {
  admin: boolean;
  push: boolean;
  pull: boolean;
}

/** A repository with everything its JSON shows beside its own row, gathered by the router. */
export interface RepositoryFacts {
  repository: Repository;
  owner: Namespace;
  /** The source of a fork when the caller may see it (itself without a parent). */
  parent: RepositoryFacts | null;
  forks: number;
  /** Bytes of file content in the default tag's snapshot. */
  bytes: number;
  lastCommitAt: string | null;
  permissions: Permissions;
}

/**
 * GitHub's default branch of an empty repository. snapfork has none until the first push, which
 * names the default tag, as GitHub's first push names the default branch.
 */
const UNBORN_DEFAULT_BRANCH = 'main';

export function ownerJson(base: string, ns: Namespace) {
  const url = `${base}/users/${ns.name}`;
  return {
    login: ns.name,
    id: ns.id,
    type: ns.kind === 'org' ? ('Organization' as const) : ('User' as const),
    site_admin: false,
    url,
    // No web interface: the profile page is the API resource.
    html_url: url,
    avatar_url: `${base}/avatars/${ns.name}`,
    followers_url: `${url}/followers`,
    following_url: `${url}/following{/other_user}`,
    organizations_url: `${url}/orgs`,
    repos_url: `${url}/repos`,
  };
}

/** One level only: a parent is shown without its own parent, as GitHub does. */
function repositoryFields(base: string, facts: RepositoryFacts) {
  const { repository: r } = facts;
  const url = `${base}/repos/${r.namespace}/${r.name}`;
  const branch = r.defaultTag ?? UNBORN_DEFAULT_BRANCH;
  // Snapshots are cloned and browsed through the native API: the tar of the default tag.
  const snapshot = `${base}/api/v1/repos/${r.namespace}/${r.name}/tags/${branch}`;
  return {
    id: r.id,
    name: r.name,
    full_name: `${r.namespace}/${r.name}`,
    owner: ownerJson(base, facts.owner),
    // GitHub reports internal repositories as private too; `visibility` tells them apart.
    private: r.visibility !== 'public',
    visibility: r.visibility,
    description: r.description === '' ? null : r.description,
    fork: r.forkedFromRepoId !== null,
    url,
    html_url: url,
    clone_url: `${snapshot}/archive`,
    // snapfork speaks HTTPS only.
    ssh_url: `${snapshot}/archive`,
    contents_url: `${snapshot}/tree{?path}`,
    forks_url: `${url}/forks`,
    issues_url: `${url}/issues{/number}`,
    issue_comment_url: `${url}/issues/comments{/number}`,
    pulls_url: `${url}/pulls{/number}`,
    languages_url: `${url}/languages`,
    mirror_url: null,
    created_at: r.createdAt,
    updated_at: r.updatedAt,
    pushed_at: facts.lastCommitAt ?? r.createdAt,
    default_branch: branch,
    size: Math.ceil(facts.bytes / 1024),
    forks: facts.forks,
    forks_count: facts.forks,
    // Stars, watchers, issues, pull requests, wikis and merges do not exist in snapfork.
    stargazers_count: 0,
    watchers: 0,
    watchers_count: 0,
    open_issues: 0,
    open_issues_count: 0,
    has_issues: false,
    has_wiki: false,
    allow_merge_commit: false,
    allow_rebase_merge: false,
    allow_squash_merge: false,
    delete_branch_on_merge: false,
    archived: r.archived,
    disabled: false,
    is_template: false,
    language: null,
    topics: [] as string[],
    permissions: facts.permissions,
  };
}

export function repositoryJson(base: string, facts: RepositoryFacts) {
  const fields = repositoryFields(base, facts);
  return facts.parent ? { ...fields, parent: repositoryFields(base, facts.parent) } : fields;
}

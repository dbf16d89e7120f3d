import { forbidden, notFound, unauthorized, unprocessable } from './errors.js';
import { VISIBILITY_RANK, type Commit, type Namespace, type Repository, type Role, type Visibility } from './model.js';
import type { Principal, Scope, UserPrincipal } from './principal.js';
import type { NamespaceStore, RepositoryStore, TagStore, ViewerFilter } from '../store/types.js';

/** What access decisions read. */
type AccessStore = Pick<NamespaceStore, 'getRole' | 'listMemberships'> & Pick<RepositoryStore, 'getRepositoryRecord'> & Pick<TagStore, 'foreignPrivateTags' | 'foreignTaggers'>;

/**
 * Who may do what. Reads: anyone may read a public repository, any signed-in user an internal
 * one, members of the owning namespace a private one; a repository the caller may not read is
 * reported as missing (404), never as forbidden, so its existence does not leak. Writes need the
 * `repo:write` scope and a role in the owning namespace; administration (delete, visibility,
 * archive, membership) needs ownership. The `admin` scope is a site administrator.
 *
 * Data never widens: a repository can never be more visible than any repository whose data it
 * inherits (a fork's source, that one's source, and so on), nor than the repository a non-public
 * commit its tag points at was made in (Vers tags any readable commit), checked when a fork is
 * made, a tag is set, a visibility widens and a commit stops being public. A fork link made after
 * the fact inherits nothing, so it is not bound.
 */
export class AccessPolicy {
  constructor(private readonly store: AccessStore) {}

  /** This policy reading through `tx`, for a check that must hold when the write it guards lands. */
  within(tx: AccessStore): AccessPolicy {
    return new AccessPolicy(tx);
  }

  /** The caller's role in a namespace: `owner` of their own user namespace. */
  async roleIn(principal: Principal, namespaceId: number): Promise<Role | undefined> {
    if (principal.kind !== 'user') return undefined;
    if (principal.userId === namespaceId) return 'owner';
    return this.store.getRole(namespaceId, principal.userId);
  }

  requireUser(principal: Principal): UserPrincipal {
    if (principal.kind !== 'user') throw unauthorized('authentication required');
    return principal;
  }

  requireScope(principal: Principal, scope: Scope): UserPrincipal {
    const user = this.requireUser(principal);
    if (!user.scopes.has(scope) && !user.scopes.has('admin')) {
      throw forbidden(`token lacks the ${scope} scope`);
    }
    return user;
  }

  /** Which repositories the caller may see, as a filter a store applies to listings. */
  async viewerFilter(principal: Principal): Promise<ViewerFilter> {
    if (principal.kind !== 'user') return { visibilities: ['public'], namespaceIds: [] };
    if (principal.scopes.has('admin')) return 'all';
    const orgs = await this.store.listMemberships(principal.userId);
    return { visibilities: ['public', 'internal'], namespaceIds: [principal.userId, ...orgs.map((m) => m.org.id)] };
  }

  async canRead(principal: Principal, repo: Repository): Promise<boolean> {
    if (repo.visibility === 'public') return true;
    if (principal.kind !== 'user') return false;
    if (repo.visibility === 'internal' || principal.scopes.has('admin')) return true;
    return (await this.roleIn(principal, repo.namespaceId)) !== undefined;
  }

  /**
   * Whether the caller may read the commits of a repository by id: as canRead while it lives;
   * once deleted (its commits stay), only members of its namespace and administrators may.
   */
  async canReadCommitsOf(principal: Principal, record: { repository: Repository; deletedAt: string | null }): Promise<boolean> {
    if (record.deletedAt === null) return this.canRead(principal, record.repository);
    if (principal.kind !== 'user') return false;
    return principal.scopes.has('admin') || (await this.roleIn(principal, record.repository.namespaceId)) !== undefined;
  }

  /**
   * The widest visibility a repository holding the data of `source` may have: the narrowest of
   * `source` and of every repository whose data it inherits, deleted ones included.
   */
  async visibilityLimit(source: Repository): Promise<Visibility> {
    let limit = source.visibility;
    // The chain is set at creation towards older rows only, so it ends.
    for (let id = source.inheritsFromRepoId; id !== null; ) {
      const record = await this.store.getRepositoryRecord(id);
      if (!record) break;
      if (isWider(limit, record.repository.visibility)) limit = record.repository.visibility;
      id = record.repository.inheritsFromRepoId;
    }
    return limit;
  }

  /**
   * The widest visibility a repository whose tag points at `commit` may have: any when the commit
   * is public (anyone may read it anyway) or was made in `repositoryId` itself, else the
   * visibilityLimit of the repository it was made in, deleted or not.
   */
  async tagLimit(repositoryId: number, commit: Commit): Promise<Visibility> {
    if (commit.isPublic || commit.repositoryId === repositoryId) return 'public';
    return this.limitOf(commit.repositoryId);
  }

  /**
   * Throws `unprocessable` (`details.field` `commit_id`) unless `repository` may point a tag at
   * `commit` (see tagLimit).
   */
  async assertMayTag(repository: Repository, commit: Commit): Promise<void> {
    const limit = await this.tagLimit(repository.id, commit);
    if (isWider(repository.visibility, limit)) {
      throw unprocessable(
        `a ${repository.visibility} repository cannot tag commit ${commit.id}: its data may be at most ${limit} until the commit is made public`,
        { field: 'commit_id', visibility: repository.visibility, limit },
      );
    }
  }

  /**
   * Throws `unprocessable` (`details.field` `visibility`) when `repository` may not become
   * `visibility`: wider than the data it inherits, or than the data of a non-public commit made
   * elsewhere that one of its tags points at (`details.tag` names one).
   */
  async assertMayBecome(repository: Repository, visibility: Visibility): Promise<void> {
    if (repository.inheritsFromRepoId !== null) {
      this.assertVisibilityWithin(visibility, await this.limitOf(repository.inheritsFromRepoId));
    }
    for (const { tagName, sourceRepositoryId } of await this.store.foreignPrivateTags(repository.id)) {
      this.assertVisibilityWithin(visibility, await this.limitOf(sourceRepositoryId), `the commit tag ${tagName} points at`, { tag: tagName });
    }
  }

  /**
   * Throws `unprocessable` (`details.field` `is_public`) when `commit` may not stop being public:
   * while a tag of a repository wider than the commit's data may be (tagLimit) points at it.
   */
  async assertMayUnpublish(commit: Commit): Promise<void> {
    const limit = await this.limitOf(commit.repositoryId);
    for (const { repository, tagName } of await this.store.foreignTaggers(commit.id)) {
      if (isWider(repository.visibility, limit)) {
        const tagged = `${repository.namespace}/${repository.name}:${tagName}`;
        throw unprocessable(
          `commit ${commit.id} must stay public while ${tagged}, a ${repository.visibility} repository, points at it: its data may be at most ${limit}`,
          { field: 'is_public', tag: tagged, visibility: repository.visibility, limit },
        );
      }
    }
  }

  /**
   * Throws `unprocessable` when `visibility` is wider than `limit` (see visibilityLimit), with
   * `details` naming the field, so that a dialect can answer in its own validation shape.
   */
  assertVisibilityWithin(
    visibility: Visibility,
    limit: Visibility,
    data = 'the data this repository is forked from',
    details: Record<string, unknown> = {},
  ): void {
    if (isWider(visibility, limit)) {
      throw unprocessable(`visibility ${visibility} is wider than ${limit}, the visibility of ${data}`, {
        field: 'visibility',
        visibility,
        limit,
        ...details,
      });
    }
  }

  /** The visibilityLimit of a repository by id, live or deleted (commits and forks outlive it). */
  private async limitOf(repositoryId: number): Promise<Visibility> {
    const record = await this.store.getRepositoryRecord(repositoryId);
    if (!record) throw notFound(`repository ${repositoryId} not found`);
    return this.visibilityLimit(record.repository);
  }

  /** Throws `not_found` unless the caller may read the repository; checks the read scope. */
  async assertRead(principal: Principal, repo: Repository | undefined, what: string): Promise<Repository> {
    if (!repo || !(await this.canRead(principal, repo))) throw notFound(`${what} not found`);
    if (principal.kind === 'user') this.requireScope(principal, 'repo:read');
    return repo;
  }

  /** Throws unless the caller may create or change repositories in the namespace. */
  async assertWriteIn(principal: Principal, namespace: Namespace): Promise<UserPrincipal> {
    const user = this.requireScope(principal, 'repo:write');
    if (user.scopes.has('admin')) return user;
    if ((await this.roleIn(user, namespace.id)) === undefined) {
      throw forbidden(`no write access to namespace ${namespace.name}`);
    }
    return user;
  }

  /** Throws unless the caller owns the namespace (or is a site administrator). */
  async assertOwnerOf(principal: Principal, namespace: Namespace): Promise<UserPrincipal> {
    const user = this.requireScope(principal, 'repo:write');
    if (user.scopes.has('admin')) return user;
    if ((await this.roleIn(user, namespace.id)) !== 'owner') {
      throw forbidden(`only an owner of ${namespace.name} may do this`);
    }
    return user;
  }
}

const isWider = (visibility: Visibility, limit: Visibility) => VISIBILITY_RANK[visibility] > VISIBILITY_RANK[limit];

import { forbidden, notFound, unauthorized, unprocessable } from './errors.js';
import { VISIBILITY_RANK, type Namespace, type Repository, type Role, type Visibility } from './model.js';
import type { Principal, Scope, UserPrincipal } from './principal.js';
import type { MetadataStore, ViewerFilter } from '../store/types.js';

/**
 * Who may do what. Reads: anyone may read a public repository, any signed-in user an internal
 * one, members of the owning namespace a private one; a repository the caller may not read is
 * reported as missing (404), never as forbidden, so its existence does not leak. Writes need the
 * `repo:write` scope and a role in the owning namespace; administration (delete, visibility,
 * archive, membership) needs ownership. The `admin` scope is a site administrator.
 *
 * Data never widens: a repository can never be more visible than any repository whose data it
 * inherits (a fork's source, that one's source, and so on), checked when a fork is made and when
 * a visibility widens. A fork link made after the fact inherits nothing, so it is not bound.
 */
export class AccessPolicy {
  constructor(private readonly store: MetadataStore) {}

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
      if (VISIBILITY_RANK[record.repository.visibility] < VISIBILITY_RANK[limit]) limit = record.repository.visibility;
      id = record.repository.inheritsFromRepoId;
    }
    return limit;
  }

  /**
   * Throws `unprocessable` when `visibility` is wider than `limit` (see visibilityLimit), with
   * `details` naming the field, so that a dialect can answer in its own validation shape.
   */
  assertVisibilityWithin(visibility: Visibility, limit: Visibility): void {
    if (VISIBILITY_RANK[visibility] > VISIBILITY_RANK[limit]) {
      throw unprocessable(`visibility ${visibility} is wider than ${limit}, the visibility of the data this repository is forked from`, {
        field: 'visibility',
        visibility,
        limit,
      });
    }
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

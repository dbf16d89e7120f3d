import { forbidden, notFound, unauthorized } from './errors.js';
import type { Namespace, Repository, Role } from './model.js';
import type { Principal, Scope, UserPrincipal } from './principal.js';
import type { MetadataStore, ViewerFilter } from '../store/types.js';

/**
 * Who may do what. Reads: anyone may read a public repository, any signed-in user an internal
 * one, members of the owning namespace a private one; a repository the caller may not read is
 * reported as missing (404), never as forbidden, so its existence does not leak. Writes need the
 * `repo:write` scope and a role in the owning namespace; administration (delete, visibility,
 * archive, membership) needs ownership. The `admin` scope is a site administrator.
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

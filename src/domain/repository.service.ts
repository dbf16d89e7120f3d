import { conflict, type DomainError, notFound, unprocessable } from './errors.js';
import type { Namespace, Page, PageOf, Repository, Visibility } from './model.js';
import { assertRepositoryName, assertTagName } from './names.js';
import type { AccessPolicy } from './access-policy.js';
import type { Principal } from './principal.js';
import type { QuotaService } from './quota.service.js';
import type { MetadataStore, RepositoryNameField, RepositoryPatch } from '../store/types.js';

export interface CreateRepositoryInput {
  name: string;
  visibility?: Visibility;
  description?: string;
}

/** A repository named by owner and name, or by its integer id. */
export type RepositoryRef = { owner: string; name: string } | { id: number };

export interface RepositoryView {
  repository: Repository;
  owner: Namespace;
  parent: Repository | null;
}

/** Private by default: datasets and VM images are rarely meant for everyone on first push. */
export const DEFAULT_VISIBILITY: Visibility = 'private';

/**
 * The `conflict` of names another live repository of `namespace` holds (MetadataStore.takenNames):
 * `details.taken` lists the fields, so that a dialect can say which one clashes.
 */
export function namesTaken(namespace: string, names: { name?: string; displayName?: string }, taken: RepositoryNameField[]): DomainError {
  const reasons = taken.map((field) =>
    field === 'name' ? `repository ${namespace}/${names.name} already exists` : `a repository of ${namespace} is already titled "${names.displayName}"`,
  );
  return conflict(reasons.join('; '), { taken });
}

/** Repositories: create, read, list, change and delete, with access checks. */
export class RepositoryService {
  constructor(
    private readonly store: MetadataStore,
    private readonly policy: AccessPolicy,
    private readonly quotas: QuotaService,
  ) {}

  /** Creates a repository in `owner` (a user or an organization the caller may write to). */
  async create(principal: Principal, owner: string, input: CreateRepositoryInput): Promise<Repository> {
    const ns = await this.store.getNamespace(owner);
    if (!ns) throw notFound(`namespace ${owner} not found`);
    await this.policy.assertWriteIn(principal, ns);
    const name = assertRepositoryName(input.name);
    return this.store.transaction(async (tx) => {
      // The title defaults to the name, so the name must be free as a title too.
      const taken = await tx.takenNames(ns.id, { name, displayName: name });
      if (taken.length > 0) throw namesTaken(ns.name, { name, displayName: name }, taken);
      await this.quotas.assertRoomForRepository(tx, ns);
      return tx.createRepository({
        namespaceId: ns.id,
        name,
        visibility: input.visibility ?? DEFAULT_VISIBILITY,
        description: input.description ?? '',
      });
    });
  }

  /** The repository if the caller may read it; `not_found` otherwise. */
  async get(principal: Principal, owner: string, name: string): Promise<Repository> {
    return this.resolve(principal, { owner, name });
  }

  async resolve(principal: Principal, ref: RepositoryRef): Promise<Repository> {
    const repo = 'id' in ref ? await this.store.getRepositoryById(ref.id) : await this.store.getRepository(ref.owner, ref.name);
    return this.policy.assertRead(principal, repo, 'repository');
  }

  /**
   * What a repository's JSON shows beside its own row: the owning namespace, and the source of
   * a fork when the caller may read it (a private source stays hidden).
   */
  async describe(principal: Principal, repo: Repository): Promise<RepositoryView> {
    const owner = await this.store.getNamespaceById(repo.namespaceId);
    if (!owner) throw notFound('repository not found');
    let parent: Repository | null = null;
    if (repo.forkedFromRepoId !== null) {
      const source = await this.store.getRepositoryById(repo.forkedFromRepoId);
      if (source && (await this.policy.canRead(principal, source))) parent = source;
    }
    return { repository: repo, owner, parent };
  }

  /** The repository if the caller may push to it: readable, writable and not archived. */
  async getWritable(principal: Principal, owner: string, name: string): Promise<Repository> {
    const repo = await this.get(principal, owner, name);
    const ns = await this.store.getNamespaceById(repo.namespaceId);
    if (!ns) throw notFound('repository not found');
    await this.policy.assertWriteIn(principal, ns);
    if (repo.archived) throw conflict(`repository ${owner}/${name} is archived`);
    return repo;
  }

  /** The repositories of a namespace that the caller may see, by name. */
  async list(principal: Principal, owner: string, page: Page): Promise<PageOf<Repository>> {
    const ns = await this.store.getNamespace(owner);
    if (!ns) throw notFound(`namespace ${owner} not found`);
    if (principal.kind === 'user') this.policy.requireScope(principal, 'repo:read');
    const all =
      principal.kind === 'user' &&
      (principal.scopes.has('admin') || (await this.policy.roleIn(principal, ns.id)) !== undefined);
    const visible: Visibility[] | undefined = all
      ? undefined
      : principal.kind === 'user'
        ? ['public', 'internal']
        : ['public'];
    return this.store.listRepositories(ns.id, page, visible);
  }

  /**
   * Changes settings; owners only. A repository may not become more visible than the data it
   * holds allows (AccessPolicy.assertMayBecome: what it inherits, and non-public commits made
   * elsewhere that its tags point at); names stay unique in the namespace.
   */
  async update(principal: Principal, owner: string, name: string, patch: RepositoryPatch): Promise<Repository> {
    const repo = await this.get(principal, owner, name);
    const ns = await this.store.getNamespaceById(repo.namespaceId);
    if (!ns) throw notFound('repository not found');
    await this.policy.assertOwnerOf(principal, ns);
    if (patch.name !== undefined) assertRepositoryName(patch.name);
    if (patch.defaultTag !== undefined && patch.defaultTag !== null) {
      assertTagName(patch.defaultTag);
      if (!(await this.store.getTag(repo.id, patch.defaultTag))) {
        throw unprocessable(`tag ${patch.defaultTag} does not exist`);
      }
    }
    const names = { name: patch.name, displayName: patch.displayName };
    return this.store.transaction(async (tx) => {
      // In the transaction, so that no tag lands between the check and the change.
      if (patch.visibility !== undefined) await this.policy.within(tx).assertMayBecome(repo, patch.visibility);
      const taken = await tx.takenNames(ns.id, names, repo.id);
      if (taken.length > 0) throw namesTaken(ns.name, names, taken);
      return tx.updateRepository(repo.id, patch);
    });
  }

  /**
   * Soft-deletes; owners only. Its tags go with it (logged, for restore), so that they no longer
   * hold their commits against deletion; commits stay, since forks may have them as parents, and
   * garbage collection keeps what the tags held until it purges the repository.
   */
  async delete(principal: Principal, owner: string, name: string): Promise<void> {
    const repo = await this.get(principal, owner, name);
    const ns = await this.store.getNamespaceById(repo.namespaceId);
    if (!ns) throw notFound('repository not found');
    const { login } = await this.policy.assertOwnerOf(principal, ns);
    await this.store.deleteRepository(repo.id, login);
  }

  /**
   * Brings back the repository of that name deleted last, with its tags, while garbage
   * collection has not purged it (its retention); owners only. `not_found` when there is none
   * to restore; `conflict` when a live repository holds the name now.
   */
  async restore(principal: Principal, owner: string, name: string): Promise<Repository> {
    const user = this.policy.requireScope(principal, 'repo:write');
    const ns = await this.store.getNamespace(owner);
    // Outsiders learn nothing of what a namespace deleted: the same 404 as for no such repository.
    const id = ns && (user.scopes.has('admin') || (await this.policy.roleIn(user, ns.id)) !== undefined) ? await this.store.findRestorableRepository(ns.id, name) : undefined;
    if (!ns || id === undefined) throw notFound(`no deleted repository ${owner}/${name} to restore (never deleted, or purged)`);
    const { login } = await this.policy.assertOwnerOf(user, ns);
    return this.store.transaction(async (tx) => {
      await this.quotas.assertRoomForRepository(tx, ns);
      return tx.restoreRepository(id, login);
    });
  }

  /**
   * The repositories of every namespace that the caller may see (AccessPolicy.viewerFilter),
   * newest first; with `search`, those whose name or namespace's name contains it, ignoring case.
   */
  async catalogue(principal: Principal, page: Page, search?: string): Promise<PageOf<Repository>> {
    if (principal.kind === 'user') this.policy.requireScope(principal, 'repo:read');
    return this.store.listAllRepositories(await this.policy.viewerFilter(principal), page, search);
  }

  /** Public repositories of every namespace, newest first: the catalogue anyone may browse. */
  async listPublic(page: Page): Promise<PageOf<Repository>> {
    return this.store.listAllRepositories({ visibilities: ['public'], namespaceIds: [] }, page);
  }
}

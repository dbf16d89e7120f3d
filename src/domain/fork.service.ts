import { v4 as uuidv4, v7 as uuidv7 } from 'uuid';
import { conflict, notFound } from './errors.js';
import { DEFAULT_VM_SIZE, VISIBILITY_RANK, type Commit, type Namespace, type PageOf, type Repository, type Tag, type Visibility, type Vm } from './model.js';
import { assertRepositoryName, assertTagName } from './names.js';
import type { AccessPolicy } from './access-policy.js';
import type { AccountService } from './account.service.js';
import type { Telemetry } from './ports/telemetry.js';
import type { Principal } from './principal.js';
import type { QuotaService } from './quota.service.js';
import { namesTaken, type RepositoryRef, type RepositoryService } from './repository.service.js';
import type { ForkQuery, MetadataStore } from '../store/types.js';

export interface ForkInput {
  source: RepositoryRef;
  /**
   * Which tags to fork, each optionally under a new name; all of them when omitted. A name that
   * the source does not have is `not_found`.
   */
  tags?: readonly { source: string; target?: string | null }[];
  /** The namespace to fork into; the caller's acting namespace (token `org`, else own) when omitted. */
  targetNamespace?: string;
  /** The new repository's URL name; defaults to the source's name. */
  name?: string | null;
  /** The new repository's title; defaults to its name. Name and title are each unique in the namespace. */
  displayName?: string;
  /** Defaults to the source's description. */
  description?: string;
  /**
   * Defaults to the widest allowed: the narrowest of the source, of every repository whose data
   * it inherits, and of the data of non-public commits made elsewhere that the forked tags point
   * at. Wider is `unprocessable` (AccessPolicy.assertVisibilityWithin): a fork may be narrower
   * than its source, never wider.
   */
  visibility?: Visibility;
  /** Also create a VM record from the forked commit (the Vers fork). */
  withVm?: boolean;
}

/** A repository of a fork network and the one it is a fork of (null for the network's root). */
export interface ForkNetworkNode {
  repository: Repository;
  parentId: number | null;
}

/** The fork network around a repository, as far as the caller may see it. */
export interface ForkNetwork {
  /** The asked repository. */
  focus: Repository;
  /**
   * Each repository after the one it is a fork of: the root and the path down to the asked
   * repository first, then the other forks breadth first, oldest first among siblings.
   */
  nodes: ForkNetworkNode[];
  /** True when the network holds more repositories than `maxNodes`, or ancestors beyond MAX_NETWORK_DEPTH. */
  truncated: boolean;
}

/** How many fork parents a network is followed up through. */
export const MAX_NETWORK_DEPTH = 64;

export interface ForkResult {
  repository: Repository;
  source: Repository;
  tags: Tag[];
  /** The new commits, one per distinct source commit, in the order of `tags`. */
  commits: Commit[];
  vm: Vm | null;
}

/**
 * Forks in constant time: a fork writes a repository row, one commit per distinct forked source
 * commit that shares its manifest (so no chunk is written or copied), the tags, and optionally a
 * VM record — the same handful of rows whether the snapshot holds 1 KiB or 1 TiB. Every dialect
 * forks through here, so a fork rule fixed here is fixed for all of them.
 */
export class ForkService {
  constructor(
    private readonly store: MetadataStore,
    private readonly policy: AccessPolicy,
    private readonly accounts: AccountService,
    private readonly repositories: RepositoryService,
    private readonly quotas: QuotaService,
    private readonly telemetry: Telemetry,
    private readonly now: () => string,
  ) {}

  async fork(principal: Principal, input: ForkInput): Promise<ForkResult> {
    const caller = this.policy.requireScope(principal, 'repo:write');
    const source = await this.repositories.resolve(principal, input.source);
    if (source.archived) throw conflict(`repository ${source.namespace}/${source.name} is archived and cannot be forked`);

    const target = input.targetNamespace === undefined
      ? await this.accounts.actingNamespace(principal)
      : await this.accounts.getNamespace(input.targetNamespace);
    await this.policy.assertWriteIn(principal, target);

    const name = assertRepositoryName(input.name ?? source.name);
    const displayName = input.displayName ?? name;
    const selected = await this.selectTags(source, input.tags);
    const limit = await this.limitOf(source, selected);
    const visibility = input.visibility ?? limit;
    this.policy.assertVisibilityWithin(visibility, limit);

    const forked = await this.store.transaction(async (tx) => {
      const taken = await tx.takenNames(target.id, { name, displayName });
      if (taken.length > 0) {
        const ontoItself = target.id === source.namespaceId && name.toLowerCase() === source.name.toLowerCase();
        throw ontoItself
          ? conflict(`cannot fork ${source.namespace}/${source.name} onto itself: choose another name`, { taken })
          : namesTaken(target.name, { name, displayName }, taken);
      }
      await this.quotas.assertRoomForRepository(tx, target);
      const forkPoint = selected[0]?.tag.commitId ?? null;
      const repository = await tx.createRepository({
        namespaceId: target.id,
        name,
        displayName,
        visibility,
        description: input.description ?? source.description,
        defaultTag: selected.find((t) => t.tag.name === source.defaultTag)?.target ?? selected[0]?.target ?? null,
        forkedFromRepoId: source.id,
        forkedFromCommitId: forkPoint,
      });
      const createdAt = this.now();
      const commitFor = new Map<string, Commit>();
      const tags: Tag[] = [];
      for (const { tag, target: tagName } of selected) {
        let commit = commitFor.get(tag.commitId);
        if (!commit) {
          const sourceCommit = await tx.getCommit(tag.commitId);
          if (!sourceCommit) throw notFound(`tag ${tag.name} not found`);
          commit = {
            id: uuidv7(),
            repositoryId: repository.id,
            parentIds: [sourceCommit.id],
            manifestDigest: sourceCommit.manifestDigest,
            message: `fork of ${source.namespace}/${source.name}:${tag.name}`,
            author: caller.login,
            createdAt,
            isPublic: false,
            title: sourceCommit.title,
            description: sourceCommit.description,
          };
          await tx.createCommit(commit);
          commitFor.set(tag.commitId, commit);
        }
        tags.push(await tx.setTag(repository.id, tagName, commit.id, caller.login, null));
      }
      const commits = [...commitFor.values()];
      let vm: Vm | null = null;
      if (input.withVm && commits[0]) {
        // Recorded asleep on its commit: VmService boots it on its first use.
        vm = {
          id: uuidv4(),
          commitId: commits[0].id,
          repositoryId: repository.id,
          namespaceId: target.id,
          state: 'sleeping',
          labels: {},
          ...DEFAULT_VM_SIZE,
          createdAt,
          deletedAt: null,
          host: null,
        };
        await tx.createVm(vm);
      }
      return { repository, source, tags, commits, vm };
    });
    this.telemetry.forked();
    return forked;
  }

  /**
   * The widest visibility a fork of `source` with the `selected` tags may have: the narrowest of
   * what the source inherits (visibilityLimit) and of what its selected tags may point at
   * (tagLimit: a fork's commit holds the data of a commit made elsewhere and tagged in the source).
   */
  private async limitOf(source: Repository, selected: readonly { tag: Tag }[]): Promise<Visibility> {
    let limit = await this.policy.visibilityLimit(source);
    for (const commitId of new Set(selected.map((s) => s.tag.commitId))) {
      const commit = await this.store.getCommit(commitId);
      if (!commit) throw notFound(`commit ${commitId} not found`);
      const tagged = await this.policy.tagLimit(source.id, commit);
      if (VISIBILITY_RANK[tagged] < VISIBILITY_RANK[limit]) limit = tagged;
    }
    return limit;
  }

  private async selectTags(source: Repository, wanted: ForkInput['tags']): Promise<{ tag: Tag; target: string }[]> {
    if (wanted === undefined) {
      return (await this.store.listTags(source.id)).map((tag) => ({ tag, target: tag.name }));
    }
    const selected: { tag: Tag; target: string }[] = [];
    for (const w of wanted) {
      const tag = await this.store.getTag(source.id, assertTagName(w.source));
      if (!tag) throw notFound(`tag ${w.source} not found`);
      selected.push({ tag, target: assertTagName(w.target ?? tag.name) });
    }
    return selected;
  }

  /** Direct forks of a repository that the caller may see, filtered and paged. */
  async listForks(principal: Principal, ref: RepositoryRef, query: Omit<ForkQuery, 'viewer'>): Promise<PageOf<Repository>> {
    const repo = await this.repositories.resolve(principal, ref);
    return this.store.listForks(repo.id, { ...query, viewer: await this.policy.viewerFilter(principal) });
  }

  /**
   * The fork network of `ref`: its fork parents followed up (as forkedFromRepoId shows them) while
   * the caller may read them, at most MAX_NETWORK_DEPTH, to the root; then the forks the caller
   * may see below the root, breadth first, at most `maxNodes` repositories in all. The asked
   * repository and the path to it from the root are always among them. A query per repository
   * listed, none proportional to what they hold.
   */
  async network(principal: Principal, ref: RepositoryRef, maxNodes: number): Promise<ForkNetwork> {
    const focus = await this.repositories.resolve(principal, ref);
    const path = [focus];
    let truncated = false;
    for (let top = focus; top.forkedFromRepoId !== null; ) {
      if (path.length > MAX_NETWORK_DEPTH) {
        truncated = true;
        break;
      }
      const parent = await this.store.getRepositoryById(top.forkedFromRepoId);
      // A parent the caller may not read ends the network they see, as if it were its root.
      if (!parent || !(await this.policy.canRead(principal, parent)) || path.some((r) => r.id === parent.id)) break;
      path.push(parent);
      top = parent;
    }
    path.reverse();
    const nodes: ForkNetworkNode[] = path.map((repository, i) => ({ repository, parentId: i === 0 ? null : path[i - 1]!.id }));
    // The path is walked first, so that the asked repository's own forks come before its cousins'.
    const queue = [...path];
    const listed = new Set(path.map((r) => r.id));
    const viewer = await this.policy.viewerFilter(principal);
    const budget = Math.max(maxNodes, nodes.length);
    for (let i = 0; i < queue.length; i++) {
      const parent = queue[i]!;
      // One more row than there is room for, so that a listed path repository takes no one's place.
      const forks = await this.store.listForks(parent.id, { viewer, limit: budget - listed.size + 1, offset: 0, orderBy: 'created_at', sort: 'asc' });
      let shown = 0;
      for (const fork of forks.items) {
        if (listed.has(fork.id)) {
          shown++;
          continue;
        }
        if (listed.size >= budget) break;
        listed.add(fork.id);
        nodes.push({ repository: fork, parentId: parent.id });
        queue.push(fork);
        shown++;
      }
      if (shown < forks.total) truncated = true;
    }
    return { focus, nodes, truncated };
  }

  /** How many forks of the repository the caller may see. */
  async countForks(principal: Principal, repo: Repository): Promise<number> {
    return this.store.countForks(repo.id, await this.policy.viewerFilter(principal));
  }

  /** The namespaces the caller belongs to (for GitLab's `owned` and `membership` filters). */
  async namespacesOf(principal: Principal, ownedOnly: boolean): Promise<Namespace[]> {
    const { user, orgs } = await this.accounts.me(principal);
    return [user, ...orgs.filter((m) => !ownedOnly || m.role === 'owner').map((m) => m.org)];
  }

  /**
   * Records after the fact that `ref` is a fork of `parent` (GitLab), as GitLab requires: an
   * owner of `ref`'s namespace or an administrator (403 otherwise), who may read `parent`. The
   * link is a relationship only: it grants `ref` no read of the parent's chunks, commits or
   * manifests, so it needs no visibility rule. A repository that is already a fork, a fork of
   * itself, or a cycle is a conflict.
   */
  async link(principal: Principal, ref: RepositoryRef, parentRef: RepositoryRef): Promise<Repository> {
    const repo = await this.ownedRepository(principal, ref);
    const parent = await this.repositories.resolve(principal, parentRef);
    if (repo.forkedFromRepoId !== null) throw conflict('project already forked');
    for (let p: Repository | undefined = parent; p; p = p.forkedFromRepoId === null ? undefined : await this.store.getRepositoryById(p.forkedFromRepoId)) {
      if (p.id === repo.id) throw conflict('a repository cannot be a fork of itself or of its own forks');
    }
    return this.store.setForkParent(repo.id, parent.id);
  }

  /**
   * Removes the fork relationship; false when the repository was not a fork. Owners only. A
   * fork keeps the data it was made with, as a GitLab fork keeps its objects when unlinked.
   */
  async unlink(principal: Principal, ref: RepositoryRef): Promise<boolean> {
    const repo = await this.ownedRepository(principal, ref);
    if (repo.forkedFromRepoId === null) return false;
    await this.store.setForkParent(repo.id, null);
    return true;
  }

  private async ownedRepository(principal: Principal, ref: RepositoryRef): Promise<Repository> {
    const repo = await this.repositories.resolve(principal, ref);
    const ns = await this.store.getNamespaceById(repo.namespaceId);
    if (!ns) throw notFound('repository not found');
    await this.policy.assertOwnerOf(principal, ns);
    return repo;
  }
}

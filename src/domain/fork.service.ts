import { v4 as uuidv4, v7 as uuidv7 } from 'uuid';
import { conflict, notFound } from './errors.js';
import { VISIBILITY_RANK, type Commit, type Repository, type Tag, type Visibility, type Vm } from './model.js';
import { assertRepositoryName, assertTagName } from './names.js';
import type { AccessPolicy } from './access-policy.js';
import type { AccountService } from './account.service.js';
import type { Principal } from './principal.js';
import type { RepositoryService } from './repository.service.js';
import type { MetadataStore } from '../store/types.js';

export interface TagForkInput {
  sourceOwner: string;
  sourceRepo: string;
  sourceTag: string;
  /** Defaults to the source repository's name. */
  repoName?: string | null;
  /** Defaults to the source tag's name. */
  tagName?: string | null;
  /** Defaults to private; never more visible than the source. */
  visibility?: Visibility;
  /** Also create a VM record booted from the forked commit (the Vers fork). */
  withVm?: boolean;
}

export interface TagForkResult {
  repository: Repository;
  tag: Tag;
  commit: Commit;
  vm: Vm | null;
}

/**
 * Forks in constant time: a fork writes a repository row, one commit per forked tag that shares
 * the source commit's manifest (so no chunk is written or copied), the tags, and optionally a VM
 * record — the same handful of rows whether the snapshot holds 1 KiB or 1 TiB.
 */
export class ForkService {
  constructor(
    private readonly store: MetadataStore,
    private readonly policy: AccessPolicy,
    private readonly accounts: AccountService,
    private readonly repositories: RepositoryService,
    private readonly now: () => string,
  ) {}

  /** Forks one tag of a readable repository into the caller's acting namespace. */
  async forkTag(principal: Principal, input: TagForkInput): Promise<TagForkResult> {
    const caller = this.policy.requireScope(principal, 'repo:write');
    const source = await this.repositories.get(principal, input.sourceOwner, input.sourceRepo);
    const sourceTag = await this.store.getTag(source.id, input.sourceTag);
    if (!sourceTag) throw notFound(`tag ${input.sourceTag} not found`);
    const sourceCommit = await this.store.getCommit(sourceTag.commitId);
    if (!sourceCommit) throw notFound(`tag ${input.sourceTag} not found`);

    const target = await this.accounts.actingNamespace(principal);
    await this.policy.assertWriteIn(principal, target);
    const name = assertRepositoryName(input.repoName ?? source.name);
    const tagName = assertTagName(input.tagName ?? sourceTag.name);
    const wanted = input.visibility ?? 'private';
    const visibility = VISIBILITY_RANK[wanted] <= VISIBILITY_RANK[source.visibility] ? wanted : source.visibility;

    return this.store.transaction(async (tx) => {
      if (await tx.getRepository(target.name, name)) {
        throw conflict(`repository ${target.name}/${name} already exists`);
      }
      const repository = await tx.createRepository({
        namespaceId: target.id,
        name,
        visibility,
        description: source.description,
        defaultTag: tagName,
        forkedFromRepoId: source.id,
        forkedFromCommitId: sourceCommit.id,
      });
      const createdAt = this.now();
      const commit: Commit = {
        id: uuidv7(),
        repositoryId: repository.id,
        parentIds: [sourceCommit.id],
        manifestDigest: sourceCommit.manifestDigest,
        message: `fork of ${source.namespace}/${source.name}:${sourceTag.name}`,
        author: caller.login,
        createdAt,
      };
      await tx.createCommit(commit);
      const tag = await tx.setTag(repository.id, tagName, commit.id, caller.login, null);
      let vm: Vm | null = null;
      if (input.withVm) {
        // No hypervisor runs yet: the VM is recorded asleep on its commit until a runtime wakes it.
        vm = { id: uuidv4(), commitId: commit.id, repositoryId: repository.id, namespaceId: target.id, state: 'sleeping', createdAt };
        await tx.createVm(vm);
      }
      return { repository, tag, commit, vm };
    });
  }
}

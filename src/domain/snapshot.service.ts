import type { Readable } from 'node:stream';
import { v7 as uuidv7 } from 'uuid';
import { conflict, invalid, isDomainError, notFound, tooLarge, unprocessable } from './errors.js';
import { assertManifestBounds, checkedManifest, manifestByteCount, manifestFileCount } from './manifest.js';
import type { ChunkRef, Commit, Manifest, ManifestEntry, Namespace, Page, PageOf, Repository, StoredEntry, Tag } from './model.js';
import { assertTagName } from './names.js';
import { PutPipeline } from './put-pipeline.js';
import { SegmentChunker } from './segment-chunker.js';
import { readTar, writeTar } from './tar-codec.js';
import type { AccessPolicy } from './access-policy.js';
import type { Principal } from './principal.js';
import type { QuotaService } from './quota.service.js';
import type { RepositoryService } from './repository.service.js';
import type { EncodedChunk } from '../lib/chunk-codec.js';
import type { ChunkStore, ChunkWriter, CommitPatch, MetadataStore } from '../store/types.js';

export interface PushResult {
  repository: Repository;
  tag: Tag;
  commit: Commit;
  files: number;
  /** Bytes of file content in the snapshot. */
  bytes: number;
  /** Bytes of file content in chunks no repository the caller may see referenced before. */
  newBytes: number;
}

export interface ResolvedTag {
  repository: Repository;
  tag: Tag;
  commit: Commit;
}

export interface OpenFile {
  entry: StoredEntry;
  /** The file's bytes, or the range [start, end] (inclusive, clamped to the file). */
  read(range?: { start: number; end: number }): { start: number; end: number; body: Readable };
}

export interface TreeNode {
  name: string;
  path: string;
  type: ManifestEntry['type'];
  mode: number;
  size: number;
  mtime: number;
  linkTarget: string | null;
}

/** Where a page of a directory listing starts and how many children it holds. */
export interface TreePage {
  /** The name of the last child of the previous page; from the first child when absent. */
  after?: string;
  limit: number;
}

/** Entries a directory listing reads at a time: a page of plain files in one read. */
const LISTING_BATCH = 256;
/** How far back a fork's inherited history is searched for a commit. */
const MAX_HISTORY = 100_000;
/** How often a push that names no parent is recorded again over a tag another push just moved. */
const PARENTLESS_PUSH_ATTEMPTS = 5;

/** Snapshots: pushing a tar as a tagged commit, reading tags, commits, files and trees back. */
export class SnapshotService {
  constructor(
    private readonly store: MetadataStore,
    private readonly chunks: ChunkStore,
    private readonly policy: AccessPolicy,
    private readonly repositories: RepositoryService,
    private readonly quotas: QuotaService,
    private readonly now: () => string,
  ) {}

  /**
   * Stores the tar stream `body` as a new commit and points `tagName` at it, in one step:
   * chunks are made durable first, then the commit is written by commitSnapshot, so a failed or
   * cut-off push leaves no commit, no tag move and no visible half-state.
   */
  async push(
    principal: Principal,
    owner: string,
    repoName: string,
    tagName: string,
    body: Readable,
    options: { message?: string; maxBytes?: number } = {},
  ): Promise<PushResult> {
    assertTagName(tagName);
    const repository = await this.repositories.getWritable(principal, owner, repoName);
    const writer = this.quotas.limitWriter(this.chunks.writer(), repository, await this.quotas.storageRoom(repository));
    try {
      const entries = await this.importTar(body, writer, options.maxBytes);
      await writer.commit();
      return await this.commitSnapshot(principal, repository, tagName, checkedManifest(entries), { message: options.message });
    } catch (e) {
      await writer.abort();
      throw e;
    }
  }

  /**
   * Writes `manifest` (checked, its chunks stored) as a new commit of `repository` and points
   * `tagName` at it: manifest, commit, the repository's chunk records and the tag move land in one
   * transaction. Moving a tag makes the new commit a child of the tag's previous commit. With
   * `expectedParent` (null: the tag must not exist yet) the tag must still point there, or
   * `conflict` and nothing is written (optimistic concurrency between two pushers).
   * `newBytes` counts chunks that no repository the caller may see referenced before: the
   * answer never tells whether another tenant stored the same bytes.
   */
  async commitSnapshot(
    principal: Principal,
    repository: Repository,
    tagName: string,
    manifest: Manifest,
    options: { message?: string; expectedParent?: string | null } = {},
  ): Promise<PushResult> {
    const author = this.policy.requireUser(principal).login;
    const sizes = chunkSizes(manifest);
    const known = await this.store.reachableChunks(await this.policy.viewerFilter(principal), [...sizes.keys()]);
    let newBytes = 0;
    for (const [digest, size] of sizes) if (!known.has(digest)) newBytes += size;
    const record = () =>
      this.store.transaction(async (tx) => {
        const previous = await tx.getTag(repository.id, tagName);
        const commit = await this.insertCommit(tx, repository, manifest, {
          parentIds: previous ? [previous.commitId] : [],
          author,
          message: options.message ?? '',
          title: null,
          description: options.message ?? '',
        });
        const expected = options.expectedParent === undefined ? (previous?.commitId ?? null) : options.expectedParent;
        const tag = await tx.setTag(repository.id, tagName, commit.id, author, expected);
        if (repository.defaultTag === null) await tx.updateRepository(repository.id, { defaultTag: tagName });
        return { tag, commit };
      });
    // A push that names no parent goes on top of whatever the tag holds: when another push moved
    // the tag between its read and its move (servers sharing a database do not serialize), it
    // is recorded again over the new head rather than refused.
    let recorded: Awaited<ReturnType<typeof record>>;
    for (let attempt = 1; ; attempt++) {
      try {
        recorded = await record();
        break;
      } catch (e) {
        if (options.expectedParent !== undefined || !isDomainError(e) || e.kind !== 'conflict' || attempt >= PARENTLESS_PUSH_ATTEMPTS) throw e;
      }
    }
    const { tag, commit } = recorded;
    return {
      repository,
      tag,
      commit,
      files: manifestFileCount(manifest),
      bytes: manifestByteCount(manifest),
      newBytes,
    };
  }

  /**
   * Records a commit of `manifest`, whose chunks are stored, in `repository` (which the caller
   * may write), with the given parents and no tag moved: a VM's commit, tagged later if ever.
   */
  async recordCommit(
    principal: Principal,
    repository: Repository,
    manifest: Manifest,
    fields: Pick<Commit, 'parentIds' | 'title' | 'description' | 'parentVmId'>,
  ): Promise<Commit> {
    const author = this.policy.requireUser(principal).login;
    return this.store.transaction((tx) => this.insertCommit(tx, repository, manifest, { ...fields, author, message: fields.description }));
  }

  private async insertCommit(
    tx: MetadataStore,
    repository: Repository,
    manifest: Manifest,
    fields: Pick<Commit, 'parentIds' | 'author' | 'message' | 'title' | 'description' | 'parentVmId'>,
  ): Promise<Commit> {
    // Inside the transaction, which garbage collection's sweep excludes (gc.service.ts): the
    // chunks found stored here stay stored until the commit is visible to the next sweep.
    const sizes = chunkSizes(manifest);
    const digests = [...sizes.keys()];
    const gone = await this.chunks.missing(digests);
    if (gone.length > 0) {
      throw unprocessable(`${gone.length} chunk(s) of the manifest are no longer stored (garbage collection removed them meanwhile): send them again`, {
        missing: gone,
      });
    }
    await tx.putManifest(manifest);
    const commit: Commit = {
      id: uuidv7(),
      repositoryId: repository.id,
      manifestDigest: manifest.digest,
      createdAt: this.now(),
      isPublic: false,
      ...fields,
    };
    await tx.createCommit(commit);
    await tx.recordRepositoryChunks(repository.id, digests);
    await this.quotas.charge(tx, repository, sizes);
    return commit;
  }

  /**
   * Chunks every file of the tar into `writer`; returns the entries, unsorted. Stops with
   * `too_large` as soon as the manifest would pass its bounds (an archive of empty files costs
   * no push bytes, but an entry each).
   */
  private async importTar(body: Readable, writer: ChunkWriter, maxBytes = Number.MAX_SAFE_INTEGER): Promise<ManifestEntry[]> {
    // A later entry for the same path replaces an earlier one, as tar extraction does.
    const entries = new Map<string, ManifestEntry>();
    let total = 0;
    let chunkRefs = 0;
    const puts = new PutPipeline(writer);
    // Files are cut, hashed and compressed on the codec's threads, a whole file or a segment in
    // one job, while this thread reads the next ones and writes packs.
    const store = async (refs: ChunkRef[], chunk: Buffer | EncodedChunk) => {
      assertManifestBounds(entries.size, ++chunkRefs);
      await puts.append(refs, chunk);
    };
    const chunker = new SegmentChunker(this.chunks.codec, store, () => puts.storingNew);
    await readTar(body, async (e) => {
      const replaced = entries.get(e.path);
      // The chunk refs of a file read earlier are complete once its chunks are stitched.
      if (replaced || e.type === 'hardlink') await chunker.flush();
      chunkRefs -= replaced?.chunks.length ?? 0;
      let chunks: ChunkRef[] = [];
      let type = e.type;
      let size = e.size;
      if (e.type === 'hardlink') {
        const target = entries.get(e.linkTarget ?? '');
        if (!target || target.type !== 'file') throw invalid(`hard link ${e.path} to a missing file`);
        ({ chunks, size } = target);
        chunkRefs += chunks.length;
        type = 'file';
      } else if (e.type === 'file') {
        total += e.size;
        if (total > maxBytes) throw tooLarge(`push exceeds the limit of ${maxBytes} bytes`);
        await chunker.chunkFile(chunks, e.size, e.data);
      }
      assertManifestBounds(entries.size + (replaced ? 0 : 1), chunkRefs);
      entries.set(e.path, {
        path: e.path,
        type: type === 'hardlink' ? 'file' : type,
        mode: e.mode,
        size,
        mtime: e.mtime,
        linkTarget: type === 'symlink' ? e.linkTarget : null,
        chunks,
      });
    });
    await chunker.flush();
    await puts.drain();
    return [...entries.values()];
  }

  /** A tag of a repository the caller may read, with its commit. */
  async resolveTag(principal: Principal, owner: string, repoName: string, tagName: string): Promise<ResolvedTag> {
    const repository = await this.repositories.get(principal, owner, repoName);
    const tag = await this.store.getTag(repository.id, tagName);
    if (!tag) throw notFound(`tag ${tagName} not found`);
    const commit = await this.store.getCommit(tag.commitId);
    if (!commit) throw notFound(`commit ${tag.commitId} not found`);
    return { repository, tag, commit };
  }

  async listTags(principal: Principal, owner: string, repoName: string): Promise<{ repository: Repository; tags: Tag[] }> {
    const repository = await this.repositories.get(principal, owner, repoName);
    return { repository, tags: await this.store.listTags(repository.id) };
  }

  /**
   * Points a new tag at an existing commit (Vers' tag create). The commit must be one the caller
   * may read: made in a repository they can read, or public; and one the repository may tag
   * (AccessPolicy.assertMayTag, `unprocessable` otherwise). `conflict` when the tag exists.
   */
  async createTag(principal: Principal, owner: string, repoName: string, tagName: string, commitId: string, description = ''): Promise<ResolvedTag> {
    assertTagName(tagName);
    const repository = await this.repositories.getWritable(principal, owner, repoName);
    const actor = this.policy.requireUser(principal).login;
    const readable = await this.readableCommit(principal, commitId);
    return this.store.transaction(async (tx) => {
      if (await tx.getTag(repository.id, tagName)) throw conflict(`tag ${tagName} already exists`);
      const { tag: set, commit } = await this.pointTag(tx, repository, tagName, readable.id, actor, null);
      const tag = description === '' ? set : await tx.setTagDescription(repository.id, tagName, description);
      if (repository.defaultTag === null) await tx.updateRepository(repository.id, { defaultTag: tagName });
      return { repository, tag, commit };
    });
  }

  /**
   * Moves a tag to another readable commit that the repository may tag (as createTag; logged)
   * and/or changes its description.
   */
  async updateTag(principal: Principal, owner: string, repoName: string, tagName: string, patch: { commitId?: string; description?: string }): Promise<Tag> {
    const repository = await this.repositories.getWritable(principal, owner, repoName);
    const actor = this.policy.requireUser(principal).login;
    const target = patch.commitId === undefined ? undefined : await this.readableCommit(principal, patch.commitId);
    return this.store.transaction(async (tx) => {
      let tag = await tx.getTag(repository.id, tagName);
      if (!tag) throw notFound(`tag ${tagName} not found`);
      if (target) ({ tag } = await this.pointTag(tx, repository, tagName, target.id, actor, tag.commitId));
      if (patch.description !== undefined) tag = await tx.setTagDescription(repository.id, tagName, patch.description);
      return tag;
    });
  }

  /**
   * Sets a tag of `repository` to `commitId` in `tx`, checked against the commit and repository
   * as they are in that transaction (a concurrent unpublish or widening cannot slip between). A
   * commit made in another repository has its manifest's chunks recorded (recordManifestChunks),
   * so that a delta pull through this repository reaches what the tag makes readable.
   */
  private async pointTag(
    tx: MetadataStore,
    repository: Repository,
    tagName: string,
    commitId: string,
    actor: string,
    expected: string | null,
  ): Promise<{ tag: Tag; commit: Commit }> {
    const [commit, current] = await Promise.all([tx.getCommit(commitId), tx.getRepositoryById(repository.id)]);
    if (!commit) throw notFound(`commit ${commitId} not found`);
    if (!current) throw notFound('repository not found');
    await this.policy.within(tx).assertMayTag(current, commit);
    if (commit.repositoryId !== repository.id) {
      const manifest = await tx.getManifest(commit.manifestDigest);
      if (!manifest) throw notFound(`manifest ${commit.manifestDigest} not found`);
      await tx.recordManifestChunks(manifest.digest, manifest.entries.flatMap((e) => e.chunks.map((c) => c.digest)));
    }
    return { tag: await tx.setTag(repository.id, tagName, commit.id, actor, expected), commit };
  }

  /**
   * A commit the caller may read by id alone: public, or made in a repository whose commits
   * they may read (AccessPolicy.canReadCommitsOf), deleted repositories included: commits
   * outlive their repository.
   */
  async readableCommit(principal: Principal, commitId: string): Promise<Commit> {
    const commit = await this.store.getCommit(commitId);
    const record = commit && !commit.isPublic ? await this.store.getRepositoryRecord(commit.repositoryId) : undefined;
    const readable = commit !== undefined && (commit.isPublic || (record !== undefined && (await this.policy.canReadCommitsOf(principal, record))));
    if (!readable) throw notFound(`commit ${commitId} not found`);
    return commit;
  }

  /** Commits made in a namespace's repositories, deleted ones included, newest first; members only. */
  async namespaceCommits(principal: Principal, namespace: Namespace, page: Page): Promise<PageOf<Commit>> {
    this.policy.requireScope(principal, 'repo:read');
    if ((await this.policy.roleIn(principal, namespace.id)) === undefined) throw notFound(`namespace ${namespace.name} not found`);
    return this.store.listNamespaceCommits(namespace.id, page);
  }

  /** Public commits of every namespace, deleted repositories included, newest first. */
  async publicCommits(page: Page): Promise<PageOf<Commit>> {
    return this.store.listPublicCommits(page);
  }

  /**
   * Each commit with the id of the namespace owning the repository it was made in, deleted or
   * not (Vers' `owner_id`), in input order.
   */
  async withOwners(commits: readonly Commit[]): Promise<{ commit: Commit; ownerId: number }[]> {
    const owners = new Map<number, number>();
    const owned: { commit: Commit; ownerId: number }[] = [];
    for (const commit of commits) {
      let ownerId = owners.get(commit.repositoryId);
      if (ownerId === undefined) {
        const record = await this.store.getRepositoryRecord(commit.repositoryId);
        // A commit's repository row is never removed (soft delete, foreign key).
        if (!record) throw notFound(`repository of commit ${commit.id} not found`);
        ownerId = record.repository.namespaceId;
        owners.set(commit.repositoryId, ownerId);
      }
      owned.push({ commit, ownerId });
    }
    return owned;
  }

  /**
   * Publishes, retitles or redescribes a commit; writers of its repository only. Unpublishing is
   * `unprocessable` while a repository wider than the commit's data may be tags it
   * (AccessPolicy.assertMayUnpublish).
   */
  async updateCommit(principal: Principal, commitId: string, patch: CommitPatch): Promise<Commit> {
    const commit = await this.writableCommit(principal, commitId);
    return this.store.transaction(async (tx) => {
      const current = await tx.getCommit(commit.id);
      if (current?.isPublic === true && patch.isPublic === false) await this.policy.within(tx).assertMayUnpublish(current);
      return tx.updateCommit(commit.id, patch);
    });
  }

  /** Deletes a commit; `conflict` while a tag or a VM still refers to it. */
  async deleteCommit(principal: Principal, commitId: string): Promise<void> {
    const commit = await this.writableCommit(principal, commitId);
    await this.store.deleteCommit(commit.id);
  }

  /** A readable commit whose repository's namespace (deleted repositories included) the caller may write in. */
  private async writableCommit(principal: Principal, commitId: string): Promise<Commit> {
    const commit = await this.readableCommit(principal, commitId);
    const record = await this.store.getRepositoryRecord(commit.repositoryId);
    const ns = record && (await this.store.getNamespaceById(record.repository.namespaceId));
    if (!ns) throw notFound(`commit ${commitId} not found`);
    await this.policy.assertWriteIn(principal, ns);
    return commit;
  }

  async deleteTag(principal: Principal, owner: string, repoName: string, tagName: string): Promise<void> {
    const repository = await this.repositories.getWritable(principal, owner, repoName);
    const actor = this.policy.requireUser(principal).login;
    await this.store.transaction(async (tx) => {
      if (!(await tx.deleteTag(repository.id, tagName, actor))) throw notFound(`tag ${tagName} not found`);
      if (repository.defaultTag === tagName) await tx.updateRepository(repository.id, { defaultTag: null });
    });
  }

  /**
   * A commit reachable from the repository: its own, one its tags point at, or an ancestor (forks
   * share history).
   */
  async getCommit(principal: Principal, owner: string, repoName: string, commitId: string): Promise<Commit> {
    const repository = await this.repositories.get(principal, owner, repoName);
    const commit = await this.store.getCommit(commitId);
    if (!commit || !(await this.isReachable(repository, commit))) throw notFound(`commit ${commitId} not found`);
    return commit;
  }

  /**
   * A fork's commits have the source commit as parent, so the first-parent history from the
   * fork point covers the source, its own source, and so on. A commit made elsewhere and tagged
   * here is reachable while tagged, itself only: its history stays where it was made.
   */
  private async isReachable(repository: Repository, commit: Commit): Promise<boolean> {
    if (commit.repositoryId === repository.id || (await this.store.isTagged(repository.id, commit.id))) return true;
    if (repository.forkedFromCommitId === null) return false;
    const history = await this.store.listHistory(repository.forkedFromCommitId, { limit: MAX_HISTORY, offset: 0 });
    return history.some((c) => c.id === commit.id);
  }

  /** The history of a tag (default: the repository's default tag), newest first. */
  async history(principal: Principal, owner: string, repoName: string, tagName: string | undefined, page: Page): Promise<Commit[]> {
    const repository = await this.repositories.get(principal, owner, repoName);
    const name = tagName ?? repository.defaultTag;
    if (name === null) return [];
    const tag = await this.store.getTag(repository.id, name);
    if (!tag) throw notFound(`tag ${name} not found`);
    return this.store.listHistory(tag.commitId, page);
  }

  async manifestOf(commit: Commit): Promise<Manifest> {
    const manifest = await this.store.getManifest(commit.manifestDigest);
    if (!manifest) throw notFound(`manifest ${commit.manifestDigest} not found`);
    return manifest;
  }

  /**
   * What a repository holds, for forge-style listings: the bytes of file content in its default
   * tag's snapshot (0 without one) and when its newest tagged commit was made (null without
   * tags). A few reads of stored totals, whatever the size of the manifests or the number of
   * tags, since listings call it per row. The caller has already checked that the repository may
   * be read.
   */
  async footprint(repository: Repository): Promise<{ bytes: number; lastCommitAt: string | null }> {
    const lastCommitAt = await this.store.newestTaggedCommitAt(repository.id);
    const tag = repository.defaultTag === null ? undefined : await this.store.getTag(repository.id, repository.defaultTag);
    const commit = tag && (await this.store.getCommit(tag.commitId));
    const summary = commit && (await this.store.getManifestSummary(commit.manifestDigest));
    return { bytes: summary?.totalSize ?? 0, lastCommitAt };
  }

  /** The snapshot a tag points at, as a tar stream. */
  async exportTar(principal: Principal, owner: string, repoName: string, tagName: string): Promise<{ resolved: ResolvedTag; manifest: Manifest; body: Readable }> {
    const resolved = await this.resolveTag(principal, owner, repoName, tagName);
    const manifest = await this.manifestOf(resolved.commit);
    const body = writeTar(manifest.entries, (entry) => this.chunks.stream(entry.chunks.map((c) => c.digest)));
    return { resolved, manifest, body };
  }

  /**
   * One file of a tagged snapshot: its entry, and a reader for the whole file or a byte range
   * (`start`..`end` inclusive, as HTTP ranges are) that touches only the chunks in the range.
   * One indexed read of the entry, whatever the size of the manifest.
   */
  async openFile(principal: Principal, owner: string, repoName: string, tagName: string, path: string): Promise<OpenFile> {
    const { commit } = await this.resolveTag(principal, owner, repoName, tagName);
    const entry = await this.store.getManifestEntry(commit.manifestDigest, path);
    if (!entry || entry.type !== 'file') throw notFound(`file ${path} not found`);
    const read = (range?: { start: number; end: number }) => {
      const start = range?.start ?? 0;
      const end = Math.min(range?.end ?? entry.size - 1, entry.size - 1);
      const { offset, digests } = entry.chunks.covering(start, end);
      return { start, end, body: this.chunks.stream(digests, { skip: start - offset, length: Math.max(0, end - start + 1) }) };
    };
    return { entry, read };
  }

  /**
   * A page of the entries directly below `dir` ('' for the root), directories implied by deeper
   * paths included, in the manifest's order (a directory implied by its first path below), from
   * the child after the one named `page.after`, at most `page.limit`. `more` tells whether
   * another page follows. `not_found` when `dir` is neither a directory of the snapshot nor
   * above any of its paths. Reads in proportion to the page (ManifestStore.listChildEntries),
   * in bounded memory whatever the directory holds.
   */
  async tree(principal: Principal, owner: string, repoName: string, tagName: string, dir: string, page: TreePage): Promise<{ nodes: TreeNode[]; more: boolean }> {
    if (page.after?.includes('/')) throw invalid('after names an entry of the directory: it holds no "/"');
    const { commit } = await this.resolveTag(principal, owner, repoName, tagName);
    const digest = commit.manifestDigest;
    const prefix = dir === '' ? '' : `${dir}/`;
    if (dir !== '' && (await this.store.getManifestEntry(digest, dir))?.type !== 'dir') {
      if ((await this.store.listChildEntries(digest, { dir, limit: 1 })).length === 0) throw notFound(`directory ${dir} not found`);
    }
    const nodes: TreeNode[] = [];
    // Children met as entries of their own on this page: the paths below them imply nothing more.
    const listed = new Set<string>();
    const isListed = async (name: string) =>
      listed.has(name) ||
      name === page.after ||
      // An entry `name` sorts before `name/...` but may sort before `after` too ("b" < "b.txt" < "b/x").
      (page.after?.startsWith(name) === true && (await this.store.getManifestEntry(digest, prefix + name)) !== undefined);
    let after = page.after === undefined ? undefined : await this.childPosition(digest, prefix + page.after);
    for (;;) {
      const batch = await this.store.listChildEntries(digest, { dir, after, limit: LISTING_BATCH });
      for (const e of batch) {
        const name = e.path.slice(prefix.length).split('/', 1)[0]!;
        const child = prefix + name;
        if (e.path === child) listed.add(name);
        else if (await isListed(name)) continue;
        if (nodes.length === page.limit) return { nodes, more: true };
        nodes.push(
          e.path === child
            ? { name, path: e.path, type: e.type, mode: e.mode, size: e.size, mtime: e.mtime, linkTarget: e.linkTarget }
            : { name, path: child, type: 'dir', mode: 0o755, size: 0, mtime: 0, linkTarget: null },
        );
      }
      if (batch.length < LISTING_BATCH) return { nodes, more: false };
      after = batch.at(-1)!.path;
    }
  }

  /**
   * Where the child at `path` stands among the entries listChildEntries pages by: its own path
   * when it is an entry (or no child at all: "b.txt" still follows "b"), and for a directory
   * only implied by deeper paths, a path inside it, so that the listing goes on past them.
   */
  private async childPosition(digest: string, path: string): Promise<string> {
    if (await this.store.getManifestEntry(digest, path)) return path;
    return (await this.store.listChildEntries(digest, { dir: path, limit: 1 })).length > 0 ? `${path}/` : path;
  }
}

/** Every chunk a manifest references, with its size, once. */
function chunkSizes(manifest: Manifest): Map<string, number> {
  return new Map(manifest.entries.flatMap((e) => e.chunks.map((c) => [c.digest, c.size] as const)));
}

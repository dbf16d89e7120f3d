/**
 * The suite every MetadataStore implementation must pass (SQLite now, PostgreSQL later). Each
 * test gets a fresh, empty store from `open` and releases it with `cleanup`.
 */
import { v7 as uuidv7 } from 'uuid';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DomainError, type ErrorKind } from '../../src/domain/errors.js';
import { buildManifest } from '../../src/domain/manifest.js';
import type {
  ChunkRef,
  Commit,
  Manifest,
  ManifestEntry,
  PageOf,
  Repository,
  Vm,
} from '../../src/domain/model.js';
import type { MetadataStore, NewRepository } from '../../src/store/types.js';

export type OpenStore = () => Promise<{ store: MetadataStore; cleanup: () => Promise<void> }>;

/** Resolves when `promise` rejects with a DomainError of `kind`. */
async function expectDomainError(promise: Promise<unknown>, kind: ErrorKind): Promise<void> {
  const error: unknown = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(DomainError);
  expect((error as DomainError).kind).toBe(kind);
}

const digestOf = (n: number) => n.toString(16).padStart(64, '0');
const chunks = (count: number, from = 0): ChunkRef[] =>
  Array.from({ length: count }, (_, i) => ({ digest: digestOf(from + i), size: 65_536 + i }));

const file = (path: string, chunkList: ChunkRef[] = []): ManifestEntry => ({
  path,
  type: 'file',
  mode: 0o644,
  size: chunkList.reduce((n, c) => n + c.size, 0),
  mtime: 1_700_000_000,
  linkTarget: null,
  chunks: chunkList,
});

const smallManifest = (): Manifest =>
  buildManifest([
    file('data/train.csv', chunks(3)),
    file('empty'),
    { path: 'data', type: 'dir', mode: 0o755, size: 0, mtime: 1_700_000_001, linkTarget: null, chunks: [] },
    {
      path: 'latest',
      type: 'symlink',
      mode: 0o777,
      size: 0,
      mtime: 1_700_000_002,
      linkTarget: 'data/train.csv',
      chunks: [],
    },
  ]);

export function metadataStoreContract(name: string, open: OpenStore): void {
  describe(`MetadataStore contract: ${name}`, () => {
    let store: MetadataStore;
    let cleanup: () => Promise<void>;

    beforeEach(async () => {
      ({ store, cleanup } = await open());
    });
    afterEach(async () => {
      await cleanup();
    });

    /** A public repository without description, unless `more` says otherwise. */
    const repoIn = (namespaceId: number, repoName: string, more: Partial<NewRepository> = {}) =>
      store.createRepository({ namespaceId, name: repoName, visibility: 'public', description: '', ...more });

    /** A user and one of their repositories. */
    async function userRepo(login = 'alice', repoName = 'data'): Promise<Repository> {
      return repoIn((await store.ensureUser(login)).id, repoName);
    }

    const names = (page: PageOf<Repository>) => page.items.map((r) => r.name);
    const all = { limit: 100, offset: 0 };

    /** Stores a manifest and a commit on `parents` in `repo`; returns the commit. */
    async function commitIn(repo: Repository, parents: Commit[] = [], message = 'snapshot'): Promise<Commit> {
      const manifest = smallManifest();
      await store.putManifest(manifest);
      const commit: Commit = {
        id: uuidv7(),
        repositoryId: repo.id,
        parentIds: parents.map((p) => p.id),
        manifestDigest: manifest.digest,
        message,
        author: 'alice',
        createdAt: new Date().toISOString(),
      };
      await store.createCommit(commit);
      return commit;
    }

    describe('namespaces', () => {
      it('ensureUser creates a user once and returns it again, whatever the case of the login', async () => {
        const first = await store.ensureUser('alice');
        expect(first).toMatchObject({ name: 'alice', kind: 'user', displayName: 'alice' });
        expect(first.createdAt).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
        expect(await store.ensureUser('alice')).toEqual(first);
        expect(await store.ensureUser('Alice')).toEqual(first);
        expect(await store.getNamespace('ALICE')).toEqual(first);
        expect(await store.getNamespaceById(first.id)).toEqual(first);
        expect(await store.getNamespace('bob')).toBeUndefined();
        expect(await store.getNamespaceById(first.id + 1000)).toBeUndefined();
      });

      it('createOrg refuses a name held by a user or an org, ignoring case', async () => {
        await store.ensureUser('alice');
        const org = await store.createOrg('Acme');
        expect(org).toMatchObject({ name: 'Acme', kind: 'org' });
        await expectDomainError(store.createOrg('ALICE'), 'conflict');
        await expectDomainError(store.createOrg('acme'), 'conflict');
        expect((await store.getNamespace('acme'))?.kind).toBe('org');
      });

      it('ensureUser refuses the name of an organization', async () => {
        await store.createOrg('acme');
        await expectDomainError(store.ensureUser('Acme'), 'conflict');
      });

      it('sets, replaces and reads roles, and lists memberships both ways by name', async () => {
        const alice = await store.ensureUser('alice');
        const bob = await store.ensureUser('bob');
        const zeta = await store.createOrg('zeta');
        const acme = await store.createOrg('acme');
        expect(await store.getRole(acme.id, alice.id)).toBeUndefined();
        await store.setRole(acme.id, alice.id, 'owner');
        await store.setRole(acme.id, bob.id, 'owner');
        await store.setRole(zeta.id, alice.id, 'member');
        await store.setRole(acme.id, bob.id, 'member');
        expect(await store.getRole(acme.id, alice.id)).toBe('owner');
        expect(await store.getRole(acme.id, bob.id)).toBe('member');
        expect(await store.getRole(zeta.id, bob.id)).toBeUndefined();
        expect(await store.listMemberships(alice.id)).toEqual([
          { org: acme, role: 'owner' },
          { org: zeta, role: 'member' },
        ]);
        expect(await store.listMembers(acme.id)).toEqual([
          { user: alice, role: 'owner' },
          { user: bob, role: 'member' },
        ]);
        expect(await store.listMembers(zeta.id)).toEqual([{ user: alice, role: 'member' }]);
      });
    });

    describe('repositories', () => {
      it('creates a repository and reads it back by name (ignoring case) and by id', async () => {
        const alice = await store.ensureUser('alice');
        const repo = await store.createRepository({
          namespaceId: alice.id,
          name: 'Data',
          visibility: 'internal',
          description: 'training set',
        });
        expect(repo).toMatchObject({
          namespaceId: alice.id,
          namespace: 'alice',
          name: 'Data',
          visibility: 'internal',
          description: 'training set',
          defaultTag: null,
          forkedFromRepoId: null,
          forkedFromCommitId: null,
          archived: false,
        });
        expect(repo.uuid).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
        expect(repo.updatedAt).toBe(repo.createdAt);
        expect(await store.getRepository('alice', 'Data')).toEqual(repo);
        expect(await store.getRepository('ALICE', 'data')).toEqual(repo);
        expect(await store.getRepositoryById(repo.id)).toEqual(repo);
        expect(await store.getRepository('alice', 'other')).toBeUndefined();
        expect(await store.getRepositoryById(repo.id + 1000)).toBeUndefined();
      });

      it('refuses a second live repository of the same name in a namespace, ignoring case', async () => {
        const repo = await userRepo('alice', 'data');
        await expectDomainError(
          repoIn(repo.namespaceId, 'DATA'),
          'conflict',
        );
        const bob = await store.ensureUser('bob');
        const other = await repoIn(bob.id, 'data');
        expect(other.uuid).not.toBe(repo.uuid);
      });

      it('lists live repositories by name with paging, a total, and a visibility filter', async () => {
        const alice = await store.ensureUser('alice');
        const bob = await store.ensureUser('bob');
        const created: Repository[] = [];
        for (const [i, repoName] of ['delta', 'alpha', 'echo', 'charlie', 'bravo'].entries()) {
          created.push(await repoIn(alice.id, repoName, { visibility: i % 2 === 0 ? 'public' : 'private' }));
        }
        await repoIn(bob.id, 'bobs');
        const gone = await repoIn(alice.id, 'aaa');
        await store.deleteRepository(gone.id);

        const page = await store.listRepositories(alice.id, { limit: 2, offset: 1 });
        expect(page.total).toBe(5);
        expect(names(page)).toEqual(['bravo', 'charlie']);
        expect(page.items[0]).toEqual(created.find((r) => r.name === 'bravo'));
        expect(names(await store.listRepositories(alice.id, { limit: 10, offset: 4 }))).toEqual(['echo']);

        const visible = await store.listRepositories(alice.id, { limit: 2, offset: 0 }, ['public']);
        expect(visible.total).toBe(3);
        expect(names(visible)).toEqual(['bravo', 'delta']);
        expect(await store.listRepositories(alice.id, all, [])).toEqual({ items: [], total: 0 });
      });

      it('updates fields, refuses a rename onto a taken name, and reports a missing repository', async () => {
        const repo = await userRepo('alice', 'data');
        await repoIn(repo.namespaceId, 'taken');

        const updated = await store.updateRepository(repo.id, {
          description: 'now described',
          visibility: 'private',
          archived: true,
          defaultTag: 'main',
          name: 'renamed',
        });
        expect(updated).toMatchObject({
          id: repo.id,
          uuid: repo.uuid,
          name: 'renamed',
          description: 'now described',
          visibility: 'private',
          archived: true,
          defaultTag: 'main',
          createdAt: repo.createdAt,
        });
        expect(updated.updatedAt >= repo.updatedAt).toBe(true);
        expect(await store.getRepository('alice', 'renamed')).toEqual(updated);
        expect(await store.getRepository('alice', 'data')).toBeUndefined();

        const cleared = await store.updateRepository(repo.id, { defaultTag: null, archived: false });
        expect(cleared).toMatchObject({ name: 'renamed', description: 'now described', archived: false });
        expect(cleared.defaultTag).toBeNull();

        await expectDomainError(store.updateRepository(repo.id, { name: 'TAKEN' }), 'conflict');
        expect((await store.getRepositoryById(repo.id))?.name).toBe('renamed');
        await expectDomainError(store.updateRepository(repo.id + 1000, { description: 'x' }), 'not_found');
      });

      it('soft-deletes: the repository is gone from reads, its name is free, forks still point at it', async () => {
        const source = await userRepo('alice', 'data');
        const sourceCommit = await commitIn(source);
        const fork = await repoIn(source.namespaceId, 'fork', {
          forkedFromRepoId: source.id,
          forkedFromCommitId: sourceCommit.id,
        });
        const forkCommit = await commitIn(fork, [sourceCommit]);

        await store.deleteRepository(source.id);
        expect(await store.getRepository('alice', 'data')).toBeUndefined();
        expect(await store.getRepositoryById(source.id)).toBeUndefined();
        expect(names(await store.listRepositories(source.namespaceId, all))).toEqual(['fork']);
        await expectDomainError(store.updateRepository(source.id, { description: 'x' }), 'not_found');
        await expectDomainError(store.deleteRepository(source.id), 'not_found');

        const again = await repoIn(source.namespaceId, 'data');
        expect(again.id).not.toBe(source.id);
        expect(await store.getRepository('alice', 'data')).toEqual(again);

        expect(await store.getRepositoryById(fork.id)).toEqual(fork);
        expect(await store.getCommit(sourceCommit.id)).toEqual(sourceCommit);
        expect(await store.listHistory(forkCommit.id, all)).toEqual([forkCommit, sourceCommit]);
      });
    });

    describe('commits', () => {
      it('stores a commit once and reads it back', async () => {
        const repo = await userRepo();
        const root = await commitIn(repo);
        const merge = await commitIn(repo, [root, root]);
        expect(await store.getCommit(root.id)).toEqual(root);
        expect(await store.getCommit(merge.id)).toEqual(merge);
        expect(await store.getCommit(uuidv7())).toBeUndefined();
        await expectDomainError(store.createCommit(root), 'conflict');
      });

      it('refuses a commit whose repository or manifest does not exist', async () => {
        const repo = await userRepo();
        const valid = await commitIn(repo);
        const orphan = { ...valid, id: uuidv7(), repositoryId: repo.id + 1000 };
        await expectDomainError(store.createCommit(orphan), 'not_found');
        const unknownManifest = { ...valid, id: uuidv7(), manifestDigest: digestOf(7) };
        await expectDomainError(store.createCommit(unknownManifest), 'not_found');
      });

      it('lists first-parent history newest first, across repositories, with paging', async () => {
        const source = await userRepo('alice', 'data');
        const a = await commitIn(source, [], 'a');
        const b = await commitIn(source, [a], 'b');
        const c = await commitIn(source, [b], 'c');
        const fork = await userRepo('bob', 'fork');
        const side = await commitIn(fork, [], 'side branch');
        const d = await commitIn(fork, [c], 'd');
        const e = await commitIn(fork, [d, side], 'e (merge: only the first parent is followed)');

        expect(await store.listHistory(e.id, all)).toEqual([e, d, c, b, a]);
        expect(await store.listHistory(e.id, { limit: 2, offset: 1 })).toEqual([d, c]);
        expect(await store.listHistory(e.id, { limit: 2, offset: 4 })).toEqual([a]);
        expect(await store.listHistory(e.id, { limit: 2, offset: 5 })).toEqual([]);
        expect(await store.listHistory(c.id, all)).toEqual([c, b, a]);
        expect(await store.listHistory(uuidv7(), all)).toEqual([]);
      });
    });

    describe('tags', () => {
      it('creates, moves and deletes a tag, logging each change newest first', async () => {
        const repo = await userRepo();
        const one = await commitIn(repo);
        const two = await commitIn(repo, [one]);

        const created = await store.setTag(repo.id, 'main', one.id, 'alice');
        expect(created).toMatchObject({ repositoryId: repo.id, name: 'main', commitId: one.id, description: '' });
        expect(created.id).toMatch(/^[0-9a-f-]{36}$/);
        expect(await store.getTag(repo.id, 'main')).toEqual(created);

        const moved = await store.setTag(repo.id, 'main', two.id, 'bob');
        expect(moved).toMatchObject({ id: created.id, commitId: two.id, createdAt: created.createdAt });
        expect(await store.getTag(repo.id, 'main')).toEqual(moved);
        expect(await store.setTag(repo.id, 'main', two.id, 'bob')).toEqual(moved);

        await store.setTag(repo.id, 'v1', one.id, 'alice');
        expect((await store.listTags(repo.id)).map((t) => [t.name, t.commitId])).toEqual([
          ['main', two.id],
          ['v1', one.id],
        ]);

        expect(await store.deleteTag(repo.id, 'main', 'carol')).toBe(true);
        expect(await store.deleteTag(repo.id, 'main', 'carol')).toBe(false);
        expect(await store.getTag(repo.id, 'main')).toBeUndefined();

        const log = await store.tagLog(repo.id);
        expect(log.map(({ at: _at, ...move }) => move)).toEqual([
          { tagName: 'main', oldCommitId: two.id, newCommitId: null, actor: 'carol' },
          { tagName: 'v1', oldCommitId: null, newCommitId: one.id, actor: 'alice' },
          { tagName: 'main', oldCommitId: one.id, newCommitId: two.id, actor: 'bob' },
          { tagName: 'main', oldCommitId: null, newCommitId: one.id, actor: 'alice' },
        ]);
        expect((await store.tagLog(repo.id, 'v1')).map((l) => l.newCommitId)).toEqual([one.id]);
        expect(log[0]?.at).toMatch(/Z$/);
        expect(await store.tagLog(repo.id + 1000)).toEqual([]);
      });

      it('compares and sets: a stale or null expectation is a conflict that changes nothing', async () => {
        const repo = await userRepo();
        const one = await commitIn(repo);
        const two = await commitIn(repo, [one]);

        await expectDomainError(store.setTag(repo.id, 'main', one.id, 'alice', two.id), 'conflict');
        expect(await store.getTag(repo.id, 'main')).toBeUndefined();
        const created = await store.setTag(repo.id, 'main', one.id, 'alice', null);

        await expectDomainError(store.setTag(repo.id, 'main', two.id, 'bob', null), 'conflict');
        await expectDomainError(store.setTag(repo.id, 'main', two.id, 'bob', two.id), 'conflict');
        expect(await store.getTag(repo.id, 'main')).toEqual(created);
        expect(await store.tagLog(repo.id)).toHaveLength(1);

        expect((await store.setTag(repo.id, 'main', two.id, 'bob', one.id)).commitId).toBe(two.id);
        expect(await store.tagLog(repo.id)).toHaveLength(2);
      });

      it('refuses a tag on a commit that does not exist', async () => {
        const repo = await userRepo();
        await expectDomainError(store.setTag(repo.id, 'main', uuidv7(), 'alice'), 'not_found');
        expect(await store.tagLog(repo.id)).toEqual([]);
      });
    });

    describe('manifests', () => {
      it('round-trips every entry type; a second put of the same digest changes nothing', async () => {
        const manifest = smallManifest();
        await store.putManifest(manifest);
        expect(await store.getManifest(manifest.digest)).toEqual(manifest);

        await store.putManifest({ digest: manifest.digest, entries: [file('other', chunks(1, 99))] });
        expect(await store.getManifest(manifest.digest)).toEqual(manifest);
        expect(await store.getManifest(digestOf(1))).toBeUndefined();
      });

      it('stores 20,000 entries and a file of 70,000 chunks, returned in canonical order', async () => {
        const entries = Array.from({ length: 20_000 }, (_, i) =>
          file(`dir${i % 7}/file-${i}.bin`, chunks(i % 4, i * 4)),
        );
        entries.push(file('vm/disk.img', chunks(70_000, 1_000_000)));
        const manifest = buildManifest(entries);
        await store.putManifest(manifest);
        const read = await store.getManifest(manifest.digest);
        expect(read?.entries).toHaveLength(20_001);
        expect(read).toEqual(manifest);
      });

      it('refuses a chunk digest that is not lower-case SHA-256 hex, storing nothing', async () => {
        const bad = buildManifest([file('a', [{ digest: 'ABC', size: 1 }])]);
        await expectDomainError(store.putManifest(bad), 'invalid');
        expect(await store.getManifest(bad.digest)).toBeUndefined();
      });
    });

    describe('transactions', () => {
      it('persists nothing when work throws, and rethrows its error', async () => {
        const boom = new Error('boom');
        const thrown = await store
          .transaction(async (tx) => {
            const org = await tx.createOrg('acme');
            await tx.createRepository({ namespaceId: org.id, name: 'data', visibility: 'public', description: '' });
            // A nested transaction joins the outer one and is rolled back with it.
            await tx.transaction((inner) => inner.putManifest(smallManifest()));
            throw boom;
          })
          .catch((e: unknown) => e);
        expect(thrown).toBe(boom);
        expect(await store.getNamespace('acme')).toBeUndefined();
        expect(await store.getManifest(smallManifest().digest)).toBeUndefined();
        expect(await store.createOrg('acme')).toMatchObject({ name: 'acme' });
      });

      it('commits every write when work resolves, and returns its value', async () => {
        const repo = await store.transaction(async (tx) => {
          const org = await tx.createOrg('acme');
          const alice = await tx.ensureUser('alice');
          await tx.setRole(org.id, alice.id, 'owner');
          return tx.createRepository({ namespaceId: org.id, name: 'data', visibility: 'public', description: '' });
        });
        expect(await store.getRepository('acme', 'data')).toEqual(repo);
        const alice = await store.getNamespace('alice');
        expect(alice && (await store.getRole(repo.namespaceId, alice.id))).toBe('owner');
      });

      it('rolls back when a write inside fails with a DomainError', async () => {
        await store.ensureUser('alice');
        await expectDomainError(
          store.transaction(async (tx) => {
            await tx.createOrg('acme');
            await tx.createOrg('ALICE');
          }),
          'conflict',
        );
        expect(await store.getNamespace('acme')).toBeUndefined();
      });
    });

    describe('vms', () => {
      it('creates a VM once and reads it back', async () => {
        const repo = await userRepo();
        const commit = await commitIn(repo);
        const vm: Vm = {
          id: uuidv7(),
          commitId: commit.id,
          repositoryId: repo.id,
          namespaceId: repo.namespaceId,
          state: 'sleeping',
          createdAt: new Date().toISOString(),
        };
        await store.createVm(vm);
        expect(await store.getVm(vm.id)).toEqual(vm);
        expect(await store.getVm(uuidv7())).toBeUndefined();
        await expectDomainError(store.createVm(vm), 'conflict');
        await expectDomainError(store.createVm({ ...vm, id: uuidv7(), commitId: uuidv7() }), 'not_found');
      });
    });
  });
}

/**
 * The suite every MetadataStore implementation must pass (SQLite and PostgreSQL, looped over in
 * metadata-store.test.ts). Each test gets a fresh, empty store from `open`, stamping its times
 * with the suite's clock `now`, and releases it with `cleanup`. The concurrency cases run their
 * calls at once through the store, as concurrent requests of a server (or of several servers
 * sharing one database) would.
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
  VmState,
} from '../../src/domain/model.js';
import type { ForkQuery, ManifestEntryKey, MetadataStore, NewRepository, StoredResponse, ViewerFilter } from '../../src/store/types.js';
import { expectDomainError } from '../support/domain-errors.js';

export type OpenStore = (now: () => string) => Promise<{ store: MetadataStore; cleanup: () => Promise<void> }>;

/** An engine the suite runs on, or why it cannot run here (`skip`, then shown in the suite's name). */
export interface StoreEngine {
  name: string;
  open: OpenStore;
  skip?: string;
}

/** Resolves when `promise` rejects with a DomainError of `kind`. */

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

/** A directory entry, its mtime 1. */
const directory = (path: string): ManifestEntry => ({ path, type: 'dir', mode: 0o755, size: 0, mtime: 1, linkTarget: null, chunks: [] });

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

export function metadataStoreContract({ name, open, skip }: StoreEngine): void {
  describe.skipIf(skip !== undefined)(`MetadataStore contract: ${name}${skip ? ` (skipped: ${skip})` : ''}`, () => {
    let store: MetadataStore;
    let cleanup: () => Promise<void>;
    /** The store's clock, in milliseconds; it stands still until a test moves it. */
    let clock: number;
    const now = () => new Date(clock).toISOString();
    /** Moves the store's clock on by a millisecond, so that later timestamps differ. */
    const tick = () => void (clock += 1);

    beforeEach(async () => {
      clock = Date.parse('2030-01-01T00:00:00.000Z');
      ({ store, cleanup } = await open(now));
    });
    afterEach(async () => {
      await cleanup();
    });

    /** A public repository without description, unless `more` says otherwise. */
    const repoIn = (namespaceId: number, repoName: string, more: Partial<NewRepository> = {}) =>
      store.createRepository({ namespaceId, name: repoName, visibility: 'public', description: '', ...more });

    /** A VM of `repo`'s namespace started from `commit`, created now by the suite's clock. */
    const vmOf = (repo: Repository, commit: Commit, state: VmState, host: string | null = 'server-a'): Vm => ({
      id: uuidv7(),
      commitId: commit.id,
      repositoryId: repo.id,
      namespaceId: repo.namespaceId,
      state,
      labels: {},
      vcpuCount: 1,
      memSizeMib: 256,
      createdAt: now(),
      deletedAt: null,
      host,
    });

    /** A user and one of their repositories. */
    async function userRepo(login = 'alice', repoName = 'data'): Promise<Repository> {
      return repoIn((await store.ensureUser(login)).id, repoName);
    }

    const names = (page: PageOf<Repository>) => page.items.map((r) => r.name);
    const all = { limit: 100, offset: 0 };

    /** Stores a manifest and a commit on `parents` in `repo`; returns the commit. */
    async function commitIn(
      repo: Repository,
      parents: Commit[] = [],
      message = 'snapshot',
      more: Partial<Pick<Commit, 'isPublic' | 'title' | 'description' | 'createdAt' | 'parentVmId'>> = {},
      manifest: Manifest = smallManifest(),
    ): Promise<Commit> {
      await store.putManifest(manifest);
      const commit: Commit = {
        id: uuidv7(),
        repositoryId: repo.id,
        parentIds: parents.map((p) => p.id),
        manifestDigest: manifest.digest,
        message,
        author: 'alice',
        createdAt: new Date().toISOString(),
        isPublic: false,
        title: null,
        description: '',
        ...more,
      };
      await store.createCommit(commit);
      return commit;
    }

    it('answers ping while open and rejects it once closed (what readiness probes rely on)', async () => {
      await expect(store.ping()).resolves.toBeUndefined();
      await store.close();
      await expect(store.ping()).rejects.toThrow();
    });

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
          displayName: 'Data',
          visibility: 'internal',
          description: 'training set',
          defaultTag: null,
          forkedFromRepoId: null,
          inheritsFromRepoId: null,
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
        await store.deleteRepository(gone.id, 'alice');

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
          displayName: 'Renamed data',
        });
        expect(updated).toMatchObject({
          id: repo.id,
          uuid: repo.uuid,
          name: 'renamed',
          displayName: 'Renamed data',
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
        expect(cleared).toMatchObject({
          name: 'renamed',
          displayName: 'Renamed data',
          description: 'now described',
          archived: false,
        });
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

        await store.deleteRepository(source.id, 'alice');
        expect(await store.getRepository('alice', 'data')).toBeUndefined();
        expect(await store.getRepositoryById(source.id)).toBeUndefined();
        expect(names(await store.listRepositories(source.namespaceId, all))).toEqual(['fork']);
        await expectDomainError(store.updateRepository(source.id, { description: 'x' }), 'not_found');
        await expectDomainError(store.deleteRepository(source.id, 'alice'), 'not_found');

        const again = await repoIn(source.namespaceId, 'data');
        expect(again.id).not.toBe(source.id);
        expect(await store.getRepository('alice', 'data')).toEqual(again);

        expect(await store.getRepositoryById(fork.id)).toEqual(fork);
        expect(await store.getCommit(sourceCommit.id)).toEqual(sourceCommit);
        expect(await store.listHistory(forkCommit.id, all)).toEqual([forkCommit, sourceCommit]);
      });
    });

    describe('catalogue and forks', () => {
      it('keeps a display name apart from the name: given at creation, changed alone, kept on rename', async () => {
        const alice = await store.ensureUser('alice');
        const titled = await repoIn(alice.id, 'data', { displayName: 'Training data' });
        expect(titled.displayName).toBe('Training data');
        const renamed = await store.updateRepository(titled.id, { name: 'train' });
        expect(renamed).toMatchObject({ name: 'train', displayName: 'Training data' });
        const retitled = await store.updateRepository(titled.id, { displayName: 'Train set' });
        expect(retitled).toMatchObject({ name: 'train', displayName: 'Train set' });
        expect(await store.getRepositoryById(titled.id)).toEqual(retitled);
      });

      it('lists every live repository a viewer may see, newest first, with a total', async () => {
        const alice = await store.ensureUser('alice');
        const bob = await store.ensureUser('bob');
        const acme = await store.createOrg('acme');
        await repoIn(alice.id, 'a-public');
        await repoIn(alice.id, 'a-private', { visibility: 'private' });
        await repoIn(bob.id, 'b-internal', { visibility: 'internal' });
        await repoIn(bob.id, 'b-private', { visibility: 'private' });
        await repoIn(acme.id, 'acme-private', { visibility: 'private' });
        const gone = await repoIn(bob.id, 'b-gone');
        await store.deleteRepository(gone.id, 'alice');

        const everything = await store.listAllRepositories('all', all);
        expect(names(everything)).toEqual(['acme-private', 'b-private', 'b-internal', 'a-private', 'a-public']);
        expect(everything.total).toBe(5);

        const aliceInAcme: ViewerFilter = { visibilities: ['public', 'internal'], namespaceIds: [alice.id, acme.id] };
        const seen = await store.listAllRepositories(aliceInAcme, all);
        expect(names(seen)).toEqual(['acme-private', 'b-internal', 'a-private', 'a-public']);
        const paged = await store.listAllRepositories(aliceInAcme, { limit: 2, offset: 1 });
        expect(names(paged)).toEqual(['b-internal', 'a-private']);
        expect(paged.total).toBe(4);

        const anonymous = await store.listAllRepositories({ visibilities: ['public'], namespaceIds: [] }, all);
        expect(names(anonymous)).toEqual(['a-public']);
        const ownOnly = await store.listAllRepositories({ visibilities: [], namespaceIds: [bob.id] }, all);
        expect(names(ownOnly)).toEqual(['b-private', 'b-internal']);
        expect(await store.listAllRepositories({ visibilities: [], namespaceIds: [] }, all)).toEqual({
          items: [],
          total: 0,
        });
      });

      it('searches the catalogue by repository or namespace name, ignoring case, within what the viewer sees', async () => {
        const alice = await store.ensureUser('alice');
        const bob = await store.ensureUser('bob');
        await repoIn(alice.id, 'Weather-data');
        await repoIn(alice.id, 'weather_secret', { visibility: 'private' });
        await repoIn(bob.id, 'images');
        await repoIn(bob.id, 'a%b');
        const anyone: ViewerFilter = { visibilities: ['public'], namespaceIds: [] };
        expect(names(await store.listAllRepositories(anyone, all, 'WEATHER'))).toEqual(['Weather-data']);
        expect(names(await store.listAllRepositories('all', all, 'weather'))).toEqual(['weather_secret', 'Weather-data']);
        expect(names(await store.listAllRepositories(anyone, all, 'BO'))).toEqual(['a%b', 'images']);
        // LIKE's wildcards match themselves only.
        expect(names(await store.listAllRepositories(anyone, all, '%'))).toEqual(['a%b']);
        const paged = await store.listAllRepositories('all', { limit: 1, offset: 0 }, 'weather');
        expect(paged).toMatchObject({ total: 2 });
        expect(names(paged)).toEqual(['weather_secret']);
      });

      /**
       * alice/data has three live direct forks, oldest first: bob/data_copy (public),
       * acme/Training (private, updated last), alice/mirror (internal, archived); plus a deleted
       * fork, a fork of a fork and an unrelated repository, none of which are listed.
       */
      async function forkFamily() {
        const alice = await store.ensureUser('alice');
        const bob = await store.ensureUser('bob');
        const acme = await store.createOrg('acme');
        const source = await repoIn(alice.id, 'data');
        const forkOf = (from: Repository, more: Partial<NewRepository> = {}) => ({
          forkedFromRepoId: from.id,
          ...more,
        });
        const copy = await repoIn(bob.id, 'data_copy', forkOf(source));
        tick();
        const training = await repoIn(acme.id, 'Training', forkOf(source, { visibility: 'private' }));
        tick();
        const mirror = await repoIn(alice.id, 'mirror', forkOf(source, { visibility: 'internal' }));
        await store.updateRepository(mirror.id, { archived: true });
        const deleted = await repoIn(bob.id, 'deleted', forkOf(source));
        await store.deleteRepository(deleted.id, 'alice');
        await repoIn(bob.id, 'deep', forkOf(copy));
        await repoIn(bob.id, 'unrelated');
        tick();
        const updated = await store.updateRepository(training.id, { description: 'touched last' });
        const settled = await store.getRepositoryById(mirror.id);
        if (!settled) throw new Error('mirror vanished');
        return { alice, bob, acme, source, copy, training: updated, mirror: settled };
      }

      it('lists live direct forks newest first, in any order and direction, with paging and a total', async () => {
        const { source } = await forkFamily();
        const forks = (more: Partial<ForkQuery> = {}) => store.listForks(source.id, { viewer: 'all', ...all, ...more });

        const newest = await forks();
        expect(names(newest)).toEqual(['mirror', 'Training', 'data_copy']);
        expect(newest.total).toBe(3);
        expect(names(await forks({ sort: 'asc' }))).toEqual(['data_copy', 'Training', 'mirror']);
        expect(names(await forks({ orderBy: 'star_count' }))).toEqual(['mirror', 'Training', 'data_copy']);
        expect(names(await forks({ orderBy: 'id', sort: 'asc' }))).toEqual(['data_copy', 'Training', 'mirror']);
        expect(names(await forks({ orderBy: 'name', sort: 'asc' }))).toEqual(['data_copy', 'mirror', 'Training']);
        expect(names(await forks({ orderBy: 'path' }))).toEqual(['Training', 'mirror', 'data_copy']);
        expect(names(await forks({ orderBy: 'updated_at' }))).toEqual(['Training', 'mirror', 'data_copy']);
        expect(names(await forks({ orderBy: 'last_activity_at', sort: 'asc' }))).toEqual([
          'data_copy',
          'mirror',
          'Training',
        ]);

        const paged = await forks({ limit: 1, offset: 1 });
        expect(names(paged)).toEqual(['Training']);
        expect(paged.total).toBe(3);
        expect(await forks({ limit: 5, offset: 3 })).toEqual({ items: [], total: 3 });
      });

      it('filters forks by viewer, archived, visibility, search, owner and update time, totals too', async () => {
        const { source, alice, bob, acme, copy, training, mirror } = await forkFamily();
        const forks = (more: Partial<ForkQuery>) => store.listForks(source.id, { viewer: 'all', ...all, ...more });
        const found = async (more: Partial<ForkQuery>) => {
          const page = await forks(more);
          expect(page.total).toBe(page.items.length);
          return names(page);
        };

        expect(await found({ viewer: { visibilities: ['public'], namespaceIds: [acme.id] } })).toEqual([
          'Training',
          'data_copy',
        ]);
        expect(await found({ viewer: { visibilities: ['internal'], namespaceIds: [] } })).toEqual(['mirror']);
        expect(await found({ viewer: { visibilities: [], namespaceIds: [] } })).toEqual([]);
        expect(await found({ archived: true })).toEqual(['mirror']);
        expect(await found({ archived: false })).toEqual(['Training', 'data_copy']);
        expect(await found({ visibility: 'private' })).toEqual(['Training']);

        expect(await found({ search: 'tRAIN' })).toEqual(['Training']);
        expect(await found({ search: 'BO' })).toEqual(['data_copy']); // the namespace's name
        expect(await found({ search: 'a_c' })).toEqual(['data_copy']);
        expect(await found({ search: '_' })).toEqual(['data_copy']); // a literal underscore
        expect(await found({ search: '%' })).toEqual([]); // a literal percent sign
        expect(await found({ search: 'i' })).toEqual(['mirror', 'Training']);

        expect(await found({ namespaceIds: [bob.id, alice.id] })).toEqual(['mirror', 'data_copy']);
        expect(await found({ namespaceIds: [] })).toEqual([]);

        expect(await found({ updatedAfter: mirror.updatedAt })).toEqual(['Training']);
        expect(await found({ updatedBefore: mirror.updatedAt })).toEqual(['data_copy']);
        expect(await found({ updatedAfter: copy.updatedAt, updatedBefore: training.updatedAt })).toEqual(['mirror']);

        const anonymous: ViewerFilter = { visibilities: ['public'], namespaceIds: [] };
        expect(await found({ search: 'a', archived: false, viewer: anonymous })).toEqual(['data_copy']);
      });

      it('counts the live direct forks a viewer may see', async () => {
        const { source, acme, copy, training } = await forkFamily();
        expect(await store.countForks(source.id, 'all')).toBe(3);
        expect(await store.countForks(source.id, { visibilities: ['public'], namespaceIds: [] })).toBe(1);
        expect(await store.countForks(source.id, { visibilities: ['public'], namespaceIds: [acme.id] })).toBe(2);
        expect(await store.countForks(source.id, { visibilities: [], namespaceIds: [] })).toBe(0);
        expect(await store.countForks(copy.id, 'all')).toBe(1);
        expect(await store.countForks(training.id, 'all')).toBe(0);
      });

      it('sets and clears the fork parent after the fact, which neither inherits data nor drops it', async () => {
        const a = digestOf(0xa1);
        const sorted = (set: Set<string>) => [...set].sort();
        const alice = await store.ensureUser('alice');
        const source = await repoIn(alice.id, 'source');
        const commit = await commitIn(source);
        await store.recordRepositoryChunks(source.id, [a]);
        const repo = await repoIn(alice.id, 'copy');
        tick();

        const linked = await store.setForkParent(repo.id, source.id);
        expect(linked).toMatchObject({ id: repo.id, forkedFromRepoId: source.id, inheritsFromRepoId: null, forkedFromCommitId: null });
        expect(linked.updatedAt > repo.updatedAt).toBe(true);
        expect(await store.getRepositoryById(repo.id)).toEqual(linked);
        expect(names(await store.listForks(source.id, { viewer: 'all', ...all }))).toEqual(['copy']);
        expect(sorted(await store.reachableChunks({ repositoryId: repo.id }, [a]))).toEqual([]);

        const cleared = await store.setForkParent(repo.id, null);
        expect(cleared).toMatchObject({ forkedFromRepoId: null });
        expect(await store.countForks(source.id, 'all')).toBe(0);

        // A real fork unlinked keeps what it inherits.
        const fork = await repoIn(alice.id, 'fork', { forkedFromRepoId: source.id, forkedFromCommitId: commit.id });
        expect(fork).toMatchObject({ forkedFromRepoId: source.id, inheritsFromRepoId: source.id, forkedFromCommitId: commit.id });
        expect(await store.setForkParent(fork.id, null)).toMatchObject({ forkedFromRepoId: null, inheritsFromRepoId: source.id, forkedFromCommitId: commit.id });
        expect(sorted(await store.reachableChunks({ repositoryId: fork.id }, [a]))).toEqual([a]);

        await expectDomainError(store.setForkParent(repo.id, repo.id + 1000), 'not_found');
        await expectDomainError(store.setForkParent(repo.id + 1000, null), 'not_found');
        await store.deleteRepository(repo.id, 'alice');
        await expectDomainError(store.setForkParent(repo.id, null), 'not_found');
        await expectDomainError(store.setForkParent(fork.id, repo.id), 'not_found');
      });

      it('tells which names of a namespace are taken: the name ignoring case, the title exactly', async () => {
        const alice = await store.ensureUser('alice');
        const bob = await store.ensureUser('bob');
        const repo = await store.createRepository({ namespaceId: alice.id, name: 'data', displayName: 'Training Data', visibility: 'public', description: '' });
        expect(await store.takenNames(alice.id, { name: 'DATA', displayName: 'Training Data' })).toEqual(['name', 'displayName']);
        expect(await store.takenNames(alice.id, { name: 'other', displayName: 'training data' })).toEqual([]);
        expect(await store.takenNames(alice.id, { displayName: 'Training Data' })).toEqual(['displayName']);
        expect(await store.takenNames(alice.id, { name: 'data', displayName: 'Training Data' }, repo.id)).toEqual([]);
        expect(await store.takenNames(bob.id, { name: 'data', displayName: 'Training Data' })).toEqual([]);
        await expectDomainError(
          store.createRepository({ namespaceId: alice.id, name: 'other', displayName: 'Training Data', visibility: 'public', description: '' }),
          'conflict',
        );
        await store.deleteRepository(repo.id, 'alice');
        expect(await store.takenNames(alice.id, { name: 'data', displayName: 'Training Data' })).toEqual([]);
        expect((await store.getRepositoryRecord(repo.id))?.deletedAt).toEqual(expect.any(String));
        expect((await store.getRepositoryRecord(repo.id))?.repository).toMatchObject({ id: repo.id, name: 'data' });
      });
    });

    describe('commits', () => {
      it('stores a commit once and reads it back', async () => {
        const repo = await userRepo();
        const root = await commitIn(repo);
        const merge = await commitIn(repo, [root, root], 'merge', {
          isPublic: true,
          title: 'Merged',
          description: 'both sides',
        });
        expect(await store.getCommit(root.id)).toEqual(root);
        expect(await store.getCommit(merge.id)).toEqual(merge);
        expect(await store.listHistory(merge.id, all)).toEqual([merge, root]);
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

      it('lists the commits of a namespace\'s repositories newest first, deleted ones included, with paging and a total', async () => {
        const data = await userRepo('alice', 'data');
        const models = await repoIn(data.namespaceId, 'models');
        const gone = await repoIn(data.namespaceId, 'gone');
        const bobs = await userRepo('bob', 'data');
        const a = await commitIn(data, [], 'a');
        const b = await commitIn(models, [], 'b');
        await commitIn(bobs, [], 'not alice\'s');
        const kept = await commitIn(gone, [], 'in a deleted repository');
        const c = await commitIn(data, [a], 'c');
        await store.deleteRepository(gone.id, 'alice');

        expect(await store.listNamespaceCommits(data.namespaceId, all)).toEqual({ items: [c, kept, b, a], total: 4 });
        expect(await store.listNamespaceCommits(data.namespaceId, { limit: 1, offset: 2 })).toEqual({
          items: [b],
          total: 4,
        });
        const org = await store.createOrg('acme');
        expect(await store.listNamespaceCommits(org.id, all)).toEqual({ items: [], total: 0 });
      });

      it('lists public commits newest first, whatever the repository\'s visibility, deleted ones included', async () => {
        const alice = await store.ensureUser('alice');
        const open = await repoIn(alice.id, 'open');
        const closed = await repoIn(alice.id, 'closed', { visibility: 'private' });
        const gone = await repoIn(alice.id, 'gone');
        const a = await commitIn(open, [], 'a', { isPublic: true });
        await commitIn(open, [a], 'not public');
        const b = await commitIn(closed, [], 'b', { isPublic: true });
        const kept = await commitIn(gone, [], 'in a deleted repository', { isPublic: true });
        await store.deleteRepository(gone.id, 'alice');
        const c = await commitIn(open, [a], 'c', { isPublic: true });

        expect(await store.listPublicCommits(all)).toEqual({ items: [c, kept, b, a], total: 4 });
        expect(await store.listPublicCommits({ limit: 2, offset: 3 })).toEqual({ items: [a], total: 4 });
      });

      it('updates a commit\'s publicity, title and description, leaving the rest as it was', async () => {
        const repo = await userRepo();
        const commit = await commitIn(repo, [], 'snapshot', { title: 'First' });

        const published = await store.updateCommit(commit.id, { isPublic: true, description: 'the first one' });
        expect(published).toEqual({ ...commit, isPublic: true, description: 'the first one' });
        expect(await store.getCommit(commit.id)).toEqual(published);
        expect(await store.updateCommit(commit.id, {})).toEqual(published);

        const untitled = await store.updateCommit(commit.id, { title: null, isPublic: false });
        expect(untitled).toEqual({ ...published, title: null, isPublic: false });
        expect(await store.getCommit(commit.id)).toEqual(untitled);
        expect((await store.listPublicCommits(all)).total).toBe(0);

        await expectDomainError(store.updateCommit(uuidv7(), { title: 'x' }), 'not_found');
      });

      it('deletes a commit once no tag of any repository and no VM refers to it, keeping its manifest', async () => {
        const source = await userRepo('alice', 'data');
        const fork = await userRepo('bob', 'fork');
        const commit = await commitIn(source);
        const next = await commitIn(source, [commit]);
        await store.setTag(fork.id, 'pinned', commit.id, 'bob');

        await expectDomainError(store.deleteCommit(commit.id), 'conflict');
        expect(await store.getCommit(commit.id)).toEqual(commit);

        await store.setTag(fork.id, 'pinned', next.id, 'bob');
        await store.deleteCommit(commit.id);
        expect(await store.getCommit(commit.id)).toBeUndefined();
        expect(await store.getManifest(commit.manifestDigest)).toEqual(smallManifest());
        await expectDomainError(store.deleteCommit(commit.id), 'not_found');

        const booted = await commitIn(source);
        const vm = vmOf(source, booted, 'running');
        await store.createVm(vm);
        await expectDomainError(store.deleteCommit(booted.id), 'conflict');
        // A deleted VM's row stays, and so does the commit it was started from.
        await store.deleteVm(vm.id);
        await expectDomainError(store.deleteCommit(booted.id), 'conflict');
        expect(await store.getCommit(booted.id)).toEqual(booted);
      });
    });

    describe('tags', () => {
      it("finds the tags of a name across a namespace's live repositories, by repository name, up to a limit", async () => {
        const zeta = await userRepo('alice', 'zeta');
        const alice = zeta.namespaceId;
        const alpha = await repoIn(alice, 'alpha');
        const gone = await repoIn(alice, 'gone');
        const other = await userRepo('bob', 'alpha');
        for (const repo of [zeta, alpha, gone, other]) await store.setTag(repo.id, 'v1', (await commitIn(repo)).id, 'alice');
        await store.setTag(alpha.id, 'v2', (await commitIn(alpha)).id, 'alice');
        await store.deleteRepository(gone.id, 'alice');

        const found = await store.tagsNamed(alice, 'v1', 10);
        expect(found.map((f) => f.repository.name)).toEqual(['alpha', 'zeta']);
        expect(found[0]?.tag).toEqual(await store.getTag(alpha.id, 'v1'));
        expect(found[0]?.repository).toEqual(await store.getRepositoryById(alpha.id));
        expect((await store.tagsNamed(alice, 'v1', 1)).map((f) => f.repository.name)).toEqual(['alpha']);
        expect((await store.tagsNamed(alice, 'v2', 10)).map((f) => f.tag.name)).toEqual(['v2']);
        expect(await store.tagsNamed(alice, 'v3', 10)).toEqual([]);
      });

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

      it('changes a tag\'s description and update time, leaving its commit and the tag log alone', async () => {
        const repo = await userRepo();
        const commit = await commitIn(repo);
        const tag = await store.setTag(repo.id, 'main', commit.id, 'alice');
        tick();

        const described = await store.setTagDescription(repo.id, 'main', 'the release');
        expect(described).toEqual({ ...tag, description: 'the release', updatedAt: described.updatedAt });
        expect(described.updatedAt > tag.updatedAt).toBe(true);
        expect(await store.getTag(repo.id, 'main')).toEqual(described);
        expect(await store.tagLog(repo.id)).toHaveLength(1);

        await expectDomainError(store.setTagDescription(repo.id, 'other', 'x'), 'not_found');
        await expectDomainError(store.setTagDescription(repo.id + 1000, 'main', 'x'), 'not_found');
      });

      it('tells when the newest tagged commit was made, untagged commits aside', async () => {
        const repo = await userRepo();
        expect(await store.newestTaggedCommitAt(repo.id)).toBeNull();
        const old = await commitIn(repo);
        tick();
        const newest = await commitIn(repo, [old]);
        tick();
        await commitIn(repo, [newest]);
        await store.setTag(repo.id, 'a-newest', newest.id, 'alice');
        await store.setTag(repo.id, 'z-old', old.id, 'alice');
        expect(await store.newestTaggedCommitAt(repo.id)).toBe(newest.createdAt);
        expect(await store.newestTaggedCommitAt(repo.id + 1000)).toBeNull();
      });

      it('tells which tags point at commits made in another repository, non-public ones by source', async () => {
        const alice = await store.ensureUser('alice');
        const bob = await store.ensureUser('bob');
        const secret = await repoIn(alice.id, 'secret', { visibility: 'private' });
        const other = await repoIn(alice.id, 'other', { visibility: 'internal' });
        const mine = await repoIn(bob.id, 'mine');
        const own = await commitIn(mine);
        const [hidden, hidden2] = [await commitIn(secret), await commitIn(secret)];
        const shown = await commitIn(other, [], 'published', { isPublic: true });
        const internal = await commitIn(other);
        await store.setTag(mine.id, 'own', own.id, 'bob');
        await store.setTag(mine.id, 'zz', hidden.id, 'bob');
        await store.setTag(mine.id, 'b', hidden2.id, 'bob');
        await store.setTag(mine.id, 'pub', shown.id, 'bob');
        await store.setTag(secret.id, 'main', hidden.id, 'alice');

        expect(await store.foreignPrivateTags(mine.id)).toEqual([{ tagName: 'b', sourceRepositoryId: secret.id }]);
        await store.setTag(mine.id, 'c', internal.id, 'bob');
        expect(await store.foreignPrivateTags(mine.id)).toEqual([
          { tagName: 'b', sourceRepositoryId: secret.id },
          { tagName: 'c', sourceRepositoryId: other.id },
        ]);
        expect(await store.foreignPrivateTags(secret.id)).toEqual([]);

        const taggers = await store.foreignTaggers(hidden.id);
        expect(taggers.map((t) => [t.repository.id, t.repository.namespace, t.tagName])).toEqual([[mine.id, 'bob', 'zz']]);
        expect(await store.foreignTaggers(own.id)).toEqual([]);
        await store.deleteRepository(mine.id, 'alice');
        expect(await store.foreignTaggers(hidden.id)).toEqual([]);

        expect(await store.isTagged(secret.id, hidden.id)).toBe(true);
        expect(await store.isTagged(secret.id, hidden2.id)).toBe(false);
      });

      it('refuses a tag on a commit that does not exist', async () => {
        const repo = await userRepo();
        await expectDomainError(store.setTag(repo.id, 'main', uuidv7(), 'alice'), 'not_found');
        expect(await store.tagLog(repo.id)).toEqual([]);
      });
    });

    describe('garbage collection', () => {
      /** A commit in `repo` on `parents`, made now by the suite's clock, of a manifest listing `chunkList`. */
      const commitOf = (repo: Repository, chunkList: ChunkRef[], parents: Commit[] = [], more: Partial<Pick<Commit, 'parentVmId'>> = {}) =>
        commitIn(repo, parents, '', { createdAt: now(), ...more }, buildManifest([file(`f-${chunkList[0]?.digest ?? 'none'}`, chunkList)]));
      const later = (ms: number) => new Date(clock + ms).toISOString();

      it('finds the live commits: tagged ones and their ancestors, fork points, VMs, VM commits and recent ones, through a deleted repository until purged', async () => {
        const repo = await userRepo();
        const root = await commitOf(repo, chunks(1, 100));
        const head = await commitOf(repo, chunks(1, 200), [root]);
        await store.setTag(repo.id, 'main', head.id, 'alice');
        const dropped = await commitOf(repo, chunks(1, 300));
        const booted = await commitOf(repo, chunks(1, 400));
        await store.createVm(vmOf(repo, booted, 'sleeping'));
        const fromVm = await commitOf(repo, chunks(1, 500), [], { parentVmId: uuidv7() });
        const other = await userRepo('bob', 'other');
        const pinned = await commitOf(other, chunks(1, 600));
        await store.setTag(other.id, 'v1', pinned.id, 'bob');
        tick();
        const recent = await commitOf(repo, chunks(1, 700));

        const liveAt = async (since: string) => new Set(await store.liveManifests(since));
        const digestsOf = (...commits: Commit[]) => new Set(commits.map((c) => c.manifestDigest));
        expect(await liveAt(recent.createdAt)).toEqual(digestsOf(root, head, booted, fromVm, pinned, recent));
        expect(await liveAt(later(1))).toEqual(digestsOf(root, head, booted, fromVm, pinned));
        expect(await store.unreachable(later(1), { remove: false })).toEqual({ commits: 2, manifests: 2 });

        // A deleted repository's tags hold their commits until it is purged.
        await store.deleteRepository(other.id, 'bob');
        expect(await liveAt(later(1))).toEqual(digestsOf(root, head, booted, fromVm, pinned));
        expect(await store.purgeRepositories(now())).toBe(0); // deleted at `now`: not before it
        expect(await store.purgeRepositories(later(1))).toBe(1);
        expect(await store.purgeRepositories(null)).toBe(0);
        expect(await liveAt(later(1))).toEqual(digestsOf(root, head, booted, fromVm));

        expect(await store.transaction((tx) => tx.unreachable(later(1), { remove: true }), { exclusive: true })).toEqual({ commits: 3, manifests: 3 });
        expect(await store.getCommit(dropped.id)).toBeUndefined();
        expect(await store.getCommit(recent.id)).toBeUndefined();
        expect(await store.getManifest(pinned.manifestDigest)).toBeUndefined();
        expect(await store.getCommit(root.id)).toEqual(root);
        expect(await store.unreachable(later(1), { remove: false })).toEqual({ commits: 0, manifests: 0 });
      });

      it('lists a manifest\'s chunk digests in pages, forgets chunks no longer stored and prunes old uploads', async () => {
        const repo = await userRepo();
        const many = chunks(2500, 1000);
        const manifest = buildManifest(many.map((c, i) => file(`file-${i}`, [c])));
        await store.putManifest(manifest);
        const listed: string[] = [];
        for await (const page of store.manifestChunkDigests(manifest.digest)) listed.push(...page);
        expect(listed.sort()).toEqual(many.map((c) => c.digest).sort());

        const alice = await store.ensureUser('alice');
        const [a, b] = [digestOf(1), digestOf(2)];
        await store.recordRepositoryChunks(repo.id, [a, b]);
        await store.recordUploads(alice.id, [a]);
        tick();
        await store.recordUploads(alice.id, [b]);
        expect(await store.uploadedSince([a, b], now())).toEqual(new Set([b]));
        expect(await store.pruneUploads(now())).toBe(1);
        expect(await store.uploadedSince([a, b], '2000-01-01T00:00:00.000Z')).toEqual(new Set([b]));

        await store.forgetChunks([a]);
        expect(await store.reachableChunks({ repositoryId: repo.id }, [a, b])).toEqual(new Set([b]));
      });

      it('restores a deleted repository with the tags its deletion removed, but not one deleted before', async () => {
        const repo = await userRepo();
        const commit = await commitOf(repo, chunks(1, 100));
        await store.setTag(repo.id, 'keep', commit.id, 'alice');
        await store.setTag(repo.id, 'gone', commit.id, 'alice');
        tick();
        await store.deleteTag(repo.id, 'gone', 'alice');
        tick();
        await store.deleteRepository(repo.id, 'alice');
        expect(await store.findRestorableRepository(repo.namespaceId, 'DATA')).toBe(repo.id);
        const restored = await store.restoreRepository(repo.id, 'alice');
        expect(restored.id).toBe(repo.id);
        expect((await store.listTags(repo.id)).map((t) => t.name)).toEqual(['keep']);
        await expectDomainError(store.restoreRepository(repo.id, 'alice'), 'not_found');

        await store.deleteRepository(repo.id, 'alice');
        await repoIn(repo.namespaceId, 'data');
        await expectDomainError(store.restoreRepository(repo.id, 'alice'), 'conflict');
        tick();
        await store.purgeRepositories(null);
        expect(await store.findRestorableRepository(repo.namespaceId, 'data')).toBeUndefined();
      });

      it('runs no transaction while an exclusive one is open', async () => {
        const order: string[] = [];
        let release!: () => void;
        const held = new Promise<void>((resolve) => (release = resolve));
        let entered!: () => void;
        const inside = new Promise<void>((resolve) => (entered = resolve));
        const exclusive = store.transaction(
          async () => {
            entered();
            await held;
            order.push('exclusive');
          },
          { exclusive: true },
        );
        await inside;
        const other = store.transaction(async (tx) => {
          await tx.ensureUser('carol');
          order.push('other');
        });
        // Let the other transaction try its luck for a while before the exclusive one ends.
        for (let i = 0; i < 20; i++) await new Promise((resolve) => setImmediate(resolve));
        release();
        await Promise.all([exclusive, other]);
        expect(order).toEqual(['exclusive', 'other']);
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

      it('summarizes a stored manifest: its entry count and bytes of file content', async () => {
        const manifest = smallManifest();
        await store.putManifest(manifest);
        expect(await store.getManifestSummary(manifest.digest)).toEqual({
          digest: manifest.digest,
          entryCount: 4,
          totalSize: manifest.entries.reduce((n, e) => n + e.size, 0),
        });
        expect(await store.getManifestSummary(digestOf(1))).toBeUndefined();
      });

      it('reads one entry by its exact path: a path that is a prefix of another is a different entry', async () => {
        const manifest = buildManifest([file('a/b', chunks(2)), file('a/bc', chunks(1, 50)), file('a/b c', []), file('é/ü.txt', chunks(1, 60))]);
        await store.putManifest(manifest);
        const entry = await store.getManifestEntry(manifest.digest, 'a/b');
        expect(entry).toMatchObject({ path: 'a/b', type: 'file', mode: 0o644, size: 65_536 * 2 + 1, mtime: 1_700_000_000, linkTarget: null });
        expect(entry?.chunks.count).toBe(2);
        expect((await store.getManifestEntry(manifest.digest, 'a/bc'))?.size).toBe(65_536);
        expect((await store.getManifestEntry(manifest.digest, 'a/b c'))?.chunks.count).toBe(0);
        expect((await store.getManifestEntry(manifest.digest, 'é/ü.txt'))?.path).toBe('é/ü.txt');
        for (const missing of ['a', 'a/', 'a/b/', 'A/b', 'a/bcd']) expect(await store.getManifestEntry(manifest.digest, missing)).toBeUndefined();
        expect(await store.getManifestEntry(digestOf(1), 'a/b')).toBeUndefined();
      });

      it("locates a byte range in an entry's chunk list: the chunks holding its first and last byte, and where the first starts", async () => {
        // Sizes 65,536, 65,537, 65,538: chunk i starts at 65,536 * i + i * (i - 1) / 2.
        const list = chunks(3, 10);
        const manifest = buildManifest([file('f', list), file('empty')]);
        await store.putManifest(manifest);
        const entry = (await store.getManifestEntry(manifest.digest, 'f'))!;
        const covering = (start: number, end: number) => {
          const { offset, digests } = entry.chunks.covering(start, end);
          return { offset, digests: [...digests] };
        };
        const [c0, c1, c2] = list.map((c) => c.digest);
        expect(covering(0, 0)).toEqual({ offset: 0, digests: [c0] });
        expect(covering(0, 65_535)).toEqual({ offset: 0, digests: [c0] });
        expect(covering(65_535, 65_536)).toEqual({ offset: 0, digests: [c0, c1] });
        expect(covering(65_536, 65_536)).toEqual({ offset: 65_536, digests: [c1] });
        expect(covering(65_536, 131_073)).toEqual({ offset: 65_536, digests: [c1, c2] });
        expect(covering(131_073, 196_610)).toEqual({ offset: 131_073, digests: [c2] });
        expect(covering(0, 10_000_000)).toEqual({ offset: 0, digests: [c0, c1, c2] });
        expect(covering(196_611, 196_611).digests).toEqual([]);
        expect(covering(5, 4).digests).toEqual([]);
        const empty = (await store.getManifestEntry(manifest.digest, 'empty'))!;
        expect([...empty.chunks.covering(0, -1).digests]).toEqual([]);
        // The list's digest names the content: the same chunks give the same digest in any manifest.
        const again = buildManifest([file('elsewhere/g', list)]);
        await store.putManifest(again);
        expect((await store.getManifestEntry(again.digest, 'elsewhere/g'))!.chunks.digest()).toBe(entry.chunks.digest());
        expect(entry.chunks.digest()).not.toBe(empty.chunks.digest());
      });

      it("lists the entries that stand for a directory's children, in byte order, one per subtree below, after a path", async () => {
        // Byte order, not locale order: ' ' < '-' < '.' < '/' < '0' < 'B' < 'b' < 'é' (c3 a9) < 'ö' (c3 b6) < '𝄞' (f0).
        const paths = ['a', 'a b', 'a-b', 'a.b', 'a/0', 'a/B', 'a/b', 'a/b.c', 'a/b/c', 'a/b/d', 'a/bc', 'a/é', 'a/ö/x/y', 'a/ö/z', 'a/𝄞', 'a0', 'ab', 'b/x', 'b/y'];
        const manifest = buildManifest(paths.map((p) => (p === 'a' || p === 'a/b' ? directory(p) : file(p, chunks(1, paths.indexOf(p))))));
        await store.putManifest(manifest);
        const list = async (d: string, after?: string, limit = 100) => (await store.listChildEntries(manifest.digest, { dir: d, after, limit })).map((e) => e.path);
        expect(await list('')).toEqual(['a', 'a b', 'a-b', 'a.b', 'a/0', 'a0', 'ab', 'b/x']);
        expect(await list('a')).toEqual(['a/0', 'a/B', 'a/b', 'a/b.c', 'a/b/c', 'a/bc', 'a/é', 'a/ö/x/y', 'a/𝄞']);
        expect(await list('a', 'a/b')).toEqual(['a/b.c', 'a/b/c', 'a/bc', 'a/é', 'a/ö/x/y', 'a/𝄞']);
        expect(await list('a', 'a/b/c')).toEqual(['a/bc', 'a/é', 'a/ö/x/y', 'a/𝄞']);
        expect(await list('a', 'a/b/')).toEqual(['a/bc', 'a/é', 'a/ö/x/y', 'a/𝄞']);
        expect(await list('a', 'a/ö/z')).toEqual(['a/𝄞']);
        expect(await list('a', 'a/a-not-there')).toEqual(['a/b', 'a/b.c', 'a/b/c', 'a/bc', 'a/é', 'a/ö/x/y', 'a/𝄞']);
        expect(await list('a', undefined, 2)).toEqual(['a/0', 'a/B']);
        expect(await list('a/b')).toEqual(['a/b/c', 'a/b/d']);
        expect(await list('a/ö')).toEqual(['a/ö/x/y', 'a/ö/z']);
        expect(await list('a/bc')).toEqual([]);
        expect(await list('nope')).toEqual([]);
        const [head] = await store.listChildEntries(manifest.digest, { dir: 'a', after: 'a/B', limit: 1 });
        expect(head).toEqual({ path: 'a/b', type: 'dir', mode: 0o755, size: 0, mtime: 1, linkTarget: null });
        await expectDomainError(store.listChildEntries(manifest.digest, { dir: 'a', after: 'b/x', limit: 1 }), 'invalid');
        expect(await store.listChildEntries(digestOf(1), { dir: '', limit: 10 })).toEqual([]);
      });

      it('pages through a directory of 3,000 subdirectories and files one statement at a time', async () => {
        const entries: ManifestEntry[] = [];
        for (let i = 0; i < 1_000; i++) entries.push(directory(`big/d${i}`), file(`big/d${i}/x`), file(`big/f${i}`), file(`big/i${i}/deep/y`), file(`big/i${i}/z`));
        const manifest = buildManifest(entries);
        await store.putManifest(manifest);
        const seen: string[] = [];
        for (let after: string | undefined; ; ) {
          const page = await store.listChildEntries(manifest.digest, { dir: 'big', after, limit: 97 });
          seen.push(...page.map((e) => e.path));
          if (page.length < 97) break;
          after = page.at(-1)!.path;
        }
        // Each explicit directory then the first path below it; each implied one by its first path.
        expect(seen).toHaveLength(4_000);
        expect(new Set(seen).size).toBe(4_000);
        expect(seen.filter((p) => p.endsWith('/deep/y'))).toHaveLength(1_000);
        expect(seen.some((p) => p.endsWith('/z'))).toBe(false);
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

    describe('integrity reads', () => {
      it('pages every commit by id, and names the commits and manifests that do not exist', async () => {
        const repo = await userRepo();
        const first = await commitIn(repo);
        const second = await commitIn(repo, [first]);
        const third = await commitIn(repo, [second, first]);
        const pages: string[][] = [];
        for (let after = ''; ; ) {
          const page = await store.listCommitsAfter(after, 2);
          if (page.length === 0) break;
          pages.push(page.map((c) => c.id));
          after = page.at(-1)!.id;
        }
        expect(pages).toEqual([[first.id, second.id], [third.id]]);
        expect((await store.listCommitsAfter(second.id, 10))[0]).toEqual(third);

        const gone = uuidv7();
        expect(await store.missingCommits([gone, first.id, gone, third.id])).toEqual([gone]);
        expect(await store.missingCommits([])).toEqual([]);
        const manyIds = [...Array.from({ length: 2500 }, () => uuidv7()), second.id];
        expect(await store.missingCommits(manyIds)).toEqual(manyIds.slice(0, 2500));
        expect(await store.missingManifests([digestOf(7), first.manifestDigest, digestOf(7)])).toEqual([digestOf(7)]);
        expect(await store.countManifests()).toBe(1);
      });

      it('pages the chunk lists of every manifest’s files in (manifest, position) order, across manifests', async () => {
        const one = buildManifest([file('b.bin', chunks(2, 0)), file('a.bin', chunks(1, 10)), file('empty')]);
        const two = buildManifest([file('c.bin', chunks(3, 20))]);
        const dirOnly = buildManifest([{ path: 'd', type: 'dir', mode: 0o755, size: 0, mtime: 0, linkTarget: null, chunks: [] }]);
        for (const m of [one, two, dirOnly]) await store.putManifest(m);
        const expected = [one, two]
          .sort((x, y) => (x.digest < y.digest ? -1 : 1))
          .flatMap((m) =>
            m.entries.map((e, seq) => ({ manifestDigest: m.digest, seq, path: e.path, chunks: e.chunks })),
          );
        const read: unknown[] = [];
        for (let after: ManifestEntryKey | null = null; ; ) {
          const page = await store.listFileChunksAfter(after, 2);
          if (page.length === 0) break;
          read.push(...page);
          after = page.at(-1)!;
        }
        expect(read).toEqual(expected);
        expect(await store.countManifests()).toBe(3);
      });
    });

    describe('storage accounting', () => {
      it("answers each tag's manifest, a manifest's files, and totals counting each live repository's distinct manifests", async () => {
        const size = (m: Manifest) => m.entries.reduce((n, e) => n + e.size, 0);
        const source = await userRepo('alice', 'data');
        const first = await commitIn(source);
        const small = (await store.getManifest(first.manifestDigest))!;
        const other = buildManifest([file('x.bin', chunks(2, 50)), file('y.bin', chunks(1, 60))]);
        await store.putManifest(other);
        const second: Commit = { ...first, id: uuidv7(), parentIds: [first.id], manifestDigest: other.digest };
        await store.createCommit(second);
        await store.setTag(source.id, 'v1', first.id, 'alice');
        await store.setTag(source.id, 'v2', first.id, 'alice');
        await store.setTag(source.id, 'v3', second.id, 'alice');
        const fork = await repoIn(source.namespaceId, 'fork', { forkedFromRepoId: source.id, forkedFromCommitId: first.id });
        const forked = await commitIn(fork, [first]);
        await store.setTag(fork.id, 'main', forked.id, 'alice');
        const gone = await repoIn(source.namespaceId, 'gone');
        await store.setTag(gone.id, 'main', (await commitIn(gone)).id, 'alice');
        await store.deleteRepository(gone.id, 'alice');

        expect(await store.tagManifests(source.id)).toEqual([small.digest, small.digest, other.digest]);
        expect(await store.tagManifests(gone.id)).toEqual([]);
        expect(await store.countManifestFiles(small.digest)).toBe(2);
        expect(await store.countManifestFiles(other.digest)).toBe(2);
        expect(await store.countManifestFiles(digestOf(1))).toBe(0);
        expect(await store.metadataTotals()).toEqual({
          repositories: 2,
          commits: 4,
          manifests: 2,
          // The source's two manifests (v1 and v2 share one), and the fork's in full.
          logicalBytes: size(small) + size(other) + size(small),
        });
      });
    });

    describe('quotas', () => {
      const [a, b, c] = [digestOf(0x1a), digestOf(0x2b), digestOf(0x3c)];

      it('charges a chunk once, to the first namespace, and gives its bytes back when it is forgotten', async () => {
        const alice = await store.ensureUser('alice');
        const bob = await store.ensureUser('bob');
        expect(await store.storedBytes(alice.id)).toBe(0);
        expect(await store.chargeChunks(alice.id, new Map([[a, 100], [b, 200]]))).toBe(300);
        // Charged already: bob pays only for c, alice nothing more for a again.
        expect(await store.chargeChunks(bob.id, new Map([[a, 100], [c, 50]]))).toBe(50);
        expect(await store.chargeChunks(alice.id, new Map([[a, 100]]))).toBe(300);
        await store.forgetChunks([a, c]);
        expect(await store.storedBytes(alice.id)).toBe(200);
        expect(await store.storedBytes(bob.id)).toBe(0);
        // Forgotten, a can be charged anew.
        expect(await store.chargeChunks(bob.id, new Map([[a, 100]]))).toBe(100);
      });

      it('charges nothing when the transaction that charged rolls back', async () => {
        const alice = await store.ensureUser('alice');
        await expect(
          store.transaction(async (tx) => {
            await tx.chargeChunks(alice.id, new Map([[a, 100]]));
            throw new DomainError('insufficient_storage', 'over');
          }),
        ).rejects.toThrow('over');
        expect(await store.storedBytes(alice.id)).toBe(0);
        expect(await store.chargeChunks(alice.id, new Map([[a, 100]]))).toBe(100);
      });

      it('keeps the limits not named when one is set, and sets one back to the default with null', async () => {
        const alice = await store.ensureUser('alice');
        expect(await store.getQuota(alice.id)).toBeUndefined();
        expect((await store.setQuota(alice.id, { bytes: 2 ** 40, repositories: 3 })).limits).toEqual({ bytes: 2 ** 40, repositories: 3, runningVms: null });
        expect((await store.setQuota(alice.id, { runningVms: 1, bytes: null })).limits).toEqual({ bytes: null, repositories: 3, runningVms: 1 });
        expect((await store.getQuota(alice.id))?.limits).toEqual({ bytes: null, repositories: 3, runningVms: 1 });
      });

      it('counts live repositories, and with the lock, serializes creators checking a limit of one', async () => {
        const alice = await store.ensureUser('alice');
        await repoIn(alice.id, 'kept');
        const gone = await repoIn(alice.id, 'gone');
        await store.deleteRepository(gone.id, 'alice');
        expect(await store.countRepositories(alice.id)).toBe(1);
        // Ten creators each check "fewer than 2" and create: exactly one may pass.
        const create = (i: number) => () =>
          store.transaction(async (tx) => {
            if ((await tx.countRepositories(alice.id, true)) >= 2) throw new DomainError('too_many', 'full');
            return tx.createRepository({ namespaceId: alice.id, name: `r${i}`, visibility: 'private', description: '' });
          });
        const outcomes = await Promise.allSettled(Array.from({ length: 10 }, (_, i) => create(i)()));
        expect(outcomes.filter((o) => o.status === 'fulfilled')).toHaveLength(1);
        expect(await store.countRepositories(alice.id)).toBe(2);
      });
    });

    describe('chunk reachability', () => {
      const [a, b, c, d] = [digestOf(0xa1), digestOf(0xb2), digestOf(0xc3), digestOf(0xd4)];
      const sorted = (set: Set<string>) => [...set].sort();
      const viewerOf = (namespaceIds: number[]): ViewerFilter => ({ visibilities: ['public'], namespaceIds });

      it('reaches chunks through the repositories a viewer may see, and nothing else', async () => {
        const alice = await store.ensureUser('alice');
        const bob = await store.ensureUser('bob');
        const secret = await repoIn(alice.id, 'secret', { visibility: 'private' });
        const open = await repoIn(alice.id, 'open');
        await store.recordRepositoryChunks(secret.id, [a, b, a]);
        await store.recordRepositoryChunks(open.id, [c]);
        await store.recordRepositoryChunks(open.id, [c]); // idempotent

        expect(sorted(await store.reachableChunks(viewerOf([alice.id]), [a, b, c, d]))).toEqual([a, b, c].sort());
        expect(sorted(await store.reachableChunks(viewerOf([bob.id]), [a, b, c, d]))).toEqual([c]);
        expect(sorted(await store.reachableChunks('all', [a, d]))).toEqual([a]);
        expect(sorted(await store.reachableChunks({ visibilities: [], namespaceIds: [] }, [a, c]))).toEqual([]);
        expect(sorted(await store.reachableChunks({ repositoryId: open.id }, [a, c]))).toEqual([c]);
        expect(await store.reachableChunks(viewerOf([alice.id]), [])).toEqual(new Set());

        await store.deleteRepository(secret.id, 'alice');
        expect(sorted(await store.reachableChunks(viewerOf([alice.id]), [a, b, c]))).toEqual([c]);
        await expectDomainError(store.reachableChunks('all', ['not-a-digest']), 'invalid');
      });

      it("lets a fork reach what its ancestors held when it was forked, even once they are deleted, and no later chunk", async () => {
        const alice = await store.ensureUser('alice');
        const bob = await store.ensureUser('bob');
        const carol = await store.ensureUser('carol');
        const source = await repoIn(alice.id, 'source', { visibility: 'private' });
        await store.recordRepositoryChunks(source.id, [a]);
        tick();
        const fork = await repoIn(bob.id, 'fork', { visibility: 'private', forkedFromRepoId: source.id });
        await store.recordRepositoryChunks(fork.id, [b]);
        tick();
        const forkOfFork = await repoIn(carol.id, 'deeper', { visibility: 'private', forkedFromRepoId: fork.id });
        tick();
        await store.recordRepositoryChunks(source.id, [c]);
        await store.recordRepositoryChunks(fork.id, [d]);

        expect(sorted(await store.reachableChunks(viewerOf([bob.id]), [a, b, c, d]))).toEqual([a, b, d].sort());
        expect(sorted(await store.reachableChunks(viewerOf([carol.id]), [a, b, c, d]))).toEqual([a, b].sort());
        expect(sorted(await store.reachableChunks({ repositoryId: forkOfFork.id }, [a, b, c, d]))).toEqual([a, b].sort());

        await store.deleteRepository(source.id, 'alice');
        expect(sorted(await store.reachableChunks(viewerOf([bob.id]), [a, c]))).toEqual([a]);
        expect(sorted(await store.reachableChunks({ repositoryId: source.id }, [a, c]))).toEqual([]);
      });

      it('reaches the recorded chunks of a manifest while a tag of the repository points at a commit of it', async () => {
        const alice = await store.ensureUser('alice');
        const bob = await store.ensureUser('bob');
        const source = await repoIn(alice.id, 'source', { visibility: 'private' });
        const borrower = await repoIn(bob.id, 'borrower', { visibility: 'private' });
        const fork = await repoIn(bob.id, 'fork', { visibility: 'private', forkedFromRepoId: borrower.id });
        const commit = await commitIn(source);
        const otherManifest = buildManifest([file('other', chunks(1, 50))]);
        await store.putManifest(otherManifest);
        const later: Commit = { ...commit, id: uuidv7(), parentIds: [commit.id], manifestDigest: otherManifest.digest };
        await store.createCommit(later);
        await store.recordManifestChunks(commit.manifestDigest, [a, b, a]);
        await store.recordManifestChunks(commit.manifestDigest, [b]); // idempotent
        expect(sorted(await store.reachableChunks({ repositoryId: borrower.id }, [a, b, c]))).toEqual([]);

        await store.setTag(borrower.id, 'borrowed', commit.id, 'bob');
        expect(sorted(await store.reachableChunks({ repositoryId: borrower.id }, [a, b, c]))).toEqual([a, b].sort());
        expect(sorted(await store.reachableChunks(viewerOf([bob.id]), [a, c]))).toEqual([a]);
        expect(sorted(await store.reachableChunks(viewerOf([]), [a]))).toEqual([]);
        // Forks walk recorded repository chunks only: a tag of their source gives them nothing.
        expect(sorted(await store.reachableChunks({ repositoryId: fork.id }, [a, b]))).toEqual([]);

        // `later` has another manifest: moving the tag takes the reach with it.
        await store.setTag(borrower.id, 'borrowed', later.id, 'bob');
        expect(sorted(await store.reachableChunks({ repositoryId: borrower.id }, [a, b]))).toEqual([]);
        await store.setTag(borrower.id, 'borrowed', commit.id, 'bob');
        await store.deleteRepository(borrower.id, 'alice');
        expect(sorted(await store.reachableChunks('all', [a, b]))).toEqual([]);
        await expectDomainError(store.recordManifestChunks(commit.manifestDigest, ['not-a-digest']), 'invalid');
      });

      it('counts uploads per user from a point in time, refreshed by a second upload', async () => {
        const alice = await store.ensureUser('alice');
        const bob = await store.ensureUser('bob');
        const longAgo = '2000-01-01T00:00:00.000Z';
        await store.recordUploads(alice.id, [a, b, a]);
        expect(sorted(await store.uploadedChunks(alice.id, [a, b, c], longAgo))).toEqual([a, b].sort());
        expect(sorted(await store.uploadedChunks(bob.id, [a, b, c], longAgo))).toEqual([]);
        tick();
        const later = now();
        expect(sorted(await store.uploadedChunks(alice.id, [a, b], later))).toEqual([]);
        await store.recordUploads(alice.id, [b]);
        expect(sorted(await store.uploadedChunks(alice.id, [a, b], later))).toEqual([b]);
      });

      it('records and looks up more digests than one statement binds', async () => {
        const repo = await userRepo();
        const many = Array.from({ length: 12_345 }, (_, i) => digestOf(i + 1));
        await store.recordRepositoryChunks(repo.id, many);
        expect((await store.reachableChunks('all', [...many, digestOf(0)])).size).toBe(many.length);
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

    describe('concurrency', () => {
      /** The outcomes of `calls` run at once: how many resolved, and the kinds of the errors of the others. */
      async function race(calls: (() => Promise<unknown>)[]): Promise<{ won: number; lost: (ErrorKind | 'other')[] }> {
        const outcomes = await Promise.allSettled(calls.map((call) => call()));
        const lost = outcomes.flatMap((o) =>
          o.status === 'fulfilled' ? [] : [o.reason instanceof DomainError ? o.reason.kind : ('other' as const)],
        );
        return { won: outcomes.length - lost.length, lost };
      }

      /** A push as SnapshotService makes one: a commit on `parent`, and the tag moved from it in one transaction. */
      const push = (repo: Repository, parent: Commit, commit: Commit) => () =>
        store.transaction(async (tx) => {
          await tx.createCommit(commit);
          return tx.setTag(repo.id, 'main', commit.id, 'alice', parent.id);
        });

      it('two pushers with one expected parent: exactly one moves the tag, the other gets conflict and leaves nothing', async () => {
        const repo = await userRepo();
        let head = await commitIn(repo);
        await store.setTag(repo.id, 'main', head.id, 'alice', null);
        // Rounds, each from the last winner, give the engine many chances to interleave.
        for (let round = 0; round < 10; round++) {
          const manifest = smallManifest();
          const child = (): Commit => ({ ...head, id: uuidv7(), parentIds: [head.id], manifestDigest: manifest.digest, message: `round ${round}` });
          const [a, b] = [child(), child()];
          expect(await race([push(repo, head, a), push(repo, head, b)])).toEqual({ won: 1, lost: ['conflict'] });
          const tag = await store.getTag(repo.id, 'main');
          const winner = tag?.commitId === a.id ? a : b;
          const loser = winner === a ? b : a;
          expect(tag?.commitId).toBe(winner.id);
          expect(await store.getCommit(loser.id)).toBeUndefined();
          expect((await store.tagLog(repo.id, 'main'))[0]).toMatchObject({ oldCommitId: head.id, newCommitId: winner.id });
          head = winner;
        }
        expect(await store.tagLog(repo.id, 'main')).toHaveLength(11);
      });

      it('moves without an expectation all land, each logging the commit it really replaced', async () => {
        const repo = await userRepo();
        const first = await commitIn(repo);
        await store.setTag(repo.id, 'main', first.id, 'alice');
        const commits = await Promise.all(Array.from({ length: 10 }, () => commitIn(repo, [first])));
        expect(await race(commits.map((c) => () => store.setTag(repo.id, 'main', c.id, 'alice')))).toEqual({ won: 10, lost: [] });
        // Oldest first, the log is one chain: each move starts where the one before it ended.
        const log = (await store.tagLog(repo.id, 'main')).reverse();
        expect(log).toHaveLength(11);
        log.slice(1).forEach((entry, i) => expect(entry.oldCommitId).toBe(log[i]?.newCommitId));
        expect(log.at(-1)?.newCommitId).toBe((await store.getTag(repo.id, 'main'))?.commitId);
      });

      it('200 concurrent creations and forks of one name make exactly one repository; the rest get conflict', async () => {
        const source = await userRepo('alice', 'source');
        const sourceCommit = await commitIn(source);
        const org = await store.createOrg('acme');
        const create = (i: number) => () =>
          // As RepositoryService and ForkService do: check the names, then create, in one transaction.
          store.transaction(async (tx) => {
            const fork = i % 2 === 1;
            const name = i % 3 === 0 ? 'data' : 'Data';
            if ((await tx.takenNames(org.id, { name })).length > 0) throw new DomainError('conflict', `${name} is taken`);
            // Titles differ: only the name, ignoring case, may keep all but one out.
            return tx.createRepository({
              namespaceId: org.id,
              name,
              displayName: `title ${i}`,
              visibility: 'public',
              description: '',
              ...(fork && { forkedFromRepoId: source.id, forkedFromCommitId: sourceCommit.id }),
            });
          });
        const { won, lost } = await race(Array.from({ length: 200 }, (_, i) => create(i)));
        expect({ won, lost: new Set(lost) }).toEqual({ won: 1, lost: new Set(['conflict']) });
        expect((await store.listRepositories(org.id, all)).total).toBe(1);
      });

      it('a commit deleted while it is being tagged: the delete or the tag wins, never both', async () => {
        const repo = await userRepo();
        for (let round = 0; round < 10; round++) {
          const commit = await commitIn(repo);
          const tag = `t${round}`;
          const outcome = await race([() => store.deleteCommit(commit.id), () => store.setTag(repo.id, tag, commit.id, 'alice')]);
          const tagged = await store.getTag(repo.id, tag);
          const kept = await store.getCommit(commit.id);
          expect(outcome.won).toBe(1);
          if (tagged) {
            // The tag won: the delete saw it, or the engine's foreign key stopped it.
            expect(outcome.lost).toEqual(['conflict']);
            expect(kept).toEqual(commit);
          } else {
            expect(outcome.lost).toEqual(['not_found']);
            expect(kept).toBeUndefined();
          }
        }
      });

      it('concurrent changes to different fields of a commit all land', async () => {
        const repo = await userRepo();
        const commit = await commitIn(repo);
        await race([
          () => store.updateCommit(commit.id, { title: 'the title' }),
          () => store.updateCommit(commit.id, { description: 'the description' }),
          () => store.updateCommit(commit.id, { isPublic: true }),
        ]);
        expect(await store.getCommit(commit.id)).toEqual({ ...commit, title: 'the title', description: 'the description', isPublic: true });
      });

      it('of concurrent claims of one idempotency key, exactly one is new', async () => {
        const claims = await Promise.all(Array.from({ length: 20 }, () => store.reserveIdempotencyKey('alice', 'k1', '2000-01-01T00:00:00.000Z')));
        expect(claims.filter((c) => c.state === 'new')).toHaveLength(1);
        expect(claims.filter((c) => c.state === 'in_progress')).toHaveLength(19);
      });
    });

    describe('signing key', () => {
      it('stores the first candidate and answers it ever after, also to concurrent callers', async () => {
        const answers = await Promise.all(['{"kid":"a"}', '{"kid":"b"}', '{"kid":"c"}'].map((candidate) => store.ensureSigningKey(candidate)));
        expect(new Set(answers).size).toBe(1);
        expect(['{"kid":"a"}', '{"kid":"b"}', '{"kid":"c"}']).toContain(answers[0]);
        expect(await store.ensureSigningKey('{"kid":"d"}')).toBe(answers[0]);
      });
    });

    describe('idempotency keys', () => {
      const longAgo = '2000-01-01T00:00:00.000Z';
      const farAhead = '2999-01-01T00:00:00.000Z';
      // Bytes that are not valid UTF-8 come back as they went in.
      const answer: StoredResponse = { status: 201, headers: { location: '/r/1', 'x-id': '7' }, body: Buffer.from([0x7b, 0xff, 0x00, 0xc3, 0x7d]) };

      it('claims a key once, reports it in progress, then returns the body digest and the answer', async () => {
        expect(await store.reserveIdempotencyKey('alice', 'k1', longAgo)).toEqual({ state: 'new' });
        expect(await store.reserveIdempotencyKey('alice', 'k1', longAgo)).toEqual({ state: 'in_progress' });
        await store.completeIdempotencyKey('alice', 'k1', 'digest-a', answer);
        const replay = { state: 'done', bodyDigest: 'digest-a', response: answer };
        expect(await store.reserveIdempotencyKey('alice', 'k1', longAgo)).toEqual(replay);
        expect(await store.reserveIdempotencyKey('alice', 'k1', longAgo)).toEqual(replay);
        // Keys are per scope: the same key in another scope is another claim.
        expect(await store.reserveIdempotencyKey('bob', 'k1', longAgo)).toEqual({ state: 'new' });
      });

      it('keeps an empty answer as an empty body', async () => {
        await store.reserveIdempotencyKey('alice', 'k1', longAgo);
        const empty: StoredResponse = { status: 204, headers: {}, body: Buffer.alloc(0) };
        await store.completeIdempotencyKey('alice', 'k1', 'digest-a', empty);
        expect(await store.reserveIdempotencyKey('alice', 'k1', longAgo)).toEqual({ state: 'done', bodyDigest: 'digest-a', response: empty });
      });

      it('forgets a released claim, so that a retry acts again and a late answer is not stored', async () => {
        await store.reserveIdempotencyKey('alice', 'k1', longAgo);
        await store.releaseIdempotencyKey('alice', 'k1');
        await store.completeIdempotencyKey('alice', 'k1', 'digest-a', answer);
        expect(await store.reserveIdempotencyKey('alice', 'k1', longAgo)).toEqual({ state: 'new' });
        await store.releaseIdempotencyKey('alice', 'unknown');
      });

      it('keeps the first answer when a claim is completed twice', async () => {
        await store.reserveIdempotencyKey('alice', 'k1', longAgo);
        await store.completeIdempotencyKey('alice', 'k1', 'digest-a', answer);
        await store.completeIdempotencyKey('alice', 'k1', 'digest-b', { status: 500, headers: {}, body: Buffer.alloc(0) });
        expect(await store.reserveIdempotencyKey('alice', 'k1', longAgo)).toEqual({
          state: 'done',
          bodyDigest: 'digest-a',
          response: answer,
        });
      });

      it('lets claims older than notBefore be claimed anew, whatever their state', async () => {
        await store.reserveIdempotencyKey('alice', 'done', longAgo);
        await store.completeIdempotencyKey('alice', 'done', 'digest-a', answer);
        await store.reserveIdempotencyKey('alice', 'running', longAgo);
        tick();

        expect(await store.reserveIdempotencyKey('alice', 'done', farAhead)).toEqual({ state: 'new' });
        // That reservation expired the other old claim too; a fresh one now holds 'done'.
        expect(await store.reserveIdempotencyKey('alice', 'running', longAgo)).toEqual({ state: 'new' });
        expect(await store.reserveIdempotencyKey('alice', 'done', longAgo)).toEqual({ state: 'in_progress' });
      });
    });

    describe('vms', () => {
      it('creates a VM once and reads it back, size and labels included', async () => {
        const repo = await userRepo();
        const commit = await commitIn(repo);
        const vm: Vm = { ...vmOf(repo, commit, 'sleeping'), labels: { team: 'ml', 'ci run': 'ünïcode' }, vcpuCount: 2, memSizeMib: 512 };
        await store.createVm(vm);
        expect(await store.getVm(vm.id)).toEqual(vm);
        expect(await store.getVm(uuidv7())).toBeUndefined();
        await expectDomainError(store.createVm(vm), 'conflict');
        await expectDomainError(store.createVm({ ...vm, id: uuidv7(), commitId: uuidv7() }), 'not_found');
      });

      it("lists a namespace's live VMs oldest first, without deleted ones or another namespace's", async () => {
        const repo = await userRepo('alice');
        const bobs = await userRepo('bob');
        const commit = await commitIn(repo);
        const first = vmOf(repo, commit, 'running');
        tick();
        const second = vmOf(repo, commit, 'sleeping');
        tick();
        const third = vmOf(repo, commit, 'paused');
        // Created out of order: the list follows created_at, not insertion.
        for (const vm of [third, first, second, vmOf(bobs, await commitIn(bobs), 'running')]) await store.createVm(vm);

        expect(await store.listVms(repo.namespaceId)).toEqual([first, second, third]);
        expect(await store.deleteVm(second.id)).toBe(true);
        expect((await store.listVms(repo.namespaceId)).map((v) => v.id)).toEqual([first.id, third.id]);
        expect(await store.listVms(repo.namespaceId + 1000)).toEqual([]);
      });

      it('records state changes of live VMs only', async () => {
        const repo = await userRepo();
        const vm = vmOf(repo, await commitIn(repo), 'booting');
        await store.createVm(vm);
        expect(await store.setVmState(vm.id, 'running')).toBe(true);
        expect((await store.getVm(vm.id))?.state).toBe('running');
        expect(await store.setVmState(uuidv7(), 'paused')).toBe(false);
        await store.deleteVm(vm.id);
        expect(await store.setVmState(vm.id, 'running')).toBe(false);
        expect((await store.getVm(vm.id))?.state).toBe('dead');
      });

      it("soft-deletes a VM once, stamped with the store's clock, and keeps its row", async () => {
        const repo = await userRepo();
        const vm = vmOf(repo, await commitIn(repo), 'running');
        await store.createVm(vm);
        tick();
        const deletedAt = now();
        expect(await store.deleteVm(vm.id)).toBe(true);
        expect(await store.getVm(vm.id)).toEqual({ ...vm, state: 'dead', deletedAt });
        tick();
        expect(await store.deleteVm(vm.id)).toBe(false);
        expect((await store.getVm(vm.id))?.deletedAt).toBe(deletedAt);
        expect(await store.deleteVm(uuidv7())).toBe(false);
      });

      it("marks dead the host's live VMs left booting, running or paused (and host-less ones), and only those", async () => {
        const repo = await userRepo();
        const commit = await commitIn(repo);
        const vms = {
          booting: vmOf(repo, commit, 'booting'),
          running: vmOf(repo, commit, 'running'),
          paused: vmOf(repo, commit, 'paused'),
          hostless: vmOf(repo, commit, 'running', null),
          sleeping: vmOf(repo, commit, 'sleeping', null),
          dead: vmOf(repo, commit, 'dead'),
          elsewhere: vmOf(repo, commit, 'running', 'server-b'),
        };
        for (const vm of Object.values(vms)) await store.createVm(vm);
        const marked = await store.markRunningVmsDead('server-a');
        expect(marked.sort()).toEqual([vms.booting.id, vms.running.id, vms.paused.id, vms.hostless.id].sort());
        for (const name of ['booting', 'running', 'paused', 'hostless', 'dead'] as const) expect((await store.getVm(vms[name].id))?.state).toBe('dead');
        expect((await store.getVm(vms.sleeping.id))?.state).toBe('sleeping');
        expect((await store.getVm(vms.elsewhere.id))?.state).toBe('running');
        expect(await store.markRunningVmsDead('server-a')).toEqual([]);
      });

      it('lets one server claim a sleeping VM, once, also among concurrent claims', async () => {
        const repo = await userRepo();
        const commit = await commitIn(repo);
        const sleeping = vmOf(repo, commit, 'sleeping', null);
        await store.createVm(sleeping);
        const claims = await Promise.all(['server-a', 'server-b', 'server-c'].map((host) => store.claimSleepingVm(sleeping.id, host)));
        expect(claims.filter(Boolean)).toHaveLength(1);
        const claimed = await store.getVm(sleeping.id);
        expect(claimed).toMatchObject({ state: 'booting', host: ['server-a', 'server-b', 'server-c'][claims.indexOf(true)] });
        expect(await store.claimSleepingVm(sleeping.id, 'server-a')).toBe(false);
        const running = vmOf(repo, commit, 'running');
        await store.createVm(running);
        expect(await store.claimSleepingVm(running.id, 'server-b')).toBe(false);
        const deleted = vmOf(repo, commit, 'sleeping', null);
        await store.createVm(deleted);
        await store.deleteVm(deleted.id);
        expect(await store.claimSleepingVm(deleted.id, 'server-a')).toBe(false);
        expect(await store.claimSleepingVm(uuidv7(), 'server-a')).toBe(false);
      });
    });
  });
}

/** What only the SQLite store has: its file's settings, upgrades of released files, query plans, a full disk. */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { CompiledQuery, Kysely, Migrator, SqliteDialect, sql } from 'kysely';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DomainError } from '../../src/domain/errors.js';
import { buildManifest } from '../../src/domain/manifest.js';
import { SqlMetadataStore } from '../../src/store/sql/metadata-store.js';
import { migrateToLatest, migrationsFor } from '../../src/store/sql/migrations.js';
import type { Database } from '../../src/store/sql/schema.js';
import { openSqliteDatabase, openSqliteMetadataStore, sqliteDialect } from '../../src/store/sqlite/database.js';
import { WAL_SIZE_LIMIT } from '../../src/store/sqlite/wal-size.js';
import { WalSync } from '../../src/store/sqlite/group-commit.js';
import type { MetadataStore } from '../../src/store/types.js';

const tempDir = () => mkdtemp(join(tmpdir(), 'snapfork-sqlite-'));
const migrations = migrationsFor(sqliteDialect);
const migrate = (db: Kysely<Database>) => migrateToLatest(db, sqliteDialect);
const migrationNames = Object.keys(migrations).sort();
/** The names of the migrations from the one numbered `number` on, in order. */
const namesFrom = (number: string) => migrationNames.filter((name) => name >= number);
/** A provider of the migrations before the one numbered `number`: a database as an older release left it. */
const before = (number: string) => ({
  getMigrations: async () => Object.fromEntries(Object.entries(migrations).filter(([name]) => name < number)),
});
/** Migrations of released versions: their names are recorded in users' databases and never change. */
const RELEASED = [
  '0001_initial',
  '0002_forks_commits_idempotency',
  '0003_chunk_reachability',
  '0004_idempotency_bytes',
  '0005_links_and_titles',
  '0006_foreign_tags',
  '0007_vms',
  '0008_vm_commits',
  '0009_signing_keys',
  '0010_vm_hosts',
  '0011_purged_repositories',
];

/** The schema of a SQLite file as sqlite_master holds it, by name. */
function schemaOf(file: string): unknown[] {
  const db = new BetterSqlite3(file, { readonly: true });
  try {
    return db.prepare('SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY name').all();
  } finally {
    db.close();
  }
}

describe('SQLite metadata store', () => {
  let dir: string;
  let file: string;

  beforeEach(async () => {
    dir = await tempDir();
    file = join(dir, 'snapfork.db');
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('opens connections with WAL, synchronous=NORMAL (the commits synced by group commit), foreign keys and a busy timeout', async () => {
    const db = openSqliteDatabase(file);
    try {
      const pragma = async (name: string) =>
        Object.values((await sql.raw(`PRAGMA ${name}`).execute(db)).rows[0] as object)[0] as unknown;
      expect(await pragma('journal_mode')).toBe('wal');
      expect(await pragma('synchronous')).toBe(1);
      expect(await pragma('journal_size_limit')).toBe(WAL_SIZE_LIMIT);
      expect(await pragma('foreign_keys')).toBe(1);
      expect(await pragma('busy_timeout')).toBe(5000);
    } finally {
      await db.destroy();
    }
  });

  describe('group commit', () => {
    let wal: WalSync;
    let store: MetadataStore;
    beforeEach(async () => {
      wal = new WalSync(`${file}-wal`);
      store = await openSqliteMetadataStore(file, { wal });
    });
    afterEach(() => store.close());

    it('answers a write only once a sync of the log that began after it has finished', async () => {
      let syncs = wal.syncs;
      await store.createOrg('acme');
      expect(wal.syncs).toBeGreaterThan(syncs);
      syncs = wal.syncs;
      await store.transaction((tx) => tx.createOrg('initech'));
      expect(wal.syncs).toBeGreaterThan(syncs);
      // An update outside any transaction, by a statement that writes without a guard.
      const repo = await store.createRepository({ namespaceId: (await store.getNamespace('acme'))!.id, name: 'data', visibility: 'public', description: '' });
      syncs = wal.syncs;
      await store.updateRepository(repo.id, { description: 'the data' });
      expect(wal.syncs).toBeGreaterThan(syncs);
    });

    it('syncs nothing for reads, in a transaction or not', async () => {
      await store.createOrg('acme');
      const syncs = wal.syncs;
      expect(await store.getNamespace('acme')).toMatchObject({ name: 'acme' });
      await store.transaction(async (tx) => expect(await tx.getNamespace('acme')).toBeDefined());
      expect(wal.syncs).toBe(syncs);
    });

    it('makes the commits of concurrent writers durable with a few syncs, not one each', async () => {
      const syncs = wal.syncs;
      const orgs = Array.from({ length: 64 }, (_, i) => `org-${i}`);
      await Promise.all(orgs.map((name) => store.transaction((tx) => tx.createOrg(name))));
      const used = wal.syncs - syncs;
      expect(used).toBeGreaterThanOrEqual(1);
      expect(used).toBeLessThanOrEqual(8);
      for (const name of orgs) expect(await store.getNamespace(name)).toMatchObject({ name });
    });
  });

  it('applies each migration once and keeps the data across reopening', async () => {
    const db = openSqliteDatabase(file);
    expect(migrationNames.slice(0, RELEASED.length)).toEqual(RELEASED);
    expect(await migrate(db)).toEqual(migrationNames);
    await db.destroy();

    const first = await openSqliteMetadataStore(file);
    const alice = await first.ensureUser('alice');
    await first.close();

    const again = openSqliteDatabase(file);
    try {
      expect(await migrate(again)).toEqual([]);
      const applied = await sql<{ name: string }>`SELECT name FROM kysely_migration`.execute(again);
      expect(applied.rows).toEqual(migrationNames.map((name) => ({ name })));
    } finally {
      await again.destroy();
    }
    const reopened = await openSqliteMetadataStore(file);
    try {
      expect(await reopened.getNamespace('alice')).toEqual(alice);
    } finally {
      await reopened.close();
    }
  });

  it('opens a file that released code made (0001-0008) unchanged: same schema, its data read and written', async () => {
    const old = new BetterSqlite3(file);
    old.exec(await readFile(new URL('../fixtures/sqlite-metadata-0008.sql', import.meta.url), 'utf8'));
    old.close();
    const fresh = join(dir, 'fresh.db');
    await (await openSqliteMetadataStore(fresh)).close();

    const store = await openSqliteMetadataStore(file);
    try {
      expect(schemaOf(file)).toEqual(schemaOf(fresh));
      const acme = await store.getNamespace('ACME');
      expect(acme).toMatchObject({ id: 2, name: 'Acme', kind: 'org' });
      const source = await store.getRepository('acme', 'data');
      expect(source).toMatchObject({ id: 1, name: 'Data', archived: false, description: 'the data' });
      const fork = await store.getRepositoryById(2);
      expect(fork).toMatchObject({ archived: true, inheritsFromRepoId: 1, forkedFromCommitId: '01890000-0000-7000-8000-000000000001' });
      const commit = await store.getCommit('01890000-0000-7000-8000-000000000001');
      expect(commit).toMatchObject({ isPublic: true, title: 'First', createdAt: '2030-01-01T00:00:05.000Z' });
      expect((await store.listHistory('01890000-0000-7000-8000-000000000002', { limit: 10, offset: 0 })).map((c) => c.message)).toEqual(['fork', 'first']);
      expect(await store.getManifest(commit!.manifestDigest)).toMatchObject({ entries: [{ path: 'a.csv' }, { path: 'link', linkTarget: 'a.csv' }] });
      const d = (n: number) => n.toString(16).padStart(64, '0');
      expect(await store.reachableChunks({ repositoryId: 2 }, [d(1), d(2), d(3)])).toEqual(new Set([d(1), d(2)]));
      expect(await store.getVm('vm-1')).toMatchObject({ labels: { team: 'ml' }, vcpuCount: 2, memSizeMib: 512 });
      expect(await store.reserveIdempotencyKey('alice:POST /x', 'k1', '2000-01-01T00:00:00.000Z')).toMatchObject({ state: 'done', response: { status: 201 } });
      // Written through: ids continue after the file's own.
      expect(await store.createRepository({ namespaceId: 2, name: 'more', visibility: 'public', description: '' })).toMatchObject({ id: 3 });
      await expect(store.createRepository({ namespaceId: 2, name: 'DATA', visibility: 'public', description: '' })).rejects.toMatchObject({ kind: 'conflict' });
    } finally {
      await store.close();
    }
  });

  it('upgrades a 0001 database: display names copied from names, old commits private and untitled', async () => {
    const db = openSqliteDatabase(file);
    const initialOnly = { getMigrations: async () => ({ '0001_initial': migrations['0001_initial'] }) };
    expect((await new Migrator({ db, provider: initialOnly }).migrateToLatest()).error).toBeUndefined();
    const at = '2030-01-01T00:00:00.000Z';
    await sql`INSERT INTO namespaces (id, name, kind, display_name, created_at)
              VALUES (1, 'alice', 'user', 'alice', ${at})`.execute(db);
    await sql`INSERT INTO repositories (id, uuid, namespace_id, name, visibility, description, created_at, updated_at)
              VALUES (1, 'u-1', 1, 'Data', 'public', '', ${at}, ${at})`.execute(db);
    await sql`INSERT INTO manifests (digest, entry_count, total_size, created_at)
              VALUES ('m', 0, 0, ${at})`.execute(db);
    await sql`INSERT INTO commits (id, repository_id, parent_ids, manifest_digest, message, author, created_at)
              VALUES ('c-1', 1, '[]', 'm', 'old', 'alice', ${at})`.execute(db);
    expect(await migrate(db)).toEqual(namesFrom('0002'));
    await db.destroy();

    const store = await openSqliteMetadataStore(file);
    try {
      expect((await store.getRepositoryById(1))?.displayName).toBe('Data');
      expect(await store.getCommit('c-1')).toMatchObject({ isPublic: false, title: null, description: '' });
    } finally {
      await store.close();
    }
  });

  it('upgrades a 0003 database: real forks inherit, links made after the fact do not, clashing titles are told apart', async () => {
    const db = openSqliteDatabase(file);
    expect((await new Migrator({ db, provider: before('0004') }).migrateToLatest()).error).toBeUndefined();
    const at = '2030-01-01T00:00:00.000Z';
    await sql`INSERT INTO namespaces (id, name, kind, display_name, created_at) VALUES (1, 'alice', 'user', 'alice', ${at})`.execute(db);
    await sql`INSERT INTO manifests (digest, entry_count, total_size, created_at) VALUES ('m', 0, 0, ${at})`.execute(db);
    const repo = (id: number, name: string, title: string, forkedFrom: number | null, forkedAt: string | null) =>
      sql`INSERT INTO repositories (id, uuid, namespace_id, name, display_name, visibility, description, forked_from_repo_id, forked_from_commit_id, created_at, updated_at)
          VALUES (${id}, ${`u-${id}`}, 1, ${name}, ${title}, 'public', '', ${forkedFrom}, ${forkedAt}, ${at}, ${at})`.execute(db);
    const commit = (id: string, repositoryId: number, parents: string[]) =>
      sql`INSERT INTO commits (id, repository_id, parent_ids, manifest_digest, message, author, created_at)
          VALUES (${id}, ${repositoryId}, ${JSON.stringify(parents)}, 'm', '', 'alice', ${at})`.execute(db);
    await repo(1, 'source', 'source', null, null);
    await commit('c-source', 1, []);
    await repo(2, 'fork', 'Same', 1, 'c-source');
    await commit('c-fork', 2, ['c-source']);
    await repo(3, 'linked', 'Same', 1, 'c-source');
    await repo(4, 'third', 'Same', null, null);
    expect(await migrate(db)).toEqual(namesFrom('0004'));
    await db.destroy();

    const store = await openSqliteMetadataStore(file);
    try {
      expect(await store.getRepositoryById(2)).toMatchObject({ forkedFromRepoId: 1, inheritsFromRepoId: 1, forkedFromCommitId: 'c-source', displayName: 'Same' });
      expect(await store.getRepositoryById(3)).toMatchObject({ forkedFromRepoId: 1, inheritsFromRepoId: null, forkedFromCommitId: null, displayName: 'Same (3)' });
      expect(await store.getRepositoryById(4)).toMatchObject({ inheritsFromRepoId: null, displayName: 'Same (4)' });
    } finally {
      await store.close();
    }
  });

  it('upgrades a 0006 database: VMs recorded by earlier forks get the default size, no labels, and stay live', async () => {
    const db = openSqliteDatabase(file);
    expect((await new Migrator({ db, provider: before('0007') }).migrateToLatest()).error).toBeUndefined();
    const at = '2030-01-01T00:00:00.000Z';
    await sql`INSERT INTO namespaces (id, name, kind, display_name, created_at) VALUES (1, 'alice', 'user', 'alice', ${at})`.execute(db);
    await sql`INSERT INTO repositories (id, uuid, namespace_id, name, display_name, visibility, description, created_at, updated_at)
              VALUES (1, 'u-1', 1, 'fork', 'fork', 'private', '', ${at}, ${at})`.execute(db);
    await sql`INSERT INTO manifests (digest, entry_count, total_size, created_at) VALUES ('m', 0, 0, ${at})`.execute(db);
    await sql`INSERT INTO commits (id, repository_id, parent_ids, manifest_digest, message, author, created_at)
              VALUES ('c-1', 1, '[]', 'm', '', 'alice', ${at})`.execute(db);
    await sql`INSERT INTO vms (id, commit_id, repository_id, namespace_id, state, created_at)
              VALUES ('v-1', 'c-1', 1, 1, 'sleeping', ${at})`.execute(db);
    expect(await migrate(db)).toEqual(namesFrom('0007'));
    await db.destroy();

    const store = await openSqliteMetadataStore(file);
    try {
      const vm = { id: 'v-1', commitId: 'c-1', repositoryId: 1, namespaceId: 1, state: 'sleeping', labels: {}, vcpuCount: 1, memSizeMib: 256, createdAt: at, deletedAt: null, host: null };
      expect(await store.getVm('v-1')).toEqual(vm);
      expect(await store.listVms(1)).toEqual([vm]);
    } finally {
      await store.close();
    }
  });

  it('upgrades a 0012 database: chunks recorded before quotas are charged to the oldest namespace that recorded them, at no cost', async () => {
    const db = openSqliteDatabase(file);
    expect((await new Migrator({ db, provider: before('0013') }).migrateToLatest()).error).toBeUndefined();
    const at = '2030-01-01T00:00:00.000Z';
    for (const [id, name] of [[1, 'alice'], [2, 'bob']] as const) {
      await sql`INSERT INTO namespaces (id, name, kind, display_name, created_at) VALUES (${id}, ${name}, 'user', ${name}, ${at})`.execute(db);
      await sql`INSERT INTO repositories (id, uuid, namespace_id, name, display_name, visibility, description, created_at, updated_at)
                VALUES (${id}, ${`u-${id}`}, ${id}, 'data', 'data', 'private', '', ${at}, ${at})`.execute(db);
    }
    const [shared, bobs] = [Buffer.alloc(32, 1), Buffer.alloc(32, 2)];
    for (const [digest, repositoryId] of [[shared, 2], [shared, 1], [bobs, 2]] as const) {
      await sql`INSERT INTO repository_chunks (digest, repository_id, recorded_at) VALUES (${digest}, ${repositoryId}, ${at})`.execute(db);
    }
    expect(await migrate(db)).toEqual(namesFrom('0013'));
    await db.destroy();

    const store = await openSqliteMetadataStore(file);
    try {
      expect(await store.storedBytes(1)).toBe(0);
      // Charged already, at size 0: a commit naming them charges nobody.
      expect(await store.chargeChunks(1, new Map([[shared.toString('hex'), 1000], [bobs.toString('hex'), 1000]]))).toBe(0);
      expect(await store.chargeChunks(2, new Map([[shared.toString('hex'), 1000]]))).toBe(0);
    } finally {
      await store.close();
    }
  });

  it("answers fork listings and counts, catalogues, public commits and a namespace's VMs from indexes, without sorting", async () => {
    const db = openSqliteDatabase(file);
    await migrate(db);
    const plan = async (query: string) =>
      (await sql<{ detail: string }>`EXPLAIN QUERY PLAN ${sql.raw(query)}`.execute(db)).rows.map((r) => r.detail);
    const repos = 'repositories r JOIN namespaces n ON n.id = r.namespace_id WHERE r.deleted_at IS NULL';
    try {
      const forks = `FROM ${repos} AND r.forked_from_repo_id = 1`;
      const forkPage = await plan(`SELECT r.* ${forks} ORDER BY r.created_at DESC, r.id DESC LIMIT 20`);
      expect(forkPage).toContainEqual(expect.stringContaining('USING INDEX repositories_forks'));
      const forkCount = await plan(`SELECT count(*) ${forks}`);
      expect(forkCount).toContainEqual(expect.stringContaining('USING INDEX repositories_forks'));
      const catalogue = await plan(`SELECT r.* FROM ${repos} ORDER BY r.created_at DESC, r.id DESC LIMIT 20`);
      expect(catalogue).toContainEqual(expect.stringContaining('USING INDEX repositories_live_created'));
      const publicCommits = await plan(
        `SELECT c.* FROM commits c JOIN repositories r ON r.id = c.repository_id
          WHERE r.deleted_at IS NULL AND c.is_public = 1 ORDER BY c.created_at DESC, c.id DESC LIMIT 20`,
      );
      expect(publicCommits).toContainEqual(expect.stringContaining('USING INDEX commits_public_created'));
      const vms = await plan(`SELECT * FROM vms WHERE namespace_id = 1 AND deleted_at IS NULL ORDER BY created_at, id`);
      expect(vms).toContainEqual(expect.stringContaining('USING INDEX vms_namespace_live'));
      for (const steps of [forkPage, catalogue, publicCommits, vms]) expect(steps.join('\n')).not.toContain('TEMP B-TREE');
    } finally {
      await db.destroy();
    }
  });

  it("finds a manifest entry by its path through the path index, not by walking the manifest's every entry", async () => {
    const statements: CompiledQuery[] = [];
    const db = new Kysely<Database>({
      dialect: new SqliteDialect({ database: new BetterSqlite3(file) }),
      log: (event) => void statements.push(event.query),
    });
    await migrate(db);
    const store = new SqlMetadataStore(db, sqliteDialect, () => new Date().toISOString());
    try {
      const entry = (path: string) => ({ path, type: 'file' as const, mode: 0o644, size: 0, mtime: 0, linkTarget: null, chunks: [] });
      const manifest = buildManifest([entry('a'), entry('b/c'), entry('d')]);
      await store.putManifest(manifest);
      statements.length = 0;
      expect(await store.getManifestEntry(manifest.digest, 'b/c')).toMatchObject({ path: 'b/c', type: 'file' });
      expect(statements).toHaveLength(1);
      const { sql: lookup, parameters } = statements[0]!;
      const plan = (await db.executeQuery<{ detail: string }>(CompiledQuery.raw(`EXPLAIN QUERY PLAN ${lookup}`, [...parameters]))).rows.map((r) => r.detail);
      // Every search of manifest_entries is keyed by the path or by a whole primary key, never by the digest alone.
      const searches = plan.filter((step) => step.startsWith('SEARCH manifest_entries'));
      expect(searches).toContainEqual(expect.stringContaining('INDEX manifest_entries_path (manifest_digest=? AND path=?)'));
      for (const step of searches) expect(step).toMatch(/path=\?|seq=\?/);
    } finally {
      await store.close();
    }
  });

  it('stamps rows with the injected clock', async () => {
    const times = ['2030-01-01T00:00:00.000Z', '2030-01-01T00:00:01.000Z', '2030-01-01T00:00:02.000Z'];
    let tick = 0;
    const store = await openSqliteMetadataStore(file, { now: () => times[Math.min(tick++, times.length - 1)] ?? '' });
    try {
      const alice = await store.ensureUser('alice');
      expect(alice.createdAt).toBe(times[0]);
      const repo = await store.createRepository({
        namespaceId: alice.id,
        name: 'data',
        visibility: 'public',
        description: '',
      });
      expect([repo.createdAt, repo.updatedAt]).toEqual([times[1], times[1]]);
      const updated = await store.updateRepository(repo.id, { description: 'x' });
      expect([updated.createdAt, updated.updatedAt]).toEqual([times[1], times[2]]);
    } finally {
      await store.close();
    }
  });

  it('reports a full disk as insufficient_storage and keeps the store usable', async () => {
    const db = openSqliteDatabase(file);
    await migrate(db);
    const store = new SqlMetadataStore(db, sqliteDialect, () => new Date().toISOString());
    try {
      // Cap the file at its current size: the next page SQLite needs fails with SQLITE_FULL.
      const { rows } = await sql<{ page_count: number }>`PRAGMA page_count`.execute(db);
      await sql.raw(`PRAGMA max_page_count = ${rows[0]?.page_count ?? 0}`).execute(db);
      const chunks = Array.from({ length: 20_000 }, (_, i) => ({ digest: i.toString(16).padStart(64, '0'), size: 1 }));
      const manifest = buildManifest([
        { path: 'big', type: 'file', mode: 0o644, size: chunks.length, mtime: 0, linkTarget: null, chunks },
      ]);
      const error: unknown = await store.putManifest(manifest).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(DomainError);
      expect((error as DomainError).kind).toBe('insufficient_storage');
      expect(await store.getManifest(manifest.digest)).toBeUndefined();

      // Once space is back, the same write goes through: the failed transaction left nothing open.
      await sql.raw('PRAGMA max_page_count = 1000000').execute(db);
      await store.putManifest(manifest);
      expect(await store.getManifest(manifest.digest)).toEqual(manifest);
    } finally {
      await store.close();
    }
  });
});

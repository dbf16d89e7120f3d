/**
 * Versioned schema migrations, applied in name order at start, for SQLite and PostgreSQL alike:
 * one list, each statement written once with the words that differ taken from the dialect's
 * DdlVocabulary (dialect.ts). With SQLite's words a statement is the text released before
 * PostgreSQL existed, so SQLite files keep their schema byte for byte (a test compares it).
 * PostgreSQL databases start empty, so the backfills of 0002 and 0005 change nothing there.
 * They live in code rather than in files so that the compiled dist/ needs nothing beside it. A
 * migration, once released, is never edited: change the schema by appending a new one.
 */
import { type Kysely, type Migration, type MigrationProvider, Migrator, sql } from 'kysely';
import type { DdlVocabulary, SqlDialect } from './dialect.js';
import type { Database } from './schema.js';

/**
 * A migration made of DDL statements, run one at a time (better-sqlite3 prepares one statement
 * per call) inside one transaction: Kysely's Migrator runs PostgreSQL's migrations in one
 * already, but SQLite's bare (it assumes SQLite cannot roll back DDL; it can), and a crash
 * mid-migration must not leave half a schema.
 */
const statements = (ddl: readonly string[]): Migration => {
  const run = async (db: Kysely<unknown>) => {
    for (const statement of ddl) await sql.raw(statement).execute(db);
  };
  return { up: (db: Kysely<unknown>) => (db.isTransaction ? run(db) : db.transaction().execute(run)) };
};

// STRICT tables make SQLite reject a value of the wrong type instead of storing it silently.
// Names compare case-insensitively (COLLATE NOCASE; citext in PostgreSQL): "Acme" and "acme"
// are the same namespace.
const initial = (t: DdlVocabulary) => statements([
  ...t.prelude,
  `CREATE TABLE namespaces (
     id           ${t.serialKey},
     name         ${t.caselessText} NOT NULL UNIQUE ${t.caseless},
     kind         TEXT NOT NULL CHECK (kind IN ('user', 'org')),
     display_name TEXT NOT NULL,
     created_at   ${t.timestamp} NOT NULL
   )${t.strict}`,
  `CREATE TABLE memberships (
     org_id  ${t.integer} NOT NULL REFERENCES namespaces (id),
     user_id ${t.integer} NOT NULL REFERENCES namespaces (id),
     role    TEXT NOT NULL CHECK (role IN ('owner', 'member')),
     PRIMARY KEY (org_id, user_id)
   )${t.strict}`,
  // Rows are soft-deleted: a fork keeps pointing at its source, and the source's commits stay
  // parents of the fork's commits. Only live rows hold their name.
  `CREATE TABLE repositories (
     id                    ${t.serialKey},
     uuid                  TEXT NOT NULL UNIQUE,
     namespace_id          ${t.integer} NOT NULL REFERENCES namespaces (id),
     name                  ${t.caselessText} NOT NULL ${t.caseless},
     visibility            TEXT NOT NULL CHECK (visibility IN ('public', 'private', 'internal')),
     description           TEXT NOT NULL,
     default_tag           TEXT,
     forked_from_repo_id   ${t.integer} REFERENCES repositories (id),
     forked_from_commit_id TEXT,
     archived              ${t.falseByDefault('archived')},
     created_at            ${t.timestamp} NOT NULL,
     updated_at            ${t.timestamp} NOT NULL,
     deleted_at            ${t.timestamp}
   )${t.strict}`,
  `CREATE UNIQUE INDEX repositories_live_name
     ON repositories (namespace_id, name ${t.caseless}) WHERE deleted_at IS NULL`,
  `CREATE INDEX repositories_forked_from ON repositories (forked_from_repo_id)`,
  `CREATE TABLE manifests (
     digest      TEXT PRIMARY KEY,
     entry_count ${t.integer} NOT NULL,
     total_size  ${t.integer} NOT NULL,
     created_at  ${t.timestamp} NOT NULL
   )${t.strict}`,
  // One row per entry; a file's chunk list is one blob of 36-byte records (32-byte SHA-256,
  // 4-byte big-endian size), so a 4 GiB file's ~65K chunks cost one 2.3 MB value, not 65K rows.
  `CREATE TABLE manifest_entries (
     manifest_digest TEXT NOT NULL REFERENCES manifests (digest),
     seq             ${t.integer} NOT NULL,
     path            TEXT NOT NULL,
     type            TEXT NOT NULL CHECK (type IN ('file', 'dir', 'symlink')),
     mode            ${t.integer} NOT NULL,
     size            ${t.integer} NOT NULL,
     mtime           ${t.integer} NOT NULL,
     link_target     TEXT,
     chunks          ${t.blob} NOT NULL,
     PRIMARY KEY (manifest_digest, seq)
   )${t.strictWithoutRowid}`,
  `CREATE TABLE commits (
     id              TEXT PRIMARY KEY,
     repository_id   ${t.integer} NOT NULL REFERENCES repositories (id),
     parent_ids      TEXT NOT NULL,
     manifest_digest TEXT NOT NULL REFERENCES manifests (digest),
     message         TEXT NOT NULL,
     author          TEXT NOT NULL,
     created_at      ${t.timestamp} NOT NULL
   )${t.strict}`,
  `CREATE INDEX commits_repository ON commits (repository_id)`,
  `CREATE TABLE tags (
     id            TEXT PRIMARY KEY,
     repository_id ${t.integer} NOT NULL REFERENCES repositories (id),
     name          TEXT NOT NULL,
     commit_id     TEXT NOT NULL REFERENCES commits (id),
     description   TEXT NOT NULL,
     created_at    ${t.timestamp} NOT NULL,
     updated_at    ${t.timestamp} NOT NULL,
     UNIQUE (repository_id, name)
   )${t.strict}`,
  // An append-only audit trail: it outlives the tags (and commits) it mentions, so no foreign keys.
  `CREATE TABLE tag_log (
     id            ${t.rowKey},
     repository_id ${t.integer} NOT NULL,
     tag_name      TEXT NOT NULL,
     old_commit_id TEXT,
     new_commit_id TEXT,
     actor         TEXT NOT NULL,
     at            ${t.timestamp} NOT NULL
   )${t.strict}`,
  `CREATE INDEX tag_log_repository ON tag_log (repository_id)`,
  `CREATE TABLE vms (
     id            TEXT PRIMARY KEY,
     commit_id     TEXT NOT NULL REFERENCES commits (id),
     repository_id ${t.integer} NOT NULL REFERENCES repositories (id),
     namespace_id  ${t.integer} NOT NULL REFERENCES namespaces (id),
     state         TEXT NOT NULL CHECK (state IN ('booting', 'running', 'paused', 'sleeping', 'dead')),
     created_at    ${t.timestamp} NOT NULL
   )${t.strict}`,
]);

// Display names, commit metadata, fork and commit listings, idempotency keys.
const forksCommitsIdempotency = (t: DdlVocabulary) => statements([
  // Backfilled rather than read back as `name` when empty: the column then always holds the
  // title, so a later rename of the URL name leaves the title alone (as GitLab does) and an
  // empty string stays a value a title may not silently take.
  `ALTER TABLE repositories ADD COLUMN display_name TEXT NOT NULL DEFAULT ''`,
  `UPDATE repositories SET display_name = name`,
  `ALTER TABLE commits ADD COLUMN is_public ${t.falseByDefault('is_public')}`,
  `ALTER TABLE commits ADD COLUMN title TEXT`,
  `ALTER TABLE commits ADD COLUMN description TEXT NOT NULL DEFAULT ''`,
  // Forks are listed and counted by source, newest first by default; the implicit trailing
  // rowid breaks ties on id. The index still serves the foreign key, so it replaces the old one.
  `DROP INDEX repositories_forked_from`,
  `CREATE INDEX repositories_forks ON repositories (forked_from_repo_id, created_at)`,
  // The catalogue of all live repositories, newest first, reads this instead of sorting.
  `CREATE INDEX repositories_live_created ON repositories (created_at) WHERE deleted_at IS NULL`,
  // A repository's commits newest first; also serves the foreign key the old index served.
  `DROP INDEX commits_repository`,
  `CREATE INDEX commits_repository_created ON commits (repository_id, created_at, id)`,
  `CREATE INDEX commits_public_created ON commits (created_at, id) WHERE is_public = ${t.true}`,
  // deleteCommit asks whether any tag or VM still refers to a commit: without these, a scan.
  `CREATE INDEX tags_commit ON tags (commit_id)`,
  `CREATE INDEX vms_commit ON vms (commit_id)`,
  `CREATE TABLE idempotency_keys (
     scope        TEXT NOT NULL,
     key          TEXT NOT NULL,
     request_hash TEXT NOT NULL,
     status       ${t.integer},
     headers      TEXT,
     body         TEXT,
     created_at   ${t.timestamp} NOT NULL,
     PRIMARY KEY (scope, key)
   )${t.strictWithoutRowid}`,
  // Expired claims are deleted by age on every reservation.
  `CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at)`,
]);

// Which chunks each repository references, and which chunks each user sent: the tenant check of
// delta pushes and pulls (no answer may reveal that another tenant stored a chunk).
const chunkReachability = (t: DdlVocabulary) => statements([
  // Keyed by digest first: every lookup asks "which repositories reference these digests". A
  // soft-deleted repository keeps its rows: its forks still reach them.
  `CREATE TABLE repository_chunks (
     digest        ${t.blob} NOT NULL CHECK (length(digest) = 32),
     repository_id ${t.integer} NOT NULL REFERENCES repositories (id),
     recorded_at   ${t.timestamp} NOT NULL,
     PRIMARY KEY (digest, repository_id)
   )${t.strictWithoutRowid}`,
  `CREATE TABLE chunk_uploads (
     user_id    ${t.integer} NOT NULL REFERENCES namespaces (id),
     digest     ${t.blob} NOT NULL CHECK (length(digest) = 32),
     created_at ${t.timestamp} NOT NULL,
     PRIMARY KEY (user_id, digest)
   )${t.strictWithoutRowid}`,
  // The garbage collector drops uploads past the grace period by age.
  `CREATE INDEX chunk_uploads_created ON chunk_uploads (created_at)`,
]);

// Idempotency keys scoped to the principal and route, answers kept as bytes. The rows are claims
// and answers of the last 24 hours that clients retry with, so the table is recreated rather
// than converted: a claim lost here makes a retry act again, as an expired one would.
const idempotencyBytes = (t: DdlVocabulary) => statements([
  `DROP TABLE idempotency_keys`,
  // A rowid table, unlike 0002's: an answer of up to 64 KiB makes rows too wide for WITHOUT ROWID.
  `CREATE TABLE idempotency_keys (
     scope       TEXT NOT NULL,
     key         TEXT NOT NULL,
     body_digest TEXT,
     status      ${t.integer},
     headers     TEXT,
     body        ${t.blob},
     created_at  ${t.timestamp} NOT NULL,
     PRIMARY KEY (scope, key),
     CHECK ((body_digest IS NULL) = (status IS NULL)
        AND (status IS NULL) = (headers IS NULL)
        AND (status IS NULL) = (body IS NULL))
   )${t.strict}`,
  `CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at)`,
]);

// Fork links grant no data, and titles are unique per namespace (GitLab's project `name`).
const linksAndTitles = (t: DdlVocabulary) => statements([
  // Which repository's data a repository inherits: set only when the fork operation creates it,
  // never by a link made after the fact (forked_from_repo_id, the relationship clients see, may
  // be linked and unlinked freely). Chunk reach walks this column; history reach starts at
  // forked_from_commit_id, which is now likewise the fork point of a real fork only.
  `ALTER TABLE repositories ADD COLUMN inherits_from_repo_id ${t.integer} REFERENCES repositories (id)`,
  // Links and real forks were stored alike. A real fork with tags holds a commit whose only
  // parent is its fork point and which shares that commit's manifest; a link holds none, since
  // the link only set the columns. A real fork of no tags has nothing to inherit.
  `UPDATE repositories SET inherits_from_repo_id = forked_from_repo_id
    WHERE forked_from_commit_id IS NOT NULL
      AND EXISTS (SELECT 1 FROM commits c JOIN commits p ON p.id = repositories.forked_from_commit_id
                   WHERE c.repository_id = repositories.id
                     AND c.parent_ids = ${t.jsonArrayOf('p.id')}
                     AND c.manifest_digest = p.manifest_digest)`,
  `UPDATE repositories SET forked_from_commit_id = NULL WHERE inherits_from_repo_id IS NULL`,
  // Titles clashed before this rule: every live duplicate but the oldest gets its id appended,
  // so that the index below can be built and no title is lost.
  `UPDATE repositories SET display_name = display_name || ' (' || id || ')'
    WHERE deleted_at IS NULL
      AND EXISTS (SELECT 1 FROM repositories o
                   WHERE o.namespace_id = repositories.namespace_id AND o.display_name = repositories.display_name
                     AND o.deleted_at IS NULL AND o.id < repositories.id)`,
  // Case-sensitive, as GitLab's unique index on (name, namespace_id); paths ignore case.
  `CREATE UNIQUE INDEX repositories_live_display_name
     ON repositories (namespace_id, display_name) WHERE deleted_at IS NULL`,
]);

// Vers tags any commit the caller may read, one made in another repository too. Such a tag makes
// the commit's snapshot readable through the tagging repository, so a delta pull through it reaches
// the snapshot's chunks as well, and only while a tag points there (reachableChunks joins the tags
// of now). Rows are written when such a tag is set; tags set before this migration gain them when
// set again.
const foreignTags = (t: DdlVocabulary) => statements([
  // Keyed by digest first, like repository_chunks: lookups ask which manifests reference digests.
  `CREATE TABLE manifest_chunks (
     digest          ${t.blob} NOT NULL CHECK (length(digest) = 32),
     manifest_digest TEXT NOT NULL REFERENCES manifests (digest),
     PRIMARY KEY (digest, manifest_digest)
   )${t.strictWithoutRowid}`,
  // From a manifest to the commits (and through tags_commit, the tags) that hold it.
  `CREATE INDEX commits_manifest ON commits (manifest_digest)`,
]);

// VMs that really run (issue 12): their size, labels and soft deletion. Rows of earlier forks
// were never booted: they keep the default size and no labels.
const vms = (t: DdlVocabulary) => statements([
  `ALTER TABLE vms ADD COLUMN labels TEXT NOT NULL DEFAULT '{}' CHECK (${t.isJsonObject('labels')})`,
  `ALTER TABLE vms ADD COLUMN vcpu_count ${t.integer} NOT NULL DEFAULT 1 CHECK (vcpu_count > 0)`,
  `ALTER TABLE vms ADD COLUMN mem_size_mib ${t.integer} NOT NULL DEFAULT 256 CHECK (mem_size_mib > 0)`,
  // A deleted VM's row stays, as Vers answers its metadata with deleted_at; lists skip it.
  `ALTER TABLE vms ADD COLUMN deleted_at ${t.timestamp}`,
  // A namespace's live VMs oldest first, ties by id, read in index order.
  `CREATE INDEX vms_namespace_live ON vms (namespace_id, created_at, id) WHERE deleted_at IS NULL`,
]);

// The VM a commit was made from (POST /vm/{id}/commit): Vers' parent_vm_id, and through it a
// VM's grandparent_vm_id. Null for commits of pushes and forks.
const vmCommits = statements([`ALTER TABLE commits ADD COLUMN parent_vm_id TEXT`]);

// The key this server signs tokens with (a private JWK), in the database so that every server
// of one database signs and verifies alike: a single row, the first stored.
const signingKeys = (t: DdlVocabulary) => statements([
  `CREATE TABLE signing_keys (
     id         ${t.integer} PRIMARY KEY CHECK (id = 1),
     jwk        TEXT NOT NULL,
     created_at ${t.timestamp} NOT NULL
   )${t.strict}`,
]);

// The server whose process runs a VM (its id, main.ts): with several servers on one database a
// server reconciles and drives only its own VMs. Null for a VM no process was started for yet.
const vmHosts = statements([`ALTER TABLE vms ADD COLUMN host TEXT`]);

// When garbage collection purged a deleted repository (its tags went with it); null otherwise.
const purgedRepositories = (t: DdlVocabulary) => statements([`ALTER TABLE repositories ADD COLUMN purged_at ${t.timestamp}`]);

// A file read or a directory listing of a tag finds its entries by path (issue 15), in the byte
// order the canonical encoding sorts by, instead of loading the whole manifest. Not unique: the
// rule of one entry per path came after the first manifests were stored.
const manifestEntryPaths = (t: DdlVocabulary) => statements([
  ...t.byteOrdered('manifest_entries', 'path'),
  `CREATE INDEX manifest_entries_path ON manifest_entries (manifest_digest, path)`,
]);

// Storage quotas per namespace. A chunk is charged to the namespace whose commit first referenced
// it, once (forks and deduplicated data cost nothing), and released when garbage collection
// removes it; namespace_usage keeps the sums, so that a push checks its quota in one read.
// Chunks recorded before this migration are charged to the oldest namespace that recorded each,
// at size 0: their sizes are not in the metadata, and a later commit elsewhere must not be
// charged for them.
const namespaceQuotas = (t: DdlVocabulary) => statements([
  `CREATE TABLE namespace_quotas (
     namespace_id     ${t.integer} PRIMARY KEY REFERENCES namespaces (id),
     max_bytes        ${t.integer},
     max_repositories ${t.integer},
     max_running_vms  ${t.integer},
     updated_at       ${t.timestamp} NOT NULL
   )${t.strict}`,
  `CREATE TABLE namespace_usage (
     namespace_id ${t.integer} PRIMARY KEY REFERENCES namespaces (id),
     stored_bytes ${t.integer} NOT NULL
   )${t.strict}`,
  `CREATE TABLE chunk_charges (
     digest       ${t.blob} PRIMARY KEY CHECK (length(digest) = 32),
     namespace_id ${t.integer} NOT NULL REFERENCES namespaces (id),
     size         ${t.integer} NOT NULL
   )${t.strictWithoutRowid}`,
  `INSERT INTO chunk_charges (digest, namespace_id, size)
     SELECT rc.digest, min(r.namespace_id), 0
       FROM repository_chunks rc JOIN repositories r ON r.id = rc.repository_id
      GROUP BY rc.digest`,
]);

// Commits deleted on purpose (deleteCommit), so that a child naming one as its parent is a
// history that ends there, not a missing record for fsck to report.
const deletedCommits = (t: DdlVocabulary) => statements([
  `CREATE TABLE deleted_commits (
     id         TEXT PRIMARY KEY,
     deleted_at ${t.timestamp} NOT NULL
   )${t.strict}`,
]);

// Site administration jobs (garbage collection, fsck) run in the background: a long collection
// outlives any one request, and every server of the database answers where it stands.
const adminJobs = (t: DdlVocabulary) => statements([
  `CREATE TABLE admin_jobs (
     id          TEXT PRIMARY KEY,
     kind        TEXT NOT NULL CHECK (kind IN ('gc', 'fsck')),
     status      TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
     options     TEXT NOT NULL,
     result      TEXT,
     error       TEXT,
     host        TEXT NOT NULL,
     created_at  ${t.timestamp} NOT NULL,
     finished_at ${t.timestamp}
   )${t.strict}`,
  `CREATE INDEX admin_jobs_created ON admin_jobs (created_at)`,
]);

/** Every migration by name, in `dialect`'s words; applied in name order. Exported for tests of an upgrade. */
export const migrationsFor = (dialect: SqlDialect) => {
  const t = dialect.ddl;
  return {
    '0001_initial': initial(t),
    '0002_forks_commits_idempotency': forksCommitsIdempotency(t),
    '0003_chunk_reachability': chunkReachability(t),
    '0004_idempotency_bytes': idempotencyBytes(t),
    '0005_links_and_titles': linksAndTitles(t),
    '0006_foreign_tags': foreignTags(t),
    '0007_vms': vms(t),
    '0008_vm_commits': vmCommits,
    '0009_signing_keys': signingKeys(t),
    '0010_vm_hosts': vmHosts,
    '0011_purged_repositories': purgedRepositories(t),
    '0012_manifest_entry_paths': manifestEntryPaths(t),
    '0013_namespace_quotas': namespaceQuotas(t),
    '0014_deleted_commits': deletedCommits(t),
    '0015_admin_jobs': adminJobs(t),
  } as const satisfies Record<string, Migration>;
};

/**
 * Applies the migrations not yet applied (Kysely records them in `kysely_migration`; on
 * PostgreSQL it holds an advisory lock meanwhile, so servers starting together migrate once)
 * and returns their names; an up-to-date database yields [].
 */
export async function migrateToLatest(db: Kysely<Database>, dialect: SqlDialect): Promise<string[]> {
  const provider: MigrationProvider = { getMigrations: async () => migrationsFor(dialect) };
  const { error, results = [] } = await new Migrator({ db, provider }).migrateToLatest();
  // eslint-disable-next-line @typescript-eslint/only-throw-error -- rethrows what a migration threw, as it was; callers map it
  if (error) throw error;
  return results.map((r) => r.migrationName);
}

/**
 * Versioned schema migrations, applied in name order at start. They live in code rather than in
 * files so that the compiled dist/ needs nothing beside it. A migration, once released, is never
 * edited: change the schema by appending a new one.
 */
import { type Kysely, type Migration, type MigrationProvider, Migrator, sql } from 'kysely';
import type { Database } from './schema.js';

/**
 * A migration made of DDL statements, run one at a time (better-sqlite3 prepares one statement
 * per call) inside one transaction: Kysely's Migrator assumes SQLite cannot roll back DDL and
 * runs migrations bare, but it can, and a crash mid-migration must not leave half a schema.
 */
const statements = (ddl: readonly string[]): Migration => ({
  up: (db: Kysely<unknown>) =>
    db.transaction().execute(async (trx) => {
      for (const statement of ddl) await sql.raw(statement).execute(trx);
    }),
});

// STRICT tables make SQLite reject a value of the wrong type instead of storing it silently.
// Names compare case-insensitively (COLLATE NOCASE): "Acme" and "acme" are the same namespace.
const initial = statements([
  `CREATE TABLE namespaces (
     id           INTEGER PRIMARY KEY AUTOINCREMENT,
     name         TEXT NOT NULL UNIQUE COLLATE NOCASE,
     kind         TEXT NOT NULL CHECK (kind IN ('user', 'org')),
     display_name TEXT NOT NULL,
     created_at   TEXT NOT NULL
   ) STRICT`,
  `CREATE TABLE memberships (
     org_id  INTEGER NOT NULL REFERENCES namespaces (id),
     user_id INTEGER NOT NULL REFERENCES namespaces (id),
     role    TEXT NOT NULL CHECK (role IN ('owner', 'member')),
     PRIMARY KEY (org_id, user_id)
   ) STRICT`,
  // Rows are soft-deleted: a fork keeps pointing at its source, and the source's commits stay
  // parents of the fork's commits. Only live rows hold their name.
  `CREATE TABLE repositories (
     id                    INTEGER PRIMARY KEY AUTOINCREMENT,
     uuid                  TEXT NOT NULL UNIQUE,
     namespace_id          INTEGER NOT NULL REFERENCES namespaces (id),
     name                  TEXT NOT NULL COLLATE NOCASE,
     visibility            TEXT NOT NULL CHECK (visibility IN ('public', 'private', 'internal')),
     description           TEXT NOT NULL,
     default_tag           TEXT,
     forked_from_repo_id   INTEGER REFERENCES repositories (id),
     forked_from_commit_id TEXT,
     archived              INTEGER NOT NULL DEFAULT 0 CHECK (archived IN (0, 1)),
     created_at            TEXT NOT NULL,
     updated_at            TEXT NOT NULL,
     deleted_at            TEXT
   ) STRICT`,
  `CREATE UNIQUE INDEX repositories_live_name
     ON repositories (namespace_id, name COLLATE NOCASE) WHERE deleted_at IS NULL`,
  `CREATE INDEX repositories_forked_from ON repositories (forked_from_repo_id)`,
  `CREATE TABLE manifests (
     digest      TEXT PRIMARY KEY,
     entry_count INTEGER NOT NULL,
     total_size  INTEGER NOT NULL,
     created_at  TEXT NOT NULL
   ) STRICT`,
  // One row per entry; a file's chunk list is one blob of 36-byte records (32-byte SHA-256,
  // 4-byte big-endian size), so a 4 GiB file's ~65K chunks cost one 2.3 MB value, not 65K rows.
  `CREATE TABLE manifest_entries (
     manifest_digest TEXT NOT NULL REFERENCES manifests (digest),
     seq             INTEGER NOT NULL,
     path            TEXT NOT NULL,
     type            TEXT NOT NULL CHECK (type IN ('file', 'dir', 'symlink')),
     mode            INTEGER NOT NULL,
     size            INTEGER NOT NULL,
     mtime           INTEGER NOT NULL,
     link_target     TEXT,
     chunks          BLOB NOT NULL,
     PRIMARY KEY (manifest_digest, seq)
   ) STRICT, WITHOUT ROWID`,
  `CREATE TABLE commits (
     id              TEXT PRIMARY KEY,
     repository_id   INTEGER NOT NULL REFERENCES repositories (id),
     parent_ids      TEXT NOT NULL,
     manifest_digest TEXT NOT NULL REFERENCES manifests (digest),
     message         TEXT NOT NULL,
     author          TEXT NOT NULL,
     created_at      TEXT NOT NULL
   ) STRICT`,
  `CREATE INDEX commits_repository ON commits (repository_id)`,
  `CREATE TABLE tags (
     id            TEXT PRIMARY KEY,
     repository_id INTEGER NOT NULL REFERENCES repositories (id),
     name          TEXT NOT NULL,
     commit_id     TEXT NOT NULL REFERENCES commits (id),
     description   TEXT NOT NULL,
     created_at    TEXT NOT NULL,
     updated_at    TEXT NOT NULL,
     UNIQUE (repository_id, name)
   ) STRICT`,
  // An append-only audit trail: it outlives the tags (and commits) it mentions, so no foreign keys.
  `CREATE TABLE tag_log (
     id            INTEGER PRIMARY KEY,
     repository_id INTEGER NOT NULL,
     tag_name      TEXT NOT NULL,
     old_commit_id TEXT,
     new_commit_id TEXT,
     actor         TEXT NOT NULL,
     at            TEXT NOT NULL
   ) STRICT`,
  `CREATE INDEX tag_log_repository ON tag_log (repository_id)`,
  `CREATE TABLE vms (
     id            TEXT PRIMARY KEY,
     commit_id     TEXT NOT NULL REFERENCES commits (id),
     repository_id INTEGER NOT NULL REFERENCES repositories (id),
     namespace_id  INTEGER NOT NULL REFERENCES namespaces (id),
     state         TEXT NOT NULL CHECK (state IN ('booting', 'running', 'paused', 'sleeping', 'dead')),
     created_at    TEXT NOT NULL
   ) STRICT`,
]);

// Display names, commit metadata, fork and commit listings, idempotency keys.
const forksCommitsIdempotency = statements([
  // Backfilled rather than read back as `name` when empty: the column then always holds the
  // title, so a later rename of the URL name leaves the title alone (as GitLab does) and an
  // empty string stays a value a title may not silently take.
  `ALTER TABLE repositories ADD COLUMN display_name TEXT NOT NULL DEFAULT ''`,
  `UPDATE repositories SET display_name = name`,
  `ALTER TABLE commits ADD COLUMN is_public INTEGER NOT NULL DEFAULT 0 CHECK (is_public IN (0, 1))`,
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
  `CREATE INDEX commits_public_created ON commits (created_at, id) WHERE is_public = 1`,
  // deleteCommit asks whether any tag or VM still refers to a commit: without these, a scan.
  `CREATE INDEX tags_commit ON tags (commit_id)`,
  `CREATE INDEX vms_commit ON vms (commit_id)`,
  `CREATE TABLE idempotency_keys (
     scope        TEXT NOT NULL,
     key          TEXT NOT NULL,
     request_hash TEXT NOT NULL,
     status       INTEGER,
     headers      TEXT,
     body         TEXT,
     created_at   TEXT NOT NULL,
     PRIMARY KEY (scope, key)
   ) STRICT, WITHOUT ROWID`,
  // Expired claims are deleted by age on every reservation.
  `CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at)`,
]);

// Which chunks each repository references, and which chunks each user sent: the tenant check of
// delta pushes and pulls (no answer may reveal that another tenant stored a chunk).
const chunkReachability = statements([
  // Keyed by digest first: every lookup asks "which repositories reference these digests". A
  // soft-deleted repository keeps its rows: its forks still reach them.
  `CREATE TABLE repository_chunks (
     digest        BLOB NOT NULL CHECK (length(digest) = 32),
     repository_id INTEGER NOT NULL REFERENCES repositories (id),
     recorded_at   TEXT NOT NULL,
     PRIMARY KEY (digest, repository_id)
   ) STRICT, WITHOUT ROWID`,
  `CREATE TABLE chunk_uploads (
     user_id    INTEGER NOT NULL REFERENCES namespaces (id),
     digest     BLOB NOT NULL CHECK (length(digest) = 32),
     created_at TEXT NOT NULL,
     PRIMARY KEY (user_id, digest)
   ) STRICT, WITHOUT ROWID`,
  // The garbage collector drops uploads past the grace period by age.
  `CREATE INDEX chunk_uploads_created ON chunk_uploads (created_at)`,
]);

// Idempotency keys scoped to the principal and route, answers kept as bytes. The rows are claims
// and answers of the last 24 hours that clients retry with, so the table is recreated rather
// than converted: a claim lost here makes a retry act again, as an expired one would.
const idempotencyBytes = statements([
  `DROP TABLE idempotency_keys`,
  // A rowid table, unlike 0002's: an answer of up to 64 KiB makes rows too wide for WITHOUT ROWID.
  `CREATE TABLE idempotency_keys (
     scope       TEXT NOT NULL,
     key         TEXT NOT NULL,
     body_digest TEXT,
     status      INTEGER,
     headers     TEXT,
     body        BLOB,
     created_at  TEXT NOT NULL,
     PRIMARY KEY (scope, key),
     CHECK ((body_digest IS NULL) = (status IS NULL)
        AND (status IS NULL) = (headers IS NULL)
        AND (status IS NULL) = (body IS NULL))
   ) STRICT`,
  `CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at)`,
]);

// Fork links grant no data, and titles are unique per namespace (GitLab's project `name`).
const linksAndTitles = statements([
  // Which repository's data a repository inherits: set only when the fork operation creates it,
  // never by a link made after the fact (forked_from_repo_id, the relationship clients see, may
  // be linked and unlinked freely). Chunk reach walks this column; history reach starts at
  // forked_from_commit_id, which is now likewise the fork point of a real fork only.
  `ALTER TABLE repositories ADD COLUMN inherits_from_repo_id INTEGER REFERENCES repositories (id)`,
  // Links and real forks were stored alike. A real fork with tags holds a commit whose only
  // parent is its fork point and which shares that commit's manifest; a link holds none, since
  // the link only set the columns. A real fork of no tags has nothing to inherit.
  `UPDATE repositories SET inherits_from_repo_id = forked_from_repo_id
    WHERE forked_from_commit_id IS NOT NULL
      AND EXISTS (SELECT 1 FROM commits c JOIN commits p ON p.id = repositories.forked_from_commit_id
                   WHERE c.repository_id = repositories.id
                     AND c.parent_ids = json_array(p.id)
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
const foreignTags = statements([
  // Keyed by digest first, like repository_chunks: lookups ask which manifests reference digests.
  `CREATE TABLE manifest_chunks (
     digest          BLOB NOT NULL CHECK (length(digest) = 32),
     manifest_digest TEXT NOT NULL REFERENCES manifests (digest),
     PRIMARY KEY (digest, manifest_digest)
   ) STRICT, WITHOUT ROWID`,
  // From a manifest to the commits (and through tags_commit, the tags) that hold it.
  `CREATE INDEX commits_manifest ON commits (manifest_digest)`,
]);

// VMs that really run (issue 12): their size, labels and soft deletion. Rows of earlier forks
// were never booted: they keep the default size and no labels.
const vms = statements([
  `ALTER TABLE vms ADD COLUMN labels TEXT NOT NULL DEFAULT '{}' CHECK (json_type(labels) = 'object')`,
  `ALTER TABLE vms ADD COLUMN vcpu_count INTEGER NOT NULL DEFAULT 1 CHECK (vcpu_count > 0)`,
  `ALTER TABLE vms ADD COLUMN mem_size_mib INTEGER NOT NULL DEFAULT 256 CHECK (mem_size_mib > 0)`,
  // A deleted VM's row stays, as Vers answers its metadata with deleted_at; lists skip it.
  `ALTER TABLE vms ADD COLUMN deleted_at TEXT`,
  // A namespace's live VMs oldest first, ties by id, read in index order.
  `CREATE INDEX vms_namespace_live ON vms (namespace_id, created_at, id) WHERE deleted_at IS NULL`,
]);

// The VM a commit was made from (POST /vm/{id}/commit): Vers' parent_vm_id, and through it a
// VM's grandparent_vm_id. Null for commits of pushes and forks.
const vmCommits = statements([`ALTER TABLE commits ADD COLUMN parent_vm_id TEXT`]);

/** Every migration by name; applied in name order. Exported for tests of an upgrade. */
export const migrations = {
  '0001_initial': initial,
  '0002_forks_commits_idempotency': forksCommitsIdempotency,
  '0003_chunk_reachability': chunkReachability,
  '0004_idempotency_bytes': idempotencyBytes,
  '0005_links_and_titles': linksAndTitles,
  '0006_foreign_tags': foreignTags,
  '0007_vms': vms,
  '0008_vm_commits': vmCommits,
} as const satisfies Record<string, Migration>;

const provider: MigrationProvider = { getMigrations: async () => migrations };

/**
 * Applies the migrations not yet applied (Kysely records them in `kysely_migration`) and returns
 * their names; an up-to-date database yields [].
 */
export async function migrateToLatest(db: Kysely<Database>): Promise<string[]> {
  const { error, results = [] } = await new Migrator({ db, provider }).migrateToLatest();
  // eslint-disable-next-line @typescript-eslint/only-throw-error -- rethrows what a migration threw, as it was; callers map it
  if (error) throw error;
  return results.map((r) => r.migrationName);
}

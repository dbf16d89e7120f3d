/**
 * Row shapes of the metadata tables, as Kysely sees them (created by migrations.ts). These rows
 * never leave src/store/: the aggregate module that owns a table (namespaces.ts, tags.ts, ...)
 * maps it to its domain type.
 */
import type { Generated, Kysely, Transaction } from 'kysely';
import type { AdminJobKind, AdminJobStatus, EntryType, NamespaceKind, Role, Visibility, VmState } from '../../domain/model.js';

/**
 * Timestamps are ISO-8601 UTC strings with milliseconds, which sort as they compare: SQLite
 * stores them so, PostgreSQL as timestamptz, which its opener reads back as such strings.
 */
export type Timestamp = string;

/** A boolean column: 0 or 1 in SQLite, a boolean in PostgreSQL (SqlDialect.flag writes one). */
export type Flag = 0 | 1 | boolean;

export interface NamespaceTable {
  id: Generated<number>;
  name: string;
  kind: NamespaceKind;
  display_name: string;
  created_at: Timestamp;
}

export interface MembershipTable {
  org_id: number;
  user_id: number;
  role: Role;
}

export interface RepositoryTable {
  id: Generated<number>;
  uuid: string;
  namespace_id: number;
  name: string;
  display_name: string;
  visibility: Visibility;
  description: string;
  default_tag: string | null;
  /** The fork relationship clients see; a link after the fact sets it too. */
  forked_from_repo_id: number | null;
  /** The fork point of a real fork (see inherits_from_repo_id); null otherwise. */
  forked_from_commit_id: string | null;
  /** Whose data a real fork inherits: set when the fork operation creates the row, never after. */
  inherits_from_repo_id: number | null;
  archived: Flag;
  created_at: Timestamp;
  updated_at: Timestamp;
  /** Set by a soft delete; such rows are never read back as repositories. */
  deleted_at: Timestamp | null;
  /** Set when garbage collection purged a deleted repository: its tags are gone, it cannot be restored. */
  purged_at: Timestamp | null;
}

export interface CommitTable {
  id: string;
  repository_id: number;
  /** JSON array of commit ids, first parent first. */
  parent_ids: string;
  manifest_digest: string;
  message: string;
  author: string;
  created_at: Timestamp;
  is_public: Flag;
  title: string | null;
  description: string;
  parent_vm_id: string | null;
}

export interface TagTable {
  id: string;
  repository_id: number;
  name: string;
  commit_id: string;
  description: string;
  created_at: Timestamp;
  updated_at: Timestamp;
}

export interface TagLogTable {
  id: Generated<number>;
  repository_id: number;
  tag_name: string;
  old_commit_id: string | null;
  new_commit_id: string | null;
  actor: string;
  at: Timestamp;
}

export interface ManifestTable {
  digest: string;
  entry_count: number;
  total_size: number;
  created_at: Timestamp;
}

export interface ManifestEntryTable {
  manifest_digest: string;
  /** Position of the entry in the manifest's canonical order. */
  seq: number;
  path: string;
  type: EntryType;
  mode: number;
  size: number;
  mtime: number;
  link_target: string | null;
  /** The chunk list packed as 36-byte records; see packChunks in manifests.ts. */
  chunks: Buffer;
}

export interface VmTable {
  id: string;
  commit_id: string;
  repository_id: number;
  namespace_id: number;
  state: VmState;
  /** JSON object of label names to values. */
  labels: string;
  vcpu_count: number;
  mem_size_mib: number;
  created_at: Timestamp;
  deleted_at: Timestamp | null;
  host: string | null;
}

/** A claimed idempotency key; the other columns stay null until the request completes. */
export interface IdempotencyKeyTable {
  /** Whose key it is and for which route (src/domain/idempotency.service.ts). */
  scope: string;
  key: string;
  /** SHA-256 (hex) of the body of the request that completed the claim. */
  body_digest: string | null;
  status: number | null;
  /** JSON object of header names to values. */
  headers: string | null;
  body: Buffer | null;
  created_at: Timestamp;
}

/** One chunk referenced by a commit of one repository (src/domain/transfer.service.ts). */
export interface RepositoryChunkTable {
  /** The 32 raw bytes of the SHA-256: half the size of hex in the largest table. */
  digest: Buffer;
  repository_id: number;
  /** When a commit of the repository first referenced the chunk. */
  recorded_at: Timestamp;
}

/** One chunk referenced by a manifest that a tag of another repository than its commit's points at. */
export interface ManifestChunkTable {
  /** The 32 raw bytes of the SHA-256, as in repository_chunks. */
  digest: Buffer;
  manifest_digest: string;
}

/** A chunk a user sent, which counts as present for that user during the upload grace period. */
export interface ChunkUploadTable {
  user_id: number;
  digest: Buffer;
  /** The last time the user sent it. */
  created_at: Timestamp;
}

/** The token signing key (src/auth/token-service.ts): one row, id 1. */
export interface SigningKeyTable {
  id: number;
  /** A private JWK, as JSON. */
  jwk: string;
  created_at: Timestamp;
}

/** The quotas set for one namespace (src/domain/quota.service.ts); null: the server's default. */
export interface NamespaceQuotaTable {
  namespace_id: number;
  max_bytes: number | null;
  max_repositories: number | null;
  max_running_vms: number | null;
  updated_at: Timestamp;
}

/** The bytes of the chunks charged to one namespace: the sum of its chunk_charges sizes. */
export interface NamespaceUsageTable {
  namespace_id: number;
  stored_bytes: number;
}

/** The namespace a stored chunk is charged to: the first whose commit referenced it. */
export interface ChunkChargeTable {
  /** The 32 raw bytes of the SHA-256, as in repository_chunks. */
  digest: Buffer;
  namespace_id: number;
  size: number;
}

/** A commit deleted on purpose: its children's histories end there (fsck). */
export interface DeletedCommitTable {
  id: string;
  deleted_at: Timestamp;
}

/** A garbage collection or fsck run in the background (src/domain/admin-job.service.ts). */
export interface AdminJobTable {
  id: string;
  kind: AdminJobKind;
  status: AdminJobStatus;
  /** The options it was started with, as JSON. */
  options: string;
  /** Its report as JSON, once it succeeded. */
  result: string | null;
  error: string | null;
  /** The server that runs it. */
  host: string;
  created_at: Timestamp;
  finished_at: Timestamp | null;
}

export interface Database {
  namespaces: NamespaceTable;
  memberships: MembershipTable;
  repositories: RepositoryTable;
  commits: CommitTable;
  tags: TagTable;
  tag_log: TagLogTable;
  manifests: ManifestTable;
  manifest_entries: ManifestEntryTable;
  vms: VmTable;
  idempotency_keys: IdempotencyKeyTable;
  repository_chunks: RepositoryChunkTable;
  manifest_chunks: ManifestChunkTable;
  chunk_uploads: ChunkUploadTable;
  signing_keys: SigningKeyTable;
  namespace_quotas: NamespaceQuotaTable;
  namespace_usage: NamespaceUsageTable;
  chunk_charges: ChunkChargeTable;
  deleted_commits: DeletedCommitTable;
  admin_jobs: AdminJobTable;
}

/** What the aggregate modules run their statements on: the root instance or an open transaction. */
export type Executor = Kysely<Database> | Transaction<Database>;

/** Domain types: what services take and return. Stores map their rows to these. */

export type Visibility = 'public' | 'internal' | 'private';
export const VISIBILITY_RANK: Record<Visibility, number> = { private: 0, internal: 1, public: 2 };

export type NamespaceKind = 'user' | 'org';
export type Role = 'owner' | 'member';

/** A user or an organization: both own repositories and share one name space. */
export interface Namespace {
  id: number;
  name: string;
  kind: NamespaceKind;
  displayName: string;
  createdAt: string;
}

export interface Repository {
  id: number;
  /** Stable UUID, the `repo_id` of the Vers dialect. */
  uuid: string;
  namespaceId: number;
  namespace: string;
  /** The URL name (GitLab's `path`): unique per namespace, case-insensitively. */
  name: string;
  /** A free-form title (GitLab's `name`); equals `name` unless set. */
  displayName: string;
  visibility: Visibility;
  description: string;
  defaultTag: string | null;
  /**
   * The fork relationship clients see (GitLab's `forked_from_project`, the native `parent`): the
   * source of a real fork, or whatever GitLab's link set after the fact. It grants no data.
   */
  forkedFromRepoId: number | null;
  /**
   * The repository whose data this one inherits, set once by the fork operation and never by a
   * link: its chunks recorded before this repository was created, and so on up the chain.
   */
  inheritsFromRepoId: number | null;
  /** The source commit a real fork was made at, whose history it reads; null otherwise. */
  forkedFromCommitId: string | null;
  archived: boolean;
  createdAt: string;
  updatedAt: string;
}

export interface Commit {
  /** UUID v7: time-ordered, so ids sort by creation. */
  id: string;
  repositoryId: number;
  parentIds: string[];
  manifestDigest: string;
  message: string;
  author: string;
  createdAt: string;
  /** A public commit may be read and forked by anyone, whatever its repository's visibility. */
  isPublic: boolean;
  /** An optional title and description (Vers' commit `name` and `description`). */
  title: string | null;
  description: string;
  /** The VM this commit was made from (POST /vm/{id}/commit); absent or null for any other commit. */
  parentVmId?: string | null;
}

export interface Tag {
  /** Stable UUID, the `tag_id` of the Vers dialect. */
  id: string;
  repositoryId: number;
  name: string;
  commitId: string;
  description: string;
  createdAt: string;
  updatedAt: string;
}

export type EntryType = 'file' | 'dir' | 'symlink';

/**
 * The mode bits a manifest entry keeps: read, write and execute for owner, group and others.
 * Setuid, setgid and sticky bits are never stored, so a pulled tree cannot carry them.
 */
export const PERMISSION_BITS = 0o777;

/** One content-defined chunk of a file, in file order. */
export interface ChunkRef {
  /** Lower-case hex SHA-256 of the uncompressed chunk. */
  digest: string;
  /** Uncompressed length in bytes. */
  size: number;
}

export interface ManifestEntry {
  /** Relative POSIX path, no leading `/`, no `.` or `..` segments. Directories have no trailing `/`. */
  path: string;
  type: EntryType;
  /** Permission bits (PERMISSION_BITS at most). */
  mode: number;
  /** File length in bytes; 0 for directories and symlinks. */
  size: number;
  /** Modification time, whole seconds since the epoch. */
  mtime: number;
  /** Symlink target; null for files and directories. */
  linkTarget: string | null;
  /** The file's chunks in order; empty for directories, symlinks and empty files. */
  chunks: ChunkRef[];
}

/** A manifest entry without its chunk list: what a directory listing reads. */
export type EntryHead = Omit<ManifestEntry, 'chunks'>;

/**
 * A file's chunk list as one entry read alone holds it (ManifestStore.getManifestEntry): decoded
 * on demand, so that a range read of a large file costs a scan of the sizes, not every digest.
 */
export interface ChunkList {
  readonly count: number;
  /**
   * The digests of the chunks that hold bytes `start` to `end` (inclusive) of the file, in
   * order, decoded as they are iterated, and the offset in the file of the first one's first
   * byte. No digest when `end < start` or `start` is at or past the end.
   */
  covering(start: number, end: number): { offset: number; digests: Iterable<string> };
  /**
   * Lower-case hex SHA-256 of the list in its stored encoding (storage/README.md): equal lists
   * have equal digests, so it names the content at the cost of one hash over 36 bytes a chunk.
   */
  digest(): string;
}

/** One entry of a stored manifest, read alone by its path. */
export interface StoredEntry extends EntryHead {
  chunks: ChunkList;
}

/** A tree of files, addressed by the SHA-256 of its canonical encoding (see storage/README.md). */
export interface Manifest {
  digest: string;
  /** Sorted by path (byte order), so the same tree always has the same digest. */
  entries: ManifestEntry[];
}

/** What a manifest amounts to, stored beside it: read without loading a single entry. */
export interface ManifestSummary {
  digest: string;
  /** Entries of every type. */
  entryCount: number;
  /** Bytes of file content: the sum of the entries' sizes. */
  totalSize: number;
}

export type VmState = 'booting' | 'running' | 'paused' | 'sleeping' | 'dead';

/** The size of a VM unless its commit says otherwise. */
export const DEFAULT_VM_SIZE = Object.freeze({ vcpuCount: 1, memSizeMib: 256 });

export interface Vm {
  id: string;
  /** The commit the VM was started from (Vers' `parent_commit_id`). */
  commitId: string;
  /** The repository that commit was made in. */
  repositoryId: number;
  /** The owner: only its members see or touch the VM. */
  namespaceId: number;
  /** As recorded at the last change; a running VM's live state comes from its process. */
  state: VmState;
  /** Free-form labels (Vers' `labels`), none unless set at creation. */
  labels: Readonly<Record<string, string>>;
  vcpuCount: number;
  memSizeMib: number;
  createdAt: string;
  /** When the VM was deleted; null while it exists. */
  deletedAt: string | null;
  /**
   * The server whose process runs (or ran) the VM; null while no process was started for it (a
   * sleeping VM). Only that server can drive it: VM processes stay where they were started.
   */
  host: string | null;
}

export interface Page {
  limit: number;
  offset: number;
}

export interface PageOf<T> {
  items: T[];
  total: number;
}

/** Limits of a namespace's quota; null: no limit (or, in a NamespaceQuota, the server's default). */
export interface QuotaLimits {
  /** Bytes of the chunks charged to the namespace (uncompressed): forks and deduplicated data cost nothing. */
  bytes: number | null;
  /** Live repositories. */
  repositories: number | null;
  /** VMs booting, running or paused, on every server. */
  runningVms: number | null;
}

/** The limits set for one namespace, overriding the server's defaults where not null. */
export interface NamespaceQuota {
  namespaceId: number;
  limits: QuotaLimits;
  updatedAt: string;
}

export type AdminJobKind = 'gc' | 'fsck';
export type AdminJobStatus = 'running' | 'succeeded' | 'failed';

/** A garbage collection or fsck run in the background; `result` is its report once it succeeded. */
export interface AdminJob {
  id: string;
  kind: AdminJobKind;
  status: AdminJobStatus;
  options: Record<string, unknown>;
  result: unknown;
  error: string | null;
  host: string;
  createdAt: string;
  finishedAt: string | null;
}

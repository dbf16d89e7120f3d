/**
 * Where packs live: a flat namespace of immutable named blobs, the small contract restic's and
 * distribution's storage drivers have. The pack store (chunk index, crash recovery, dedupe) sits
 * above it and is written once; a backend only moves bytes. Implementations: a local directory
 * and an S3 bucket, both held to test/contract/blob-backend.contract.ts.
 *
 * Names are relative paths of [a-z0-9._-] segments joined by "/" (e.g. `packs/ab/<id>.pack`);
 * a backend may map them to keys or files as it likes but must list them back unchanged.
 */
export interface BlobInfo {
  name: string;
  size: number;
  /** When the blob became visible (commit time), as the backend's clock saw it. */
  modifiedAt: Date;
}

/**
 * A blob being written. Nothing of it is visible under its name, to any reader or to list(),
 * before commit() resolves; after commit() resolves it is durable (fsynced / acknowledged by the
 * object store) and complete. abort() discards it; after either, the upload is spent.
 */
export interface BlobUpload {
  /** Appends bytes; resolves when the backend has taken them (bounded buffering, back-pressure). */
  write(data: Buffer): Promise<void>;
  /**
   * Optional hint that no more bytes follow: the backend may start making them durable (write
   * out its buffer, fsync, upload the last part) and release what it holds for the upload,
   * while the blob stays invisible until commit(). For a writer that fills many blobs before it
   * commits them all at once. A failure here is reported again by commit().
   */
  end?(): Promise<void>;
  /** Makes the blob visible, whole and durable; replaces nothing (names are never reused). */
  commit(): Promise<void>;
  /** Discards what was written; safe to call at any point, also after a failed write or commit. */
  abort(): Promise<void>;
}

export interface BlobBackend {
  /** Starts writing blob `name`, which must not exist yet. */
  create(name: string): BlobUpload;
  /**
   * Bytes [offset, offset + length) of blob `name`, fewer when the blob ends sooner; throws a
   * DomainError `not_found` when the blob does not exist.
   */
  read(name: string, offset: number, length: number): Promise<Buffer>;
  /** The blob's info, or undefined when it does not exist. */
  stat(name: string): Promise<BlobInfo | undefined>;
  /** Every committed blob whose name starts with `prefix`, in no particular order. */
  list(prefix: string): AsyncIterable<BlobInfo>;
  /** Removes blob `name`; true when it existed. Idempotent. */
  delete(name: string): Promise<boolean>;
  /**
   * Discards the uploads started before `startedBefore` that were never committed nor aborted
   * (a crashed process's, which hold space: temp files, S3 multipart parts); answers how many.
   * This backend's own uploads under way are never discarded; another process's are told by
   * age alone, so `startedBefore` must leave them time (ORPHAN_GRACE_MS).
   */
  abandonUploads(startedBefore: Date): Promise<number>;
  close(): Promise<void>;
}

/**
 * `upload`, with `key` in `live` until its commit or abort settles: how a backend tells its own
 * uploads under way from those a crashed process left (abandonUploads).
 */
export function trackUpload(live: Set<string>, key: string, upload: BlobUpload): BlobUpload {
  live.add(key);
  const settle = <T>(done: Promise<T>) => done.finally(() => live.delete(key));
  return {
    write: (data) => upload.write(data),
    ...(upload.end && { end: () => upload.end!() }),
    commit: () => settle(upload.commit()),
    abort: () => settle(upload.abort()),
  };
}

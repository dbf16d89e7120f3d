/**
 * A file of a commit as a VM's base disk (a DiskSource): a read maps its byte range to the file's
 * chunks and fetches only those, each verified by the ChunkStore, so a VM touches the chunks it
 * reads and no more, whatever the size of the image.
 */
import { createHash } from 'node:crypto';
import { LruMap } from '../lib/lru-map.js';
import { readAhead } from '../lib/read-ahead.js';
import type { ChunkStore } from '../store/types.js';
import { corrupt, invalid } from './errors.js';
import type { ChunkRef, ManifestEntry } from './model.js';
import type { DiskSource } from './ports/vm-runtime.js';

/**
 * Recently read chunks kept per disk: a guest reads a 64 KiB chunk in several small requests
 * (4 KiB pages, readahead windows), and the runs of zeros of a sparse image are one chunk repeated.
 */
const DEFAULT_CACHE_BYTES = 32 * 1024 * 1024;
/** Chunks of one large read fetched at once: hides store latency, bounds what waits in memory. */
const CHUNKS_READ_AHEAD = 8;

export interface ChunkDiskSourceOptions {
  /** Most bytes of recently read chunks kept in memory. */
  cacheBytes?: number;
}

export class ChunkDiskSource implements DiskSource {
  /** The file's chunk list names its bytes: equal lists, equal bytes. */
  readonly id: string;
  readonly size: number;
  private readonly chunks: readonly ChunkRef[];
  /** starts[i] is the offset of chunk i in the file; starts[chunks.length] is its size. */
  private readonly starts: Float64Array;
  /** Recently read chunks by digest, least recently used dropped first. */
  private readonly cache: LruMap<string, Buffer>;
  /** Loads under way, so concurrent reads of one chunk fetch it once. */
  private readonly loading = new Map<string, Promise<Buffer>>();

  /** `file` is a file entry of a manifest: its size is the sum of its chunks' sizes. */
  constructor(
    file: Pick<ManifestEntry, 'size' | 'chunks'>,
    private readonly store: ChunkStore,
    options: ChunkDiskSourceOptions = {},
  ) {
    this.chunks = file.chunks;
    this.starts = new Float64Array(file.chunks.length + 1);
    // Built at every VM boot, over the ~40,000 chunks of a 10 GiB image: plain loops, and the
    // digests hashed one by one (the SHA-256 of their concatenation, without building it).
    const id = createHash('sha256');
    for (let i = 0; i < file.chunks.length; i++) {
      const chunk = file.chunks[i]!;
      this.starts[i + 1] = this.starts[i]! + chunk.size;
      id.update(chunk.digest);
    }
    if (this.starts[file.chunks.length] !== file.size) {
      throw corrupt(`a file of ${file.size} bytes lists chunks of ${this.starts[file.chunks.length]} bytes`);
    }
    this.size = file.size;
    this.id = id.digest('hex');
    this.cache = new LruMap(options.cacheBytes ?? DEFAULT_CACHE_BYTES, { weigh: (data) => data.length });
  }

  /**
   * The bytes of [offset, offset + length), in a buffer of the caller's own. Throws `invalid` for
   * a range outside the file, and the store's error (`not_found`, `corrupt`) when a chunk it
   * needs cannot be read intact.
   */
  async read(offset: number, length: number): Promise<Buffer> {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.size) {
      throw invalid(`range ${offset}+${length} is outside a disk of ${this.size} bytes`);
    }
    const out = Buffer.allocUnsafe(length);
    if (length === 0) return out;
    const first = this.chunkAt(offset);
    const last = this.chunkAt(offset + length - 1);
    const indices = Array.from({ length: last - first + 1 }, (_, k) => first + k);
    let index = first;
    for await (const data of readAhead(indices, CHUNKS_READ_AHEAD, (i) => this.chunk(i))) {
      const start = this.starts[index++]!;
      const from = Math.max(offset, start);
      const to = Math.min(offset + length, start + data.length);
      data.copy(out, from - offset, from - start, to - start);
    }
    return out;
  }

  /** The index of the chunk holding byte `position` (< size): the last chunk starting at or before it. */
  private chunkAt(position: number): number {
    let low = 0;
    let high = this.chunks.length - 1;
    while (low < high) {
      const middle = (low + high + 1) >> 1;
      if (this.starts[middle]! <= position) low = middle;
      else high = middle - 1;
    }
    return low;
  }

  private chunk(index: number): Promise<Buffer> {
    const { digest, size } = this.chunks[index]!;
    const cached = this.cache.get(digest);
    if (cached) return Promise.resolve(cached);
    let loading = this.loading.get(digest);
    if (!loading) {
      loading = this.store
        .get(digest)
        .then((data) => {
          // The store verified the digest; a size that disagrees means the manifest is wrong.
          if (data.length !== size) throw corrupt(`chunk ${digest} has ${data.length} bytes, the manifest says ${size}`);
          this.cache.set(digest, data);
          return data;
        })
        .finally(() => this.loading.delete(digest));
      this.loading.set(digest, loading);
    }
    return loading;
  }
}

/**
 * A ChunkStore that reports every committed write to Telemetry: the one place that sees each
 * PutResult of every service's writes (pushes, uploads, VM commits), so that no service counts.
 */
import type { Readable } from 'node:stream';
import type { ChunkCodec, EncodedChunk } from '../lib/chunk-codec.js';
import type { ChunkDamage, ChunkRemoval, ChunkStat, ChunkStore, ChunkTotals, ChunkWriter, PutOptions, PutResult, Repacked, StoredChunk } from '../store/types.js';
import type { ChunksStored, Telemetry } from './ports/telemetry.js';

/** A zero tally. */
const none = (): ChunksStored => ({ created: 0, deduplicated: 0, storedBytes: 0 });

/**
 * Counts what its writer puts and reports it when commit() resolves, once. Counts, not results:
 * a writer may take millions of chunks (a push of a terabyte), and must not hold each.
 */
class ReportingChunkWriter implements ChunkWriter {
  private counted = none();

  constructor(
    private readonly writer: ChunkWriter,
    private readonly telemetry: Telemetry,
  ) {}

  async put(chunk: Buffer | EncodedChunk, digest?: string, options?: PutOptions): Promise<PutResult> {
    const result = await this.writer.put(chunk, digest, options);
    if (result.created) {
      this.counted.created++;
      this.counted.storedBytes += result.storedSize;
    } else {
      this.counted.deduplicated++;
    }
    return result;
  }

  async commit(): Promise<void> {
    await this.writer.commit();
    // commit() is idempotent: a second call reports nothing more.
    if (this.counted.created + this.counted.deduplicated > 0) this.telemetry.chunksStored(this.counted);
    this.counted = none();
  }

  async abort(): Promise<void> {
    this.counted = none();
    await this.writer.abort();
  }
}

export class ReportingChunkStore implements ChunkStore {
  constructor(
    private readonly chunks: ChunkStore,
    private readonly telemetry: Telemetry,
  ) {}

  get codec(): ChunkCodec {
    return this.chunks.codec;
  }
  has(digest: string): Promise<boolean> {
    return this.chunks.has(digest);
  }
  missing(digests: readonly string[]): Promise<string[]> {
    return this.chunks.missing(digests);
  }
  writer(): ChunkWriter {
    return new ReportingChunkWriter(this.chunks.writer(), this.telemetry);
  }
  async put(data: Buffer, digest?: string): Promise<PutResult> {
    const result = await this.chunks.put(data, digest);
    this.telemetry.chunksStored(result.created ? { created: 1, deduplicated: 0, storedBytes: result.storedSize } : { ...none(), deduplicated: 1 });
    return result;
  }
  get(digest: string): Promise<Buffer> {
    return this.chunks.get(digest);
  }
  stream(chunks: Iterable<string>, options?: { skip?: number; length?: number }): Readable {
    return this.chunks.stream(chunks, options);
  }
  verify(digests: readonly string[]): Promise<ChunkDamage[]> {
    return this.chunks.verify(digests);
  }
  stat(digest: string): Promise<ChunkStat | undefined> {
    return this.chunks.stat(digest);
  }
  statMany(digests: readonly string[]): Promise<Map<string, ChunkStat>> {
    return this.chunks.statMany(digests);
  }
  delete(digest: string): Promise<boolean> {
    return this.chunks.delete(digest);
  }
  deleteMany(digests: readonly string[]): Promise<ChunkRemoval> {
    return this.chunks.deleteMany(digests);
  }
  repack(maxLiveFraction: number, limit: number): Promise<Repacked> {
    return this.chunks.repack(maxLiveFraction, limit);
  }
  abandonWrites(startedBefore: Date): Promise<number> {
    return this.chunks.abandonWrites(startedBefore);
  }
  entries(after: string, limit: number): Promise<StoredChunk[]> {
    return this.chunks.entries(after, limit);
  }
  list(): AsyncIterable<string> {
    return this.chunks.list();
  }
  count(): Promise<number> {
    return this.chunks.count();
  }
  totals(): Promise<ChunkTotals> {
    return this.chunks.totals();
  }
  ping(): Promise<void> {
    return this.chunks.ping();
  }
  close(): Promise<void> {
    return this.chunks.close();
  }
}

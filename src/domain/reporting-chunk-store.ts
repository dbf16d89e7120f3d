/**
 * A ChunkStore that reports every committed write to Telemetry: the one place that sees each
 * PutResult of every service's writes (pushes, uploads, VM commits), so that no service counts.
 */
import type { Readable } from 'node:stream';
import type { ChunkStat, ChunkStore, ChunkWriter, PutResult } from '../store/types.js';
import type { ChunksStored, Telemetry } from './ports/telemetry.js';

const tally = (results: readonly PutResult[]): ChunksStored => {
  const created = results.filter((r) => r.created);
  return {
    created: created.length,
    deduplicated: results.length - created.length,
    storedBytes: created.reduce((sum, r) => sum + r.storedSize, 0),
  };
};

/** Counts what its writer puts and reports it when commit() resolves, once. */
class ReportingChunkWriter implements ChunkWriter {
  private results: PutResult[] = [];

  constructor(
    private readonly writer: ChunkWriter,
    private readonly telemetry: Telemetry,
  ) {}

  async put(data: Buffer, digest?: string): Promise<PutResult> {
    const result = await this.writer.put(data, digest);
    this.results.push(result);
    return result;
  }

  async commit(): Promise<void> {
    await this.writer.commit();
    // commit() is idempotent: a second call reports nothing more.
    if (this.results.length > 0) this.telemetry.chunksStored(tally(this.results));
    this.results = [];
  }

  async abort(): Promise<void> {
    this.results = [];
    await this.writer.abort();
  }
}

export class ReportingChunkStore implements ChunkStore {
  constructor(
    private readonly chunks: ChunkStore,
    private readonly telemetry: Telemetry,
  ) {}

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
    this.telemetry.chunksStored(tally([result]));
    return result;
  }
  get(digest: string): Promise<Buffer> {
    return this.chunks.get(digest);
  }
  stream(chunks: Iterable<string>, options?: { skip?: number; length?: number }): Readable {
    return this.chunks.stream(chunks, options);
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
  list(): AsyncIterable<string> {
    return this.chunks.list();
  }
  count(): Promise<number> {
    return this.chunks.count();
  }
  ping(): Promise<void> {
    return this.chunks.ping();
  }
  close(): Promise<void> {
    return this.chunks.close();
  }
}

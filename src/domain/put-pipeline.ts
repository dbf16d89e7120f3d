import type { ChunkRef } from './model.js';
import type { EncodedChunk } from '../lib/chunk-codec.js';
import type { ChunkWriter, PutResult } from '../store/types.js';

/**
 * Puts in flight at once: enough for a store to check a batch of digests against its index in
 * one call (which counts when the index is a remote database: one round trip per 32 chunks, not
 * per chunk), while at most this many chunks wait in memory.
 */
const DEPTH = 32;

/**
 * Puts chunks through a writer with up to DEPTH puts in flight instead of one at a time: the
 * store hashes and compresses them on other cores meanwhile (PackStoreOptions.codec), and they
 * may finish in any order. The pipeline takes each chunk over (PutOptions.transfer): its caller
 * must not use the Buffer once it is passed. The first failure is thrown by a later put() or by
 * drain(); a caller that stops on an error aborts the writer, which ends the puts still in flight.
 */
export class PutPipeline {
  private readonly inFlight: Promise<unknown>[] = [];
  private lastCreated = true;

  constructor(private readonly writer: ChunkWriter) {}

  /** Starts storing `data` (see ChunkWriter.put). Waits while DEPTH puts are in flight. */
  put(data: Buffer, digest?: string): Promise<void> {
    return this.start(data, digest);
  }

  /**
   * put() of `chunk` (bytes, or encoded with the store's codec), whose ChunkRef is appended to
   * `refs` at once and complete after drain(): refs stay in the order of the appends, whatever
   * order the puts finish in.
   */
  append(refs: ChunkRef[], chunk: Buffer | EncodedChunk): Promise<void> {
    const at = refs.length;
    refs.push({ digest: '', size: Buffer.isBuffer(chunk) ? chunk.length : chunk.data.length });
    return this.start(chunk, undefined, (put) => (refs[at] = { digest: put.digest, size: put.size }));
  }

  /**
   * Whether the last put to finish stored a new chunk (true before any): the next chunks likely
   * are new too (a first push) or stored too (unchanged data), so a caller encoding them
   * compresses them in the same trip as it hashes them only in the first case.
   */
  get storingNew(): boolean {
    return this.lastCreated;
  }

  /** Waits for every put in flight; throws the first failure. */
  async drain(): Promise<void> {
    while (this.inFlight.length > 0) await this.inFlight.shift();
  }

  private async start(chunk: Buffer | EncodedChunk, digest?: string, stored?: (result: PutResult) => void): Promise<void> {
    while (this.inFlight.length >= DEPTH) await this.inFlight.shift();
    const putting = this.writer.put(chunk, digest, { transfer: true }).then((result) => {
      this.lastCreated = result.created;
      stored?.(result);
    });
    putting.catch(() => undefined); // thrown by the put() or drain() that awaits it
    this.inFlight.push(putting);
  }
}

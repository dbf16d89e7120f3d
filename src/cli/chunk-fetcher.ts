/**
 * Chunk downloads for pull, batched: one `POST .../chunks/fetch` per up to BATCH chunks instead
 * of a request per chunk, whose round trip was most of a fresh pull's time. Callers ask for one
 * chunk at a time, as they write their files; the asks of one turn of the event loop go out
 * together.
 */
import { MAX_CHUNK_SIZE } from '../domain/chunker.js';
import { readChunkRecords } from '../lib/chunk-pack.js';
import { CliError } from './errors.js';
import type { ApiClient } from './http-client.js';
import { sha256 } from '../lib/sha256.js';

/** Digests per request: ~8 MiB of 64 KiB chunks, so a round trip is small beside the transfer. */
const BATCH = 128;
/** Requests at once: answers keep arriving while earlier ones are checked and written. */
const IN_FLIGHT = 4;

interface Wanted {
  size: number;
  waiters: { resolve: (data: Buffer) => void; reject: (err: CliError) => void }[];
}

export class ChunkFetcher {
  /** Every digest asked for and not yet answered, queued or in flight: a second ask joins it. */
  private readonly wanted = new Map<string, Wanted>();
  /** Digests of `wanted` not sent yet, in the order they were asked for. */
  private queue: string[] = [];
  private inFlight = 0;
  private scheduled = false;

  /** `path`: the repository's `chunks/fetch` route. */
  constructor(
    private readonly client: ApiClient,
    private readonly path: string,
  ) {}

  /**
   * The bytes of a chunk of `size` bytes, checked against its digest and size. Rejects with a
   * CliError when the request that carries it fails or its answer is short or wrong.
   */
  get(digest: string, size: number): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      let wanted = this.wanted.get(digest);
      if (!wanted) {
        wanted = { size, waiters: [] };
        this.wanted.set(digest, wanted);
        this.queue.push(digest);
        this.schedule();
      }
      wanted.waiters.push({ resolve, reject });
    });
  }

  /** Sends after the current turn, so that all the asks it makes share requests. */
  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.send();
    });
  }

  private send(): void {
    while (this.inFlight < IN_FLIGHT && this.queue.length > 0) {
      const batch = this.queue.splice(0, BATCH);
      this.inFlight++;
      void this.fetch(batch).finally(() => {
        this.inFlight--;
        this.send();
      });
    }
  }

  /** Resolves the waiters of `batch` from one answer; rejects those it did not answer. Never throws. */
  private async fetch(batch: string[]): Promise<void> {
    let received = 0;
    try {
      const response = await this.client.request('POST', this.path, { json: { digests: batch }, accept: 'application/octet-stream' });
      for await (const { digest, data } of readChunkRecords(this.client.stream(response), { maxChunkSize: MAX_CHUNK_SIZE })) {
        const expected = batch[received];
        const wanted = this.wanted.get(digest);
        if (digest !== expected || !wanted || data.length !== wanted.size || sha256(data) !== digest) {
          throw new CliError(`chunk ${expected ?? digest} failed verification; nothing was written for it`);
        }
        received++;
        this.wanted.delete(digest);
        for (const waiter of wanted.waiters) waiter.resolve(data);
      }
      if (received < batch.length) throw new CliError(`the server answered ${received} of ${batch.length} chunks asked for`);
    } catch (err) {
      // readChunkRecords' errors (a record cut short, an oversized length) say the answer is bad.
      const reason = err instanceof Error ? err.message : String(err);
      const error = err instanceof CliError ? err : new CliError(`the server's answer to a chunk fetch is malformed: ${reason}`);
      for (const digest of batch.slice(received)) {
        const wanted = this.wanted.get(digest);
        this.wanted.delete(digest);
        for (const waiter of wanted?.waiters ?? []) waiter.reject(error);
      }
    }
  }
}

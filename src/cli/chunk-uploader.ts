/**
 * Chunk uploads for push, pipelined with the chunking: chunks come in as they are cut and gather
 * in a batch; a full batch asks the server which of its chunks it lacks (`POST .../chunks/missing`)
 * and sends those in packs (`POST .../chunks`) from the bytes the chunker cut, neither read back
 * nor hashed again, while the chunker fills the next batch. The chunker waits while a full batch
 * cannot start, so the client's memory stays bounded whatever the data's size: the batch being
 * filled, one waiting, `batchesInFlight` out and `PACKS_IN_FLIGHT` pack bodies.
 */
import { MAX_PACK_RECORDS, recordHeader, RECORD_HEADER_SIZE } from '../lib/chunk-pack.js';
import { WorkGate } from '../lib/work-gate.js';
import { CliError } from './errors.js';
import type { ApiClient } from './http-client.js';
import { ChunkReader, type ChunkPlace, type ChunkSink, type CutChunk } from './local-tree.js';
import type { Progress } from './progress.js';

/**
 * Chunk bytes per pack request: large enough to amortize a round trip, small enough to retry
 * (and well under the server's MAX_PACK_BYTES with the framing and the last chunk added).
 */
const PACK_BYTES = 8 * 1024 * 1024;
/** Packs in flight, all batches together: enough to hide the round trip and the server's fsync. */
const PACKS_IN_FLIGHT = 3;

export interface UploadLimits {
  /** A batch is full at this many chunk bytes... */
  batchBytes: number;
  /** ...or at this many chunks (at most the server's 10,000 digests a `missing` call). */
  batchChunks: number;
  /** Batches asking `missing` or sending their packs at once; a full batch beyond waits, and the chunker with it. */
  batchesInFlight: number;
}

/**
 * 16 MiB batches (two packs), two out: with the batch being filled and one waiting, at most 64 MiB
 * of chunks in memory, and 24 MiB of pack bodies. Larger batches only took memory (measured:
 * 32 MiB ones, 60 MB more RSS for no speed); 1,024 chunks keep a `missing` round trip small
 * beside a batch of small files.
 */
export const UPLOAD_LIMITS: UploadLimits = Object.freeze({ batchBytes: 16 * 1024 * 1024, batchChunks: 1024, batchesInFlight: 2 });

/** A chunk to send: its bytes when the chunker's are at hand, else read back from `place`. */
interface Outgoing {
  digest: string;
  place: ChunkPlace;
  data?: Buffer;
}

/**
 * Groups chunks into packs of about PACK_BYTES and at most MAX_PACK_RECORDS chunks (many small
 * files), in the order given.
 */
export function* packsOf<T extends { place: { size: number } }>(chunks: Iterable<T>) {
  let pack: T[] = [];
  let bytes = 0;
  for (const c of chunks) {
    pack.push(c);
    bytes += c.place.size;
    if (bytes >= PACK_BYTES || pack.length === MAX_PACK_RECORDS) {
      yield pack;
      pack = [];
      bytes = 0;
    }
  }
  if (pack.length > 0) yield pack;
}

export class ChunkUploader {
  /** Chunk bytes the server acknowledged, resent ones included. */
  sent = 0;
  /** Every distinct chunk of the push, where it lies in its file: asked about once, resent from there. */
  private readonly places = new Map<string, ChunkPlace>();
  private filling: CutChunk[] = [];
  private fillingBytes = 0;
  /** Full batches that wait for one in flight to end. */
  private readonly ready: CutChunk[][] = [];
  /** One promise per batch out; each resolves (never rejects) when the batch is done or failed. */
  private readonly inFlight = new Set<Promise<void>>();
  private readonly packs = new WorkGate(PACKS_IN_FLIGHT, Infinity);
  private failure: { error: unknown } | undefined;

  /**
   * `paths`: the repository's `chunks/missing` and `chunks` (pack) routes; `meter` counts the
   * bytes sent, its total growing by what each answer of `missing` finds lacking.
   */
  constructor(
    private readonly client: ApiClient,
    private readonly paths: { missing: string; pack: string },
    private readonly meter: Progress,
    private readonly limits: UploadLimits = UPLOAD_LIMITS,
  ) {}

  /**
   * Runs `produce` with a sink for the chunks it cuts and sends those the server lacks, each
   * distinct chunk asked about and sent once. Resolves with what `produce` resolves with once
   * every pack is acknowledged; rejects with the first failure of either side, and only once no
   * request of the upload is in flight anymore (so that a rerun's `missing` sees all that landed).
   */
  async upload<T>(produce: (sink: ChunkSink) => Promise<T>): Promise<T> {
    let produced: { value: T } | undefined;
    try {
      produced = { value: await produce((chunk) => this.take(chunk)) };
      if (this.filling.length > 0) this.ready.push(this.filling);
      this.pump();
    } catch (error) {
      this.fail(error); // starts nothing more
    }
    while (this.inFlight.size > 0) await Promise.race(this.inFlight);
    if (this.failure || !produced) throw this.failure?.error;
    return produced.value;
  }

  /**
   * Sends again, read back from their files, those of `digests` that are chunks of this push
   * (a garbage collection took them after `missing` had found them present); resolves with how
   * many it sent. Rejects with a CliError when a file no longer holds a chunk's bytes.
   */
  async resend(digests: readonly string[]): Promise<number> {
    const chunks = [...new Set(digests)].flatMap((digest) => {
      const place = this.places.get(digest);
      return place ? [{ digest, place }] : [];
    });
    this.meter.expect(chunks.reduce((n, c) => n + c.place.size, 0));
    await Promise.all([...packsOf(chunks)].map((pack) => this.sendPack(pack)));
    if (this.failure) throw this.failure.error;
    return chunks.length;
  }

  /** The sink: batches a chunk not seen before; waits while a full batch cannot start. */
  private async take(chunk: CutChunk): Promise<void> {
    if (!this.places.has(chunk.digest)) {
      this.places.set(chunk.digest, chunk.place);
      this.filling.push(chunk);
      this.fillingBytes += chunk.place.size;
      if (this.fillingBytes >= this.limits.batchBytes || this.filling.length >= this.limits.batchChunks) {
        this.ready.push(this.filling);
        this.filling = [];
        this.fillingBytes = 0;
        this.pump();
      }
    }
    for (;;) {
      if (this.failure) throw this.failure.error;
      if (this.ready.length === 0) return;
      await Promise.race(this.inFlight); // not empty: pump() leaves batches waiting only when it is full
    }
  }

  /** Starts waiting batches while fewer than `batchesInFlight` are out, unless one failed. */
  private pump(): void {
    while (!this.failure && this.ready.length > 0 && this.inFlight.size < this.limits.batchesInFlight) {
      const batch = this.ready.shift()!;
      const done: Promise<void> = this.sendBatch(batch)
        .catch((error: unknown) => this.fail(error))
        .then(() => {
          this.inFlight.delete(done);
          this.pump();
        });
      this.inFlight.add(done);
    }
  }

  private async sendBatch(batch: CutChunk[]): Promise<void> {
    const answer = await this.client.json<{ missing: string[] }>('POST', this.paths.missing, { json: { digests: batch.map((c) => c.digest) } });
    const lacking = new Set(answer.missing);
    const chunks = batch.filter((c) => lacking.has(c.digest));
    batch.length = 0; // the present chunks' bytes are free from here on, not once the packs are sent
    this.meter.expect(chunks.reduce((n, c) => n + c.place.size, 0));
    await Promise.all([...packsOf(chunks)].map((pack) => this.sendPack(pack)));
  }

  /** Sends one pack when its turn comes, unless the upload failed meanwhile; never rejects (see `fail`). */
  private sendPack(pack: readonly Outgoing[]): Promise<void> {
    return this.packs.run(async () => {
      if (this.failure) return;
      try {
        const body = await packBody(pack);
        await this.client.json('POST', this.paths.pack, { body, contentType: 'application/octet-stream' });
        const bytes = body.length - pack.length * RECORD_HEADER_SIZE;
        this.sent += bytes;
        this.meter.add(bytes);
      } catch (error) {
        this.fail(error);
      }
    })!; // an unbounded queue: run() always takes the work
  }

  /** Records the upload's first failure: nothing new starts, and upload()/take() throw it. */
  private fail(error: unknown): void {
    this.failure ??= { error };
  }
}

/** The pack's framed records, each chunk's bytes as cut or read back (and checked) from its file. */
async function packBody(pack: readonly Outgoing[]): Promise<Buffer> {
  const body = Buffer.allocUnsafe(pack.reduce((n, c) => n + RECORD_HEADER_SIZE + c.place.size, 0));
  const reader = new ChunkReader(); // opens files only for chunks read back
  let at = 0;
  try {
    for (const { digest, place, data: cut } of pack) {
      const data = cut ?? (await reader.read(place, digest));
      if (!data) throw new CliError(`${place.file} changed while it was pushed; push again`);
      at += recordHeader(digest, data.length).copy(body, at);
      at += data.copy(body, at);
    }
  } finally {
    await reader.close();
  }
  return body;
}

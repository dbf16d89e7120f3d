/**
 * A ChunkCodec over worker threads (node:worker_threads): chunks are hashed and compressed on
 * every core while the main thread reads requests and writes packs. A 2-core server otherwise
 * spends one core on a push while the other waits (issue 15).
 *
 * - cut() jobs also cut their bytes into chunks on the worker (the FastCDC scan, chunker.ts):
 *   a file or a segment of a stream goes in one message and its chunks come back together.
 * - Buffers go to a worker and back by transfer (no copy) when the caller gives them up, else
 *   with one copy; the worker transfers them back with the results.
 * - Back-pressure: at most MAX_IN_FLIGHT_BYTES of chunks are in the pool at once, whatever the
 *   number of pushes; encode() waits for room (FIFO), so a burst of pushes holds bounded memory.
 * - Jobs queued while the workers are busy go to a worker together, in one message (fewer
 *   messages per chunk under load, the case that counts).
 * - A worker that dies (an exception, a lost thread) fails exactly its jobs in flight, with an
 *   error; another worker takes its place at the next job. close() terminates every worker.
 * - Idle workers are unref'd: a pool nobody closed never keeps a process alive, while a job in
 *   flight does.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { CUT_PARAMETERS, GEAR, cutPoints, cutScanner } from '../domain/chunker.js';
import { inlineChunkCodec, type ChunkCodec, type CodecWork, type CutSegment, type EncodedChunk, type SegmentWork } from './chunk-codec.js';
import { DEFAULT_LEVEL, MAX_BLOCK_SIZE, zstdWorkerCodec } from './zstd.js';

/**
 * Chunks shorter than this (the chunker's minimum: only a small file's last or only chunk) are
 * hashed and compressed on the calling thread: a worker's round trip costs more than their work
 * (a profile of a push of 8,000 small files spent 9% of the main thread in postMessage alone).
 */
const INLINE_BELOW = 16 * 1024;
/** Enough to keep every worker busy (a few batches each), small beside a 256 MiB server. */
const MAX_IN_FLIGHT_BYTES = 16 * 1024 * 1024;
/**
 * A worker's own heaps. Chunks live outside them (ArrayBuffers) and zstd too (libzstd's context
 * in native memory, or zstd-codec's 16 MiB WASM memory: a pool of two workers costs ~20 MiB less
 * resident memory on native), so a worker's JS objects are a batch's results; V8's defaults (16 MiB of young
 * generation per worker) would add ~30 MiB per core to the server's resident memory for nothing.
 * Past them the worker dies, which fails its jobs (see above), never the server.
 */
const WORKER_LIMITS = { maxYoungGenerationSizeMb: 2, maxOldGenerationSizeMb: 32 };
/** Jobs in one message to a worker, at most. */
const MAX_BATCH = 16;
/** Messages a worker has in flight: one it works on, one waiting, so it never idles between two. */
const BATCHES_PER_WORKER = 2;

interface Job {
  id: number;
  data: Uint8Array;
  hash: boolean;
  compress: boolean;
  /** Set for cut(): cut `data` into chunks first, and work on each (SegmentWork). */
  cut?: { last: boolean; first: boolean };
}

/** What a worker made of one chunk. */
interface Encoded {
  digest?: string;
  compressed?: Uint8Array | null;
}

interface Done extends Encoded {
  id: number;
  data: Uint8Array;
  /** For a cut job: where its chunks end in `data`, each one's work, and the scan's state after the last. */
  ends?: number[];
  chunks?: Encoded[];
  openHash?: number;
}

/**
 * The worker's program, in CommonJS, given as source (eval) rather than as a file: it starts the
 * same from the built dist/ and from the TypeScript sources under test (vitest, where a .ts
 * worker file cannot load), with no loader to keep in step with either. The chunker's scan is
 * written into it from its own source text (cutScanner, cutPoints: self-contained for this), so
 * the cut points have one implementation, the one the CLI and the tests use. It compresses with
 * the zstd implementation the pool was made with (zstdWorkerCodec(): the module it loads), into
 * arrays of their own, and answers each message (an array of jobs) with one message of results,
 * transferring every buffer back. An exception ends the worker: the pool fails its jobs.
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const { codec, level, maxBlockSize, gear, cutParameters } = workerData;
const cutPoints = ${cutPoints.toString()};
const scan = (${cutScanner.toString()})(gear, cutParameters);

function loadCompress(ready) {
  if (codec.implementation === 'native') {
    const { CCtx, compressBound } = require(codec.module);
    const cctx = new CCtx();
    const scratch = new Uint8Array(compressBound(maxBlockSize));
    return ready((data) => scratch.slice(0, cctx.compress(scratch, data, level)));
  }
  require(codec.module).ZstdCodec.run((api) => {
    const simple = new api.Simple();
    ready((data) => {
      const block = simple.compress(data, level);
      if (!block) throw new Error('zstd compression failed');
      return block.byteOffset === 0 && block.byteLength === block.buffer.byteLength ? block : block.slice();
    });
  });
}

loadCompress((compress) => {
  parentPort.on('message', ({ jobs, failure }) => {
    if (failure !== undefined) throw new Error(failure);
    const done = [];
    const transfer = [];
    const encode = (job, data, result) => {
      if (job.hash) result.digest = createHash('sha256').update(data).digest('hex');
      if (job.compress) {
        const block = data.length > 0 && data.length <= maxBlockSize ? compress(data) : undefined;
        result.compressed = block && block.length < data.length ? block : null;
        if (result.compressed) transfer.push(block.buffer);
      }
      return result;
    };
    for (const job of jobs) {
      const result = { id: job.id, data: job.data };
      if (job.cut) {
        const state = { hash: 0 };
        result.ends = cutPoints(scan, job.data, job.cut.last, state);
        result.chunks = result.ends.map((end, i) => (i === 0 && !job.cut.first ? {} : encode(job, job.data.subarray(i === 0 ? 0 : result.ends[i - 1], end), {})));
        result.openHash = state.hash;
      } else {
        encode(job, job.data, result);
      }
      done.push(result);
      transfer.push(job.data.buffer);
    }
    parentPort.postMessage(done, transfer);
  });
});
`;

interface Pending {
  job: Job;
  resolve(done: Done): void;
  reject(error: Error): void;
}

interface CodecThread {
  worker: Worker;
  /** Jobs sent to the worker and not answered yet, by id. */
  jobs: Map<number, Pending>;
  /** Messages sent and not answered yet. */
  batches: number;
}

const asBuffer = (a: Uint8Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

const encodedChunk = (data: Buffer, encoded: Encoded): EncodedChunk => ({
  data,
  ...(encoded.digest !== undefined && { digest: encoded.digest }),
  ...(encoded.compressed !== undefined && { compressed: encoded.compressed && asBuffer(encoded.compressed) }),
});

/** What goes to a worker: `data` itself when the caller gives it up and it is a whole buffer, else a copy of its own. */
function payload(data: Buffer, options: { transfer?: boolean }): Uint8Array {
  const owned = options.transfer === true && data.byteOffset === 0 && data.byteLength === data.buffer.byteLength;
  return owned ? data : new Uint8Array(data);
}

export class ChunkCodecPool implements ChunkCodec {
  private readonly threads: CodecThread[] = [];
  /** Jobs not sent to a worker yet, in arrival order. */
  private readonly queued: Pending[] = [];
  /** encode() calls waiting for room in the pool, in arrival order. */
  private readonly waiting: { bytes: number; admit(): void; reject(error: Error): void }[] = [];
  private inFlightBytes = 0;
  private nextId = 0;
  private closed = false;
  private nextBatchFailure: string | undefined;

  /** What the workers compress with: the process's zstd implementation when the pool was made. */
  private readonly codec = zstdWorkerCodec();

  /** `size` workers at most (started on first use): one per core, at least 2, by default. */
  constructor(private readonly size = Math.max(2, availableParallelism())) {}

  /** Workers running now (started by start() or on first use, and again after one died). */
  get workers(): number {
    return this.threads.length;
  }

  /**
   * Starts every worker now rather than on the first job: loading zstd takes a worker a few
   * hundred milliseconds (more on a busy machine), which a server pays at startup instead of in
   * its first push. Idle workers keep no process alive.
   */
  start(): void {
    while (!this.closed && this.threads.length < this.size) this.spawn();
  }

  async encode(data: Buffer, work: CodecWork, options: { transfer?: boolean } = {}): Promise<EncodedChunk> {
    if (this.closed) throw new Error('the chunk codec pool is closed');
    if (data.length < INLINE_BELOW) return inlineChunkCodec.encode(data, work);
    const done = await this.run({ id: this.nextId++, data: payload(data, options), hash: work.hash, compress: work.compress });
    return encodedChunk(asBuffer(done.data), done);
  }

  /** A segment under a chunk's minimum is cut (it is at most one chunk) on the calling thread, as encode() does. */
  async cut(data: Buffer, work: SegmentWork, options: { transfer?: boolean } = {}): Promise<CutSegment> {
    if (this.closed) throw new Error('the chunk codec pool is closed');
    if (data.length < INLINE_BELOW) return inlineChunkCodec.cut(data, work);
    const done = await this.run({ id: this.nextId++, data: payload(data, options), hash: work.hash, compress: work.compress, cut: { last: work.last, first: work.first } });
    const segment = asBuffer(done.data);
    const ends = done.ends!;
    return {
      data: segment,
      chunks: ends.map((end, i) => encodedChunk(segment.subarray(ends[i - 1] ?? 0, end), done.chunks![i]!)),
      open: segment.subarray(ends.at(-1) ?? 0),
      openState: { hash: done.openHash! },
    };
  }

  /**
   * For tests: the next message sent to a worker makes it throw `reason` before it does any job,
   * as a worker that dies would, so that a test proves its jobs fail cleanly and the pool goes on.
   */
  failNextBatch(reason: string): void {
    this.nextBatchFailure = reason;
  }

  async close(): Promise<void> {
    this.closed = true;
    const error = new Error('the chunk codec pool is closed');
    for (const pending of this.queued.splice(0)) pending.reject(error);
    for (const waiter of this.waiting.splice(0)) waiter.reject(error);
    await Promise.all(this.threads.map((t) => t.worker.terminate()));
  }

  private async run(job: Job): Promise<Done> {
    const bytes = job.data.byteLength;
    // Counted on admission (here, or by the job whose end makes room), released when the job settles.
    if (this.waiting.length === 0 && this.hasRoom(bytes)) this.inFlightBytes += bytes;
    else await new Promise<void>((admit, reject) => this.waiting.push({ bytes, admit, reject }));
    try {
      return await new Promise<Done>((resolve, reject) => {
        this.queued.push({ job, resolve, reject });
        this.dispatch();
      });
    } finally {
      this.inFlightBytes -= bytes;
      while (this.waiting.length > 0 && this.hasRoom(this.waiting[0]!.bytes)) {
        const waiter = this.waiting.shift()!;
        this.inFlightBytes += waiter.bytes;
        waiter.admit();
      }
    }
  }

  /** One job is always let in, however large: the bound must not stop a lone chunk. */
  private hasRoom(bytes: number): boolean {
    return this.inFlightBytes === 0 || this.inFlightBytes + bytes <= MAX_IN_FLIGHT_BYTES;
  }

  /** Sends queued jobs to workers with room, starting workers up to `size`. */
  private dispatch(): void {
    while (this.queued.length > 0 && !this.closed) {
      let thread = this.threads.reduce<CodecThread | undefined>((best, t) => (t.batches < BATCHES_PER_WORKER && (!best || t.batches < best.batches) ? t : best), undefined);
      if (!thread || (thread.batches > 0 && this.threads.length < this.size)) thread = this.threads.length < this.size ? this.spawn() : thread;
      if (!thread) return;
      const batch = this.queued.splice(0, Math.min(MAX_BATCH, Math.ceil(this.queued.length / this.size)));
      for (const pending of batch) thread.jobs.set(pending.job.id, pending);
      thread.batches++;
      thread.worker.ref();
      const failure = this.nextBatchFailure;
      this.nextBatchFailure = undefined;
      thread.worker.postMessage(
        { jobs: batch.map((p) => p.job), ...(failure !== undefined && { failure }) },
        batch.map((p) => p.job.data.buffer as ArrayBuffer),
      );
    }
  }

  private spawn(): CodecThread {
    const worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { codec: this.codec, level: DEFAULT_LEVEL, maxBlockSize: MAX_BLOCK_SIZE, gear: GEAR, cutParameters: CUT_PARAMETERS },
      resourceLimits: WORKER_LIMITS,
    });
    const thread: CodecThread = { worker, jobs: new Map(), batches: 0 };
    worker.unref();
    worker.on('message', (results: Done[]) => {
      thread.batches--;
      for (const done of results) {
        const pending = thread.jobs.get(done.id);
        thread.jobs.delete(done.id);
        pending?.resolve(done);
      }
      if (thread.batches === 0) worker.unref();
      this.dispatch();
    });
    let failure: Error | undefined;
    worker.on('error', (e) => (failure = e));
    worker.on('exit', (code) => {
      this.threads.splice(this.threads.indexOf(thread), 1);
      const error = this.closed
        ? new Error('the chunk codec pool is closed')
        : new Error(`a chunk codec worker stopped (${failure ? failure.message : `exit code ${code}`})`);
      for (const pending of thread.jobs.values()) pending.reject(error);
      thread.jobs.clear();
      this.dispatch();
    });
    this.threads.push(thread);
    return thread;
  }
}

/**
 * The framing of a chunk pack on the wire (the body of `POST /api/v1/repos/{owner}/{repo}/chunks`
 * and the answer of `POST .../chunks/fetch`, described in openapi/ and storage/README.md):
 * records back to back, each
 *
 *   u32 big-endian length | 32 raw bytes of the chunk's SHA-256 | length bytes of the chunk
 *
 * with nothing before, between or after them. No count up front, so a client streams a pack as
 * it reads its files; the digest before the bytes lets a reader check each chunk as it ends.
 */
import { invalid, tooLarge } from '../domain/errors.js';

export const RECORD_HEADER_SIZE = 36;

/**
 * Records one uploaded pack may hold. The CLI sends packs of ~8 MiB, so only chunks under 128
 * bytes on average (small files) reach it; it cuts its packs here too.
 */
export const MAX_PACK_RECORDS = 65_536;
/**
 * Bytes (framing included, after Content-Encoding) one uploaded pack may hold: 4 times what the
 * CLI sends, so that a small compressed body cannot make the server read without end.
 */
export const MAX_PACK_BYTES = 32 * 1024 * 1024;

export interface PackLimits {
  /** Longest record: a longer length is `too_large` before its bytes are read. */
  maxChunkSize: number;
  /** Records the pack may hold: `too_large` at the next header. Unbounded when absent. */
  maxRecords?: number;
  /** Bytes the pack may hold, framing included: `too_large` as soon as more arrive. Unbounded when absent. */
  maxBytes?: number;
}

export interface ChunkRecord {
  /** Lower-case hex, as the client claims it; the store checks it against the bytes. */
  digest: string;
  data: Buffer;
}

/** The header of one record; the chunk's bytes follow it. */
export function recordHeader(digest: string, length: number): Buffer {
  const header = Buffer.alloc(RECORD_HEADER_SIZE);
  header.writeUInt32BE(length, 0);
  if (header.write(digest, 4, 32, 'hex') !== 32) throw new RangeError(`"${digest}" is not a SHA-256 hex digest`);
  return header;
}

/** The bytes of a pack holding `records`, in order, a record at a time (for a stream's backpressure). */
export async function* encodeChunkRecords(records: AsyncIterable<ChunkRecord>): AsyncGenerator<Buffer> {
  for await (const { digest, data } of records) {
    yield recordHeader(digest, data.length);
    yield data;
  }
}

/**
 * The records of a pack stream, in order, holding at most one record (and one input piece) in
 * memory. Past one of `limits`, `too_large`; a record of no bytes (no chunk is empty) or a stream
 * that ends inside a record is `invalid`.
 */
export async function* readChunkRecords(body: AsyncIterable<Uint8Array>, limits: PackLimits): AsyncGenerator<ChunkRecord> {
  const { maxChunkSize, maxRecords = Infinity, maxBytes = Infinity } = limits;
  const pieces: Buffer[] = [];
  let buffered = 0;
  let received = 0;
  let records = 0;
  /** Removes and returns the first `n` buffered bytes (n <= buffered). */
  const take = (n: number): Buffer => {
    const out = Buffer.allocUnsafe(n);
    for (let filled = 0; filled < n; ) {
      const head = pieces[0]!;
      const used = Math.min(head.length, n - filled);
      head.copy(out, filled, 0, used);
      filled += used;
      if (used === head.length) pieces.shift();
      else pieces[0] = head.subarray(used);
    }
    buffered -= n;
    return out;
  };
  let header: { length: number; digest: string } | undefined;
  const next = function* (): Generator<ChunkRecord> {
    for (;;) {
      if (!header) {
        if (buffered < RECORD_HEADER_SIZE) return;
        const bytes = take(RECORD_HEADER_SIZE);
        const length = bytes.readUInt32BE(0);
        if (length === 0) throw invalid('a record of the chunk pack holds no bytes');
        if (length > maxChunkSize) throw tooLarge(`a chunk of ${length} bytes exceeds the limit of ${maxChunkSize}`);
        if (++records > maxRecords) throw tooLarge(`a chunk pack holds at most ${maxRecords} records`);
        header = { length, digest: bytes.toString('hex', 4) };
      }
      if (buffered < header.length) return;
      const record = { digest: header.digest, data: take(header.length) };
      header = undefined;
      yield record;
    }
  };
  for await (const piece of body) {
    received += piece.byteLength;
    if (received > maxBytes) throw tooLarge(`a chunk pack holds at most ${maxBytes} bytes`);
    pieces.push(Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength));
    buffered += piece.byteLength;
    yield* next();
  }
  if (header || buffered > 0) throw invalid('the chunk pack ends inside a record');
}

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
 * memory. A length over `maxChunkSize` is `too_large` before its bytes are read; a stream that
 * ends inside a record is `invalid`.
 */
export async function* readChunkRecords(body: AsyncIterable<Uint8Array>, maxChunkSize: number): AsyncGenerator<ChunkRecord> {
  const pieces: Buffer[] = [];
  let buffered = 0;
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
        if (length > maxChunkSize) throw tooLarge(`a chunk of ${length} bytes exceeds the limit of ${maxChunkSize}`);
        header = { length, digest: bytes.toString('hex', 4) };
      }
      if (buffered < header.length) return;
      const record = { digest: header.digest, data: take(header.length) };
      header = undefined;
      yield record;
    }
  };
  for await (const piece of body) {
    pieces.push(Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength));
    buffered += piece.byteLength;
    yield* next();
  }
  if (header || buffered > 0) throw invalid('the chunk pack ends inside a record');
}

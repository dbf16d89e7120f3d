/** How `snapfork push` groups the chunks it sends into pack requests. */
import { describe, expect, it } from 'vitest';
import { packsOf } from '../../src/cli/chunk-uploader.js';
import { MAX_PACK_BYTES, MAX_PACK_RECORDS, RECORD_HEADER_SIZE } from '../../src/lib/chunk-pack.js';

const chunks = (count: number, size: number) =>
  Array.from({ length: count }, (_, i) => ({ digest: i.toString(16).padStart(64, '0'), place: { file: 'f', offset: i * size, size } }));
const shape = (packs: Iterable<{ place: { size: number } }[]>) =>
  [...packs].map((p) => ({ records: p.length, bytes: p.reduce((n, c) => n + RECORD_HEADER_SIZE + c.place.size, 0) }));

describe("the push command's packs", () => {
  it('stay within what the server accepts: many small chunks are cut at MAX_PACK_RECORDS', () => {
    const packs = shape(packsOf(chunks(2 * MAX_PACK_RECORDS + 1, 10)));
    expect(packs.map((p) => p.records)).toEqual([MAX_PACK_RECORDS, MAX_PACK_RECORDS, 1]);
  });

  it('hold about 8 MiB of full-size chunks, well under MAX_PACK_BYTES', () => {
    const packs = shape(packsOf(chunks(100, 256 * 1024)));
    expect(packs.map((p) => p.records)).toEqual([32, 32, 32, 4]);
    for (const p of packs) expect(p.bytes).toBeLessThanOrEqual(MAX_PACK_BYTES);
  });
});

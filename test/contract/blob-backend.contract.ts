/**
 * The suite every BlobBackend must pass (src/store/packs/blob-backend.ts). Each test opens a
 * backend with `open`, which must give it an empty namespace of its own, and closes it after.
 */
import { createHash, randomBytes } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { BlobBackend, BlobUpload } from '../../src/store/packs/blob-backend.js';
import { expectDomainError } from '../support/domain-errors.js';

const MIB = 1024 * 1024;


/** Writes `data` in pieces of `piece` bytes, as a pack writer appends its entries. */
async function writeAll(upload: BlobUpload, data: Buffer, piece = 64 * 1024): Promise<void> {
  for (let at = 0; at < data.length; at += piece) await upload.write(data.subarray(at, at + piece));
}

async function put(backend: BlobBackend, name: string, data: Buffer): Promise<void> {
  const upload = backend.create(name);
  await writeAll(upload, data);
  await upload.commit();
}

async function names(backend: BlobBackend, prefix: string): Promise<string[]> {
  const found: string[] = [];
  for await (const info of backend.list(prefix)) found.push(info.name);
  return found.sort();
}

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

/** Runs `task` over `items`, at most `limit` at a time. */
async function eachLimited<T>(items: T[], limit: number, task: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: limit }, async () => {
      while (next < items.length) await task(items[next++]!);
    }),
  );
}

export function blobBackendContract(name: string, open: () => Promise<BlobBackend>): void {
  describe(`BlobBackend contract: ${name}`, () => {
    let backend: BlobBackend;

    beforeEach(async () => {
      backend = await open();
    });
    afterEach(async () => {
      await backend.close();
    });

    it('never abandons its own uploads under way, however old they are said to be', async () => {
      const upload = backend.create('packs/ab/under-way.pack');
      const data = randomBytes(300_000);
      await writeAll(upload, data);
      expect(await backend.abandonUploads(new Date(Date.now() + 3600_000))).toBe(0);
      await upload.commit();
      expect((await backend.stat('packs/ab/under-way.pack'))?.size).toBe(data.length);
    });

    it('commits a blob written in pieces and reads it back whole and by range, short at the end', async () => {
      const data = randomBytes(300_000);
      const before = Date.now();
      await put(backend, 'packs/ab/0001.pack', data);
      const info = await backend.stat('packs/ab/0001.pack');
      expect(info).toMatchObject({ name: 'packs/ab/0001.pack', size: data.length });
      // Stores keep whole seconds; allow for that and for a clock a little apart.
      expect(Math.abs(info!.modifiedAt.getTime() - before)).toBeLessThan(60_000);
      expect((await backend.read('packs/ab/0001.pack', 0, data.length)).equals(data)).toBe(true);
      expect((await backend.read('packs/ab/0001.pack', 12_345, 100)).equals(data.subarray(12_345, 12_445))).toBe(true);
      // A range running past the end is cut at the end; one starting at or past it is empty.
      expect((await backend.read('packs/ab/0001.pack', data.length - 10, 100)).equals(data.subarray(data.length - 10))).toBe(true);
      expect((await backend.read('packs/ab/0001.pack', 0, data.length + 1)).equals(data)).toBe(true);
      expect(await backend.read('packs/ab/0001.pack', data.length, 10)).toEqual(Buffer.alloc(0));
      expect(await backend.read('packs/ab/0001.pack', data.length + 1000, 10)).toEqual(Buffer.alloc(0));
      expect(await backend.read('packs/ab/0001.pack', 5, 0)).toEqual(Buffer.alloc(0));
    });

    it('stores an empty blob', async () => {
      await backend.create('empty').commit();
      expect(await backend.stat('empty')).toMatchObject({ name: 'empty', size: 0 });
      expect(await backend.read('empty', 0, 10)).toEqual(Buffer.alloc(0));
    });

    it('answers for a missing blob: read not_found, stat undefined, delete false, list nothing', async () => {
      await expectDomainError(backend.read('packs/none.pack', 0, 10), 'not_found');
      await expectDomainError(backend.read('packs/none.pack', 0, 0), 'not_found');
      expect(await backend.stat('packs/none.pack')).toBeUndefined();
      expect(await backend.delete('packs/none.pack')).toBe(false);
      expect(await names(backend, '')).toEqual([]);
    });

    it('shows nothing of an upload before its commit, to stat, read or list', async () => {
      const data = randomBytes(100_000);
      const upload = backend.create('packs/cd/0002.pack');
      await writeAll(upload, data);
      expect(await backend.stat('packs/cd/0002.pack')).toBeUndefined();
      await expectDomainError(backend.read('packs/cd/0002.pack', 0, 10), 'not_found');
      expect(await names(backend, '')).toEqual([]);
      await upload.commit();
      expect(await names(backend, '')).toEqual(['packs/cd/0002.pack']);
      expect((await backend.read('packs/cd/0002.pack', 0, data.length)).equals(data)).toBe(true);
    });

    it('leaves nothing of an aborted upload, at any point; abort after commit keeps the blob', async () => {
      const unwritten = backend.create('packs/a.pack');
      await unwritten.abort();
      const written = backend.create('packs/b.pack');
      await writeAll(written, randomBytes(200_000));
      await written.abort();
      await written.abort(); // twice is fine
      await expect(written.commit()).rejects.toThrow();
      expect(await names(backend, '')).toEqual([]);
      expect(await backend.stat('packs/b.pack')).toBeUndefined();

      const committed = backend.create('packs/c.pack');
      await committed.write(Buffer.from('kept'));
      await committed.commit();
      await committed.abort();
      expect(await backend.read('packs/c.pack', 0, 10)).toEqual(Buffer.from('kept'));
    });

    it('lists by prefix, past a thousand blobs (a page of S3)', async () => {
      const many = Array.from({ length: 1010 }, (_, i) => `many/${String(i).padStart(4, '0')}`);
      await eachLimited(many, 32, (n) => put(backend, n, Buffer.from(n)));
      await put(backend, 'other/x', Buffer.from('x'));
      await put(backend, 'manx', Buffer.from('not under many/'));
      expect(await names(backend, 'many/')).toEqual(many);
      expect(await names(backend, 'many/100')).toEqual(['many/1000', 'many/1001', 'many/1002', 'many/1003', 'many/1004', 'many/1005', 'many/1006', 'many/1007', 'many/1008', 'many/1009']);
      expect(await names(backend, 'other/')).toEqual(['other/x']);
      expect(await names(backend, 'nothing/')).toEqual([]);
      const sizes = new Map<string, number>();
      for await (const info of backend.list('')) sizes.set(info.name, info.size);
      expect(sizes.size).toBe(1012);
      expect(sizes.get('many/0042')).toBe('many/0042'.length);
    });

    it('deletes idempotently', async () => {
      await put(backend, 'packs/d.pack', Buffer.from('gone soon'));
      expect(await backend.delete('packs/d.pack')).toBe(true);
      expect(await backend.stat('packs/d.pack')).toBeUndefined();
      await expectDomainError(backend.read('packs/d.pack', 0, 1), 'not_found');
      expect(await names(backend, '')).toEqual([]);
      expect(await backend.delete('packs/d.pack')).toBe(false);
    });

    it('round-trips a 20 MiB blob byte for byte (several S3 parts), invisible until committed', async () => {
      const data = randomBytes(20 * MIB + 12_345);
      const upload = backend.create('packs/ef/big.pack');
      await writeAll(upload, data);
      expect(await backend.stat('packs/ef/big.pack')).toBeUndefined();
      expect(await names(backend, '')).toEqual([]);
      await upload.commit();
      expect(await backend.stat('packs/ef/big.pack')).toMatchObject({ size: data.length });
      expect(sha256(await backend.read('packs/ef/big.pack', 0, data.length))).toBe(sha256(data));
      // Across the boundaries of 5 and 8 MiB parts, and the tail.
      for (const at of [5 * MIB - 7, 8 * MIB - 7, 16 * MIB - 7, data.length - 100]) {
        expect((await backend.read('packs/ef/big.pack', at, 1000)).equals(data.subarray(at, at + 1000))).toBe(true);
      }
    });

    it('keeps concurrent uploads apart', async () => {
      const blobs = Array.from({ length: 8 }, (_, i) => ({ name: `packs/c${i}.pack`, data: randomBytes(200_000 + i * 1000) }));
      const uploads = blobs.map((b) => backend.create(b.name));
      // Interleaved writes: one piece of each upload in turn.
      for (let at = 0; at < 210_000; at += 50_000) {
        await Promise.all(blobs.filter((b) => at < b.data.length).map((b) => uploads[blobs.indexOf(b)]!.write(b.data.subarray(at, at + 50_000))));
      }
      await Promise.all(uploads.map((u) => u.commit()));
      for (const b of blobs) expect((await backend.read(b.name, 0, b.data.length)).equals(b.data)).toBe(true);
      expect(await names(backend, 'packs/')).toEqual(blobs.map((b) => b.name).sort());
    });
  });
}

import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DomainError } from '../../src/domain/errors.js';
import { openFsChunkStore } from '../../src/store/fs/chunk-store.js';
import type { PackChunkStore } from '../../src/store/packs/pack-store.js';
import { FileReaders } from '../../src/store/blobs/file-readers.js';
import { flipChunkByte } from '../support/pack-files.js';
import { chunkOf, chunkStoreContract, sha256 } from './chunk-store.contract.js';

const tempDir = () => mkdtemp(join(tmpdir(), 'snapfork-chunks-'));

chunkStoreContract('file system', async () => {
  const dir = await tempDir();
  const store = await openFsChunkStore(join(dir, 'chunks'));
  return {
    store,
    damage: (digest) => flipChunkByte(join(dir, 'chunks'), digest),
    cleanup: async () => {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
});

/** Every file under `dir`, relative to it. */
async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name).slice(dir.length + 1));
}

const packsIn = async (dir: string) => (await filesUnder(join(dir, 'packs'))).filter((f) => f.endsWith('.pack'));

describe('local chunk store (openFsChunkStore)', () => {
  let root: string;
  let dir: string;
  let store: PackChunkStore;

  beforeEach(async () => {
    root = await tempDir();
    dir = join(root, 'chunks');
    store = await openFsChunkStore(dir);
  });
  afterEach(async () => {
    await store.close();
    await rm(root, { recursive: true, force: true });
  });

  it('keeps its data across close and reopen', async () => {
    const data = await chunkOf(100_000, 1);
    const { digest } = await store.put(data);
    await store.close();
    store = await openFsChunkStore(dir);
    expect((await store.get(digest)).equals(data)).toBe(true);
    expect(await store.count()).toBe(1);
  });

  it('packs a writer’s chunks into one file and deletes it when its last chunk goes', async () => {
    const writer = store.writer();
    const data = await Promise.all([1, 2, 3].map((seed) => chunkOf(64 * 1024, seed)));
    for (const d of data) await writer.put(d);
    expect(await packsIn(dir)).toEqual([]);
    expect(await filesUnder(join(dir, 'tmp'))).toHaveLength(1);
    await writer.commit();
    expect(await packsIn(dir)).toHaveLength(1);
    expect(await filesUnder(join(dir, 'tmp'))).toEqual([]);
    await store.delete(sha256(data[0]!));
    await store.delete(sha256(data[1]!));
    expect(await packsIn(dir)).toHaveLength(1);
    await store.delete(sha256(data[2]!));
    expect(await packsIn(dir)).toEqual([]);
  });

  it('removes a leftover temp pack at open, and its chunks stay invisible', async () => {
    const writer = store.writer();
    const data = await chunkOf(64 * 1024, 7);
    await writer.put(data); // never committed: as if the process died here
    expect(await filesUnder(join(dir, 'tmp'))).toHaveLength(1);
    await store.close();
    store = await openFsChunkStore(dir);
    expect(await filesUnder(join(dir, 'tmp'))).toEqual([]);
    expect(await store.has(sha256(data))).toBe(false);
    expect(await store.count()).toBe(0);
    // The "dead" writer still holds its temp file open in this process: let it go.
    await writer.abort();
  });

  it('removes a sealed pack the index never recorded (crash between rename and commit)', async () => {
    const { digest } = await store.put(await chunkOf(10_000, 8));
    const [pack] = await packsIn(dir);
    await writeFile(join(dir, 'packs', 'ab', 'ab0000000000000000000000000000ff.pack'), 'orphan');
    await store.close();
    store = await openFsChunkStore(dir);
    expect(await packsIn(dir)).toEqual([pack]);
    expect(await store.has(digest)).toBe(true);
  });

  it('reports a flipped byte as corrupt and never serves the bytes', async () => {
    const data = await chunkOf(64 * 1024, 9);
    const { digest } = await store.put(data);
    await flipChunkByte(dir, digest);
    const error = await store.get(digest).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(DomainError);
    expect((error as DomainError).kind).toBe('corrupt');
    const streamed = await (async () => {
      for await (const _ of store.stream([digest])) return 'served';
    })().catch((e: unknown) => (e as DomainError).kind);
    expect(streamed).toBe('corrupt');
  });

  it('refuses a second open of a directory in use, and takes over the lock of a dead process', async () => {
    await expect(openFsChunkStore(dir)).rejects.toThrow(/in use by process/);
    await store.close();
    // A lock left by a process that no longer exists (kill -9) does not block the next start.
    await writeFile(join(dir, 'LOCK'), `${2 ** 22 + 12345}\n${hostname()}\n`);
    store = await openFsChunkStore(dir);
    expect(await readFile(join(dir, 'LOCK'), 'utf8')).toBe(`${process.pid}\n${hostname()}\n`);
  });

  it('reports a missing pack file as corrupt', async () => {
    const { digest } = await store.put(await chunkOf(1000, 10));
    const [pack] = await packsIn(dir);
    await rm(join(dir, 'packs', pack!));
    await expect(store.get(digest)).rejects.toMatchObject({ kind: 'corrupt' });
  });
});

describe('FileReaders', () => {
  it('reads through a bounded cache of descriptors, also while one is retired mid-read', async () => {
    const root = await tempDir();
    try {
      const paths = await Promise.all(
        [0, 1, 2].map(async (i) => {
          const path = join(root, `${i}.pack`);
          await writeFile(path, Buffer.alloc(1000, i + 1));
          return path;
        }),
      );
      const readers = new FileReaders(2);
      for (let round = 0; round < 3; round++) {
        for (const [i, path] of paths.entries()) expect(await readers.read(path, 10, 5)).toEqual(Buffer.alloc(5, i + 1));
      }
      const inFlight = readers.read(paths[0]!, 990, 100);
      readers.forget(paths[0]!);
      expect((await inFlight).length).toBe(10); // short read at the end of the file
      await rm(paths[1]!);
      readers.forget(paths[1]!);
      await expect(readers.read(paths[1]!, 0, 1)).rejects.toMatchObject({ code: 'ENOENT' });
      readers.close();
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});

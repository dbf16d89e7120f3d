/**
 * ChunkStore on a local file system: chunks packed into append-only pack files, located by a
 * SQLite index. The format is specified in storage/README.md; the layout under `dir`:
 *
 *   <dataDir>/chunks/                     dir, the root of this store
 *   ├── index.db  (+ -wal, -shm)          SQLite: chunks(digest → pack, offset, sizes), packs(live)
 *   ├── packs/
 *   │   ├── 00/ … ff/                     first two hex digits of the pack id
 *   │   │   └── <pack id>.pack            sealed: fsynced, immutable, referenced by the index
 *   └── tmp/
 *       └── <pack id>.pack                being written by a ChunkWriter; deleted at open
 *
 * Why packs: creating and fsyncing one small file per chunk runs at ~800 files/s here, which
 * would cap a push of 64 KiB chunks near 50 MB/s. A writer appends to one temporary pack and
 * pays one fsync per ~64 MiB instead.
 *
 * Crash safety: the index only ever names packs that were fsynced and renamed into packs/ first,
 * so a crash leaves at worst a temp pack (deleted at open) or a sealed pack the index does not
 * know (an orphan, deleted at open too). No reader can reach a half-written chunk.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, rename, rm, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import BetterSqlite3 from 'better-sqlite3';
import { DomainError, corrupt, notFound, tooLarge, unprocessable } from '../../domain/errors.js';
import type { ChunkStat, ChunkStore, ChunkWriter, PutResult } from '../types.js';
import { MAX_BLOCK_SIZE, compressBlock, decompressBlock, zstdReady } from '../../lib/zstd.js';
import { fsyncDir } from '../../lib/durable-fs.js';
import { readAhead } from '../../lib/read-ahead.js';
import { sha256 } from '../../lib/sha256.js';
import {
  ENTRY_HEADER_SIZE,
  PACK_HEADER_SIZE,
  decodeEntryHeader,
  encodeEntryHeader,
  packHeader,
  type Compression,
  type EntryHeader,
} from '../packs/pack-format.js';
import { lockDirectory } from './dir-lock.js';
import { FileReaders } from '../blobs/file-readers.js';

/** A pack is sealed once it holds this much: one fsync per 64 MiB, and packs few enough to list. */
const PACK_TARGET_SIZE = 64 * 1024 * 1024;
/**
 * Entries are gathered in memory and written with one writev per 4 MiB: one syscall (and one
 * thread-pool round trip) per 64 KiB chunk left a push waiting on the disk most of the time.
 */
const WRITE_BUFFER_SIZE = 4 * 1024 * 1024;
/** Chunks stream() reads ahead of its consumer: enough to hide read latency, bounded memory. */
const READ_AHEAD = 4;
/** Pack descriptors kept open for reads: 64 packs cover 4 GiB of recently read data. */
const OPEN_PACKS = 64;
/** Sizes are u32 in the pack format. */
const MAX_CHUNK_BYTES = 0xffffffff;
const DIGEST = /^[0-9a-f]{64}$/;
const INDEX_VERSION = 1;

interface ChunkRow {
  pack: string;
  offset: number;
  stored_size: number;
  size: number;
  compression: Compression;
}

interface PendingEntry extends EntryHeader {
  offset: number;
}

/** A pack a writer has written to: in tmp/ until commit renames it into packs/. */
interface PendingPack {
  id: string;
  entries: PendingEntry[];
  size: number;
}

export async function openFsChunkStore(dir: string): Promise<FsChunkStore> {
  await mkdir(dir, { recursive: true });
  const unlock = await lockDirectory(dir);
  try {
    // Leftover temp packs belong to writers that never committed: their chunks were never visible.
    await rm(join(dir, 'tmp'), { recursive: true, force: true });
    await mkdir(join(dir, 'tmp'), { recursive: true });
    // All 256 fan-out directories exist from the start, so sealing a pack never creates one
    // (and never needs to fsync packs/ itself).
    await Promise.all(Array.from({ length: 256 }, (_, i) => mkdir(join(dir, 'packs', fanOut(i)), { recursive: true })));
    await fsyncDir(join(dir, 'packs'));
    await fsyncDir(dir);
    const index = openIndex(join(dir, 'index.db'));
    const store = new FsChunkStore(dir, index, unlock);
    await store.removeOrphanPacks();
    await zstdReady();
    return store;
  } catch (e) {
    await unlock();
    throw storageError(e);
  }
}

export class FsChunkStore implements ChunkStore {
  private readonly statements;
  private readonly readers = new FileReaders(OPEN_PACKS);

  constructor(
    private readonly dir: string,
    private readonly index: BetterSqlite3.Database,
    private readonly unlock: () => Promise<void>,
  ) {
    this.statements = {
      get: index.prepare<[string], ChunkRow>('SELECT pack, offset, stored_size, size, compression FROM chunks WHERE digest = ?'),
      has: index.prepare<[string], { found: number }>('SELECT 1 AS found FROM chunks WHERE digest = ?'),
      page: index.prepare<[string, number], { digest: string }>('SELECT digest FROM chunks WHERE digest > ? ORDER BY digest LIMIT ?'),
      count: index.prepare<[], { n: number }>('SELECT count(*) AS n FROM chunks'),
      packIds: index.prepare<[], { id: string }>('SELECT id FROM packs'),
      insertPack: index.prepare<[string, number]>('INSERT INTO packs (id, live, size) VALUES (?, 0, ?)'),
      insertChunk: index.prepare<[string, string, number, number, number, Compression]>(
        'INSERT OR IGNORE INTO chunks (digest, pack, offset, stored_size, size, compression) VALUES (?, ?, ?, ?, ?, ?)',
      ),
      addLive: index.prepare<[number, string]>('UPDATE packs SET live = live + ? WHERE id = ?'),
      deleteChunk: index.prepare<[string]>('DELETE FROM chunks WHERE digest = ?'),
      live: index.prepare<[string], { live: number }>('SELECT live FROM packs WHERE id = ?'),
      deletePack: index.prepare<[string]>('DELETE FROM packs WHERE id = ?'),
    };
  }

  async has(digest: string): Promise<boolean> {
    return this.statements.has.get(digest) !== undefined;
  }

  async missing(digests: readonly string[]): Promise<string[]> {
    return [...new Set(digests)].filter((d) => this.statements.has.get(d) === undefined);
  }

  writer(): ChunkWriter {
    return new FsChunkWriter(this);
  }

  async put(data: Buffer, digest?: string): Promise<PutResult> {
    const writer = this.writer();
    try {
      const result = await writer.put(data, digest);
      await writer.commit();
      return result;
    } catch (e) {
      await writer.abort();
      throw e;
    }
  }

  async get(digest: string): Promise<Buffer> {
    const row = DIGEST.test(digest) ? this.statements.get.get(digest) : undefined;
    if (!row) throw notFound(`chunk ${digest} not found`);
    const damaged = (why: string) => corrupt(`chunk ${digest} in pack ${row.pack} is corrupt: ${why}`);
    const bytes = await this.readers.read(this.packPath(row.pack), row.offset, ENTRY_HEADER_SIZE + row.stored_size).catch((e: unknown) => {
      throw isCode(e, 'ENOENT') ? damaged('its pack file is missing') : storageError(e);
    });
    const header = decodeEntryHeader(bytes);
    if (bytes.length !== ENTRY_HEADER_SIZE + row.stored_size) throw damaged('its pack file is truncated');
    if (!header || header.digest !== digest || header.size !== row.size || header.storedSize !== row.stored_size || header.compression !== row.compression) {
      throw damaged('its entry header does not match the index');
    }
    const stored = bytes.subarray(ENTRY_HEADER_SIZE);
    let data: Buffer;
    try {
      data = row.compression === 'zstd' ? decompressBlock(stored, row.size) : stored;
    } catch {
      throw damaged('it does not decompress');
    }
    if (sha256(data) !== digest) throw damaged('its bytes do not hash to its digest');
    return data;
  }

  stream(chunks: Iterable<string>, options: { skip?: number; length?: number } = {}): Readable {
    return Readable.from(this.read(chunks, options.skip ?? 0, options.length ?? Infinity), { objectMode: false });
  }

  async stat(digest: string): Promise<ChunkStat | undefined> {
    const row = this.statements.get.get(digest);
    return row && { digest, size: row.size, storedSize: row.stored_size, compression: row.compression };
  }

  async delete(digest: string): Promise<boolean> {
    const { get, deleteChunk, addLive, live, deletePack } = this.statements;
    const emptied = this.index.transaction(() => {
      const row = get.get(digest);
      if (!row) return undefined;
      deleteChunk.run(digest);
      addLive.run(-1, row.pack);
      if ((live.get(row.pack)?.live ?? 0) > 0) return null;
      deletePack.run(row.pack);
      return row.pack;
    });
    let pack: string | null | undefined;
    try {
      pack = emptied.immediate();
    } catch (e) {
      throw storageError(e);
    }
    // A crash before this unlink leaves an orphan pack, which the next open removes.
    if (pack) {
      this.readers.forget(this.packPath(pack));
      await unlink(this.packPath(pack)).catch(ignoreMissing);
    }
    return pack !== undefined;
  }

  async *list(): AsyncIterable<string> {
    // Paged by key rather than one open cursor: better-sqlite3 refuses other statements while an
    // iterator is open, and the consumer may write between two items.
    for (let after = ''; ; ) {
      const page = this.statements.page.all(after, 1000);
      for (const { digest } of page) yield digest;
      const last = page.at(-1);
      if (!last) return;
      after = last.digest;
    }
  }

  async count(): Promise<number> {
    return this.statements.count.get()?.n ?? 0;
  }

  async close(): Promise<void> {
    this.readers.close();
    this.index.close();
    await this.unlock();
  }

  // Internals shared with FsChunkWriter and openFsChunkStore -----------------------------------

  /** Where a temp pack lives while a writer fills it. */
  tempPath(id: string): string {
    return join(this.dir, 'tmp', `${id}.pack`);
  }

  packPath(id: string): string {
    return join(this.dir, 'packs', id.slice(0, 2), `${id}.pack`);
  }

  /** True when `digest` is committed; the writer's dedupe against the index. */
  isStored(digest: string): boolean {
    return this.statements.has.get(digest) !== undefined;
  }

  /**
   * Moves fsynced temp packs into packs/ and then indexes their chunks, in that order, so the
   * index never names a pack that is not durable. A chunk another writer committed meanwhile
   * stays where it is (INSERT OR IGNORE); a pack left with no live chunk is deleted again.
   */
  async publish(packs: readonly PendingPack[]): Promise<void> {
    for (const pack of packs) await rename(this.tempPath(pack.id), this.packPath(pack.id));
    for (const dir of new Set(packs.map((p) => join(this.dir, 'packs', p.id.slice(0, 2))))) await fsyncDir(dir);
    const { insertPack, insertChunk, addLive, deletePack } = this.statements;
    const record = this.index.transaction(() => {
      const unused: string[] = [];
      for (const pack of packs) {
        insertPack.run(pack.id, pack.size);
        let live = 0;
        for (const e of pack.entries) {
          live += insertChunk.run(e.digest, pack.id, e.offset, e.storedSize, e.size, e.compression).changes;
        }
        if (live > 0) addLive.run(live, pack.id);
        else {
          deletePack.run(pack.id);
          unused.push(pack.id);
        }
      }
      return unused;
    });
    let unused: string[];
    try {
      unused = record.immediate();
    } catch (e) {
      await Promise.all(packs.map((p) => unlink(this.packPath(p.id)).catch(ignoreMissing)));
      throw e;
    }
    await Promise.all(unused.map((id) => unlink(this.packPath(id)).catch(ignoreMissing)));
  }

  /** Deletes sealed packs the index does not know: a crash hit between their rename and commit. */
  async removeOrphanPacks(): Promise<void> {
    const known = new Set(this.statements.packIds.all().map((p) => p.id));
    for (let i = 0; i < 256; i++) {
      const dir = join(this.dir, 'packs', fanOut(i));
      for (const name of await readdir(dir)) {
        if (!known.has(name.replace(/\.pack$/, ''))) await unlink(join(dir, name));
      }
    }
  }

  /** The bytes of stream(): chunks fetched READ_AHEAD at a time ahead of the consumer. */
  private async *read(chunks: Iterable<string>, skip: number, length: number): AsyncGenerator<Buffer> {
    const digests = chunks[Symbol.iterator]();
    // Whole chunks inside `skip` are passed over by their indexed size, without reading them.
    let first = digests.next();
    for (; !first.done && skip > 0; first = digests.next()) {
      const size = this.statements.get.get(first.value)?.size;
      if (size === undefined || size > skip) break;
      skip -= size;
    }
    if (first.done || length <= 0) return;
    const start: string = first.value;
    const rest = function* () {
      yield start;
      for (let next = digests.next(); !next.done; next = digests.next()) yield next.value;
    };
    let left = length;
    for await (let data of readAhead(rest(), READ_AHEAD, (digest) => this.get(digest))) {
      if (skip > 0) {
        data = data.subarray(skip);
        skip = 0;
      }
      if (data.length > left) data = data.subarray(0, left);
      left -= data.length;
      if (data.length > 0) yield data;
      if (left <= 0) return;
    }
  }
}

class FsChunkWriter implements ChunkWriter {
  /** Packs filled (their fsync may still run in `syncing`) but not yet published. */
  private readonly sealed: PendingPack[] = [];
  /**
   * Seals in progress: a full pack is fsynced and closed in the background while the next one
   * fills, so a push does not stop for the disk every 64 MiB; commit() waits for all of them.
   */
  private readonly syncing: Promise<void>[] = [];
  private current: OpenPack | undefined;
  /** Digests put through this writer since the last commit: stored once. */
  private readonly seen = new Set<string>();
  /** Set by abort(): a put still in flight then must not open a pack nobody will remove. */
  private aborted = false;

  constructor(private readonly store: FsChunkStore) {}

  async put(data: Buffer, digest?: string): Promise<PutResult> {
    const actual = sha256(data);
    if (digest !== undefined && digest !== actual) {
      throw unprocessable(`chunk digest ${digest} does not match its content (${actual})`, { expected: digest, actual });
    }
    if (data.length > MAX_CHUNK_BYTES) throw tooLarge(`chunk of ${data.length} bytes exceeds ${MAX_CHUNK_BYTES}`);
    if (this.seen.has(actual) || this.store.isStored(actual)) {
      return { digest: actual, size: data.length, created: false, storedSize: 0 };
    }
    // Raw when zstd does not shrink it (already compressed data, e.g. qcow2 with compression).
    const compressed = data.length > 0 && data.length <= MAX_BLOCK_SIZE ? compressBlock(data) : undefined;
    const zstd = compressed !== undefined && compressed.length < data.length;
    const stored = zstd ? compressed : data;
    const entry: EntryHeader = { digest: actual, size: data.length, storedSize: stored.length, compression: zstd ? 'zstd' : 'none' };
    try {
      const pack = this.current ?? (await this.startPack());
      if (this.aborted) {
        await this.abort();
        throw new DomainError('conflict', 'chunk writer was aborted');
      }
      pack.buffered.push(encodeEntryHeader(entry), stored);
      pack.bufferedSize += ENTRY_HEADER_SIZE + stored.length;
      pack.entries.push({ ...entry, offset: pack.size });
      pack.size += ENTRY_HEADER_SIZE + stored.length;
      if (pack.size >= PACK_TARGET_SIZE) this.seal();
      else if (pack.bufferedSize >= WRITE_BUFFER_SIZE) await flush(pack);
    } catch (e) {
      throw storageError(e);
    }
    this.seen.add(actual);
    return { digest: actual, size: data.length, created: true, storedSize: stored.length };
  }

  async commit(): Promise<void> {
    try {
      this.seal();
      await Promise.all(this.syncing);
      if (this.sealed.length > 0) await this.store.publish(this.sealed);
    } catch (e) {
      throw storageError(e);
    }
    this.syncing.length = 0;
    this.sealed.length = 0;
    this.seen.clear();
  }

  async abort(): Promise<void> {
    this.aborted = true;
    const packs = [...this.sealed, ...(this.current ? [this.current] : [])];
    await this.current?.writing.catch(() => undefined);
    await this.current?.file.close().catch(() => undefined);
    this.current = undefined;
    await Promise.allSettled(this.syncing.splice(0));
    this.sealed.length = 0;
    this.seen.clear();
    await Promise.all(packs.map((p) => unlink(this.store.tempPath(p.id)).catch(ignoreMissing)));
  }

  private async startPack(): Promise<OpenPack> {
    const id = randomBytes(16).toString('hex');
    const file = await open(this.store.tempPath(id), 'wx');
    this.current = { id, entries: [], size: PACK_HEADER_SIZE, file, buffered: [packHeader()], bufferedSize: PACK_HEADER_SIZE, writing: Promise.resolve() };
    return this.current;
  }

  /**
   * Starts making the current pack durable (last writes, fsync, close) in the background; it
   * stays in tmp/ until commit publishes it. Its failure surfaces in commit().
   */
  private seal(): void {
    const pack = this.current;
    if (!pack) return;
    this.current = undefined;
    this.sealed.push({ id: pack.id, entries: pack.entries, size: pack.size });
    const sealing = (async () => {
      try {
        await flush(pack);
        await pack.writing;
        await pack.file.sync();
      } finally {
        await pack.file.close();
      }
    })();
    sealing.catch(() => undefined); // awaited by commit(); never an unhandled rejection meanwhile
    this.syncing.push(sealing);
  }
}

/** A temp pack being filled, with the bytes not yet written to it. */
interface OpenPack extends PendingPack {
  file: FileHandle;
  buffered: Buffer[];
  bufferedSize: number;
  /** The write in flight: one buffer goes to the disk while the next one fills. */
  writing: Promise<void>;
}

/**
 * Hands the buffered bytes to the disk after the previous write finished (appends stay in
 * order, at most one buffer in flight), looping over short writes; resolves once the previous
 * write is done, so its failure stops the push at the next flush.
 */
async function flush(pack: OpenPack): Promise<void> {
  const bytes = Buffer.concat(pack.buffered.splice(0), pack.bufferedSize);
  pack.bufferedSize = 0;
  const previous = pack.writing;
  pack.writing = previous.then(async () => {
    for (let done = 0; done < bytes.length; ) {
      done += (await pack.file.write(bytes, done, bytes.length - done)).bytesWritten;
    }
  });
  pack.writing.catch(() => undefined); // surfaced by the next flush or the seal
  await previous;
}

function openIndex(file: string): BetterSqlite3.Database {
  const db = new BetterSqlite3(file);
  const mode: unknown = db.pragma('journal_mode = WAL', { simple: true });
  if (mode !== 'wal') throw new Error(`SQLite refused WAL mode for ${file} (got ${String(mode)})`);
  // FULL syncs the WAL on every commit: a committed chunk stays indexed after a power loss.
  db.pragma('synchronous = FULL');
  db.pragma('busy_timeout = 5000');
  const version = db.pragma('user_version', { simple: true }) as number;
  if (version > INDEX_VERSION) throw new Error(`${file} has index format ${version}; this snapfork reads ${INDEX_VERSION}`);
  db.exec(`
    CREATE TABLE IF NOT EXISTS packs (
      id   TEXT PRIMARY KEY,
      live INTEGER NOT NULL,
      size INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS chunks (
      digest      TEXT PRIMARY KEY,
      pack        TEXT NOT NULL REFERENCES packs (id),
      offset      INTEGER NOT NULL,
      stored_size INTEGER NOT NULL,
      size        INTEGER NOT NULL,
      compression TEXT NOT NULL CHECK (compression IN ('zstd', 'none'))
    ) WITHOUT ROWID;
    PRAGMA user_version = ${INDEX_VERSION};
  `);
  return db;
}

const fanOut = (i: number) => i.toString(16).padStart(2, '0');
const isCode = (e: unknown, code: string) => (e as { code?: unknown } | null)?.code === code;

function ignoreMissing(e: unknown): void {
  if (!isCode(e, 'ENOENT')) throw e;
}

/** ENOSPC and a full SQLite file become insufficient_storage; other errors pass unchanged. */
function storageError(e: unknown): unknown {
  if (e instanceof DomainError) return e;
  if (isCode(e, 'ENOSPC') || isCode(e, 'SQLITE_FULL')) {
    return new DomainError('insufficient_storage', 'no space left on the chunk store');
  }
  return e;
}

/**
 * ChunkStore over two small ports: a BlobBackend, where pack files live (a local directory, an
 * S3 bucket), and a ChunkIndex, where each chunk lives in them (a SQLite file, a SQL database).
 * The pack format is storage/README.md's ("Pack files"); blob names follow its layout:
 *
 *   packs/<first 2 hex digits of the id>/<pack id>.pack
 *
 * Why packs: one object (or fsynced file) per 64 KiB chunk runs at ~800 files/s on a local disk,
 * which would cap a push near 50 MB/s, and at one request per chunk on S3. A writer appends to
 * one pack upload and pays one fsync (one object) per ~64 MiB instead.
 *
 * Crash safety: a writer's packs stay uploads (invisible) until its commit, which commits every
 * upload (durable) and only then publishes the packs to the index, so the index never names a
 * pack that is not durable and no reader can reach a half-written chunk. A crash leaves at worst
 * an upload (which the backend discards) or a committed pack the index does not know: an
 * orphan, deleted when a store opens (see ORPHAN_GRACE_MS).
 */
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { DomainError, corrupt, notFound, tooLarge, unprocessable } from '../../domain/errors.js';
import { compressible, inlineChunkCodec, type ChunkCodec, type EncodedChunk } from '../../lib/chunk-codec.js';
import { decompressBlock, zstdReady } from '../../lib/zstd.js';
import { readAhead } from '../../lib/read-ahead.js';
import { sha256 } from '../../lib/sha256.js';
import type { ChunkDamage, ChunkRemoval, ChunkStat, ChunkStore, ChunkTotals, ChunkWriter, PutOptions, PutResult, Repacked, StoredChunk } from '../types.js';
import type { BlobBackend, BlobUpload } from './blob-backend.js';
import type { ChunkIndex, ChunkLocation, IndexedPack } from './chunk-index.js';
import { ENTRY_HEADER_SIZE, decodeEntryHeader, encodeEntryHeader, packHeader, type EntryHeader } from './pack-format.js';

/** A pack is sealed once it holds this much: one fsync (one object) per 64 MiB, and packs few enough to list. */
const PACK_TARGET_SIZE = 64 * 1024 * 1024;
/** Chunks stream() reads ahead of its consumer: enough to hide read latency, bounded memory. */
const READ_AHEAD = 4;
/**
 * stream() locates its chunks in index calls of READ_AHEAD digests, doubling up to this many: a
 * range read of one chunk asks for few, a whole 1 GiB file (~16,000 chunks) costs ~70 calls.
 */
const MAX_LOCATE_BATCH = 256;
/** Sizes are u32 in the pack format. */
const MAX_CHUNK_BYTES = 0xffffffff;
const DIGEST = /^[0-9a-f]{64}$/;
const PACKS_PREFIX = 'packs/';
const PACK_NAME = /^packs\/[0-9a-f]{2}\/([0-9a-f]+)\.pack$/;

/**
 * Orphans younger than this are left alone. With several servers over one bucket, another server
 * may be between committing its packs and publishing them to the index right now (that window
 * is a writer's commit: seconds); an hour covers it, and clock skew between servers and the
 * object store, many times over.
 */
export const ORPHAN_GRACE_MS = 60 * 60 * 1000;

export interface PackStoreOptions {
  /**
   * Age from which a pack the index does not know is deleted at open; ORPHAN_GRACE_MS when not
   * given. 0 is right only when this process is the backend's sole writer (a directory lock);
   * Infinity deletes none (and lists none) when the index may not know every writer's packs.
   */
  orphanGraceMs?: number;
  /** The clock orphans' age is measured against (their modifiedAt), and packs are stamped with. */
  now?: () => Date;
  /** Runs last in close(), e.g. to release a directory lock. */
  onClose?: () => Promise<void>;
  /**
   * Hashes and compresses the chunks put (a ChunkCodecPool: on every core); closed with the
   * store (a pool that never ran holds nothing, so a store that fails to open leaves it be).
   * Inline, on the calling thread, when not given.
   */
  codec?: ChunkCodec;
}

const packName = (id: string) => `${PACKS_PREFIX}${id.slice(0, 2)}/${id}.pack`;

/**
 * A PackChunkStore over `backend` and `index`, which it owns from now on (closed with it, or at
 * once when opening fails). Deletes orphan packs older than the grace before it answers.
 */
export async function openPackChunkStore(backend: BlobBackend, index: ChunkIndex, options: PackStoreOptions = {}): Promise<PackChunkStore> {
  try {
    await zstdReady();
    const graceMs = options.orphanGraceMs ?? ORPHAN_GRACE_MS;
    if (graceMs !== Infinity) await removeOrphans(backend, index, options.now?.() ?? new Date(), graceMs);
  } catch (e) {
    await Promise.allSettled([backend.close(), index.close()]);
    throw e;
  }
  return new PackChunkStore(backend, index, options);
}

/** Deletes packs the index does not know that are older than `graceMs` at `now`. */
async function removeOrphans(backend: BlobBackend, index: ChunkIndex, now: Date, graceMs: number): Promise<void> {
  const known = await index.packIds();
  for await (const blob of backend.list(PACKS_PREFIX)) {
    const id = PACK_NAME.exec(blob.name)?.[1];
    if (id !== undefined && known.has(id)) continue;
    if (now.getTime() - blob.modifiedAt.getTime() >= graceMs) await backend.delete(blob.name);
  }
}

/** A pack a writer fills: an upload until the writer commits. */
interface OpenPack {
  id: string;
  upload: BlobUpload;
  entries: ChunkLocation[];
  size: number;
}

/** A well-formed digest that readiness probes look up; whether it is stored does not matter. */
const PING_DIGEST = '0'.repeat(64);

export class PackChunkStore implements ChunkStore {
  /** The writers' existence checks waiting for the index call in flight; sent together after it. */
  private gathering: { digests: Set<string>; found: Promise<Map<string, ChunkLocation>> } | undefined;
  private locating: Promise<unknown> = Promise.resolve();
  private closing: Promise<void> | undefined;

  private readonly onClose: (() => Promise<void>) | undefined;
  /** The clock packs are stamped with when published (their createdAt). */
  private readonly now: () => Date;
  /** Shared with the writers. */
  readonly codec: ChunkCodec;

  constructor(
    private readonly backend: BlobBackend,
    private readonly index: ChunkIndex,
    options: Pick<PackStoreOptions, 'onClose' | 'now' | 'codec'> = {},
  ) {
    this.onClose = options.onClose;
    this.now = options.now ?? (() => new Date());
    this.codec = options.codec ?? inlineChunkCodec;
  }

  async has(digest: string): Promise<boolean> {
    return (await this.index.locate([digest])).has(digest);
  }

  async missing(digests: readonly string[]): Promise<string[]> {
    const unique = [...new Set(digests)];
    const found = await this.index.locate(unique);
    return unique.filter((d) => !found.has(d));
  }

  writer(): ChunkWriter {
    return new PackChunkWriter(this, this.backend);
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
    const location = DIGEST.test(digest) ? (await this.index.locate([digest])).get(digest) : undefined;
    if (!location) throw notFound(`chunk ${digest} not found`);
    return this.read(location);
  }

  stream(chunks: Iterable<string>, options: { skip?: number; length?: number } = {}): Readable {
    return Readable.from(this.streamed(chunks, options.skip ?? 0, options.length ?? Infinity), { objectMode: false });
  }

  async verify(digests: readonly string[]): Promise<ChunkDamage[]> {
    const damaged: ChunkDamage[] = [];
    for (const batch of batches(new Set(digests), MAX_LOCATE_BATCH, MAX_LOCATE_BATCH)) {
      const locations = await this.index.locate(batch);
      const stored = batch.flatMap((digest) => locations.get(digest) ?? []);
      for await (const checked of readAhead(stored, READ_AHEAD, (l) => this.readChecked(l))) {
        if ('damage' in checked) damaged.push(checked.damage);
      }
    }
    return damaged;
  }

  async stat(digest: string): Promise<ChunkStat | undefined> {
    return (await this.statMany([digest])).get(digest);
  }

  async statMany(digests: readonly string[]): Promise<Map<string, ChunkStat>> {
    const found = await this.index.locate([...new Set(digests)]);
    return new Map([...found.values()].map((l) => [l.digest, { digest: l.digest, size: l.size, storedSize: l.storedSize, compression: l.compression }]));
  }

  async delete(digest: string): Promise<boolean> {
    return (await this.deleteMany([digest])).chunks === 1;
  }

  async deleteMany(digests: readonly string[]): Promise<ChunkRemoval> {
    const removal = await this.index.removeMany(digests);
    // A crash before these deletes leaves orphan packs, which a later open removes.
    await Promise.all(removal.emptiedPacks.map((id) => this.backend.delete(packName(id))));
    return { chunks: removal.chunks, bytes: removal.storedBytes, packs: removal.emptiedPacks.length };
  }

  async repack(maxLiveFraction: number, limit: number): Promise<Repacked> {
    const repacked: Repacked = { packs: 0, bytes: 0 };
    for (const sparse of await this.index.sparsePacks(maxLiveFraction, limit)) {
      const entries = await this.index.packEntries(sparse.id);
      const id = randomBytes(16).toString('hex');
      const upload = this.backend.create(packName(id));
      const header = packHeader();
      let size = header.length;
      const moved: ChunkLocation[] = [];
      try {
        await upload.write(header);
        // Entries are copied as they are stored (header and bytes, compressed or not), in order.
        for (const entry of entries) {
          const bytes = await this.backend.read(packName(sparse.id), entry.offset, ENTRY_HEADER_SIZE + entry.storedSize);
          if (bytes.length !== ENTRY_HEADER_SIZE + entry.storedSize) throw corrupt(`pack ${sparse.id} is truncated at chunk ${entry.digest}`);
          await upload.write(bytes);
          moved.push({ ...entry, pack: id, offset: size });
          size += bytes.length;
        }
        await upload.commit();
      } catch (e) {
        await upload.abort();
        throw e;
      }
      // Durable first, then indexed: a crash in between leaves the new pack an orphan, removed at open.
      const { moved: count, emptied } = await this.index.relocate(sparse.id, { id, size, createdAt: this.now().getTime(), entries: moved });
      if (count === 0) await this.backend.delete(packName(id));
      if (emptied) await this.backend.delete(packName(sparse.id));
      repacked.packs++;
      repacked.bytes += sparse.size - (count === 0 ? 0 : size);
    }
    return repacked;
  }

  /** Another server's pack upload may be under way for up to ORPHAN_GRACE_MS: younger ones are left alone. */
  abandonWrites(startedBefore: Date): Promise<number> {
    return this.backend.abandonUploads(new Date(Math.min(startedBefore.getTime(), this.now().getTime() - ORPHAN_GRACE_MS)));
  }

  async entries(after: string, limit: number): Promise<StoredChunk[]> {
    return (await this.index.entries(after, limit)).map((c) => ({ digest: c.digest, storedSize: c.storedSize, storedAt: c.packCreatedAt }));
  }

  async *list(): AsyncIterable<string> {
    // Paged by key rather than one open cursor: the consumer may write between two items.
    for (let after = ''; ; ) {
      const page = await this.index.page(after, 1000);
      yield* page;
      const last = page.at(-1);
      if (last === undefined) return;
      after = last;
    }
  }

  count(): Promise<number> {
    return this.index.count();
  }

  totals(): Promise<ChunkTotals> {
    return this.index.totals();
  }

  /** One point lookup in the index: unlike count(), its cost does not grow with the store. */
  async ping(): Promise<void> {
    await this.index.locate([PING_DIGEST]);
  }

  /** Idempotent: a second close (a readiness probe's store closed by its owner too) waits for the first. */
  close(): Promise<void> {
    return (this.closing ??= (async () => {
      // Writers still in flight fail (their codec calls reject) rather than outlive the store.
      await Promise.all([this.backend.close(), this.index.close(), this.codec.close()]);
      await this.onClose?.();
    })());
  }

  // Internals shared with PackChunkWriter ----------------------------------------------------

  /**
   * True when `digest` is committed: a writer's dedupe. Checks asked while an index call is in
   * flight go to the index together in the next one, so writers putting concurrently (or one
   * writer's pipelined puts) cost one call per batch, not one per chunk.
   */
  isStored(digest: string): Promise<boolean> {
    let batch = this.gathering;
    if (!batch) {
      const digests = new Set<string>();
      const found = this.locating.then(() => {
        this.gathering = undefined;
        return this.index.locate([...digests]);
      });
      this.locating = found.catch(() => undefined);
      batch = this.gathering = { digests, found };
    }
    batch.digests.add(digest);
    return batch.found.then((found) => found.has(digest));
  }

  /**
   * Records committed packs in the index; deletes those left without a live chunk (every chunk
   * committed meanwhile by another writer). When the index call fails, the packs stay: the error
   * does not say whether a remote database committed before it, and an orphan is removed later.
   */
  async publish(packs: readonly Omit<IndexedPack, 'createdAt'>[]): Promise<void> {
    const createdAt = this.now().getTime();
    const unused = await this.index.publish(packs.map((p) => ({ ...p, createdAt })));
    await Promise.all(unused.map((id) => this.backend.delete(packName(id))));
  }

  deletePack(id: string): Promise<boolean> {
    return this.backend.delete(packName(id));
  }

  /** The chunks of `digests` in order, READ_AHEAD read ahead, located in growing batches. */
  private async *streamed(chunks: Iterable<string>, skip: number, length: number): AsyncGenerator<Buffer> {
    if (length <= 0) return;
    let left = length;
    for (const batch of batches(chunks, READ_AHEAD, MAX_LOCATE_BATCH)) {
      const locations = await this.index.locate(batch);
      // Whole chunks inside `skip` are passed over by their indexed size, without reading them.
      let first = 0;
      for (; first < batch.length && skip > 0; first++) {
        const size = locations.get(batch[first]!)?.size;
        if (size === undefined || size > skip) break;
        skip -= size;
      }
      const load = async (digest: string) => {
        const location = locations.get(digest);
        if (!location) throw notFound(`chunk ${digest} not found`);
        return this.read(location);
      };
      for await (let data of readAhead(batch.slice(first), READ_AHEAD, load)) {
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

  /** The chunk at `location`, checked against the index and its digest; `corrupt` when it fails. */
  private async read(location: ChunkLocation): Promise<Buffer> {
    const checked = await this.readChecked(location);
    if ('damage' in checked) {
      const { digest, pack, reason } = checked.damage;
      throw corrupt(`chunk ${digest} in pack ${pack} is corrupt: ${reason}`);
    }
    return checked.data;
  }

  /** The chunk at `location`, or what is wrong with it: its pack gone or cut short, bytes that do not check. */
  private async readChecked(location: ChunkLocation): Promise<{ data: Buffer } | { damage: ChunkDamage }> {
    const { digest, pack } = location;
    const damaged = (reason: string) => ({ damage: { digest, pack, reason } });
    let bytes: Buffer;
    try {
      bytes = await this.backend.read(packName(pack), location.offset, ENTRY_HEADER_SIZE + location.storedSize);
    } catch (e) {
      if (!(e instanceof DomainError && e.kind === 'not_found')) throw e;
      // Repacking moved the chunk since it was located (and deleted its old pack): read it there.
      const moved = (await this.index.locate([digest])).get(digest);
      return moved && moved.pack !== pack ? this.readChecked(moved) : damaged('its pack file is missing');
    }
    if (bytes.length !== ENTRY_HEADER_SIZE + location.storedSize) return damaged('its pack file is truncated');
    const header = decodeEntryHeader(bytes);
    if (!header || header.digest !== digest || header.size !== location.size || header.storedSize !== location.storedSize || header.compression !== location.compression) {
      return damaged('its entry header does not match the index');
    }
    const stored = bytes.subarray(ENTRY_HEADER_SIZE);
    let data: Buffer;
    try {
      data = location.compression === 'zstd' ? decompressBlock(stored, location.size) : stored;
    } catch {
      return damaged('it does not decompress');
    }
    if (sha256(data) !== digest) return damaged('its bytes do not hash to its digest');
    return { data };
  }
}

/** `items` in consecutive arrays of `first` items, then twice as many each time up to `max`. */
function* batches<T>(items: Iterable<T>, first: number, max: number): Generator<T[]> {
  let batch: T[] = [];
  let size = first;
  for (const item of items) {
    batch.push(item);
    if (batch.length >= size) {
      yield batch;
      batch = [];
      size = Math.min(size * 2, max);
    }
  }
  if (batch.length > 0) yield batch;
}

class PackChunkWriter implements ChunkWriter {
  /** Full packs: uploads told that no more bytes follow, committed with the writer. */
  private readonly sealed: OpenPack[] = [];
  private current: OpenPack | undefined;
  /** Appends in put order, one at a time: concurrent puts must not interleave their bytes. */
  private appending: Promise<void> = Promise.resolve();
  /** Digests put through this writer since the last commit: stored once. */
  private readonly seen = new Set<string>();
  /** Set by abort(): a put still in flight then must not open a pack nobody will remove. */
  private aborted = false;
  /** Whether the last chunk put was new: predicts the next one (see put). */
  private lastWasNew = true;

  constructor(
    private readonly store: PackChunkStore,
    private readonly backend: BlobBackend,
  ) {}

  async put(chunk: Buffer | EncodedChunk, digest?: string, options: PutOptions = {}): Promise<PutResult> {
    let encoded: EncodedChunk = Buffer.isBuffer(chunk) ? { data: chunk } : chunk;
    const size = encoded.data.length;
    if (size > MAX_CHUNK_BYTES) throw tooLarge(`chunk of ${size} bytes exceeds ${MAX_CHUNK_BYTES}`);
    // While this writer's chunks turn out new (a first push), each is compressed in the same trip
    // to the codec as it is hashed; once they turn out stored (a push of unchanged data), only
    // hashed, and compressed in a second trip when new after all. A chunk its caller encoded
    // (with this store's codec) comes hashed, and compressed when its caller foresaw it new.
    if (encoded.digest === undefined) {
      const compress = this.lastWasNew && compressible(size) && encoded.compressed === undefined;
      encoded = { ...encoded, ...(await this.store.codec.encode(encoded.data, { hash: true, compress }, options)) };
    }
    const actual = encoded.digest!;
    if (digest !== undefined && digest !== actual) {
      throw unprocessable(`chunk digest ${digest} does not match its content (${actual})`, { expected: digest, actual });
    }
    const known = { digest: actual, size, created: false, storedSize: 0 };
    this.lastWasNew = false;
    if (this.seen.has(actual)) return known;
    // Marked before the index is asked, so that a concurrent put of the same bytes is not stored twice.
    this.seen.add(actual);
    let stored: boolean;
    try {
      stored = await this.store.isStored(actual);
    } catch (e) {
      this.seen.delete(actual);
      throw e;
    }
    if (stored) return known;
    this.lastWasNew = true;
    if (encoded.compressed === undefined && compressible(size)) {
      encoded = { ...encoded, ...(await this.store.codec.encode(encoded.data, { hash: false, compress: true }, { transfer: true })) };
    }
    // Raw when zstd does not shrink it (already compressed data, e.g. qcow2 with compression).
    const bytes = encoded.compressed ?? encoded.data;
    const entry: EntryHeader = { digest: actual, size, storedSize: bytes.length, compression: encoded.compressed ? 'zstd' : 'none' };
    const appended = this.appending.then(() => this.append(entry, bytes));
    this.appending = appended;
    await appended;
    return { digest: actual, size, created: true, storedSize: bytes.length };
  }

  async commit(): Promise<void> {
    await this.appending;
    this.seal();
    const packs = this.sealed.splice(0);
    if (packs.length > 0) {
      const committed = await Promise.allSettled(packs.map((p) => p.upload.commit()));
      const failure = committed.find((c) => c.status === 'rejected');
      if (failure) {
        // None of the writer's chunks becomes visible: packs already committed are deleted again.
        await Promise.allSettled(packs.map((p, i) => (committed[i]!.status === 'fulfilled' ? this.store.deletePack(p.id) : p.upload.abort())));
        this.seen.clear();
        throw failure.reason;
      }
      await this.store.publish(packs.map(({ id, size, entries }) => ({ id, size, entries })));
    }
    this.seen.clear();
  }

  async abort(): Promise<void> {
    this.aborted = true;
    await this.appending.catch(() => undefined);
    const packs = [...this.sealed.splice(0), ...(this.current ? [this.current] : [])];
    this.current = undefined;
    this.seen.clear();
    await Promise.all(packs.map((p) => p.upload.abort()));
  }

  private async append(entry: EntryHeader, bytes: Buffer): Promise<void> {
    if (this.aborted) throw new DomainError('conflict', 'chunk writer was aborted');
    const pack = this.current ?? (await this.startPack());
    pack.entries.push({ ...entry, pack: pack.id, offset: pack.size });
    pack.size += ENTRY_HEADER_SIZE + bytes.length;
    await pack.upload.write(encodeEntryHeader(entry));
    await pack.upload.write(bytes);
    if (pack.size >= PACK_TARGET_SIZE) this.seal();
  }

  private async startPack(): Promise<OpenPack> {
    const id = randomBytes(16).toString('hex');
    const pack: OpenPack = { id, upload: this.backend.create(packName(id)), entries: [], size: 0 };
    this.current = pack;
    const header = packHeader();
    pack.size = header.length;
    await pack.upload.write(header);
    return pack;
  }

  /**
   * Ends the current pack: the backend starts making it durable in the background while the
   * next one fills (a push does not stop for the disk every 64 MiB); it stays invisible until
   * commit() commits it.
   */
  private seal(): void {
    const pack = this.current;
    if (!pack) return;
    this.current = undefined;
    this.sealed.push(pack);
    pack.upload.end?.().catch(() => undefined); // a failure surfaces again at commit()
  }
}

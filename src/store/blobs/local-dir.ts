/**
 * BlobBackend over a local directory, with restic's local protocol: an upload is a temp file,
 * committed by fsync, rename into place and fsync of the directory, so nothing half-written is
 * ever visible under a blob's name, whatever the moment of a crash.
 *
 *   <root>/
 *   ├── <name>                         a committed blob at its name's path (packs/ab/<id>.pack)
 *   └── tmp/<last segment of name>     an upload under way; emptied when the backend opens
 *
 * One process per root: opening empties tmp/, which would destroy the uploads of a second live
 * process (the chunk store holds a directory lock for that, src/store/fs/dir-lock.ts). The root
 * may hold other files of its owner (the chunk store keeps index.db and LOCK there, as
 * storage/README.md lays out); they are listed like blobs when a prefix matches them.
 */
import { mkdir, open, readdir, rename, rm, stat, unlink, type FileHandle } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';
import { DomainError, notFound } from '../../domain/errors.js';
import { fsyncDir } from '../../lib/durable-fs.js';
import { trackUpload, type BlobBackend, type BlobInfo, type BlobUpload } from '../packs/blob-backend.js';
import { FileReaders } from './file-readers.js';

const TMP_DIR = 'tmp';
/**
 * Bytes are gathered in memory and written with one call per 4 MiB: one write (and one
 * thread-pool round trip) per 64 KiB chunk left a push waiting on the disk most of the time.
 */
const WRITE_BUFFER_SIZE = 4 * 1024 * 1024;
/** Descriptors kept open for reads: 64 packs of 64 MiB cover 4 GiB of recently read data. */
const OPEN_FILES = 64;
/** Segments of [a-z0-9._-] that do not start with a dot (no `.`, `..` or hidden files). */
const NAME = /^[a-z0-9_-][a-z0-9._-]*(?:\/[a-z0-9_-][a-z0-9._-]*)*$/;

export class LocalDirBackend implements BlobBackend {
  private readonly readers = new FileReaders(OPEN_FILES);

  /** Temp paths of this backend's uploads under way. */
  private readonly uploading = new Set<string>();

  private constructor(private readonly root: string) {}

  /** Opens (creating) the backend at `root` and deletes the temp files of uploads never committed. */
  static async open(root: string): Promise<LocalDirBackend> {
    await mkdir(root, { recursive: true });
    await rm(join(root, TMP_DIR), { recursive: true, force: true });
    await mkdir(join(root, TMP_DIR));
    return new LocalDirBackend(root);
  }

  create(name: string): BlobUpload {
    const path = this.pathOf(name);
    const tempPath = join(this.root, TMP_DIR, name.slice(name.lastIndexOf('/') + 1));
    return trackUpload(this.uploading, tempPath, new LocalUpload(tempPath, path));
  }

  async read(name: string, offset: number, length: number): Promise<Buffer> {
    try {
      return await this.readers.read(this.pathOf(name), offset, length);
    } catch (e) {
      if (isCode(e, 'ENOENT')) throw notFound(`blob ${name} not found`);
      throw e;
    }
  }

  async stat(name: string): Promise<BlobInfo | undefined> {
    const info = await stat(this.pathOf(name)).catch((e: unknown) => {
      if (isCode(e, 'ENOENT')) return undefined;
      throw e;
    });
    return info?.isFile() ? { name, size: info.size, modifiedAt: info.mtime } : undefined;
  }

  async *list(prefix: string): AsyncIterable<BlobInfo> {
    // Walks the deepest directory the prefix names whole; the rest of the prefix filters.
    const base = prefix.slice(0, prefix.lastIndexOf('/') + 1);
    const entries = await readdir(join(this.root, base), { recursive: true, withFileTypes: true }).catch((e: unknown) => {
      if (isCode(e, 'ENOENT')) return [];
      throw e;
    });
    for (const entry of entries) {
      if (!entry.isFile()) continue;
      const name = relative(this.root, join(entry.parentPath, entry.name)).split(sep).join('/');
      if (!name.startsWith(prefix) || !isBlobName(name)) continue;
      const info = await this.stat(name);
      if (info) yield info; // deleted meanwhile: no longer there to list
    }
  }

  async delete(name: string): Promise<boolean> {
    const path = this.pathOf(name);
    this.readers.forget(path);
    try {
      await unlink(path);
      return true;
    } catch (e) {
      if (isCode(e, 'ENOENT')) return false;
      throw e;
    }
  }

  async abandonUploads(startedBefore: Date): Promise<number> {
    let abandoned = 0;
    for (const name of await readdir(join(this.root, TMP_DIR))) {
      const path = join(this.root, TMP_DIR, name);
      if (this.uploading.has(path)) continue;
      const info = await stat(path).catch(() => undefined);
      // A temp file's birth time is when its upload started; its mtime moves on with each write.
      if (info?.isFile() && (info.birthtimeMs || info.mtimeMs) < startedBefore.getTime()) {
        await unlink(path).catch(() => undefined);
        abandoned++;
      }
    }
    return abandoned;
  }

  async close(): Promise<void> {
    this.readers.close();
  }

  private pathOf(name: string): string {
    if (!isBlobName(name)) throw new Error(`not a blob name: ${JSON.stringify(name)}`);
    return join(this.root, name);
  }
}

const isBlobName = (name: string) => NAME.test(name) && name.split('/', 1)[0] !== TMP_DIR;

/** A temp file filled through a 4 MiB buffer, at most one write in flight (back-pressure). */
class LocalUpload implements BlobUpload {
  private readonly file: Promise<FileHandle>;
  private buffered: Buffer[] = [];
  private bufferedSize = 0;
  /** The write in flight: one buffer goes to the disk while the next one fills. */
  private writing: Promise<void> = Promise.resolve();
  /** Last writes, fsync and close, started by end() or commit(). */
  private ending: Promise<void> | undefined;
  private state: 'writing' | 'ended' | 'committing' | 'done' = 'writing';
  private closed = false;

  constructor(
    private readonly tempPath: string,
    private readonly path: string,
  ) {
    // Created at once, exclusively (a clash of two uploads fails rather than mixing them); an
    // error surfaces at the next write or at commit.
    this.file = open(tempPath, 'wx');
    this.file.catch(() => undefined);
  }

  async write(data: Buffer): Promise<void> {
    if (this.state !== 'writing') throw new Error('write to an upload that was ended, committed or aborted');
    this.buffered.push(data);
    this.bufferedSize += data.length;
    if (this.bufferedSize >= WRITE_BUFFER_SIZE) await this.flush().catch(rethrowStorage);
  }

  /** Writes out the buffer, fsyncs and closes the temp file, in the background of the caller. */
  end(): Promise<void> {
    if (this.state === 'writing') {
      this.state = 'ended';
      this.ending = (async () => {
        await this.flush();
        await this.writing;
        await (await this.file).sync();
        await this.closeFile();
      })();
      this.ending.catch(() => undefined); // reported by commit()
    }
    return this.ending ?? Promise.reject(new Error('end of an upload that was committed or aborted'));
  }

  async commit(): Promise<void> {
    if (this.state !== 'writing' && this.state !== 'ended') throw new Error('commit of an upload that was committed or aborted');
    const ending = this.end();
    this.state = 'committing';
    try {
      await ending;
      const dir = dirname(this.path);
      const created = await mkdir(dir, { recursive: true });
      // A directory made here must itself survive a power loss: its parent's entry is fsynced,
      // up to the first directory that existed.
      for (let made = created === undefined ? undefined : dir; made !== undefined; made = made === created ? undefined : dirname(made)) {
        await fsyncDir(dirname(made));
      }
      await rename(this.tempPath, this.path);
      await fsyncDir(dir);
      this.state = 'done';
    } catch (e) {
      this.state = 'ended';
      await this.abort();
      rethrowStorage(e);
    }
  }

  async abort(): Promise<void> {
    if (this.state === 'done') return;
    this.state = 'done';
    await this.writing.catch(() => undefined);
    await this.ending?.catch(() => undefined);
    await this.closeFile().catch(() => undefined);
    await unlink(this.tempPath).catch((e: unknown) => {
      if (!isCode(e, 'ENOENT')) throw e;
    });
  }

  /**
   * Hands the buffered bytes to the disk after the previous write finished (appends stay in
   * order), looping over short writes; resolves once the previous write is done, so its failure
   * stops the writer at the next flush.
   */
  private flush(): Promise<void> {
    const bytes = Buffer.concat(this.buffered, this.bufferedSize);
    this.buffered = [];
    this.bufferedSize = 0;
    const previous = this.writing;
    this.writing = previous.then(async () => {
      const file = await this.file;
      for (let done = 0; done < bytes.length; ) {
        done += (await file.write(bytes, done, bytes.length - done)).bytesWritten;
      }
    });
    this.writing.catch(() => undefined); // surfaced by the next flush or by commit
    return previous;
  }

  private async closeFile(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const file = await this.file.catch(() => undefined);
    await file?.close();
  }
}

const isCode = (e: unknown, code: string) => (e as { code?: unknown } | null)?.code === code;

/** A full disk is insufficient_storage; anything else passes unchanged. */
function rethrowStorage(e: unknown): never {
  if (isCode(e, 'ENOSPC')) throw new DomainError('insufficient_storage', 'no space left on the chunk store');
  throw e;
}

/**
 * The client's side of delta transfer on local files: the tree a push sends, each file cut with
 * the server's own chunker (src/domain/chunker.ts, so that both sides cut identically) and its
 * chunks handed on as they are cut (push sends them from there), and the place of every chunk in
 * its file, so that a chunk is read back only when it must be sent again (push) or can stand in
 * for a download (pull).
 */
import { sha256 } from '../lib/sha256.js';
import { lstat, open, readdir, readlink, stat, type FileHandle } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { Chunker } from '../domain/chunker.js';
import { PERMISSION_BITS, type ChunkRef, type EntryType } from '../domain/model.js';
import { CliError } from './errors.js';
import { scanTar } from './tar-source.js';

/** Where a chunk's bytes are in a local file. */
export interface ChunkPlace {
  file: string;
  offset: number;
  size: number;
}

export interface LocalEntry {
  /** Manifest path (POSIX, relative). */
  path: string;
  /** Absolute path on this machine. */
  abs: string;
  type: EntryType;
  mode: number;
  mtime: number;
  size: number;
  linkTarget: string | null;
  /** Where the file's bytes start inside `abs`: set for a file inside a pushed tar archive. */
  dataOffset?: number;
}

/** Bytes of a local file to chunk: the whole file, or `length` bytes from `offset` (in a tar). */
export interface FileSpan {
  file: string;
  offset?: number;
  length?: number;
  /**
   * The span's size when it was scanned: chunking that reads another count fails (the file grew
   * or shrank in between, so what was scanned is not what was cut).
   */
  size?: number;
}

/** The span of a scanned file entry. */
export const spanOf = (e: LocalEntry): FileSpan =>
  e.dataOffset === undefined ? { file: e.abs, size: e.size } : { file: e.abs, offset: e.dataOffset, length: e.size, size: e.size };

/** A chunk as it is cut: its bytes (a buffer of its own) and where they are in their file. */
export interface CutChunk {
  digest: string;
  data: Buffer;
  place: ChunkPlace;
}

/**
 * Takes each chunk as it is cut, in file order within a file; chunking waits for what it
 * returns (back-pressure), and stops with what it throws.
 */
export type ChunkSink = (chunk: CutChunk) => void | Promise<void>;

const READ_SIZE = 4 * 1024 * 1024;


/**
 * The entries to push from `source`: a directory's tree (symlinks kept as links, empty
 * directories kept; sockets and devices skipped with a warning), or one file under its basename
 * (a symlink named on the command line means the file it points to).
 */
export async function scanSource(source: string, warn: (message: string) => void): Promise<LocalEntry[]> {
  const st = await stat(source).catch((err: NodeJS.ErrnoException) => {
    throw new CliError(err.code === 'ENOENT' ? `${source}: no such file or directory` : `${source}: ${err.message}`);
  });
  if (st.isFile() && source.endsWith('.tar')) return scanTar(source, warn);
  if (st.isFile()) {
    return [{ path: basename(source), abs: source, type: 'file', mode: st.mode & PERMISSION_BITS, mtime: seconds(st.mtimeMs), size: st.size, linkTarget: null }];
  }
  if (!st.isDirectory()) throw new CliError(`${source}: not a directory or regular file`);
  const entries: LocalEntry[] = [];
  const walk = async (rel: string): Promise<void> => {
    const names = (await readdir(join(source, rel))).sort();
    // One lstat per entry, all of a directory's at once: sequential calls cost a thread-pool
    // round trip each, which is most of the time of a tree of 20,000 small files.
    const infos = await Promise.all(names.map((name) => lstat(join(source, rel, name))));
    for (const [i, name] of names.entries()) {
      const path = rel ? `${rel}/${name}` : name;
      const abs = join(source, path);
      const info = infos[i]!;
      const base = { path, abs, mode: info.mode & PERMISSION_BITS, mtime: seconds(info.mtimeMs), size: 0, linkTarget: null };
      if (info.isSymbolicLink()) entries.push({ ...base, type: 'symlink', linkTarget: await readlink(abs) });
      else if (info.isFile()) entries.push({ ...base, type: 'file', size: info.size });
      else if (info.isDirectory()) {
        entries.push({ ...base, type: 'dir' });
        await walk(path);
      } else warn(`${abs}: skipped (not a regular file, directory or symlink)`);
    }
  };
  await walk('');
  return entries;
}

/**
 * Cuts files into chunks as the server would, one file at a time (one caller): the chunker and
 * the read buffer are reused from file to file, since a dataset of 20,000 small files must not
 * allocate buffers for each.
 */
export class FileChunker {
  private readonly chunker = new Chunker();
  private readonly buffer = Buffer.allocUnsafe(READ_SIZE);

  /**
   * The chunks of a file (or of its span), reading it once; `progress` gets each read's length,
   * `sink` each chunk with its bytes. Fails with a CliError when the span's `size` is given and
   * the bytes read differ from it.
   */
  async chunk(
    { file, offset: start = 0, length = Infinity, size }: FileSpan,
    progress: (bytes: number) => void,
    sink?: ChunkSink,
  ): Promise<{ refs: ChunkRef[]; places: ChunkPlace[] }> {
    const refs: ChunkRef[] = [];
    const places: ChunkPlace[] = [];
    let offset = start;
    const take = async (pieces: Buffer[]) => {
      for (const data of pieces) {
        const digest = sha256(data);
        const place = { file, offset, size: data.length };
        refs.push({ digest, size: data.length });
        places.push(place);
        offset += data.length;
        await sink?.({ digest, data, place });
      }
    };
    const fh = await open(file, 'r');
    try {
      // Chunker.push copies what it keeps, so the buffer may be overwritten by the next read.
      for (let position = start; position - start < length; ) {
        const { bytesRead } = await fh.read(this.buffer, 0, Math.min(this.buffer.length, length - (position - start)), position);
        if (bytesRead === 0) break;
        position += bytesRead;
        await take(this.chunker.push(this.buffer.subarray(0, bytesRead)));
        progress(bytesRead);
      }
    } catch (err) {
      this.chunker.finish(); // drop the failed file's bytes: the next file starts clean
      throw err;
    } finally {
      await fh.close();
    }
    await take(this.chunker.finish()); // also resets the chunker for the next file
    if (size !== undefined && offset - start !== size) {
      throw new CliError(`${file} changed while it was pushed (${size} bytes when scanned, ${offset - start} read); push again`);
    }
    return { refs, places };
  }
}

/** Files chunked at once: hides the file system's round trips on trees of small files. */
const PARALLEL_CHUNKERS = 4;

/**
 * The chunks of each file, in input order, chunking PARALLEL_CHUNKERS files at a time (each
 * worker with its own FileChunker); `sink` gets every chunk as it is cut, the files' chunks
 * interleaved.
 */
export async function chunkFiles(files: readonly FileSpan[], progress: (bytes: number) => void, sink?: ChunkSink) {
  const results = new Array<Awaited<ReturnType<FileChunker['chunk']>>>(files.length);
  const idle = Array.from({ length: PARALLEL_CHUNKERS }, () => new FileChunker());
  // forEachLimited settles every file in progress before it rejects: no chunk reaches `sink`
  // after this returns.
  await forEachLimited(files.keys(), PARALLEL_CHUNKERS, async (i) => {
    const chunker = idle.pop()!;
    try {
      results[i] = await chunker.chunk(files[i]!, progress, sink);
    } finally {
      idle.push(chunker);
    }
  });
  return results;
}

/**
 * Reads chunks back from local files, keeping up to 16 files open; used by one caller at a time
 * (each worker has its own). `read` answers the bytes only when they still hash to `digest` (a
 * file may have changed since it was chunked).
 */
export class ChunkReader {
  private readonly handles = new Map<string, Promise<FileHandle>>();

  async read(place: ChunkPlace, digest: string): Promise<Buffer | undefined> {
    let handle = this.handles.get(place.file);
    if (!handle) {
      if (this.handles.size >= 16) await this.close();
      handle = open(place.file, 'r');
      handle.catch(() => undefined); // reported by the await below
      this.handles.set(place.file, handle);
    }
    const data = Buffer.allocUnsafe(place.size);
    let filled = 0;
    try {
      const fh = await handle;
      while (filled < place.size) {
        const { bytesRead } = await fh.read(data, filled, place.size - filled, place.offset + filled);
        if (bytesRead === 0) break;
        filled += bytesRead;
      }
    } catch {
      return undefined; // gone or unreadable: the caller falls back
    }
    return filled === place.size && sha256(data) === digest ? data : undefined;
  }

  async close(): Promise<void> {
    const handles = [...this.handles.values()];
    this.handles.clear();
    await Promise.all(handles.map((h) => h.then((fh) => fh.close()).catch(() => undefined)));
  }
}

/** Runs `work` on every item with at most `limit` running at once; the first failure wins. */
export async function forEachLimited<T>(items: Iterable<T>, limit: number, work: (item: T) => Promise<void>): Promise<void> {
  const iterator = items[Symbol.iterator]();
  let failed = false;
  const worker = async () => {
    for (let next = iterator.next(); !next.done && !failed; next = iterator.next()) {
      try {
        await work(next.value);
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  };
  const results = await Promise.allSettled(Array.from({ length: limit }, worker));
  const rejected = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (rejected) throw rejected.reason;
}

const seconds = (ms: number) => Math.floor(ms / 1000);

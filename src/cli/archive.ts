import { createReadStream } from 'node:fs';
import { chmod, lstat, readdir, stat, utimes } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { Readable } from 'node:stream';
import * as tar from 'tar';
import { CliError } from './errors.js';

/** A tar to upload: produced lazily by `open`, with its (estimated) size for progress. */
export interface Archive {
  total: number;
  open(): AsyncIterable<Uint8Array>;
}

export interface ExtractSummary {
  /** Regular files written. */
  files: number;
  /** Their total size in bytes. */
  bytes: number;
}

const BLOCK = 512;
const padded = (size: number) => Math.ceil(size / BLOCK) * BLOCK;
// Two zero blocks end every tar; an empty directory is sent as just those.
const END_OF_ARCHIVE = 2 * BLOCK;

/**
 * The tar for `source`: a directory is packed (symlinks kept as links, modes, mtimes and empty
 * directories kept), a `.tar` file is sent as is, any other file is wrapped under its basename.
 */
export async function archiveOf(source: string, warn: (message: string) => void): Promise<Archive> {
  const st = await stat(source).catch((err: NodeJS.ErrnoException) => {
    throw new CliError(err.code === 'ENOENT' ? `${source}: no such file or directory` : `${source}: ${err.message}`);
  });
  const common = { portable: false, onwarn: (_code: string, message: string) => warn(message) };
  if (st.isDirectory()) {
    // `@name` would mean "append the archive name" to node-tar: `./` makes it a plain path.
    const entries = (await readdir(source)).map((name) => (name.startsWith('@') ? `./${name}` : name));
    return {
      total: (await treeTarSize(source)) + END_OF_ARCHIVE,
      open: () =>
        entries.length === 0
          ? Readable.from([new Uint8Array(END_OF_ARCHIVE)]) // node-tar refuses an archive of nothing
          : tar.create({ ...common, cwd: source, follow: false }, entries),
    };
  }
  if (!st.isFile()) throw new CliError(`${source}: not a directory or regular file`);
  if (source.toLowerCase().endsWith('.tar')) {
    return { total: st.size, open: () => createReadStream(source) };
  }
  const name = basename(source);
  return {
    total: BLOCK + padded(st.size) + END_OF_ARCHIVE,
    // follow: a symlink named on the command line means the file it points to (a disk image, say).
    open: () =>
      tar.create({ ...common, cwd: dirname(source), follow: true }, [name.startsWith('@') ? `./${name}` : name]),
  };
}

/** A header block per entry plus padded file contents: the tar size, short of pax headers. */
async function treeTarSize(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    total += BLOCK;
    if (entry.isDirectory()) total += await treeTarSize(path);
    else if (entry.isFile()) total += padded((await lstat(path)).size);
  }
  return total;
}

/**
 * Extracts a tar stream into `dir` with node-tar in strict mode: `..`, absolute paths and writes
 * through symlinks abort the pull. Then restores what node-tar leaves to the umask and to later
 * writes: exact permission bits of files and directories, and directory mtimes.
 */
export async function extractArchive(chunks: AsyncIterable<Uint8Array>, dir: string): Promise<ExtractSummary> {
  const root = resolve(dir);
  const restore: { path: string; mode: number; mtime: Date | undefined; isDir: boolean }[] = [];
  const summary: ExtractSummary = { files: 0, bytes: 0 };
  const unpack = tar.x({
    cwd: root,
    preservePaths: false,
    strict: true,
    onReadEntry(entry) {
      const isDir = entry.type === 'Directory';
      if (entry.type === 'File' || entry.type === 'OldFile' || entry.type === 'ContiguousFile') {
        summary.files++;
        summary.bytes += entry.size ?? 0;
      } else if (!isDir) {
        return;
      }
      if (typeof entry.mode === 'number') {
        restore.push({ path: entry.path, mode: entry.mode & 0o777, mtime: entry.mtime, isDir });
      }
    },
  });
  let failed = false;
  const finished = new Promise<void>((resolveDone, reject) => {
    unpack.on('close', () => resolveDone());
    unpack.on('error', (err: Error) => {
      failed = true;
      reject(err);
    });
  });
  finished.catch(() => {}); // observed below; keeps an early failure from being "unhandled"
  for await (const chunk of chunks) {
    if (failed) break; // stops the download too
    if (!unpack.write(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength))) {
      await Promise.race([new Promise((r) => unpack.once('drain', r)), finished]);
    }
  }
  if (!failed) unpack.end();
  await finished;
  for (const { path, mode, mtime, isDir } of restore) {
    const abs = resolve(root, path);
    const rel = relative(root, abs);
    if (rel.startsWith('..') || isAbsolute(rel)) continue; // node-tar refused it already
    const st = await lstat(abs).catch(() => undefined);
    // lstat, not stat: never chmod through a symlink that replaced the entry.
    if (!st || st.isDirectory() !== isDir || (!isDir && !st.isFile())) continue;
    if ((st.mode & 0o777) !== mode) await chmod(abs, mode);
    if (isDir && mtime) await utimes(abs, mtime, mtime);
  }
  return summary;
}

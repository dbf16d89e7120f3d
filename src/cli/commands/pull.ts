import { randomBytes } from 'node:crypto';
import { chmod, lstat, lutimes, mkdir, open, readdir, readlink, rename, rm, symlink, unlink, utimes } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { defineCommand, HTTP_FLAGS, JSON_FLAG, output, progress } from '../command.js';
import { ChunkFetcher } from '../chunk-fetcher.js';
import { CliError } from '../errors.js';
import { formatBytes } from '../format.js';
import { ApiClient, tagApiPath, transferApiPaths } from '../http-client.js';
import { chunkFiles, ChunkReader, forEachLimited, type ChunkPlace } from '../local-tree.js';
import type { ManifestEntryJson } from '../../lib/manifest-json.js';
import { formatReference, parseReference } from '../reference.js';

/**
 * Files written at once, and the chunk bytes they may hold loaded ahead of where they write,
 * together: the fetcher batches what is asked for at once, so a fresh pull runs at the speed of
 * its requests only when hundreds of chunks are asked ahead (4 requests of 128), whether by many
 * small files or one large one. A file with nothing ahead may always ask for its next chunk, so
 * memory stays under AHEAD_BYTES plus one chunk per file and no file waits on another.
 */
const PARALLEL_FILES = 64;
const AHEAD_BYTES = 32 * 1024 * 1024;

interface ManifestJson {
  commit_id: string;
  entries: ManifestEntryJson[];
}

/** A manifest path is joined under the target only when it is plainly relative and inside it. */
function checkPath(path: string): void {
  const parts = path.split('/');
  if (path.startsWith('/') || path.includes('\0') || parts.some((p) => p === '' || p === '.' || p === '..')) {
    throw new CliError(`the server sent an unsafe path "${path}"; nothing was written for it`);
  }
}

/** Removes whatever is at `abs` (a directory with its contents), without following links. */
const remove = (abs: string) => rm(abs, { recursive: true, force: true });

const lstatOrNone = (abs: string) => lstat(abs).catch((err: NodeJS.ErrnoException) => {
  if (err.code === 'ENOENT') return undefined;
  throw err;
});

export const pull = defineCommand({
  name: 'pull',
  args: ['<owner/repo:tag>', '<dir>'],
  flagsUsage: '[--delete] [--json] [--url U] [--token T]',
  summary:
    'Download a tag into <dir> (created if missing), keeping modes, mtimes and symlinks. Files\n' +
    'already in <dir> are chunked locally and only the chunks they lack are fetched; each chunk\n' +
    'is verified and each file is written to a temporary file and renamed into place. Entries of\n' +
    '<dir> that the tag does not have are left alone unless --delete is given.',
  flags: { delete: { type: 'boolean' }, ...JSON_FLAG, ...HTTP_FLAGS },
  async run(io, [refText, dirArg], flags) {
    const ref = parseReference(refText as string);
    const root = resolve(dirArg as string);
    const client = ApiClient.from(flags, io.env);
    const api = transferApiPaths(ref);
    const { commit_id: commitId } = await client.json<{ commit_id: string }>('GET', tagApiPath(ref));
    const { entries } = await client.json<ManifestJson>('GET', api.manifest(commitId));
    for (const e of entries) checkPath(e.path);
    await mkdir(root, { recursive: true });
    // A fresh pull (an empty directory) has nothing in the way and nothing to reuse: no entry is
    // looked up (20,000 of them cost seconds, a fresh pull's whole budget).
    const fresh = (await readdir(root)).length === 0;
    const lookUp = (abs: string) => (fresh ? Promise.resolve(undefined) : lstatOrNone(abs));

    // What the directory already holds: every file at a path the tag names, cut like the server cuts.
    const files = entries.filter((e) => e.type === 'file');
    const existing = new Map<string, number>();
    await forEachLimited(files, PARALLEL_FILES, async (e) => {
      const st = await lookUp(join(root, e.path));
      if (st?.isFile()) existing.set(e.path, st.size);
    });
    const hashing = progress(io, flags.json, `hash ${root}`, [...existing.values()].reduce((a, b) => a + b, 0));
    const local = new Map<string, ChunkPlace>();
    const unchanged = new Set<string>();
    const present = files.filter((e) => existing.has(e.path));
    const cuts = await chunkFiles(present.map((e) => ({ file: join(root, e.path) })), (n) => hashing.add(n));
    present.forEach((e, k) => {
      const cut = cuts[k]!;
      cut.refs.forEach((c, i) => local.set(c.digest, cut.places[i]!));
      if (cut.refs.length === e.chunks.length && cut.refs.every((c, i) => c.digest === e.chunks[i]!.digest)) unchanged.add(e.path);
    });
    hashing.finish();

    // Directories, symlinks and every file's parents first, in path order (a parent sorts before
    // its children): anything in the way of the tag's tree is replaced, never written through.
    const dirs = new Set<string>();
    const ensureDir = async (path: string) => {
      if (path === '' || dirs.has(path)) return;
      await ensureDir(path.includes('/') ? path.slice(0, path.lastIndexOf('/')) : '');
      const abs = join(root, path);
      const st = await lookUp(abs);
      if (!st?.isDirectory()) {
        if (st) await remove(abs);
        await mkdir(abs);
      }
      dirs.add(path);
    };
    const parentOf = (path: string) => (path.includes('/') ? path.slice(0, path.lastIndexOf('/')) : '');
    for (const e of entries) {
      const abs = join(root, e.path);
      if (e.type === 'dir') await ensureDir(e.path);
      else await ensureDir(parentOf(e.path));
      if (e.type === 'symlink') {
        const st = await lookUp(abs);
        if (!st?.isSymbolicLink() || (await readlink(abs)) !== e.link_target) {
          if (st) await remove(abs);
          await symlink(e.link_target ?? '', abs);
        }
        await lutimes(abs, e.mtime, e.mtime);
      }
    }
    // A rename cannot replace a directory: whatever is where a file goes, and is not one, goes.
    await forEachLimited(
      files.filter((e) => !existing.has(e.path)),
      PARALLEL_FILES,
      async (e) => {
        const abs = join(root, e.path);
        const st = await lookUp(abs);
        if (st && !st.isFile()) await remove(abs);
      },
    );

    const total = files.reduce((n, e) => n + e.size, 0);
    const fetching = progress(io, flags.json, `pull ${formatReference(ref)}`, total);
    let fetched = 0;
    let reused = 0;
    let ahead = 0;
    const fetcher = new ChunkFetcher(client, api.fetch);
    // Counted per use, like reused bytes, so that fetched + reused is the tag's size even when a
    // chunk repeats (the fetcher then downloads it once).
    const fetchChunk = async (digest: string, size: number): Promise<Buffer> => {
      const data = await fetcher.get(digest, size);
      fetched += data.length;
      return data;
    };
    await forEachLimited(files, PARALLEL_FILES, async (e) => {
      const abs = join(root, e.path);
      if (unchanged.has(e.path)) {
        reused += e.size;
        fetching.add(e.size);
        const st = await lstat(abs);
        if ((st.mode & 0o7777) !== e.mode) await chmod(abs, e.mode);
        if (Math.floor(st.mtimeMs / 1000) !== e.mtime) await utimes(abs, e.mtime, e.mtime);
        return;
      }
      const reader = new ChunkReader();
      const temp = join(dirname(abs), `.${basename(abs)}.snapfork-${randomBytes(6).toString('hex')}`);
      const out = await open(temp, 'wx', 0o600);
      try {
        // Local bytes when a local copy still holds the chunk, the server's otherwise.
        const load = async (c: ManifestEntryJson['chunks'][number]) => {
          const place = local.get(c.digest);
          const data = place && (await reader.read(place, c.digest));
          if (data) reused += data.length;
          return data ?? fetchChunk(c.digest, c.size);
        };
        const loads: Promise<Buffer>[] = [];
        let next = 0;
        const fill = () => {
          while (next < e.chunks.length && (loads.length === 0 || ahead + e.chunks[next]!.size <= AHEAD_BYTES)) {
            const chunk = e.chunks[next++]!;
            ahead += chunk.size;
            const loading = load(chunk);
            loading.catch(() => undefined); // surfaced when awaited below
            loads.push(loading);
          }
        };
        fill();
        for (let loading = loads.shift(); loading; loading = loads.shift()) {
          const data = await loading;
          fill();
          for (let done = 0; done < data.length; ) done += (await out.write(data, done)).bytesWritten;
          ahead -= data.length;
          fetching.add(data.length);
        }
        await out.chmod(e.mode);
        await out.close();
        await utimes(temp, e.mtime, e.mtime);
        await rename(temp, abs);
      } catch (err) {
        await out.close().catch(() => undefined);
        await unlink(temp).catch(() => undefined);
        throw err;
      } finally {
        await reader.close();
      }
    });
    fetching.finish();

    // Directory modes and times last, deepest first: writing their contents changed the times.
    for (const e of [...entries].reverse()) {
      if (e.type !== 'dir') continue;
      await chmod(join(root, e.path), e.mode);
      await utimes(join(root, e.path), e.mtime, e.mtime);
    }
    if (flags.delete) await removeUnknown(root, entries);

    const reference = formatReference(ref);
    output(
      io,
      flags.json,
      { reference, commit_id: commitId, dir: root, files: files.length, bytes: total, bytes_hashed: hashing.bytes, bytes_fetched: fetched, bytes_reused: reused },
      () => `pulled ${reference} into ${root}: ${files.length} files, ${formatBytes(total)} (${formatBytes(fetched)} fetched)`,
    );
  },
});

/** --delete: removes every entry of `root` that is neither in the tag nor a parent of one. */
async function removeUnknown(root: string, entries: readonly ManifestEntryJson[]): Promise<void> {
  const keep = new Set<string>();
  for (const e of entries) {
    keep.add(e.path);
    for (let slash = e.path.indexOf('/'); slash >= 0; slash = e.path.indexOf('/', slash + 1)) keep.add(e.path.slice(0, slash));
  }
  const walk = async (rel: string): Promise<void> => {
    for (const entry of await readdir(join(root, rel), { withFileTypes: true })) {
      const path = rel ? `${rel}/${entry.name}` : entry.name;
      if (!keep.has(path)) await remove(join(root, path));
      else if (entry.isDirectory()) await walk(path);
    }
  };
  await walk('');
}

/**
 * Tar in and out, with node-tar kept behind two functions. Import parses a tar stream entry by
 * entry with backpressure (the parser waits for each entry's bytes to be consumed); export writes
 * ustar headers, with PAX records where names, sizes or times do not fit, so that GNU tar, bsdtar
 * and node-tar all read what we write.
 */
import { Readable } from 'node:stream';
import { Header, Parser, Pax, type ReadEntry } from 'tar';
import { DomainError, invalid, isDomainError, unprocessable } from './errors.js';
import { PERMISSION_BITS, type EntryType, type ManifestEntry } from './model.js';

export interface TarEntry {
  path: string;
  type: EntryType | 'hardlink';
  mode: number;
  mtime: number;
  size: number;
  /** Symlink target, or the path a hard link points to. */
  linkTarget: string | null;
  /** The entry's bytes; must be consumed (or drained) before the next entry arrives. */
  data: AsyncIterable<Buffer>;
}

const TYPES: Record<string, TarEntry['type'] | undefined> = {
  File: 'file',
  OldFile: 'file',
  ContiguousFile: 'file',
  Directory: 'dir',
  SymbolicLink: 'symlink',
  Link: 'hardlink',
};

/**
 * Makes a path of a tar or of a client-built manifest a manifest path (one rule for both):
 * strips `./` and trailing `/`; refuses a NUL (a tar header ends the name there, so the file
 * would come back under another name), absolute paths and `..` segments (a snapshot never
 * points outside its own tree), with `\` counted as a separator too, as it is where a pull may
 * write the tree (Windows). Returns '' for the root itself.
 */
export function normalizeEntryPath(raw: string): string {
  if (raw.includes('\0')) throw invalid(`path holds a NUL character: ${JSON.stringify(raw)}`);
  if (raw.startsWith('/') || raw.startsWith('\\')) throw invalid(`absolute path: ${raw}`);
  if (raw.split(/[\\/]/).includes('..')) throw invalid(`path escapes the snapshot's root: ${raw}`);
  return raw
    .split('/')
    .filter((p) => p !== '' && p !== '.')
    .join('/');
}

/** Calls `onEntry` for each entry of the tar stream, in order; rejects on a malformed archive. */
export function readTar(body: Readable, onEntry: (entry: TarEntry) => Promise<void>): Promise<void> {
  return new Promise((resolve, reject) => {
    const parser = new Parser({ strict: true });
    // Entries are handled one at a time; whatever a handler leaves unread is drained, or the
    // parser would stall waiting for it.
    let queue = Promise.resolve();
    let failed = false;
    let current: ReadEntry | undefined;
    /** Fails with `error` as it is: the handler's own (a store failing is no fault of the archive). */
    const fail = (error: Error) => {
      if (failed) return;
      failed = true;
      body.unpipe(parser);
      body.resume();
      // The entry in hand gets no more bytes: end its reader, and settle only once its handler
      // has let go, so that no work of the caller (a chunk write, say) outlives the failure.
      current?.destroy();
      void queue.then(() => reject(error));
    };
    const malformed = (e: Error) => fail(e instanceof DomainError ? e : invalid(`not a valid tar archive: ${e.message}`));
    parser.on('entry', (entry: ReadEntry) => {
      queue = queue
        .then(async () => {
          if (failed) return;
          current = entry;
          try {
            await handle(entry);
          } finally {
            current = undefined;
          }
        })
        .catch((e: unknown) => fail(e instanceof Error ? e : new Error(String(e))))
        .finally(() => entry.resume());
    });
    const handle = async (entry: ReadEntry): Promise<void> => {
      const type = TYPES[entry.type];
      if (!type) throw unprocessable(`unsupported entry type ${entry.type} at ${entry.path}`);
      const path = normalizeEntryPath(entry.path);
      if (path === '') return void entry.resume();
      await onEntry({
        path,
        type,
        mode: (entry.mode ?? (type === 'dir' ? 0o755 : 0o644)) & PERMISSION_BITS,
        mtime: Math.floor((entry.mtime?.getTime() ?? 0) / 1000),
        size: type === 'file' ? (entry.size ?? 0) : 0,
        linkTarget: type === 'symlink' ? (entry.linkpath ?? '') : type === 'hardlink' ? normalizeEntryPath(entry.linkpath ?? '') : null,
        data: entry,
      });
    };
    parser.on('error', malformed);
    parser.on('end', () => void queue.then(() => !failed && resolve()));
    // A decoder's own refusal (a zstd window too large: too_large) keeps its kind; anything else cut the body short.
    body.on('error', (e) => fail(isDomainError(e) ? e : invalid(`request body ended early: ${e.message}`)));
    body.pipe(parser);
  });
}

const BLOCK = 512;
const ZEROS = Buffer.alloc(BLOCK * 2);

function headerFor(entry: ManifestEntry): Buffer[] {
  const data = {
    path: entry.type === 'dir' ? `${entry.path}/` : entry.path,
    mode: entry.mode,
    size: entry.type === 'file' ? entry.size : 0,
    mtime: new Date(entry.mtime * 1000),
    type: entry.type === 'file' ? 'File' : entry.type === 'dir' ? 'Directory' : 'SymbolicLink',
    linkpath: entry.linkTarget ?? undefined,
    uid: 0,
    gid: 0,
  } as const;
  const header = new Header(data);
  const block = Buffer.alloc(BLOCK);
  const needPax = header.encode(block, 0);
  return needPax ? [new Pax(data).encode(), block] : [block];
}

/**
 * A tar stream of `entries`, each file's bytes taken from `content(entry)` (which must yield
 * exactly `entry.size` bytes). Pulls content only as fast as the consumer reads.
 */
export function writeTar(
  entries: Iterable<ManifestEntry>,
  content: (entry: ManifestEntry) => AsyncIterable<Buffer>,
): Readable {
  async function* blocks(): AsyncGenerator<Buffer> {
    for (const entry of entries) {
      yield* headerFor(entry);
      if (entry.type !== 'file' || entry.size === 0) continue;
      yield* content(entry);
      const pad = entry.size % BLOCK;
      if (pad) yield Buffer.alloc(BLOCK - pad);
    }
    yield ZEROS;
  }
  return Readable.from(blocks(), { objectMode: false });
}

import { createHash } from 'node:crypto';
import { MAX_CHUNK_SIZE, MIN_CHUNK_SIZE } from './chunker.js';
import { tooLarge, unprocessable } from './errors.js';
import { PERMISSION_BITS, type Manifest, type ManifestEntry } from './model.js';
import { normalizeEntryPath } from './tar-codec.js';

/**
 * The canonical encoding that a manifest digest is computed over (storage/README.md):
 * entries sorted by path in byte order, each one line of JSON
 * `[path, type, mode, size, mtime, linkTarget, [[chunkDigest, chunkSize], ...]]` ending in "\n".
 * JSON keeps the encoding unambiguous for any UTF-8 path; the fixed field order keeps it stable.
 */
export function canonicalEntryLine(e: ManifestEntry): string {
  return (
    JSON.stringify([
      e.path,
      e.type,
      e.mode,
      e.size,
      e.mtime,
      e.linkTarget,
      e.chunks.map((c) => [c.digest, c.size]),
    ]) + '\n'
  );
}

const byPathBytes = (a: ManifestEntry, b: ManifestEntry) =>
  Buffer.compare(Buffer.from(a.path, 'utf8'), Buffer.from(b.path, 'utf8'));

/** Sorts the entries canonically and computes the digest; the input array is not modified. */
export function buildManifest(entries: readonly ManifestEntry[]): Manifest {
  const sorted = [...entries].sort(byPathBytes);
  const hash = createHash('sha256');
  for (const e of sorted) hash.update(canonicalEntryLine(e));
  return { digest: hash.digest('hex'), entries: sorted };
}

const SHA256_HEX = /^[0-9a-f]{64}$/;

/**
 * Entries one manifest may hold: a dataset of a million files and their directories fits twice
 * over; a commit body of 256 MiB holds ~3M entries at the very most.
 */
export const MAX_MANIFEST_ENTRIES = 2_000_000;
/**
 * Chunk references one manifest may hold, over all its files (so one file's list too): 2 TiB of
 * content at the average chunk size, so a 1 TiB VM image (~16M references) fits a tar push; a
 * commit body of 256 MiB holds ~3M references at the most.
 */
export const MAX_MANIFEST_CHUNK_REFS = 32 * 1024 * 1024;

/**
 * `too_large` when a manifest of `entries` entries and `chunkRefs` chunk references passes a
 * bound; a tar push calls it as it reads, so that it stops at the bound instead of at the end.
 */
export function assertManifestBounds(entries: number, chunkRefs: number): void {
  if (entries > MAX_MANIFEST_ENTRIES) throw tooLarge(`a manifest holds at most ${MAX_MANIFEST_ENTRIES} entries`);
  if (chunkRefs > MAX_MANIFEST_CHUNK_REFS) throw tooLarge(`a manifest holds at most ${MAX_MANIFEST_CHUNK_REFS} chunk references`);
}

/**
 * The rules every manifest a push stores obeys, whether the server cut it from a tar or a client
 * sent it: at most MAX_MANIFEST_ENTRIES entries and MAX_MANIFEST_CHUNK_REFS chunk references
 * (`too_large`); paths normalized as the tar import does (and non-empty), one entry per path, no
 * entry below a file or symlink (a pull could otherwise be led to write through a link),
 * PERMISSION_BITS only, a file's size the sum of its chunks, chunks as the chunker cuts them (at
 * most MAX_CHUNK_SIZE, and at least MIN_CHUNK_SIZE but for a file's last, so that the references
 * a manifest holds grow with the bytes it describes, never beyond), directories and symlinks
 * without content, symlinks with a target. Returns the manifest with its canonical digest; throws
 * `invalid` (a path) or `unprocessable` naming the entry.
 */
export function checkedManifest(entries: readonly ManifestEntry[]): Manifest {
  assertManifestBounds(entries.length, entries.reduce((n, e) => n + e.chunks.length, 0));
  const normalized = entries.map((e) => ({ ...e, path: normalizeEntryPath(e.path) }));
  const types = new Map<string, ManifestEntry['type']>();
  for (const e of normalized) {
    const bad = (why: string) => unprocessable(`manifest entry "${e.path}": ${why}`);
    if (e.path === '') throw bad('the root cannot be an entry');
    if (types.has(e.path)) throw bad('the path appears twice');
    types.set(e.path, e.type);
    if (!Number.isInteger(e.mode) || e.mode < 0 || e.mode > PERMISSION_BITS) {
      throw bad('mode must hold permission bits only (0 to 0o777: no setuid, setgid or sticky bit)');
    }
    if (!Number.isSafeInteger(e.mtime)) throw bad('mtime must be whole seconds');
    if (e.type === 'file') {
      if (e.linkTarget !== null) throw bad('a file has no link target');
      let size = 0;
      const last = e.chunks.length - 1;
      for (const [i, c] of e.chunks.entries()) {
        if (!SHA256_HEX.test(c.digest)) throw bad(`chunk "${c.digest}" is not a lower-case SHA-256 hex digest`);
        if (!Number.isInteger(c.size) || c.size < 1 || c.size > MAX_CHUNK_SIZE) throw bad(`chunk sizes run from 1 to ${MAX_CHUNK_SIZE} bytes`);
        if (i < last && c.size < MIN_CHUNK_SIZE) throw bad(`every chunk but a file's last holds at least ${MIN_CHUNK_SIZE} bytes, as the chunker cuts them`);
        size += c.size;
      }
      if (e.size !== size) throw bad(`size ${e.size} is not the sum of its chunk sizes (${size})`);
    } else {
      if (e.chunks.length > 0 || e.size !== 0) throw bad(`a ${e.type} has no content`);
      if (e.type === 'symlink' ? !e.linkTarget : e.linkTarget !== null) throw bad(`a ${e.type} ${e.type === 'symlink' ? 'needs' : 'has no'} link target`);
    }
  }
  for (const e of normalized) {
    for (let slash = e.path.indexOf('/'); slash >= 0; slash = e.path.indexOf('/', slash + 1)) {
      const parent = types.get(e.path.slice(0, slash));
      if (parent !== undefined && parent !== 'dir') throw unprocessable(`manifest entry "${e.path}" lies below a ${parent}`);
    }
  }
  return buildManifest(normalized);
}

export const manifestFileCount = (m: Manifest) => m.entries.filter((e) => e.type === 'file').length;
export const manifestByteCount = (m: Manifest) => m.entries.reduce((n, e) => n + e.size, 0);

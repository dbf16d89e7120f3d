import { createHash } from 'node:crypto';
import type { Manifest, ManifestEntry } from './model.js';

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

export const manifestFileCount = (m: Manifest) => m.entries.filter((e) => e.type === 'file').length;
export const manifestByteCount = (m: Manifest) => m.entries.reduce((n, e) => n + e.size, 0);

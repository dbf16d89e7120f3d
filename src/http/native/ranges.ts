import { HttpStatusError } from '../errors.js';
import type { StoredEntry } from '../../domain/model.js';

/**
 * A file's ETag: the digest of its chunk list. Chunks are content-addressed, so the list names
 * the content (equal bytes, equal ETag) at the cost of one hash of the stored list, not of the file.
 */
export const fileETag = (entry: StoredEntry): string => `"sha256-${entry.chunks.digest()}"`;

/**
 * Parses a single `Range: bytes=...` header against a file of `size` bytes (RFC 9110 §14).
 * Returns undefined to serve the whole file: no header, a multi-range or unknown unit, or an
 * `If-Range` that does not match. Throws 416 for a range that starts past the end.
 */
export function parseRange(
  header: string | undefined,
  size: number,
  ifRange: string | undefined,
  etag: string,
): { start: number; end: number } | undefined {
  if (header === undefined || (ifRange !== undefined && ifRange !== etag)) return undefined;
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!match || (match[1] === '' && match[2] === '')) return undefined;
  const [, from, to] = match as unknown as [string, string, string];
  let start: number;
  let end: number;
  if (from === '') {
    start = Math.max(0, size - Number(to));
    end = size - 1;
  } else {
    start = Number(from);
    end = to === '' ? size - 1 : Math.min(Number(to), size - 1);
  }
  if (start >= size || start > end) {
    throw new HttpStatusError(416, `range not satisfiable for a file of ${size} bytes`, {
      'Content-Range': `bytes */${size}`,
    });
  }
  return { start, end };
}

/** Building blocks of delta-protocol requests (chunk packs, client-built manifests) for tests. */
import { recordHeader } from '../../src/lib/chunk-pack.js';
import { sha256 } from '../../src/lib/sha256.js';

export { sha256 };

/** One chunk-pack record of `data`: its header (length, digest), then its bytes. */
export const packRecord = (data: Buffer): Buffer => Buffer.concat([recordHeader(sha256(data), data.length), data]);

/** A file entry of a client-built manifest over `chunks` (only their digests and sizes are sent). */
export const fileEntry = (path: string, chunks: readonly { digest: string; size: number }[], mode = 0o644) => ({
  path,
  type: 'file',
  mode,
  size: chunks.reduce((n, c) => n + c.size, 0),
  mtime: 1_700_000_000,
  link_target: null,
  chunks: chunks.map(({ digest, size }) => ({ digest, size })),
});

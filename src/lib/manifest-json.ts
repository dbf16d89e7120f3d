/**
 * A manifest entry on the wire (openapi ManifestEntry): what `GET .../commits/{id}/manifest`
 * answers and `POST .../commits` takes. Shared by the server's mapping and the CLI, so both
 * sides speak one shape.
 */
import type { ChunkRef, EntryType, ManifestEntry } from '../domain/model.js';

export interface ManifestEntryJson {
  path: string;
  type: EntryType;
  mode: number;
  size: number;
  mtime: number;
  link_target: string | null;
  chunks: ChunkRef[];
}

export const manifestEntryJson = (e: ManifestEntry): ManifestEntryJson => ({
  path: e.path,
  type: e.type,
  mode: e.mode,
  size: e.size,
  mtime: e.mtime,
  link_target: e.linkTarget,
  chunks: e.chunks,
});

export const manifestEntryOf = (e: ManifestEntryJson): ManifestEntry => ({
  path: e.path,
  type: e.type,
  mode: e.mode,
  size: e.size,
  mtime: e.mtime,
  linkTarget: e.link_target,
  chunks: e.chunks.map((c) => ({ digest: c.digest, size: c.size })),
});

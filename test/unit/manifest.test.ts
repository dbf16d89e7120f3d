/**
 * The bounds of a manifest at their exact values: too large to reach through a 256 MiB commit
 * body in a test (request-cost.test.ts covers the other rules over HTTP), so built here from
 * shared objects and holes.
 */
import { describe, expect, it } from 'vitest';
import { MIN_CHUNK_SIZE } from '../../src/domain/chunker.js';
import { DomainError } from '../../src/domain/errors.js';
import { assertManifestBounds, checkedManifest, MAX_MANIFEST_CHUNK_REFS, MAX_MANIFEST_ENTRIES } from '../../src/domain/manifest.js';
import type { ChunkRef, ManifestEntry } from '../../src/domain/model.js';

const kindOf = (work: () => unknown): string | undefined => {
  try {
    work();
    return undefined;
  } catch (e) {
    expect(e).toBeInstanceOf(DomainError);
    return (e as DomainError).kind;
  }
};

const ref: ChunkRef = { digest: 'a'.repeat(64), size: MIN_CHUNK_SIZE };
const fileOf = (path: string, chunks: ChunkRef[]): ManifestEntry => ({
  path,
  type: 'file',
  mode: 0o644,
  size: chunks.length * MIN_CHUNK_SIZE,
  mtime: 0,
  linkTarget: null,
  chunks,
});

describe('manifest bounds', () => {
  it('are inclusive', () => {
    expect(() => assertManifestBounds(MAX_MANIFEST_ENTRIES, MAX_MANIFEST_CHUNK_REFS)).not.toThrow();
    expect(kindOf(() => assertManifestBounds(MAX_MANIFEST_ENTRIES + 1, 0))).toBe('too_large');
    expect(kindOf(() => assertManifestBounds(1, MAX_MANIFEST_CHUNK_REFS + 1))).toBe('too_large');
  });

  it(`make checkedManifest refuse more than ${MAX_MANIFEST_ENTRIES} entries as too large, before looking at any`, () => {
    // Every entry has the same path: looked at one by one, this would be a duplicate (422).
    const entry = fileOf('same', [ref]);
    expect(kindOf(() => checkedManifest(new Array<ManifestEntry>(MAX_MANIFEST_ENTRIES + 1).fill(entry)))).toBe('too_large');
  });

  it(`make checkedManifest refuse more than ${MAX_MANIFEST_CHUNK_REFS} chunk references over all files as too large`, () => {
    // Holes: the bound is checked on lengths, before any reference is read.
    const chunks = new Array<ChunkRef>(MAX_MANIFEST_CHUNK_REFS / 2);
    expect(kindOf(() => checkedManifest([fileOf('a', chunks), fileOf('b', chunks), fileOf('c', [ref])]))).toBe('too_large');
  });
});

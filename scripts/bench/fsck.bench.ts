/**
 * fsck on a store bigger than one page of anything: 100,000 chunks and 20 manifests of 10,000
 * files with 10 chunk references each (2 million references, most chunks shared by many
 * manifests, as forks with small edits make them). Prints the time of a run without and with
 * read_data, and the peak heap above the baseline, sampled while it runs: what shows memory
 * does not grow with the store. Run with:
 *
 *   npm run bench -- scripts/bench/fsck.bench.ts
 *
 * (that config sets SNAPFORK_BENCH=1; the suite is skipped without it). It asserts nothing.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'vitest';
import { AccessPolicy } from '../../src/domain/access-policy.js';
import { FsckService, type FsckOptions } from '../../src/domain/fsck.service.js';
import { buildManifest } from '../../src/domain/manifest.js';
import type { ManifestEntry } from '../../src/domain/model.js';
import { noTelemetry } from '../../src/domain/ports/telemetry.js';
import type { UserPrincipal } from '../../src/domain/principal.js';
import { openFsChunkStore } from '../../src/store/fs/chunk-store.js';
import { openSqliteMetadataStore } from '../../src/store/sqlite/database.js';

const CHUNKS = 100_000;
const MANIFESTS = Number(process.env.FSCK_BENCH_MANIFESTS ?? 20);
const FILES = 10_000;
const REFS_PER_FILE = 10;
const MIB = 1024 * 1024;

const admin: UserPrincipal = { kind: 'user', userId: 1, login: 'root', scopes: new Set(['admin']) };

describe.skipIf(!process.env.SNAPFORK_BENCH)('fsck', () => {
  it('runs in bounded memory over 2 million references', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'snapfork-fsck-bench-'));
    const store = await openSqliteMetadataStore(join(dir, 'snapfork.db'));
    const chunks = await openFsChunkStore(join(dir, 'chunks'));
    try {
      const writer = chunks.writer();
      const refs: { digest: string; size: number }[] = [];
      for (let i = 0; i < CHUNKS; i++) {
        const data = Buffer.from(`chunk ${i} `.repeat(100));
        refs.push({ digest: (await writer.put(data)).digest, size: data.length });
      }
      await writer.commit();
      for (let m = 0; m < MANIFESTS; m++) {
        const entries: ManifestEntry[] = Array.from({ length: FILES }, (_, f) => {
          // Each manifest shifts a few files' chunks: most references are shared with the others.
          const first = (f * REFS_PER_FILE + (f % 50 === 0 ? m : 0)) % (CHUNKS - REFS_PER_FILE);
          const chunkRefs = refs.slice(first, first + REFS_PER_FILE);
          return { path: `dir${f % 100}/file-${f}`, type: 'file', mode: 0o644, size: chunkRefs.reduce((n, c) => n + c.size, 0), mtime: m, linkTarget: null, chunks: chunkRefs };
        });
        await store.putManifest(buildManifest(entries));
      }
      refs.length = 0;

      const fsck = new FsckService(store, chunks, new AccessPolicy(store), noTelemetry, () => new Date().toISOString());
      for (const [label, options] of [
        ['references only', {}],
        ['read_data', { readData: true }],
        ['read_data_subset 1/10', { readDataSubset: '1/10' }],
      ] as [string, FsckOptions][]) {
        global.gc?.();
        const baseline = process.memoryUsage().heapUsed;
        let peak = baseline;
        const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().heapUsed)), 20);
        const started = performance.now();
        const report = await fsck.run(admin, options);
        const seconds = (performance.now() - started) / 1000;
        clearInterval(sampler);
        peak = Math.max(peak, process.memoryUsage().heapUsed);
        console.log(
          `${label}: ${seconds.toFixed(1)} s, ok=${report.ok}, ${report.referencesChecked} references, ` +
            `${report.chunksChecked} chunks read, peak heap +${((peak - baseline) / MIB).toFixed(0)} MiB`,
        );
      }
    } finally {
      await Promise.allSettled([store.close(), chunks.close()]);
      await rm(dir, { recursive: true, force: true });
    }
  });
});

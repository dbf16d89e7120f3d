/**
 * Ext4DatasetImages with the real mke2fs: an image built again for the same tree (another server,
 * say) has the same file system UUID and hash seed, which a VM resumed over it relies on.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { buildManifest } from '../../src/domain/manifest.js';
import type { ManifestEntry } from '../../src/domain/model.js';
import { datasetUuid, Ext4DatasetImages } from '../../src/runtime/dataset-images.js';
import { tempDir } from '../support/trees.js';

const execFileAsync = promisify(execFile);

describe('Ext4DatasetImages', () => {
  it('builds the same tree with the same UUID and directory hash seed, derived from its digest, wherever it builds it', async () => {
    const file = (path: string, size: number): ManifestEntry => ({ path, type: 'file', mode: 0o644, size, mtime: 0, linkTarget: null, chunks: [] });
    const manifest = buildManifest([file('a.csv', 4), { ...file('sub', 0), type: 'dir', mode: 0o755 }, file('sub/b.txt', 2)]);
    const read = async function* (entry: ManifestEntry) {
      yield Buffer.alloc(entry.size, 'x');
    };
    const headers = [];
    for (const dir of [await tempDir(), await tempDir()]) {
      const image = await (await Ext4DatasetImages.open(join(dir, 'datasets'))).imageOf(manifest, read);
      const { stdout } = await execFileAsync('dumpe2fs', ['-h', image.path]);
      headers.push({ uuid: /^Filesystem UUID:\s+(\S+)/m.exec(stdout)?.[1], seed: /^Directory Hash Seed:\s+(\S+)/m.exec(stdout)?.[1] });
    }
    const uuid = datasetUuid(manifest.digest);
    expect(uuid).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    expect(headers).toEqual([{ uuid, seed: uuid }, { uuid, seed: uuid }]);
  });
});

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SqliteChunkIndex } from '../../src/store/packs/sqlite-chunk-index.js';
import { chunkIndexContract } from './chunk-index.contract.js';

chunkIndexContract('SQLite file', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'snapfork-index-'));
  const index = SqliteChunkIndex.open(join(dir, 'index.db'));
  return {
    index,
    cleanup: async () => {
      await index.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
});

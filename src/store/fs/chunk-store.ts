/**
 * The embedded chunk store: packs in a local directory (LocalDirBackend) located by a SQLite
 * index beside them (SqliteChunkIndex), under a directory lock. The layout under `dir`, the
 * storage format's (storage/README.md):
 *
 *   <dataDir>/chunks/                     dir
 *   ├── LOCK                              pid and host of the process that has the store open
 *   ├── index.db  (+ -wal, -shm)          SQLite: chunks(digest → pack, offset, sizes), packs(live)
 *   ├── packs/
 *   │   └── 00/ … ff/                     first two hex digits of the pack id, created at open
 *   │       └── <pack id>.pack            committed: fsynced, immutable
 *   └── tmp/
 *       └── <pack id>.pack                being written by a ChunkWriter; deleted at open
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fsyncDir } from '../../lib/durable-fs.js';
import { LocalDirBackend } from '../blobs/local-dir.js';
import { openPackChunkStore, type PackChunkStore, type PackStoreOptions } from '../packs/pack-store.js';
import { SqliteChunkIndex } from '../packs/sqlite-chunk-index.js';
import { lockDirectory } from './dir-lock.js';

/** The SQLite chunk index's file in a chunks directory (also beside an S3 bucket's packs, src/main.ts). */
export const CHUNK_INDEX_FILE = 'index.db';

/** The store under `dir`; `options.codec` as PackStoreOptions.codec (closed with the store). */
export async function openFsChunkStore(dir: string, options: Pick<PackStoreOptions, 'codec'> = {}): Promise<PackChunkStore> {
  await mkdir(dir, { recursive: true });
  const unlock = await lockDirectory(dir);
  try {
    const backend = await LocalDirBackend.open(dir);
    // The layout's 256 fan-out directories exist from the start, so committing a pack never
    // has to create (and fsync) one.
    await Promise.all(Array.from({ length: 256 }, (_, i) => mkdir(join(dir, 'packs', i.toString(16).padStart(2, '0')), { recursive: true })));
    await fsyncDir(join(dir, 'packs'));
    await fsyncDir(dir);
    let index: SqliteChunkIndex;
    try {
      index = SqliteChunkIndex.open(join(dir, CHUNK_INDEX_FILE));
    } catch (e) {
      await backend.close();
      throw e;
    }
    // The lock makes this process the directory's only writer: no other process can be between
    // committing a pack and publishing it, so every orphan is a crash's leftover, whatever its age.
    return await openPackChunkStore(backend, index, { orphanGraceMs: 0, onClose: unlock, ...options });
  } catch (e) {
    await unlock();
    throw e;
  }
}

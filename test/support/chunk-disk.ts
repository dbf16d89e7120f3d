import { chunkBuffer } from '../../src/domain/chunker.js';
import { ChunkDiskSource } from '../../src/domain/disk-source.js';
import type { ChunkRef } from '../../src/domain/model.js';
import type { ChunkStore } from '../../src/store/types.js';

/** Stores `bytes` as a file's chunks (cut by the real chunker) and answers the file's DiskSource. */
export async function storedDisk(store: ChunkStore, bytes: Buffer): Promise<{ disk: ChunkDiskSource; chunks: ChunkRef[] }> {
  const writer = store.writer();
  const chunks: ChunkRef[] = [];
  for (const chunk of chunkBuffer(bytes)) chunks.push({ digest: (await writer.put(chunk)).digest, size: chunk.length });
  await writer.commit();
  return { disk: new ChunkDiskSource({ size: bytes.length, chunks }, store), chunks };
}

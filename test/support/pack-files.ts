/**
 * Damage done to a local chunk store's pack files on disk (storage/README.md, "Pack files"), as
 * a failing disk would: the fault tests' way to prove damage is found and never served.
 */
import { open, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ENTRY_HEADER_SIZE, ENTRY_MAGIC } from '../../src/store/packs/pack-format.js';

/** The pack file under `chunksDir` holding `digest`, and the offset of the chunk's entry header in it. */
export async function findChunk(chunksDir: string, digest: string): Promise<{ file: string; pack: string; offset: number }> {
  const header = Buffer.concat([ENTRY_MAGIC, Buffer.from(digest, 'hex')]);
  const entries = await readdir(join(chunksDir, 'packs'), { recursive: true, withFileTypes: true });
  for (const entry of entries.filter((e) => e.isFile() && e.name.endsWith('.pack'))) {
    const file = join(entry.parentPath, entry.name);
    const offset = (await readFile(file)).indexOf(header);
    if (offset >= 0) return { file, pack: entry.name.slice(0, -'.pack'.length), offset };
  }
  throw new Error(`no pack under ${chunksDir} holds chunk ${digest}`);
}

/**
 * Flips one bit in the middle of the stored bytes of chunk `digest` (which must not be empty),
 * leaving its entry header and the index as they were. Answers the chunk's pack id.
 */
export async function flipChunkByte(chunksDir: string, digest: string): Promise<string> {
  const { file, pack, offset } = await findChunk(chunksDir, digest);
  const handle = await open(file, 'r+');
  try {
    const storedSize = (await handle.read(Buffer.alloc(4), 0, 4, offset + 40)).buffer.readUInt32LE(0);
    if (storedSize === 0) throw new Error(`chunk ${digest} is empty: no byte to flip`);
    const at = offset + ENTRY_HEADER_SIZE + Math.floor(storedSize / 2);
    const byte = Buffer.alloc(1);
    await handle.read(byte, 0, 1, at);
    byte[0]! ^= 0x01;
    await handle.write(byte, 0, 1, at);
  } finally {
    await handle.close();
  }
  return pack;
}

/**
 * The byte layout of pack files (storage/README.md, "Pack files"). Each entry repeats its digest
 * and sizes, so the index can be rebuilt by reading the packs alone.
 */

/** "SNAPPACK", then format version 1 (u32 LE), then 4 reserved zero bytes. */
export const PACK_MAGIC = Buffer.from('SNAPPACK', 'latin1');
export const PACK_VERSION = 1;
export const PACK_HEADER_SIZE = 16;

/** "CHNK" | SHA-256 (32) | size u32 LE | stored size u32 LE | compression u8 | 3 reserved. */
export const ENTRY_MAGIC = Buffer.from('CHNK', 'latin1');
export const ENTRY_HEADER_SIZE = 48;

export type Compression = 'zstd' | 'none';

export interface EntryHeader {
  digest: string;
  size: number;
  storedSize: number;
  compression: Compression;
}

const COMPRESSION_CODES: Record<Compression, number> = { none: 0, zstd: 1 };

export function packHeader(): Buffer {
  const header = Buffer.alloc(PACK_HEADER_SIZE);
  PACK_MAGIC.copy(header, 0);
  header.writeUInt32LE(PACK_VERSION, 8);
  return header;
}

export function encodeEntryHeader(entry: EntryHeader): Buffer {
  const header = Buffer.alloc(ENTRY_HEADER_SIZE);
  ENTRY_MAGIC.copy(header, 0);
  header.write(entry.digest, 4, 32, 'hex');
  header.writeUInt32LE(entry.size, 36);
  header.writeUInt32LE(entry.storedSize, 40);
  header.writeUInt8(COMPRESSION_CODES[entry.compression], 44);
  return header;
}

/** The entry header at the start of `bytes`, or undefined when it is not one. */
export function decodeEntryHeader(bytes: Buffer): EntryHeader | undefined {
  if (bytes.length < ENTRY_HEADER_SIZE || !bytes.subarray(0, 4).equals(ENTRY_MAGIC)) return undefined;
  const code = bytes.readUInt8(44);
  const compression = code === 1 ? 'zstd' : code === 0 ? 'none' : undefined;
  if (!compression) return undefined;
  return {
    digest: bytes.toString('hex', 4, 36),
    size: bytes.readUInt32LE(36),
    storedSize: bytes.readUInt32LE(40),
    compression,
  };
}

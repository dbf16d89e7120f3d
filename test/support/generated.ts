/**
 * Large inputs without large downloads or files: a tar stream holding one file of `size` bytes
 * of AES-CTR keystream (incompressible, every chunk distinct, generated at GB/s).
 */
import { createCipheriv } from 'node:crypto';
import { Readable } from 'node:stream';
import { Header } from 'tar';

const MIB = 1024 * 1024;

export function generatedBytes(size: number, seed = 1): AsyncGenerator<Buffer> {
  const key = Buffer.alloc(16, seed);
  const cipher = createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  const zeros = Buffer.alloc(MIB);
  return (async function* () {
    for (let left = size; left > 0; left -= MIB) yield cipher.update(zeros.subarray(0, Math.min(MIB, left)));
  })();
}

/** generatedBytes as one buffer. */
export async function generatedBuffer(size: number, seed = 1): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of generatedBytes(size, seed)) parts.push(part);
  return Buffer.concat(parts, size);
}

export function generatedTar(name: string, size: number, seed = 1): Readable {
  async function* blocks(): AsyncGenerator<Buffer> {
    const header = Buffer.alloc(512);
    new Header({ path: name, mode: 0o644, size, mtime: new Date(0), type: 'File', uid: 0, gid: 0 }).encode(header, 0);
    yield header;
    yield* generatedBytes(size, seed);
    if (size % 512) yield Buffer.alloc(512 - (size % 512));
    yield Buffer.alloc(1024);
  }
  return Readable.from(blocks());
}

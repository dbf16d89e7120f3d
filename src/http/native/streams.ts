/** Request and response bodies of the native API's binary routes (archives, files, chunks). */
import type { Readable } from 'node:stream';
import { pipeline as pipelineCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import type { Request, Response } from 'express';
import { DomainError, invalid } from '../../domain/errors.js';
import { createZstdDecompressStream } from '../../lib/zstd.js';
import { hashedBody } from '../body-digest.js';

/**
 * The request body with its Content-Encoding removed; its raw bytes are hashed on the way for an
 * idempotent retry (body-digest.ts).
 */
export function decodedBody(req: Request): Readable {
  const encoding = (req.get('content-encoding') ?? 'identity').toLowerCase();
  switch (encoding) {
    case 'identity':
      return hashedBody(req);
    case 'gzip':
    case 'x-gzip':
      return decode(hashedBody(req), createGunzip());
    case 'zstd':
      return decode(hashedBody(req), createZstdDecompressStream());
    default:
      throw invalid(`unsupported Content-Encoding ${encoding}`);
  }
}

/**
 * True when the client asks for zstd rather than `plain`: only when it names zstd itself, so a
 * wildcard Accept (curl's default) still gets the plain form.
 */
export function prefersZstd(req: Request, plain: string): boolean {
  return req.accepts([plain, 'application/zstd']) === 'application/zstd' && /zstd/.test(req.get('accept') ?? '');
}

/** Pipes into a decoder whose errors (and the body's) surface as one stream error. */
function decode(body: Readable, decoder: NodeJS.ReadWriteStream): Readable {
  return pipelineCallback(body, decoder, () => undefined) as unknown as Readable;
}

/**
 * Streams to the response once headers are set. A failure after the first byte (a corrupt chunk)
 * cannot change the status any more: the connection is cut so the client sees a truncated body,
 * never a complete-looking wrong one.
 */
export async function streamOut(streams: (Readable | NodeJS.ReadWriteStream)[], res: Response): Promise<void> {
  try {
    await pipeline([...streams, res]);
  } catch (e) {
    if (!res.headersSent) throw e;
    res.destroy(e instanceof DomainError ? e : undefined);
  }
}

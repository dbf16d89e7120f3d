/**
 * The SHA-256 of a request's whole body, computed while the body is read, so that an idempotent
 * retry is compared with the first request on every byte without holding either body. Parsed
 * bodies (JSON, forms) are hashed by body-parser's `verify` hook, which sees them whole; streamed
 * bodies (tars, chunk packs, chunks) as the route reads them through `hashedBody`. Only requests
 * given to `trackBodyDigest` are hashed.
 */
import { createHash, type Hash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { pipeline, Transform, type Readable } from 'node:stream';

class BodyDigest {
  private readonly hash: Hash = createHash('sha256');
  /** Hex, once the whole body went through. */
  value: string | undefined;

  update(bytes: Buffer): void {
    this.hash.update(bytes);
  }

  finish(): void {
    this.value ??= this.hash.digest('hex');
  }
}

const digests = new WeakMap<IncomingMessage, BodyDigest>();

/** Hashes the body of `req` from now on; call before anything reads it. */
export function trackBodyDigest(req: IncomingMessage): void {
  const digest = new BodyDigest();
  // No body at all: nothing will read one, and Content-Length: 0 is what fetch() sends then.
  if (req.headers['transfer-encoding'] === undefined && (req.headers['content-length'] ?? '0') === '0') digest.finish();
  digests.set(req, digest);
}

/** The body's SHA-256 (hex) once all of it was read; undefined before, or when not tracked. */
export const bodyDigestOf = (req: IncomingMessage): string | undefined => digests.get(req)?.value;

/** body-parser's `verify` hook: it hands over the whole body it read (inflated, if encoded). */
export function hashParsedBody(req: IncomingMessage, _res: unknown, body: Buffer): void {
  const digest = digests.get(req);
  if (digest === undefined || digest.value !== undefined) return;
  digest.update(body);
  digest.finish();
}

/**
 * The raw request body for a route to read: `req` itself, or when tracked, `req` through a pass-
 * through that hashes each piece and completes the digest at the body's end.
 */
export function hashedBody(req: IncomingMessage): Readable {
  const digest = digests.get(req);
  if (digest === undefined || digest.value !== undefined) return req;
  const tap = new Transform({
    transform(piece: Buffer, _encoding, done) {
      digest.update(piece);
      done(null, piece);
    },
    flush(done) {
      digest.finish();
      done();
    },
  });
  // Errors of the request (a cut connection) surface on the returned stream.
  return pipeline(req, tap, () => undefined);
}

/** Reads and discards what is left of a tracked body, and returns its digest. */
export async function drainBodyDigest(req: IncomingMessage): Promise<string | undefined> {
  if (bodyDigestOf(req) === undefined && !req.readableEnded) {
    for await (const _piece of hashedBody(req)) {
      // Only the digest is kept: memory stays bounded whatever the body's size.
    }
  }
  return bodyDigestOf(req);
}

import type { NextFunction, Request, Response } from 'express';
import type { IdempotencyService } from '../domain/idempotency.service.js';
import { principalOf } from './auth.js';
import { bodyDigestOf, drainBodyDigest, trackBodyDigest } from './body-digest.js';

const WRITES = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);
/** Headers a replay repeats; the rest (dates, request ids) belong to each answer. */
const REPLAYED_HEADERS = ['content-type', 'location', 'link', 'x-total-count'];
/**
 * The largest answer kept for a replay. Writes answer with small JSON documents (a repository,
 * a push result); anything larger or of another type is not kept and the key is released, so
 * that memory and the database never hold more than this per key.
 */
export const MAX_REPLAYED_BODY = 64 * 1024;
/** JSON and its vendor forms (`application/vnd.gitverse.object+json`). */
const JSON_TYPE = /^application\/(?:[\w.-]+\+)?json\s*(?:;|$)/i;

const idempotencyKeyOf = (req: Request): string | undefined => req.get('idempotency-key') ?? req.get('x-idempotency-key');

/**
 * An operation marked `x-safe: true` in openapi/snapfork.yaml only reads (a POST whose question
 * is too large for a URL, such as `chunks/fetch`): repeating it is harmless, so its key is
 * neither claimed nor recorded.
 */
const isSafeOperation = (req: Request): boolean =>
  (req as Request & { openapi?: { schema?: Record<string, unknown> } }).openapi?.schema?.['x-safe'] === true;

/** Runs before the body parsers: starts hashing the body of every write that carries a key. */
export function hashIdempotentBodies(req: Request, _res: Response, next: NextFunction): void {
  if (WRITES.has(req.method) && idempotencyKeyOf(req) !== undefined) trackBodyDigest(req);
  next();
}

/**
 * Honours `Idempotency-Key` (or `X-Idempotency-Key`) on writes of signed-in callers for every
 * dialect. A key is claimed for the caller's whole principal and the route; the first answer is
 * kept when it is a small JSON document (or empty), neither a server error nor a 429, and the request's whole
 * body was read, and it is replayed byte for byte, with `Idempotent-Replayed: true`, to a retry
 * with the same body (by SHA-256) within 24 hours.
 */
export function idempotency(service: IdempotencyService) {
  return async (req: Request, res: Response, next: NextFunction) => {
    const key = idempotencyKeyOf(req);
    const principal = principalOf(res);
    if (!key || !WRITES.has(req.method) || principal.kind !== 'user' || isSafeOperation(req)) return next();
    const claim = await service.begin({
      principal,
      method: req.method,
      url: req.originalUrl,
      key,
      bodyDigest: () => drainBodyDigest(req),
    });
    if (claim.kind === 'replay') {
      const { status, headers, body } = claim.response;
      for (const [name, value] of Object.entries(headers)) res.setHeader(name, value);
      res.setHeader('Idempotent-Replayed', 'true');
      return void res.status(status).end(body);
    }

    // Only an answer sent whole by one end() (as res.json does) can be kept; one written in
    // pieces is streamed and passes through untouched.
    let answer: Buffer | undefined;
    let streamed = false;
    const write = res.write.bind(res) as (...args: unknown[]) => boolean;
    const end = res.end.bind(res) as (...args: unknown[]) => Response;
    res.write = ((...args: unknown[]) => ((streamed = true), write(...args))) as Response['write'];
    res.end = ((chunk?: unknown, ...rest: unknown[]) => {
      if (!streamed) answer = keepable(chunk, rest[0]);
      return end(chunk, ...rest);
    }) as Response['end'];

    let settled = false;
    const settle = (finished: boolean) => {
      if (settled) return;
      settled = true;
      const bodyDigest = bodyDigestOf(req);
      const body = answer;
      const json = JSON_TYPE.test(String(res.getHeader('content-type') ?? ''));
      // A server error, or a 429 (nothing was done, come back later), must be retried; a body
      // not read to its end cannot be told from another.
      if (!finished || res.statusCode >= 500 || res.statusCode === 429 || bodyDigest === undefined || body === undefined || (body.length > 0 && !json)) {
        return void claim.release().catch(() => undefined);
      }
      const headers: Record<string, string> = {};
      for (const name of REPLAYED_HEADERS) {
        const value = res.getHeader(name);
        if (value !== undefined) headers[name] = String(value);
      }
      claim.record(bodyDigest, { status: res.statusCode, headers, body }).catch(() => undefined);
    };
    res.on('finish', () => settle(true));
    // A connection cut before the answer was complete leaves nothing to replay: release the key.
    res.on('close', () => settle(false));
    next();
  };
}

/** A copy of the body end() was given, or undefined when it is larger than MAX_REPLAYED_BODY. */
function keepable(chunk: unknown, encoding: unknown): Buffer | undefined {
  if (chunk === undefined || chunk === null || typeof chunk === 'function') return Buffer.alloc(0);
  if (typeof chunk === 'string') {
    const enc = typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8';
    return Buffer.byteLength(chunk, enc) <= MAX_REPLAYED_BODY ? Buffer.from(chunk, enc) : undefined;
  }
  if (chunk instanceof Uint8Array && chunk.byteLength <= MAX_REPLAYED_BODY) return Buffer.from(chunk);
  return undefined;
}

import type { NextFunction, Request, Response } from 'express';
import type { IdempotencyService } from '../domain/idempotency.service.js';
import { principalOf } from './auth.js';

const WRITES = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);
/** Headers a replay repeats; the rest (dates, request ids) belong to each answer. */
const REPLAYED_HEADERS = ['content-type', 'location', 'link', 'x-total-count'];

/**
 * Honours `Idempotency-Key` (or `X-Idempotency-Key`) on writes of signed-in callers for every
 * dialect: the first answer is recorded as it goes out and replayed, with
 * `Idempotent-Replayed: true`, to a retry of the same request within 24 hours.
 */
export function idempotency(service: IdempotencyService) {
  return async (req: Request, res: Response, next: NextFunction) => {
    const key = req.get('idempotency-key') ?? req.get('x-idempotency-key');
    const principal = principalOf(res);
    if (!key || !WRITES.has(req.method) || principal.kind !== 'user') return next();
    // JSON bodies are parsed by now; a streamed body (a tar push) is known by its type and length.
    const body = req.is('application/json') ? JSON.stringify(req.body ?? null) : `${req.get('content-type')} ${req.get('content-length')}`;
    const claim = await service.begin({ caller: principal.login, key, method: req.method, path: req.originalUrl, body });
    if (claim.kind === 'replay') {
      const { status, headers, body: stored } = claim.response;
      for (const [name, value] of Object.entries(headers)) res.setHeader(name, value);
      res.setHeader('Idempotent-Replayed', 'true');
      return void res.status(status).end(stored);
    }
    const parts: Buffer[] = [];
    // A body piece is a string (in `encoding`) or bytes of any Uint8Array kind; a callback adds nothing.
    const keep = (chunk: unknown, encoding?: unknown) => {
      if (typeof chunk === 'string') parts.push(Buffer.from(chunk, typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8'));
      else if (chunk instanceof Uint8Array) parts.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    };
    const write = res.write.bind(res) as (...args: unknown[]) => boolean;
    const end = res.end.bind(res) as (...args: unknown[]) => Response;
    res.write = ((chunk: unknown, ...rest: unknown[]) => (keep(chunk, rest[0]), write(chunk, ...rest))) as Response['write'];
    res.end = ((chunk?: unknown, ...rest: unknown[]) => (keep(chunk, rest[0]), end(chunk, ...rest))) as Response['end'];
    let settled = false;
    const settle = (status: number) => {
      if (settled) return;
      settled = true;
      const headers: Record<string, string> = {};
      for (const name of REPLAYED_HEADERS) {
        const value = res.getHeader(name);
        if (value !== undefined) headers[name] = String(value);
      }
      claim.finish({ status, headers, body: Buffer.concat(parts).toString('utf8') }).catch(() => undefined);
    };
    res.on('finish', () => settle(res.statusCode));
    // A connection cut before the answer was complete leaves nothing to replay: release the key.
    res.on('close', () => settle(500));
    next();
  };
}

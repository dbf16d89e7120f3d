/**
 * Structured logs: JSON lines (pino), one logger per server, and the request id that every line
 * written during a request and every answer carries (the `X-Request-Id` header, and
 * `request_id` in each dialect's error body). Only the HTTP layer logs requests: headers and
 * bodies are never written, so no token reaches the logs.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { NextFunction, Request, Response } from 'express';
import { pino, type DestinationStream, type Logger } from 'pino';
import { pinoHttp } from 'pino-http';
import type { LogLevel } from '../config.js';
import { ConnectionBytes } from './connection-bytes.js';
import { UNMATCHED_ROUTE } from './metrics.js';

/**
 * A caller's `X-Request-Id` is kept only when it is short and holds nothing that a header, a log
 * line or a log query could take for something else; any other is replaced by a UUID.
 */
const SAFE_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * Where a credential could sit in an object handed to the logger. Requests are logged field by
 * field (never their headers), so this guards what a later line might add, such as an error
 * carrying the request it failed on.
 */
const REDACTED_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["private-token"]',
  'res.headers["set-cookie"]',
  '*.headers.authorization',
  '*.headers.cookie',
  '*.headers["private-token"]',
  'token',
  '*.token',
];

/** The server's logger: JSON lines of `level` and above to `destination` (stdout by default). */
export function createLogger(level: LogLevel, destination?: DestinationStream): Logger {
  return pino({ level, timestamp: pino.stdTimeFunctions.isoTime, redact: { paths: REDACTED_PATHS, censor: '[redacted]' } }, destination);
}

/** The id of a request that went through `requestLogging` (whose ids are all strings). */
export const requestIdOf = (req: IncomingMessage): string => req.id as string;

/** Marks an answer as failed: a server error's line carries `err` with its stack, a client error's only its message. */
export function recordFailure(res: Response, status: number, err: unknown, message: string): void {
  if (status >= 500) res.err = err instanceof Error ? err : new Error(String(err));
  else res.locals.failure = message;
}

/**
 * Middleware, mounted before anything that may answer: gives the request its id (the caller's
 * when safe, else a UUID), answers it in `X-Request-Id`, binds it to `req.log`, and writes one
 * line when the answer ends: method, path, route template, status, duration and the bytes the
 * connection carried, at `error` for a 5xx (with the error and its stack) and `info` otherwise.
 */
export function requestLogging(logger: Logger, routeOf: (req: Request) => string | undefined) {
  const connectionBytes = new ConnectionBytes();
  // Taken as the request arrives: by the time its answer ends, it may be detached from its
  // socket, and its path cut to what a router below holds.
  const arrivals = new WeakMap<ServerResponse, { socket: Socket; route: string }>();
  const summary = (req: IncomingMessage, res: ServerResponse, durationMs: number) => {
    const path = ((req as Request).originalUrl ?? req.url ?? '').split('?', 1)[0]!;
    const method = req.method ?? '';
    const { socket, route } = arrivals.get(res)!;
    const { read, written } = connectionBytes.since(socket);
    const failure = (res as Response).locals?.failure as string | undefined;
    return {
      method,
      // The path without its query string, where a GitLab client may put its token.
      path,
      route,
      status: res.statusCode,
      duration_ms: durationMs,
      bytes_in: read,
      bytes_out: written,
      ...(failure === undefined ? {} : { error: failure }),
    };
  };
  const logRequest = pinoHttp({
    logger,
    genReqId: (req, res) => {
      const asked = req.headers['x-request-id'];
      const id = typeof asked === 'string' && SAFE_REQUEST_ID.test(asked) ? asked : randomUUID();
      res.setHeader('X-Request-Id', id);
      return id;
    },
    // Lines carry the request id alone, never the request's headers.
    quietReqLogger: true,
    quietResLogger: true,
    customAttributeKeys: { reqId: 'request_id', responseTime: 'duration_ms' },
    customLogLevel: (_req, res, err) => (err || res.err || res.statusCode >= 500 ? 'error' : 'info'),
    customSuccessObject: (req, res, val: { duration_ms: number }) => summary(req, res, val.duration_ms),
    // pino-http makes up an error for a 5xx that recorded none (a 503 of /readyz): only a real one is logged.
    customErrorObject: (req, res, _err, val: { duration_ms: number }) => ({ ...summary(req, res, val.duration_ms), ...(res.err ? { err: res.err } : {}) }),
  });
  return (req: Request, res: Response, next: NextFunction) => {
    arrivals.set(res, { socket: req.socket, route: routeOf(req) ?? UNMATCHED_ROUTE });
    logRequest(req, res, next);
  };
}

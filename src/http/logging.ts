/**
 * Structured logs: JSON lines (pino), one logger per server, and the request id that every line
 * written during a request and every answer carries (the `X-Request-Id` header, and
 * `request_id` in each dialect's error body). Only the HTTP layer logs requests: headers and
 * bodies are never written, so no token reaches the logs.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { NextFunction, Request, Response } from 'express';
import { pino, type DestinationStream, type Logger } from 'pino';
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

/** Each request's id, given as it arrives. */
const requestIds = new WeakMap<IncomingMessage, string>();

/** The id of a request that went through `requestLogging`. */
export const requestIdOf = (req: IncomingMessage): string => requestIds.get(req) ?? '';

/** Marks an answer as failed: a server error's line carries `err` with its stack, a client error's only its message. */
export function recordFailure(res: Response, status: number, err: unknown, message: string): void {
  if (status >= 500) res.locals.serverError = err instanceof Error ? err : new Error(String(err));
  else res.locals.failure = message;
}

/**
 * Middleware, mounted before anything that may answer: gives the request its id (the caller's
 * when safe, else a UUID), answers it in `X-Request-Id`, and writes one line when the answer
 * ends (or its connection closes first): method, path, route template, status, duration and the
 * bytes the connection carried, at `error` for a 5xx (with the error and its stack, when one was
 * recorded) and `info` otherwise. The line is the one pino-http wrote, written directly: its two
 * child loggers a request, one serializing the request it never logs, cost more than the line.
 */
export function requestLogging(logger: Logger, routeOf: (req: Request) => string | undefined) {
  const connectionBytes = new ConnectionBytes();
  return (req: Request, res: Response, next: NextFunction) => {
    const started = Date.now();
    const asked = req.headers['x-request-id'];
    const id = typeof asked === 'string' && SAFE_REQUEST_ID.test(asked) ? asked : randomUUID();
    requestIds.set(req, id);
    res.setHeader('X-Request-Id', id);
    // Taken as the request arrives: by the time its answer ends, it may be detached from its
    // socket, and its path cut to what a router below holds.
    const socket = req.socket;
    const path = req.originalUrl.split('?', 1)[0]!;
    const route = routeOf(req) ?? UNMATCHED_ROUTE;
    const ended = (streamError?: Error) => {
      res.off('close', ended).off('finish', ended).off('error', ended);
      const { read, written } = connectionBytes.since(socket);
      const failure = res.locals.failure as string | undefined;
      const serverError = res.locals.serverError as Error | undefined;
      const line = {
        request_id: id,
        method: req.method,
        // The path without its query string, where a GitLab client may put its token.
        path,
        route,
        status: res.statusCode,
        duration_ms: Date.now() - started,
        bytes_in: read,
        bytes_out: written,
        ...(failure === undefined ? {} : { error: failure }),
      };
      if (streamError !== undefined || serverError !== undefined || res.statusCode >= 500) {
        logger.error(serverError === undefined ? line : { ...line, err: serverError }, 'request errored');
      } else {
        logger.info(line, !req.readableAborted && res.writableEnded ? 'request completed' : 'request aborted');
      }
    };
    res.on('close', ended).on('finish', ended).on('error', ended);
    next();
  };
}
